//! A, the side that dials: sends steps 1 and 3, reads steps 2 and 4.

use super::cipher::{req1, req2, req3, xor, Side, StreamCipher};
use super::dh::{key_and_hello, KeyPair};
use super::{
    be16, be32, find, len16, Crypto, CryptoSet, EncryptionPolicy, Established, Inbox, MseError,
    Next, Padding, PayloadTooLong, Step, CRYPTO_FIELD_LEN, DH_KEY_LEN, MAX_INITIAL_PAYLOAD_LEN,
    MAX_PAD_LEN, PAD_LEN_FIELD, VC, VC_SYNC_WINDOW,
};
use crate::types::InfoHash;

/// The dialling side of an MSE handshake.
///
/// [`Initiator::start`] gives the first bytes to send (Ya and PadA); then feed it what the
/// peer sends with [`Initiator::on_data`] and send what it appends to `out`, until it
/// returns [`Step::Done`] or an error.
#[derive(Debug)]
pub struct Initiator {
    info_hash: InfoHash,
    provided: CryptoSet,
    keys: KeyPair,
    /// Ya and PadA, until [`Initiator::start`] takes them.
    hello: Vec<u8>,
    /// Length of PadC.
    pad_c_len: usize,
    /// IA, sent in step 3 (emptied then).
    initial_payload: Vec<u8>,
    inbox: Inbox,
    phase: Phase,
}

enum Phase {
    /// Waiting for Yb.
    PublicKey,
    /// Scanning what follows Yb for ENCRYPT(VC), `vc`; `cipher` is past it already.
    SyncVc {
        vc: [u8; 8],
        cipher: Box<StreamCipher>,
    },
    /// ENCRYPT(crypto_select, len(PadD)).
    Select { cipher: Box<StreamCipher> },
    /// ENCRYPT(PadD), `len` bytes.
    PadD {
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
            Phase::SyncVc { .. } => "SyncVc",
            Phase::Select { .. } => "Select",
            Phase::PadD { .. } => "PadD",
            Phase::Over => "Over",
        })
    }
}

impl Initiator {
    /// An initiator for the torrent `info_hash` under `policy`, with a fresh key pair and
    /// random padding from `rng`. `initial_payload` (IA), usually our BitTorrent handshake,
    /// goes out encrypted with step 3, before the peer has answered; at most
    /// [`MAX_INITIAL_PAYLOAD_LEN`] bytes, and may be empty.
    pub fn new<R: rand::RngCore + ?Sized>(
        info_hash: InfoHash,
        policy: EncryptionPolicy,
        initial_payload: &[u8],
        rng: &mut R,
    ) -> Result<Self, PayloadTooLong> {
        let padding = Padding::random(rng);
        Self::with_padding(info_hash, policy, initial_payload, padding, rng)
    }

    /// As [`Initiator::new`], with chosen padding lengths (capped at 512): for tests and
    /// fuzzing.
    pub fn with_padding<R: rand::RngCore + ?Sized>(
        info_hash: InfoHash,
        policy: EncryptionPolicy,
        initial_payload: &[u8],
        padding: Padding,
        rng: &mut R,
    ) -> Result<Self, PayloadTooLong> {
        if initial_payload.len() > MAX_INITIAL_PAYLOAD_LEN {
            return Err(PayloadTooLong(initial_payload.len()));
        }
        let padding = padding.capped();
        let (keys, hello) = key_and_hello(padding.after_key, rng);
        Ok(Initiator {
            info_hash,
            provided: policy.allowed(),
            keys,
            hello,
            pad_c_len: padding.encrypted,
            initial_payload: initial_payload.to_vec(),
            inbox: Inbox::default(),
            phase: Phase::PublicKey,
        })
    }

