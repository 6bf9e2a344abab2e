//! The MSE Diffie-Hellman exchange: the 768-bit prime `P`, generator 2, 160-bit private keys.
//!
//! The arithmetic is crypto-bigint's fixed-size `U768` in Montgomery form rather than
//! num-bigint: it needs no heap, its exponentiation is constant-time in the private key,
//! and its Montgomery parameters for `P` are computed at compile time. It builds on the
//! workspace's Rust (it asks for 1.87, the workspace for 1.89).

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U192, U768};

use super::{MseError, DH_KEY_LEN};

/// The spec's prime, big-endian hex.
const P_HEX: &str =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22\
                     514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7E\
                     C6F44C42E9A63A36210000000000090563";
const P: Odd<U768> = Odd::<U768>::from_be_hex(P_HEX);
const PARAMS: FixedMontyParams<{ U768::LIMBS }> = FixedMontyParams::new_vartime(P);
const G: U768 = U768::from_u8(2);
/// Bits of a private key.
const PRIVATE_BITS: u32 = 160;
/// Bytes of a private key as drawn, and as fed to `U192` (three 64-bit limbs).
const PRIVATE_LEN: usize = PRIVATE_BITS as usize / 8;
const PRIVATE_U192_LEN: usize = 24;

/// A private key and its public key.
pub(super) struct KeyPair {
    private: U192,
    public: [u8; DH_KEY_LEN],
}

impl KeyPair {
    /// A fresh key pair, its private key drawn from `rng`.
    pub(super) fn generate<R: rand::RngCore + ?Sized>(rng: &mut R) -> KeyPair {
        let mut x = [0u8; PRIVATE_U192_LEN];
        rng.fill_bytes(&mut x[PRIVATE_U192_LEN - PRIVATE_LEN..]);
        let private = U192::from_be_slice(&x);
        let public = encode(&pow(&G, &private));
        KeyPair { private, public }
    }

    /// Y, as sent.
    pub(super) fn public(&self) -> &[u8; DH_KEY_LEN] {
        &self.public
    }

    /// S from the peer's Y. Fails for a Y outside `2..=P-2` (as libtorrent does): 0, 1 and
    /// P-1 give an S an eavesdropper knows, and P or more is no residue at all.
    pub(super) fn shared_secret(
        &self,
        theirs: &[u8; DH_KEY_LEN],
    ) -> Result<[u8; DH_KEY_LEN], MseError> {
        let y = U768::from_be_slice(theirs);
        let p_minus_1 = P.get().wrapping_sub(&U768::ONE);
        if y < G || y >= p_minus_1 {
            return Err(MseError::BadPublicKey);
        }
        Ok(encode(&pow(&y, &self.private)))
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").finish_non_exhaustive()
    }
}

/// `base^exp mod P` (`base < P`), constant-time in the 160 low bits of `exp`.
fn pow(base: &U768, exp: &U192) -> U768 {
    FixedMontyForm::new(base, &PARAMS)
        .pow_bounded_exp(exp, PRIVATE_BITS)
        .retrieve()
}

/// 96 bytes, big-endian, leading zeros kept.
fn encode(n: &U768) -> [u8; DH_KEY_LEN] {
    let mut out = [0u8; DH_KEY_LEN];
    out.copy_from_slice(n.to_be_bytes().as_ref());
    out
}

/// A fresh key pair, and the first message of its side: the public key, then `pad_len`
/// random bytes (PadA or PadB).
pub(super) fn key_and_hello<R: rand::RngCore + ?Sized>(
    pad_len: usize,
    rng: &mut R,
) -> (KeyPair, Vec<u8>) {
    let keys = KeyPair::generate(rng);
    let mut hello = Vec::with_capacity(DH_KEY_LEN + pad_len);
    hello.extend_from_slice(keys.public());
    hello.resize(DH_KEY_LEN + pad_len, 0);
    rng.fill_bytes(&mut hello[DH_KEY_LEN..]);
    (keys, hello)
}

#[cfg(test)]
pub(super) mod test_support {
    use super::*;

    /// A key pair with a chosen private key (the low 160 bits of `x`).
    pub(in crate::mse) fn key_pair(x: [u8; PRIVATE_LEN]) -> KeyPair {
        let mut wide = [0u8; PRIVATE_U192_LEN];
        wide[PRIVATE_U192_LEN - PRIVATE_LEN..].copy_from_slice(&x);
        let private = U192::from_be_slice(&wide);
        KeyPair {
            private,
            public: encode(&pow(&G, &private)),
        }
    }

    /// P, big-endian.
    pub(in crate::mse) fn prime() -> [u8; DH_KEY_LEN] {
        encode(P.as_ref())
    }
}
