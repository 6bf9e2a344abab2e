//! B, the side that answers: reads steps 1 and 3, sends steps 2 and 4.

use super::cipher::{req1, req3, xor, Side, StreamCipher};
use super::dh::{key_and_hello, KeyPair};
use super::skey::FindSkey;
use super::{
    be16, be32, find, len16, Crypto, CryptoSet, EncryptionPolicy, Established, Inbox, MseError,
    Next, Padding, Step, CRYPTO_FIELD_LEN, DH_KEY_LEN, HASH_LEN, MAX_INITIAL_PAYLOAD_LEN,
    MAX_PAD_LEN, PAD_LEN_FIELD, REQ1_SYNC_WINDOW, VC,
};
use crate::types::InfoHash;

/// The answering side of an MSE handshake, for a connection whose first bytes
/// [`super::classify_incoming`] called [`super::Incoming::Encrypted`].
///
/// Feed it what the peer sends with [`Responder::on_data`] and send what it appends to
/// `out`, until it returns [`Step::Done`] or an error.
#[derive(Debug)]
pub struct Responder {
    policy: EncryptionPolicy,
    keys: KeyPair,
    /// Yb and PadB, sent once Ya is in (emptied then).
    hello: Vec<u8>,
    /// Length of PadD.
    pad_d_len: usize,
    inbox: Inbox,
    phase: Phase,
}

enum Phase {
    /// Waiting for Ya.
    PublicKey,
    /// Scanning what follows Ya for `HASH('req1', S)`.
    Req1 {
        secret: [u8; DH_KEY_LEN],
        req1: [u8; HASH_LEN],
    },
    /// `HASH('req2', SKEY) xor HASH('req3', S)`.
    Skey { secret: [u8; DH_KEY_LEN] },
    /// ENCRYPT(VC, crypto_provide, len(PadC)).
    Provide {
        info_hash: InfoHash,
        cipher: Box<StreamCipher>,
    },
    /// ENCRYPT(PadC, len(IA)); `pad_len` of PadC.
    PadC {
        info_hash: InfoHash,
        cipher: Box<StreamCipher>,
        crypto: Crypto,
        pad_len: usize,
    },
    /// ENCRYPT(IA), `len` bytes.
    Ia {
        info_hash: InfoHash,
        cipher: Box<StreamCipher>,
        crypto: Crypto,
        len: usize,
    },
    /// Finished or failed.
    Over,
}

/// The phase's name only: S and the ciphers stay out of logs.
impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::PublicKey => "PublicKey",
            Phase::Req1 { .. } => "Req1",
            Phase::Skey { .. } => "Skey",
            Phase::Provide { .. } => "Provide",
            Phase::PadC { .. } => "PadC",
            Phase::Ia { .. } => "Ia",
            Phase::Over => "Over",
        })
    }
}

impl Responder {
    /// A responder under `policy`, with a fresh key pair and random padding from `rng`.
    pub fn new<R: rand::RngCore + ?Sized>(policy: EncryptionPolicy, rng: &mut R) -> Self {
        let padding = Padding::random(rng);
        Self::with_padding(policy, padding, rng)
    }

    /// As [`Responder::new`], with chosen padding lengths (capped at 512): for tests and
    /// fuzzing.
    pub fn with_padding<R: rand::RngCore + ?Sized>(
        policy: EncryptionPolicy,
        padding: Padding,
        rng: &mut R,
    ) -> Self {
        let padding = padding.capped();
        let (keys, hello) = key_and_hello(padding.after_key, rng);
        Responder {
            policy,
            keys,
            hello,
            pad_d_len: padding.encrypted,
            inbox: Inbox::default(),
            phase: Phase::PublicKey,
        }
    }

