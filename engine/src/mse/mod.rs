//! Message Stream Encryption / Protocol Encryption (MSE/PE), sans-IO.
//!
//! The obfuscated handshake of the Vuze/Azureus "Message Stream Encryption" specification,
//! which libtorrent, Transmission, qBittorrent and µTorrent speak. It hides the BitTorrent
//! handshake from traffic shapers: a Diffie-Hellman exchange, then RC4 keyed from the shared
//! secret and the torrent's info-hash. The steps, A the side that dials and B the side that
//! answers (spec, "Protocol"):
//!
//! ```text
//! 1 A->B: Ya, PadA
//! 2 B->A: Yb, PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload stream)
//! 5 A->B: ENCRYPT2(payload stream)
//! ```
//!
//! - Y: a public key, `2^X mod P` with a 160-bit private X and the spec's 768-bit prime P,
//!   sent as 96 bytes big-endian. S: the shared secret, 96 bytes. SKEY: the info-hash.
//! - PadA, PadB: 0 to 512 random bytes; PadC, PadD: 0 to 512 bytes (ours are zeros, which
//!   RC4 turns into keystream). VC: 8 zero bytes. `crypto_*`: 4-byte big-endian bitfields,
//!   0x01 plaintext, 0x02 RC4; `len(..)`: 2-byte big-endian.
//! - ENCRYPT is RC4 keyed with `HASH('keyA', S, SKEY)` for what A sends and
//!   `HASH('keyB', S, SKEY)` for what B sends, the first 1024 bytes of keystream dropped;
//!   HASH is SHA-1. ENCRYPT2 is ENCRYPT's stream continued if RC4 was selected, nothing if
//!   plaintext was. IA, A's initial payload (usually its BitTorrent handshake), is RC4 either
//!   way.
//! - B finds where PadA ends by scanning for `HASH('req1', S)`; A finds where PadB ends by
//!   scanning for ENCRYPT(VC). Both scans end after 512 bytes of padding.
//!
//! [`Initiator`] is A, [`Responder`] is B. Both take bytes as they arrive and append what
//! to send to a `Vec`; they own no socket, no timer and no randomness source past their
//! constructor. The handshake's end hands back an [`Established`]: the [`StreamCipher`]
//! (for RC4) and whatever arrived after the handshake, already decrypted.
//!
//! # Limits
//! Everything the peer sends is bounded: both pads ([`MAX_PAD_LEN`]), IA
//! ([`MAX_INITIAL_PAYLOAD_LEN`]), the scans. Between two calls a side buffers at most
//! [`MAX_RESPONDER_HANDSHAKE_LEN`] or [`MAX_INITIATOR_HANDSHAKE_LEN`] bytes: once the peer has
//! sent that many, the handshake is over, one way or the other.

mod cipher;
mod dh;
mod initiator;
mod responder;
mod skey;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reject;

pub use cipher::StreamCipher;
pub use initiator::Initiator;
pub use responder::Responder;
pub use skey::{FindSkey, SkeyTable};

use crate::types::InfoHash;
use crate::Fault;

/// Bytes of a Diffie-Hellman public key or shared secret.
pub const DH_KEY_LEN: usize = 96;
/// Most bytes of PadA, PadB, PadC and PadD.
pub const MAX_PAD_LEN: usize = 512;
/// Most bytes of IA we accept. The spec sets no bound; libtorrent drops a peer whose IA is
/// longer than a BitTorrent handshake (68 bytes), so no client sends more.
pub const MAX_INITIAL_PAYLOAD_LEN: usize = 68;

/// The verification constant.
const VC: [u8; 8] = [0; 8];
const HASH_LEN: usize = 20;
/// `crypto_provide`/`crypto_select`, then `len(PadC)`/`len(PadD)`.
const CRYPTO_FIELD_LEN: usize = 4;
const PAD_LEN_FIELD: usize = 2;
/// Bytes after Ya within which `HASH('req1', S)` must end: PadA, then the hash.
const REQ1_SYNC_WINDOW: usize = MAX_PAD_LEN + HASH_LEN;
/// Bytes after Yb within which ENCRYPT(VC) must end: PadB, then VC.
const VC_SYNC_WINDOW: usize = MAX_PAD_LEN + VC.len();

