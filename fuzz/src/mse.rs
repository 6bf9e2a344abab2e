//! MSE/PE, the obfuscated handshake: `mse::Responder` and `mse::Initiator` fed a peer's
//! stream, and `mse::classify_incoming`.
//!
//! Input: a mode byte (bit 0: 0 drives a `Responder`, 1 an `Initiator`; bits 1-2: the
//! policy, 0 prefer, 1 require, 2 disable), a byte picking a chunk size, then the peer's
//! stream. Both sides are built from fixed seeds ([`mse_responder`], [`mse_initiator`]), so
//! their keys are the same on every run and a recorded handshake (the seeds) stays valid
//! for the fuzzer to mutate. Properties checked, besides "never panics":
//! - the outcome (error, or method, torrent, IA and the decrypted payload stream after the
//!   handshake) and every byte sent are the same however the input is cut into chunks;
//! - a side sends at most the longest handshake of its role, and once the peer has sent the
//!   longest handshake of its own role the outcome is decided (bounded buffering);
//! - an IA is at most `MAX_INITIAL_PAYLOAD_LEN` bytes;
//! - a finished or failed side answers `Finished` and nothing else.

use rand::rngs::StdRng;
use rand::SeedableRng;
use ringtorrent::mse::{
    classify_incoming, Crypto, EncryptionPolicy, Incoming, Initiator, MseError, Padding, Responder,
    Step, StreamCipher, MAX_INITIAL_PAYLOAD_LEN, MAX_INITIATOR_HANDSHAKE_LEN,
    MAX_RESPONDER_HANDSHAKE_LEN,
};
use ringtorrent::types::InfoHash;

/// The torrent the fuzzed sides know.
pub const MSE_INFO_HASH: InfoHash = InfoHash([0xab; 20]);

/// The initiator's IA: a plain BitTorrent handshake's first bytes.
const IA: &[u8] = b"\x13BitTorrent protocol";

const PADDING: Padding = Padding {
    after_key: 8,
    encrypted: 4,
};

/// The policy a mode byte names.
pub fn mse_policy(mode: u8) -> EncryptionPolicy {
    match (mode >> 1) & 3 {
        1 => EncryptionPolicy::Require,
        2 => EncryptionPolicy::Disable,
        _ => EncryptionPolicy::Prefer,
    }
}

/// The responder the target drives, the same keys every time.
pub fn mse_responder(policy: EncryptionPolicy) -> Responder {
    Responder::with_padding(policy, PADDING, &mut StdRng::seed_from_u64(2))
}

/// The initiator the target drives, the same keys every time.
pub fn mse_initiator(policy: EncryptionPolicy) -> Initiator {
    Initiator::with_padding(
        MSE_INFO_HASH,
        policy,
        IA,
        PADDING,
        &mut StdRng::seed_from_u64(1),
    )
    .expect("a short IA")
}

pub fn mse(data: &[u8]) {
    let [mode, step, stream @ ..] = data else {
        return;
    };
    let plain_prefix = b"\x13BitTorrent protocol";
    match classify_incoming(stream) {
        Incoming::Plain => assert!(stream.starts_with(plain_prefix)),
        Incoming::NeedMore => assert!(plain_prefix.starts_with(stream)),
        Incoming::Encrypted => {}
    }
    let initiator = mode & 1 == 1;
    let policy = mse_policy(*mode);
    let whole = run(initiator, policy, stream, stream.len().max(1));
    let split = run(initiator, policy, stream, usize::from(*step) + 1);
    assert_eq!(whole, split);
    let (longest_peer, longest_ours) = match initiator {
        true => (MAX_INITIATOR_HANDSHAKE_LEN, MAX_RESPONDER_HANDSHAKE_LEN),
        false => (MAX_RESPONDER_HANDSHAKE_LEN, MAX_INITIATOR_HANDSHAKE_LEN),
    };
    assert!(
        whole.sent.len() <= longest_ours,
        "sent {}",
        whole.sent.len()
    );
    if stream.len() >= longest_peer {
        assert!(
            whole.end.is_some(),
            "still waiting after {} bytes",
            stream.len()
        );
    }
}

/// What a side's handshake came to.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `None` while it waits for more.
    end: Option<Result<(Crypto, InfoHash), MseError>>,
    /// Everything it sent.
    sent: Vec<u8>,
    /// IA, then the payload stream after the handshake, decrypted.
    payload: Vec<u8>,
}

/// Either side, behind one `on_data`.
enum Side {
    A(Box<Initiator>),
    B(Box<Responder>),
}

impl Side {
    fn on_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Step, MseError> {
        match self {
            Side::A(a) => a.on_data(input, out),
            Side::B(b) => b.on_data(input, out, &[MSE_INFO_HASH][..]),
        }
    }
}

fn run(initiator: bool, policy: EncryptionPolicy, stream: &[u8], step: usize) -> Outcome {
    let mut sent = Vec::new();
    let mut side = match initiator {
        true => {
            let mut a = mse_initiator(policy);
            a.start(&mut sent);
            Side::A(Box::new(a))
        }
        false => Side::B(Box::new(mse_responder(policy))),
    };
    let mut end = None;
    let mut cipher: Option<StreamCipher> = None;
    let mut payload = Vec::new();
    for chunk in stream.chunks(step) {
        if let Some(Ok(_)) = end {
            let mut chunk = chunk.to_vec();
            if let Some(c) = &mut cipher {
                c.decrypt_in_place(&mut chunk);
            }
            payload.extend_from_slice(&chunk);
            continue;
        }
        match side.on_data(chunk, &mut sent) {
            Ok(Step::NeedMore) => continue,
            Ok(Step::Done(e)) => {
                assert!(e.initial_payload.len() <= MAX_INITIAL_PAYLOAD_LEN);
                assert!(!initiator || e.initial_payload.is_empty());
                assert_eq!(e.cipher.is_some(), e.crypto == Crypto::Rc4);
                end = Some(Ok((e.crypto, e.info_hash)));
                payload = [e.initial_payload, e.rest].concat();
                cipher = e.cipher;
            }
            Err(e) => end = Some(Err(e)),
        }
        let before = sent.len();
        assert_eq!(
            side.on_data(b"x", &mut sent).err(),
            Some(MseError::Finished)
        );
        assert_eq!(sent.len(), before, "a spent side sent something");
        if let Some(Err(_)) = end {
            break;
        }
    }
    Outcome { end, sent, payload }
}