    /// Appends step 1, Ya and PadA, to `out`. Only the first call appends anything.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.hello);
    }

    /// Takes the next bytes from the peer; appends what to send to `out` (step 3 once Yb
    /// is in; step 1 too, if [`Initiator::start`] was not called). After [`Step::Done`] or
    /// an error the initiator is spent.
    pub fn on_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Step, MseError> {
        if matches!(self.phase, Phase::Over) {
            return Err(MseError::Finished);
        }
        self.start(out);
        self.inbox.push(input);
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Over);
            match self.advance(phase, out) {
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

    fn advance(&mut self, phase: Phase, out: &mut Vec<u8>) -> Result<Next<Phase>, MseError> {
        match phase {
            Phase::PublicKey => self.public_key(out),
            Phase::SyncVc { vc, cipher } => self.sync_vc(vc, cipher),
            Phase::Select { cipher } => self.select(cipher),
            Phase::PadD {
                cipher,
                crypto,
                len,
            } => Ok(self.pad_d(cipher, crypto, len)),
            Phase::Over => Err(MseError::Finished),
        }
    }

    /// Step 2's Yb: compute S, send step 3.
    fn public_key(&mut self, out: &mut Vec<u8>) -> Result<Next<Phase>, MseError> {
        let Some(yb) = self.inbox.take(DH_KEY_LEN) else {
            return Ok(Next::Wait(Phase::PublicKey));
        };
        let mut theirs = [0u8; DH_KEY_LEN];
        theirs.copy_from_slice(yb);
        let secret = self.keys.shared_secret(&theirs)?;
        let mut cipher = Box::new(StreamCipher::new(
            Side::Initiator,
            &secret,
            &self.info_hash.0,
        ));
        // Step 3: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
        // ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA).
        out.extend_from_slice(&req1(&secret));
        out.extend_from_slice(&xor(&req2(&self.info_hash.0), &req3(&secret)));
        let ia = std::mem::take(&mut self.initial_payload);
        let mut plain = Vec::with_capacity(
            VC.len() + CRYPTO_FIELD_LEN + 2 * PAD_LEN_FIELD + self.pad_c_len + ia.len(),
        );
        plain.extend_from_slice(&VC);
        plain.extend_from_slice(&self.provided.bits().to_be_bytes());
        plain.extend_from_slice(&len16(self.pad_c_len));
        plain.resize(plain.len() + self.pad_c_len, 0);
        plain.extend_from_slice(&len16(ia.len()));
        plain.extend_from_slice(&ia);
        cipher.encrypt_into(&plain, out);
        // The peer's ENCRYPT(VC) is the first 8 bytes of its keystream: encrypting VC here
        // gives the pattern to scan for and leaves `cipher` just past it.
        let mut vc = VC;
        cipher.decrypt_in_place(&mut vc);
        Ok(Next::Go(Phase::SyncVc { vc, cipher }))
    }

    /// PadB ends where ENCRYPT(VC) starts, at most 512 bytes after Yb.
    fn sync_vc(&mut self, vc: [u8; 8], cipher: Box<StreamCipher>) -> Result<Next<Phase>, MseError> {
        let pending = self.inbox.pending();
        let window = &pending[..pending.len().min(VC_SYNC_WINDOW)];
        match find(window, &vc) {
            Some(at) => {
                self.inbox.take(at + VC.len());
                Ok(Next::Go(Phase::Select { cipher }))
            }
            None if pending.len() >= VC_SYNC_WINDOW => Err(MseError::VcNotFound),
            None => Ok(Next::Wait(Phase::SyncVc { vc, cipher })),
        }
    }

    /// `crypto_select` and `len(PadD)`.
    fn select(&mut self, mut cipher: Box<StreamCipher>) -> Result<Next<Phase>, MseError> {
        let Some(b) = self.inbox.take(CRYPTO_FIELD_LEN + PAD_LEN_FIELD) else {
            return Ok(Next::Wait(Phase::Select { cipher }));
        };
        cipher.decrypt_in_place(b);
        let (select, len) = b.split_at(CRYPTO_FIELD_LEN);
        let select = be32(select);
        let crypto = Crypto::from_select(select)
            .filter(|&c| self.provided.contains(c))
            .ok_or(MseError::BadSelect {
                select,
                provided: self.provided.bits(),
            })?;
        let len = be16(len);
        if len > MAX_PAD_LEN {
            return Err(MseError::PadTooLong(len));
        }
        Ok(Next::Go(Phase::PadD {
            cipher,
            crypto,
            len,
        }))
    }

    /// PadD; then the payload stream, RC4 only if selected.
    fn pad_d(&mut self, mut cipher: Box<StreamCipher>, crypto: Crypto, len: usize) -> Next<Phase> {
        let Some(pad) = self.inbox.take(len) else {
            return Next::Wait(Phase::PadD {
                cipher,
                crypto,
                len,
            });
        };
        cipher.decrypt_in_place(pad);
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
            info_hash: self.info_hash,
            cipher,
            initial_payload: Vec::new(),
            rest,
        }))
    }
}