/// The longest handshake an initiator can send (steps 1 and 3): past this many bytes a
/// [`Responder`] has finished or failed.
pub const MAX_RESPONDER_HANDSHAKE_LEN: usize = DH_KEY_LEN
    + REQ1_SYNC_WINDOW
    + HASH_LEN
    + VC.len()
    + CRYPTO_FIELD_LEN
    + PAD_LEN_FIELD
    + MAX_PAD_LEN
    + PAD_LEN_FIELD
    + MAX_INITIAL_PAYLOAD_LEN;
/// The longest handshake a responder can send (steps 2 and 4): past this many bytes an
/// [`Initiator`] has finished or failed.
pub const MAX_INITIATOR_HANDSHAKE_LEN: usize =
    DH_KEY_LEN + VC_SYNC_WINDOW + CRYPTO_FIELD_LEN + PAD_LEN_FIELD + MAX_PAD_LEN;

/// One method of encrypting the payload stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Crypto {
    /// The payload goes in the clear; only the handshake was obfuscated.
    Plaintext,
    /// The payload is RC4-encrypted.
    Rc4,
}

impl Crypto {
    /// Its bit in `crypto_provide` and `crypto_select`.
    pub const fn bit(self) -> u32 {
        match self {
            Crypto::Plaintext => 0x01,
            Crypto::Rc4 => 0x02,
        }
    }

    /// The method a `crypto_select` names: exactly one known bit.
    pub const fn from_select(bits: u32) -> Option<Crypto> {
        match bits {
            0x01 => Some(Crypto::Plaintext),
            0x02 => Some(Crypto::Rc4),
            _ => None,
        }
    }
}

/// A set of [`Crypto`] methods, as in `crypto_provide`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CryptoSet(u32);

impl CryptoSet {
    /// No method.
    pub const NONE: CryptoSet = CryptoSet(0);
    /// Plaintext only.
    pub const PLAINTEXT: CryptoSet = CryptoSet(0x01);
    /// RC4 only.
    pub const RC4: CryptoSet = CryptoSet(0x02);
    /// Plaintext and RC4.
    pub const BOTH: CryptoSet = CryptoSet(0x03);

    /// The known methods among `bits` (bits of methods defined later are dropped).
    pub const fn from_bits(bits: u32) -> CryptoSet {
        CryptoSet(bits & CryptoSet::BOTH.0)
    }

    /// As sent on the wire.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether `c` is in the set.
    pub const fn contains(self, c: Crypto) -> bool {
        self.0 & c.bit() != 0
    }

    /// The methods in both sets.
    pub const fn intersect(self, other: CryptoSet) -> CryptoSet {
        CryptoSet(self.0 & other.0)
    }
}

/// What a side allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EncryptionPolicy {
    /// Offer and accept both; a responder picks plaintext when the initiator offers it
    /// (the obfuscated handshake is what gets past shapers; the payload need not pay for
    /// RC4). libtorrent's default, `prefer_rc4` off.
    #[default]
    Prefer,
    /// RC4 only: a peer that offers only plaintext is refused.
    Require,
    /// Plaintext only. A connection under this policy normally skips MSE altogether and
    /// sends the plain BitTorrent handshake; if the handshake runs anyway, only plaintext
    /// is offered or accepted.
    Disable,
}

impl std::str::FromStr for EncryptionPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prefer" => Ok(EncryptionPolicy::Prefer),
            "require" => Ok(EncryptionPolicy::Require),
            "disable" => Ok(EncryptionPolicy::Disable),
            _ => Err(format!("{s:?}: expected prefer, require or disable")),
        }
    }
}

impl EncryptionPolicy {
    /// Whether a dial opens with the MSE handshake: only when encryption is required (under
    /// `Prefer` a dial opens plain, and only a peer that refuses it is dialed again with MSE).
    pub const fn dials_encrypted(self) -> bool {
        matches!(self, EncryptionPolicy::Require)
    }

