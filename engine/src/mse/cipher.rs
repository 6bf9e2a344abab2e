//! MSE's hashes and keys, and RC4 for both directions.
//!
//! RC4 is written here ([`Rc4`], checked against RFC 6229 and against RustCrypto's `rc4` crate
//! in the tests): the crate's keystream goes through its generic one-byte-block stream
//! interface and measured 313 MiB/s here (`cargo bench -p bench-harness --bench micro --
//! mse`), 3.3 CPU-s per GiB per direction on an encrypted download; this loop keeps `i`, `j`
//! and the state in registers and cache. Each direction
//! has its own key, `HASH('keyA', S, SKEY)` for what the initiator sends and
//! `HASH('keyB', S, SKEY)` for what the responder sends, and drops its first 1024 bytes of
//! keystream (spec: "RC4-drop1024").

use sha1::{Digest, Sha1};

use super::{DH_KEY_LEN, HASH_LEN};

/// Keystream bytes dropped after keying.
const DISCARD_LEN: usize = 1024;

/// SHA-1 of the concatenated parts.
pub(super) fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH('req1', S)`: where the initiator's padding ends.
pub(super) fn req1(secret: &[u8; DH_KEY_LEN]) -> [u8; HASH_LEN] {
    hash(&[b"req1", secret])
}

/// `HASH('req2', SKEY)`: the info-hash as the initiator names it (before the xor).
pub(super) fn req2(info_hash: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    hash(&[b"req2", info_hash])
}

/// `HASH('req3', S)`: the mask over `req2`.
pub(super) fn req3(secret: &[u8; DH_KEY_LEN]) -> [u8; HASH_LEN] {
    hash(&[b"req3", secret])
}

/// `a xor b`.
pub(super) fn xor(a: &[u8; HASH_LEN], b: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The RC4 stream cipher (the key schedule, then the keystream xored over the data).
pub(super) struct Rc4 {
    state: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    /// RC4 keyed with `key` (1 to 256 bytes; an empty key is treated as one zero byte).
    pub(super) fn new(key: &[u8]) -> Rc4 {
        let key: &[u8] = if key.is_empty() { &[0] } else { key };
        let mut state: [u8; 256] = std::array::from_fn(|i| i as u8);
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(state[i]).wrapping_add(key[i % key.len()]);
            state.swap(i, usize::from(j));
        }
        Rc4 { state, i: 0, j: 0 }
    }

    /// Xors the next `buf.len()` keystream bytes over `buf`.
    pub(super) fn apply_keystream(&mut self, buf: &mut [u8]) {
        let (mut i, mut j) = (self.i, self.j);
        let s = &mut self.state;
        for b in buf.iter_mut() {
            i = i.wrapping_add(1);
            let si = s[usize::from(i)];
            j = j.wrapping_add(si);
            let sj = s[usize::from(j)];
            s[usize::from(i)] = sj;
            s[usize::from(j)] = si;
            *b ^= s[usize::from(si.wrapping_add(sj))];
        }
        self.i = i;
        self.j = j;
    }
}

/// RC4 keyed with `key`, its first 1024 bytes of keystream dropped.
pub(super) fn rc4_drop1024(key: &[u8]) -> Rc4 {
    let mut rc4 = Rc4::new(key);
    rc4.apply_keystream(&mut [0u8; DISCARD_LEN]);
    rc4
}

/// Which end of the connection a [`StreamCipher`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Initiator,
    Responder,
}

/// RC4 for a connection: one keystream for what we send, one for what we receive.
pub struct StreamCipher {
    send: Rc4,
    recv: Rc4,
}

impl StreamCipher {
    /// The ciphers of `side`, keyed from S and SKEY.
    pub(super) fn new(side: Side, secret: &[u8; DH_KEY_LEN], skey: &[u8; HASH_LEN]) -> Self {
        let key_a = rc4_drop1024(&hash(&[b"keyA", secret, skey]));
        let key_b = rc4_drop1024(&hash(&[b"keyB", secret, skey]));
        match side {
            Side::Initiator => StreamCipher {
                send: key_a,
                recv: key_b,
            },
            Side::Responder => StreamCipher {
                send: key_b,
                recv: key_a,
            },
        }
    }

    /// Encrypts bytes we send, in place; the keystream moves on by `buf.len()`.
    pub fn encrypt_in_place(&mut self, buf: &mut [u8]) {
        self.send.apply_keystream(buf);
    }

    /// Decrypts bytes we received, in place; the keystream moves on by `buf.len()`.
    pub fn decrypt_in_place(&mut self, buf: &mut [u8]) {
        self.recv.apply_keystream(buf);
    }

    /// Encrypts `plain` onto the end of `out`.
    pub(super) fn encrypt_into(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plain);
        self.encrypt_in_place(&mut out[start..]);
    }
}

impl std::fmt::Debug for StreamCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCipher").finish_non_exhaustive()
    }
}