    /// Takes the next bytes from the peer; appends what to send to `out` (Yb and PadB once
    /// Ya is in, step 4 once the peer's `crypto_provide` is). `skeys` finds the torrent the
    /// peer asks for. After [`Step::Done`] or an error the responder is spent.
    pub fn on_data<S: FindSkey + ?Sized>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        skeys: &S,
    ) -> Result<Step, MseError> {
        if matches!(self.phase, Phase::Over) {
            return Err(MseError::Finished);
        }
        self.inbox.push(input);
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Over);
            match self.advance(phase, out, skeys) {
                Ok(Next::Go(next)) => self.phase = next,
                Ok(Next::Wait(next)) => {
                    self.phase = next;
                    self.inbox.compact();
                    return Ok(Step::NeedMore);
                }
                Ok(Next::Done(established)) => return Ok(Step::Done(established)),
                Err(e) => {
                    self.inbox = Inbox::default();
                    return Err(e);
                }
            }
        }
    }

    fn advance<S: FindSkey + ?Sized>(
        &mut self,
        phase: Phase,
        out: &mut Vec<u8>,
        skeys: &S,
    ) -> Result<Next<Phase>, MseError> {
        match phase {
            Phase::PublicKey => self.public_key(out),
            Phase::Req1 { secret, req1 } => self.sync_req1(secret, req1),
            Phase::Skey { secret } => self.skey(secret, skeys),
            Phase::Provide { info_hash, cipher } => self.provide(info_hash, cipher, out),
            Phase::PadC {
                info_hash,
                cipher,
                crypto,
                pad_len,
            } => self.pad_c(info_hash, cipher, crypto, pad_len),
            Phase::Ia {
                info_hash,
                cipher,
                crypto,
                len,
            } => Ok(self.initial_payload(info_hash, cipher, crypto, len)),
            Phase::Over => Err(MseError::Finished),
        }
    }

    /// Step 1's Ya: compute S, send step 2.
    fn public_key(&mut self, out: &mut Vec<u8>) -> Result<Next<Phase>, MseError> {
        let Some(ya) = self.inbox.take(DH_KEY_LEN) else {
            return Ok(Next::Wait(Phase::PublicKey));
        };
        let mut theirs = [0u8; DH_KEY_LEN];
        theirs.copy_from_slice(ya);
        let secret = self.keys.shared_secret(&theirs)?;
        out.append(&mut self.hello);
        Ok(Next::Go(Phase::Req1 {
            secret,
            req1: req1(&secret),
        }))
    }

    /// PadA ends where `HASH('req1', S)` starts, at most 512 bytes after Ya.
    fn sync_req1(
        &mut self,
        secret: [u8; DH_KEY_LEN],
        req1: [u8; HASH_LEN],
    ) -> Result<Next<Phase>, MseError> {
        let pending = self.inbox.pending();
        let window = &pending[..pending.len().min(REQ1_SYNC_WINDOW)];
        match find(window, &req1) {
            Some(at) => {
                self.inbox.take(at + HASH_LEN);
                Ok(Next::Go(Phase::Skey { secret }))
            }
            None if pending.len() >= REQ1_SYNC_WINDOW => Err(MseError::Req1NotFound),
            None => Ok(Next::Wait(Phase::Req1 { secret, req1 })),
        }
    }

    /// Unmask `HASH('req2', SKEY)`, find the torrent, key RC4.
    fn skey<S: FindSkey + ?Sized>(
        &mut self,
        secret: [u8; DH_KEY_LEN],
        skeys: &S,
    ) -> Result<Next<Phase>, MseError> {
        let Some(masked) = self.inbox.take(HASH_LEN) else {
            return Ok(Next::Wait(Phase::Skey { secret }));
        };
        let mut req2 = [0u8; HASH_LEN];
        req2.copy_from_slice(masked);
        let req2 = xor(&req2, &req3(&secret));
        let info_hash = skeys.find_skey(&req2).ok_or(MseError::UnknownInfoHash)?;
        let cipher = Box::new(StreamCipher::new(Side::Responder, &secret, &info_hash.0));
        Ok(Next::Go(Phase::Provide { info_hash, cipher }))
    }

    /// VC, `crypto_provide`, `len(PadC)`: check them, pick the method, send step 4.
    fn provide(
        &mut self,
        info_hash: InfoHash,
        mut cipher: Box<StreamCipher>,
        out: &mut Vec<u8>,
    ) -> Result<Next<Phase>, MseError> {
        let Some(b) = self.inbox.take(VC.len() + CRYPTO_FIELD_LEN + PAD_LEN_FIELD) else {
            return Ok(Next::Wait(Phase::Provide { info_hash, cipher }));
        };
        cipher.decrypt_in_place(b);
        let (vc, b) = b.split_at(VC.len());
        let (provide, pad_len) = b.split_at(CRYPTO_FIELD_LEN);
        if vc != VC {
            return Err(MseError::BadVc);
        }
        let pad_len = be16(pad_len);
        if pad_len > MAX_PAD_LEN {
            return Err(MseError::PadTooLong(pad_len));
        }
        let provided = be32(provide);
        let crypto =
            self.policy
                .select(CryptoSet::from_bits(provided))
                .ok_or(MseError::NoCommonCrypto {
                    provided,
                    allowed: self.policy.allowed().bits(),
                })?;
        // Step 4: ENCRYPT(VC, crypto_select, len(PadD), PadD).
        let mut step4 =
            Vec::with_capacity(VC.len() + CRYPTO_FIELD_LEN + PAD_LEN_FIELD + self.pad_d_len);
        step4.extend_from_slice(&VC);
        step4.extend_from_slice(&crypto.bit().to_be_bytes());
        step4.extend_from_slice(&len16(self.pad_d_len));
        step4.resize(step4.len() + self.pad_d_len, 0);
        cipher.encrypt_into(&step4, out);
        Ok(Next::Go(Phase::PadC {
            info_hash,
            cipher,
            crypto,
            pad_len,
        }))
    }

    /// PadC and `len(IA)`.
    fn pad_c(
        &mut self,
        info_hash: InfoHash,
        mut cipher: Box<StreamCipher>,
        crypto: Crypto,
        pad_len: usize,
    ) -> Result<Next<Phase>, MseError> {
        let Some(b) = self.inbox.take(pad_len + PAD_LEN_FIELD) else {
            return Ok(Next::Wait(Phase::PadC {
                info_hash,
                cipher,
                crypto,
                pad_len,
            }));
        };
        cipher.decrypt_in_place(b);
        let len = be16(&b[pad_len..]);
        if len > MAX_INITIAL_PAYLOAD_LEN {
            return Err(MseError::InitialPayloadTooLong(len));
        }
        Ok(Next::Go(Phase::Ia {
            info_hash,
            cipher,
            crypto,
            len,
        }))
    }

    /// IA, always RC4; then the payload stream, RC4 only if selected.
    fn initial_payload(
        &mut self,
        info_hash: InfoHash,
        mut cipher: Box<StreamCipher>,
        crypto: Crypto,
        len: usize,
    ) -> Next<Phase> {
        let Some(ia) = self.inbox.take(len) else {
            return Next::Wait(Phase::Ia {
                info_hash,
                cipher,
                crypto,
                len,
            });
        };
        cipher.decrypt_in_place(ia);
        let initial_payload = ia.to_vec();
        let mut rest = self.inbox.rest();
        let cipher = match crypto {
            Crypto::Rc4 => {
                cipher.decrypt_in_place(&mut rest);
                Some(*cipher)
            }
            Crypto::Plaintext => None,
        };
        Next::Done(Box::new(Established {
            crypto,
            info_hash,
            cipher,
            initial_payload,
            rest,
        }))
    }
}