    /// The methods this policy offers (initiator) or accepts (responder).
    pub const fn allowed(self) -> CryptoSet {
        match self {
            EncryptionPolicy::Prefer => CryptoSet::BOTH,
            EncryptionPolicy::Require => CryptoSet::RC4,
            EncryptionPolicy::Disable => CryptoSet::PLAINTEXT,
        }
    }

    /// A responder's pick among what the initiator provides: plaintext if both allow it,
    /// else RC4 if both allow it.
    pub const fn select(self, provided: CryptoSet) -> Option<Crypto> {
        let common = self.allowed().intersect(provided);
        if common.contains(Crypto::Plaintext) {
            Some(Crypto::Plaintext)
        } else if common.contains(Crypto::Rc4) {
            Some(Crypto::Rc4)
        } else {
            None
        }
    }
}

/// Lengths of the padding a side sends, each capped at [`MAX_PAD_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    /// PadA or PadB, after the public key (random bytes).
    pub after_key: usize,
    /// PadC or PadD, inside the encrypted part.
    pub encrypted: usize,
}

impl Padding {
    /// Both lengths uniform in `0..=512`, as the spec asks.
    pub fn random<R: rand::RngCore + ?Sized>(rng: &mut R) -> Padding {
        use rand::Rng;
        Padding {
            after_key: rng.random_range(0..=MAX_PAD_LEN),
            encrypted: rng.random_range(0..=MAX_PAD_LEN),
        }
    }

    fn capped(self) -> Padding {
        Padding {
            after_key: self.after_key.min(MAX_PAD_LEN),
            encrypted: self.encrypted.min(MAX_PAD_LEN),
        }
    }
}

/// Progress of a handshake.
#[derive(Debug)]
pub enum Step {
    /// Feed more bytes.
    NeedMore,
    /// The handshake is over; the state machine is spent.
    Done(Box<Established>),
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The payload encryption both sides agreed on.
    pub crypto: Crypto,
    /// The torrent (SKEY).
    pub info_hash: InfoHash,
    /// For [`Crypto::Rc4`], the ciphers for both directions, positioned at the payload
    /// stream: encrypt everything sent from now on, decrypt everything received after
    /// [`Self::rest`]. `None` for plaintext.
    pub cipher: Option<StreamCipher>,
    /// The initiator's initial payload (IA), decrypted: the start of its payload stream,
    /// to be read before [`Self::rest`]. Always empty on the initiator's side.
    pub initial_payload: Vec<u8>,
    /// Bytes that arrived after the handshake, decrypted if RC4: the payload stream's
    /// start (after `initial_payload`).
    pub rest: Vec<u8>,
}

/// What a new incoming connection speaks, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A plain BitTorrent handshake (BEP 3).
    Plain,
    /// Anything else: hand the bytes to a [`Responder`].
    Encrypted,
    /// Too few bytes to tell.
    NeedMore,
}

/// `pstrlen` and `pstr` of a plain handshake (BEP 3).
const PLAIN_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Tells a plain handshake from an MSE one by its first bytes (up to 20 are looked at).
pub fn classify_incoming(first: &[u8]) -> Incoming {
    let n = first.len().min(PLAIN_PREFIX.len());
    if first[..n] != PLAIN_PREFIX[..n] {
        Incoming::Encrypted
    } else if n < PLAIN_PREFIX.len() {
        Incoming::NeedMore
    } else {
        Incoming::Plain
    }
}

/// A failed handshake. [`MseError::fault`] says whose doing it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    // --- the peer's fault
    /// The peer's public key is outside `2..=P-2` (it would make S guessable).
    #[error("peer's Diffie-Hellman public key is out of range")]
    BadPublicKey,
    /// No `HASH('req1', S)` within 512 bytes of padding after the initiator's key.
    #[error("no HASH('req1', S) within {REQ1_SYNC_WINDOW} bytes after the public key")]
    Req1NotFound,
    /// No ENCRYPT(VC) within 512 bytes of padding after the responder's key.
    #[error(
        "no encrypted verification constant within {VC_SYNC_WINDOW} bytes after the public key"
    )]
    VcNotFound,
    /// `HASH('req2', SKEY)` matches no torrent we serve.
    #[error("the peer asked for a torrent we do not have")]
    UnknownInfoHash,
    /// The decrypted verification constant is not zero (wrong key or garbage).
    #[error("verification constant is not zero")]
    BadVc,
    /// A `len(PadC)` or `len(PadD)` over 512.
    #[error("padding of {0} bytes, over the limit of {MAX_PAD_LEN}")]
    PadTooLong(usize),
    /// A `len(IA)` over [`MAX_INITIAL_PAYLOAD_LEN`].
    #[error("initial payload of {0} bytes, over the limit of {MAX_INITIAL_PAYLOAD_LEN}")]
    InitialPayloadTooLong(usize),
    /// The responder's `crypto_select` is not exactly one of the methods we provided.
    #[error("crypto_select {select:#x} is not one of the provided {provided:#x}")]
    BadSelect {
        /// What the responder selected.
        select: u32,
        /// What we provided.
        provided: u32,
    },

    // --- policy: neither side broke the protocol
    /// The initiator provides no method our policy allows (e.g. only plaintext while we
    /// require RC4).
    #[error("peer provides {provided:#x}, our policy allows {allowed:#x}")]
    NoCommonCrypto {
        /// What the initiator provided.
        provided: u32,
        /// What our policy allows.
        allowed: u32,
    },

    // --- ours
    /// `on_data` after the handshake finished or failed.
    #[error("the handshake already finished or failed")]
    Finished,
}

impl MseError {
    /// Whose doing the failure was: the peer's for a broken protocol, ours for a policy
    /// mismatch or a misuse of the state machine.
    pub fn fault(&self) -> Fault {
        match self {
            MseError::NoCommonCrypto { .. } | MseError::Finished => Fault::Local,
            _ => Fault::Peer,
        }
    }
}

/// An initial payload over [`MAX_INITIAL_PAYLOAD_LEN`] given to [`Initiator::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("initial payload of {0} bytes, over the limit of {MAX_INITIAL_PAYLOAD_LEN}")]
pub struct PayloadTooLong(pub usize);

/// What one phase of a handshake came to.
enum Next<P> {
    /// The phase is done; go on with the next one.
    Go(P),
    /// The phase needs more input.
    Wait(P),
    /// The handshake is over.
    Done(Box<Established>),
}

/// Unconsumed input: the bytes of the phase under way, at most one phase's worth between
/// two calls.
#[derive(Debug, Default)]
struct Inbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
}

impl Inbox {
    fn push(&mut self, input: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(input);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The next `n` bytes, consumed, or `None` (nothing consumed) if fewer are in.
    fn take(&mut self, n: usize) -> Option<&mut [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let start = std::mem::replace(&mut self.pos, end);
        Some(&mut self.buf[start..end])
    }

    /// Drops the consumed bytes (called before waiting for more input).
    fn compact(&mut self) {
        self.buf.drain(..self.pos);
        self.pos = 0;
    }

    /// What is left, the inbox emptied.
    fn rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.pos);
        *self = Inbox::default();
        rest
    }
}

/// Where `needle` starts in `hay`, if it fits there.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A big-endian 2-byte length.
fn be16(b: &[u8]) -> usize {
    b.iter().take(2).fold(0, |n, &x| n << 8 | usize::from(x))
}

/// A length we send (a pad or IA, at most 512 bytes) as a big-endian 2-byte field.
fn len16(len: usize) -> [u8; 2] {
    debug_assert!(len <= MAX_PAD_LEN);
    u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes()
}

/// A big-endian 4-byte field.
fn be32(b: &[u8]) -> u32 {
    b.iter().take(4).fold(0, |n, &x| n << 8 | u32::from(x))
}
