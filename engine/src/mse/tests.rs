//! The primitives against published and independently computed values, and whole handshakes
//! between an [`Initiator`] and a [`Responder`] wired together in memory.
//!
//! The known answers for Diffie-Hellman and the key schedule were computed with Python's
//! `pow` and `hashlib` and a 10-line RC4 checked against RFC 6229.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::cipher::{rc4_drop1024, req1, req2, req3, xor, Side};
use super::dh::test_support::{key_pair, prime};
use super::*;

pub(super) const IH: InfoHash = InfoHash([0x5a; 20]);
pub(super) const OTHER: InfoHash = InfoHash([0x33; 20]);

pub(super) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn hex<const N: usize>(s: &str) -> [u8; N] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    v.try_into().expect("length")
}

// --- RC4 (RFC 6229, section 2)

/// (key, keystream at offsets 0, 1024, 1520, 2048) from RFC 6229.
const RFC6229: &[(&str, [&str; 4])] = &[
    (
        "0102030405",
        [
            "b2396305f03dc027ccc3524a0a1118a8",
            "30abbcc7c20b01609f23ee2d5f6bb7df",
            "3294f744d8f9790507e70f62e5bbceea",
            "cc582f8ba9f265e2b1be9112e975d2d7",
        ],
    ),
    (
        "0102030405060708090a0b0c0d0e0f10",
        [
            "9ac7cc9a609d1ef7b2932899cde41b97",
            "bdf0324e6083dcc6d3cedd3ca8c53c16",
            "b40110c4190b5622a96116b0017ed297",
            "8a44126411eaa78bd51e8d87a8879bf5",
        ],
    ),
];

#[test]
fn rc4_matches_rfc6229_and_drops_1024_bytes() {
    use super::cipher::Rc4;
    for (key, [at0, at1024, at1520, at2048]) in RFC6229 {
        let key: Vec<u8> = (0..key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&key[i..i + 2], 16).expect("hex"))
            .collect();
        let mut raw = Rc4::new(&key);
        let mut ks = [0u8; 16];
        raw.apply_keystream(&mut ks);
        assert_eq!(ks, hex::<16>(at0));
        // Ours starts at offset 1024 of the keystream.
        let mut ks = vec![0u8; 2048 - 1024 + 16];
        rc4_drop1024(&key).apply_keystream(&mut ks);
        assert_eq!(ks[..16], hex::<16>(at1024));
        assert_eq!(ks[1520 - 1024..][..16], hex::<16>(at1520));
        assert_eq!(ks[2048 - 1024..][..16], hex::<16>(at2048));
    }
}

#[test]
fn rc4_agrees_with_rustcrypto_in_any_chunking() {
    use rc4::{KeyInit, StreamCipher as _};
    for key_len in [1usize, 5, 16, 20, 256] {
        let key: Vec<u8> = (0..key_len).map(|i| (i * 37 + key_len) as u8).collect();
        let mut theirs = rc4::Rc4::new_from_slice(&key).expect("key");
        let mut ours = super::cipher::Rc4::new(&key);
        let mut a: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
        let mut b = a.clone();
        theirs.apply_keystream(&mut a);
        let mut at = 0;
        for chunk in [1usize, 7, 64, 1000, 3928] {
            ours.apply_keystream(&mut b[at..at + chunk]);
            at += chunk;
        }
        assert_eq!(a, b, "key of {key_len} bytes");
    }
}

// --- Diffie-Hellman and the key schedule (known answers from Python)

const XA: &str = "0123456789abcdef0123456789abcdef01234567";
const XB: &str = "fedcba9876543210fedcba9876543210fedcba98";
const YA: &str = "6fd4bc7aa649593205ec30348a3ccc737b61fa01e9e1762c2c53eb69033afecbdf7c13b8ac3643af\
                  78d0760b0f42db009f2b96c970f009d060faf617f117d0f1c221cea0561b9a86e852fc70a6f09ad0\
                  f82378603aa5e56b811deb3f534bf276";
const YB: &str = "e2666b9cffca63998c8e806db50c47ac12512b327c5ec48d62e0a43c2961afcf136e7219fe2ec51e\
                  656b2f01ed089dd8cc53c78e7d650df59a752131bcf8ffff122144bf10c6269b47886d6af5838922\
                  3c66153ebb5e3dc18ea849ceb60ac18e";
const S: &str = "0bf59f468e43b9f22a5fd0ccbc9bd7825a7495f6e670c31533db364b536ee297a737d565ff7829d4\
                 c397de16aec19f893e3d28eaa14eaf7e17e1026697089fdff81c7dc7e4c65e6211443d9dd3e5d8b0\
                 c0e8b2888af39637af18a75cc1b17685";

#[test]
fn dh_matches_known_answers() {
    let a = key_pair(hex(XA));
    let b = key_pair(hex(XB));
    assert_eq!(a.public(), &hex::<96>(YA));
    assert_eq!(b.public(), &hex::<96>(YB));
    assert_eq!(a.shared_secret(b.public()), Ok(hex::<96>(S)));
    assert_eq!(b.shared_secret(a.public()), Ok(hex::<96>(S)));
    // x = 1: Y = G = 2, and S = the peer's Y.
    let one = key_pair(hex("0000000000000000000000000000000000000001"));
    let mut two = [0u8; 96];
    two[95] = 2;
    assert_eq!(one.public(), &two);
    assert_eq!(one.shared_secret(b.public()), Ok(*b.public()));
}

#[test]
fn dh_random_pairs_agree() {
    let mut r = rng(7);
    for _ in 0..8 {
        let a = dh::KeyPair::generate(&mut r);
        let b = dh::KeyPair::generate(&mut r);
        assert_ne!(a.public(), b.public());
        let s = a.shared_secret(b.public()).expect("in range");
        assert_eq!(b.shared_secret(a.public()), Ok(s));
    }
}

#[test]
fn dh_rejects_degenerate_public_keys() {
    let a = key_pair(hex(XA));
    let p = prime();
    let minus = |n: u8| {
        let mut y = p;
        y[95] -= n; // P ends in 0x63
        y
    };
    let small = |n: u8| {
        let mut y = [0u8; 96];
        y[95] = n;
        y
    };
    for bad in [small(0), small(1), minus(1), p, [0xff; 96]] {
        assert_eq!(a.shared_secret(&bad), Err(MseError::BadPublicKey));
    }
    for good in [small(2), minus(2)] {
        assert!(a.shared_secret(&good).is_ok());
    }
}

#[test]
fn key_schedule_matches_known_answers() {
    let s = hex::<96>(S);
    let skey: [u8; 20] = std::array::from_fn(|i| i as u8 + 1);
    assert_eq!(
        req1(&s),
        hex::<20>("e12fb1218d51e869dc8785d0bfafa6f1d59ee4e0")
    );
    assert_eq!(
        xor(&req2(&skey), &req3(&s)),
        hex::<20>("2c66d506c647ee3767c4449fd5056ff421312963")
    );
    let key_a = hex::<16>("84eb625dd8b74b890653ee2fd6119161");
    let key_b = hex::<16>("51e13ec8be3a1aec30cec609512ef30f");
    let mut a = StreamCipher::new(Side::Initiator, &s, &skey);
    let mut b = StreamCipher::new(Side::Responder, &s, &skey);
    let (mut sent_a, mut sent_b) = ([0u8; 16], [0u8; 16]);
    a.encrypt_in_place(&mut sent_a);
    b.encrypt_in_place(&mut sent_b);
    assert_eq!((sent_a, sent_b), (key_a, key_b));
    b.decrypt_in_place(&mut sent_a);
    a.decrypt_in_place(&mut sent_b);
    assert_eq!((sent_a, sent_b), ([0; 16], [0; 16]));
}

#[test]
fn classify_incoming_tells_plain_from_encrypted() {
    let plain = b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0";
    assert_eq!(classify_incoming(&[]), Incoming::NeedMore);
    assert_eq!(classify_incoming(&plain[..1]), Incoming::NeedMore);
    assert_eq!(classify_incoming(&plain[..19]), Incoming::NeedMore);
    assert_eq!(classify_incoming(&plain[..20]), Incoming::Plain);
    assert_eq!(classify_incoming(plain), Incoming::Plain);
    assert_eq!(classify_incoming(&[0x13, b'b']), Incoming::Encrypted);
    assert_eq!(classify_incoming(&[0x14]), Incoming::Encrypted);
    assert_eq!(
        classify_incoming(b"\x13BitTorrent protocoX"),
        Incoming::Encrypted
    );
}

// --- Whole handshakes in memory

/// A handshake to run: each side's policy, padding and payload, how the wire chops bytes.
#[derive(Clone, Debug)]
pub(super) struct Setup {
    pub a_policy: EncryptionPolicy,
    pub b_policy: EncryptionPolicy,
    pub ia: Vec<u8>,
    pub a_pad: Padding,
    pub b_pad: Padding,
    /// Sent by each side once it is done (A's after IA).
    pub a_payload: Vec<u8>,
    pub b_payload: Vec<u8>,
    /// Sizes of the pieces the wire delivers, cycled.
    pub chunks: Vec<usize>,
    pub seed: u64,
}

impl Setup {
    pub(super) fn new(a_policy: EncryptionPolicy, b_policy: EncryptionPolicy) -> Setup {
        Setup {
            a_policy,
            b_policy,
            ia: b"\x13BitTorrent protocol-and-the-rest".to_vec(),
            a_pad: Padding {
                after_key: 100,
                encrypted: 10,
            },
            b_pad: Padding {
                after_key: 200,
                encrypted: 20,
            },
            a_payload: b"interested".to_vec(),
            b_payload: b"bitfield".to_vec(),
            chunks: vec![7, 1, 64, 300],
            seed: 1,
        }
    }
}

/// One side after the handshake.
#[derive(Debug)]
pub(super) struct Outcome {
    pub crypto: Crypto,
    pub info_hash: InfoHash,
    pub cipher: Option<StreamCipher>,
    /// The peer's payload stream as this side read it (IA first, for B).
    pub received: Vec<u8>,
    /// Handshake bytes this side sent.
    pub sent: usize,
}

/// Delivers one chunk to a side: to its state machine until it is done, then through its
/// cipher into `received`.
fn deliver(
    done: &mut Option<Outcome>,
    chunk: Vec<u8>,
    feed: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<Step, MseError>,
    sent_so_far: usize,
    payload: &[u8],
    reply: &mut Vec<u8>,
) -> Result<(), MseError> {
    if let Some(o) = done {
        let mut chunk = chunk;
        if let Some(c) = &mut o.cipher {
            c.decrypt_in_place(&mut chunk);
        }
        o.received.extend_from_slice(&chunk);
        return Ok(());
    }
    if let Step::Done(est) = feed(&chunk, reply)? {
        let Established {
            crypto,
            info_hash,
            mut cipher,
            mut initial_payload,
            rest,
        } = *est;
        initial_payload.extend_from_slice(&rest);
        let mut p = payload.to_vec();
        if let Some(c) = &mut cipher {
            c.encrypt_in_place(&mut p);
        }
        let sent = sent_so_far + reply.len();
        reply.extend_from_slice(&p);
        *done = Some(Outcome {
            crypto,
            info_hash,
            cipher,
            received: initial_payload,
            sent,
        });
    }
    Ok(())
}

/// Runs a handshake and both payloads to the end. `Err` if either side failed.
pub(super) fn run(s: &Setup) -> Result<(Outcome, Outcome), MseError> {
    let mut r = rng(s.seed);
    let mut a = Initiator::with_padding(IH, s.a_policy, &s.ia, s.a_pad, &mut r).expect("IA");
    let mut b = Responder::with_padding(s.b_policy, s.b_pad, &mut r);
    let known = [OTHER, IH];
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    a.start(&mut to_b);
    let (mut a_done, mut b_done) = (None, None);
    let (mut a_sent, mut b_sent) = (0, 0);
    let mut chunks = s.chunks.iter().copied().cycle();
    while !to_a.is_empty() || !to_b.is_empty() {
        let n = chunks.next().unwrap_or(1).clamp(1, to_b.len().max(1));
        let chunk: Vec<u8> = to_b.drain(..n.min(to_b.len())).collect();
        a_sent += chunk.len();
        let mut reply = Vec::new();
        let feed = |c: &[u8], out: &mut Vec<u8>| b.on_data(c, out, &known[..]);
        deliver(&mut b_done, chunk, feed, b_sent, &s.b_payload, &mut reply)?;
        b_sent += reply.len();
        to_a.extend_from_slice(&reply);

        let n = chunks.next().unwrap_or(1).clamp(1, to_a.len().max(1));
        let chunk: Vec<u8> = to_a.drain(..n.min(to_a.len())).collect();
        let mut reply = Vec::new();
        let feed = |c: &[u8], out: &mut Vec<u8>| a.on_data(c, out);
        deliver(
            &mut a_done,
            chunk,
            feed,
            a_sent + to_b.len(),
            &s.a_payload,
            &mut reply,
        )?;
        to_b.extend_from_slice(&reply);
    }
    match (a_done, b_done) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => panic!("the wire went quiet before both sides finished"),
    }
}

/// Checks a finished handshake against its setup.
fn check(s: &Setup, a: &mut Outcome, b: &mut Outcome) {
    let expected = s
        .b_policy
        .select(s.a_policy.allowed())
        .expect("a common method");
    assert_eq!((a.crypto, b.crypto), (expected, expected));
    assert_eq!((a.info_hash, b.info_hash), (IH, IH));
    assert_eq!(b.received, [&s.ia[..], &s.a_payload].concat());
    assert_eq!(a.received, s.b_payload);
    assert!(a.sent <= MAX_RESPONDER_HANDSHAKE_LEN + s.a_payload.len());
    assert!(b.sent <= MAX_INITIATOR_HANDSHAKE_LEN + s.b_payload.len());
    match (&mut a.cipher, &mut b.cipher) {
        (None, None) => assert_eq!(expected, Crypto::Plaintext),
        (Some(ca), Some(cb)) => {
            assert_eq!(expected, Crypto::Rc4);
            let msg = b"\0\0\0\x05\x04\0\0\0\x07".to_vec();
            let mut wire = msg.clone();
            ca.encrypt_in_place(&mut wire);
            assert_ne!(wire, msg);
            cb.decrypt_in_place(&mut wire);
            assert_eq!(wire, msg);
            cb.encrypt_in_place(&mut wire);
            ca.decrypt_in_place(&mut wire);
            assert_eq!(wire, msg);
        }
        _ => panic!("one side has a cipher, the other not"),
    }
}

const POLICIES: [EncryptionPolicy; 3] = [
    EncryptionPolicy::Prefer,
    EncryptionPolicy::Require,
    EncryptionPolicy::Disable,
];

#[test]
fn every_policy_pair_agrees_or_fails_on_policy() {
    use EncryptionPolicy::*;
    for a_policy in POLICIES {
        for b_policy in POLICIES {
            let s = Setup::new(a_policy, b_policy);
            match (a_policy, b_policy) {
                (Require, Disable) | (Disable, Require) => {
                    let e = run(&s).expect_err("no common method");
                    assert!(matches!(e, MseError::NoCommonCrypto { .. }), "{e:?}");
                    assert_eq!(e.fault(), crate::Fault::Local);
                }
                _ => {
                    let (mut a, mut b) = run(&s).expect("handshake");
                    check(&s, &mut a, &mut b);
                    let rc4 = a_policy == Require || b_policy == Require;
                    assert_eq!(a.crypto == Crypto::Rc4, rc4, "{a_policy:?} {b_policy:?}");
                }
            }
        }
    }
}

#[test]
fn padding_at_the_limits() {
    for pad in [0, MAX_PAD_LEN] {
        for ia in [0, MAX_INITIAL_PAYLOAD_LEN] {
            for chunks in [vec![1], vec![usize::MAX]] {
                for policy in [EncryptionPolicy::Prefer, EncryptionPolicy::Require] {
                    let both = Padding {
                        after_key: pad,
                        encrypted: pad,
                    };
                    let s = Setup {
                        ia: vec![0xa5; ia],
                        a_pad: both,
                        b_pad: both,
                        chunks: chunks.clone(),
                        ..Setup::new(policy, policy)
                    };
                    let (mut a, mut b) = run(&s).expect("handshake");
                    check(&s, &mut a, &mut b);
                }
            }
        }
    }
}

#[test]
fn oversized_padding_is_capped() {
    let big = Padding {
        after_key: 10_000,
        encrypted: 10_000,
    };
    let s = Setup {
        a_pad: big,
        b_pad: big,
        ..Setup::new(EncryptionPolicy::Require, EncryptionPolicy::Prefer)
    };
    let (mut a, mut b) = run(&s).expect("handshake");
    check(&s, &mut a, &mut b);
}

#[test]
fn initial_payload_over_the_limit_is_refused() {
    let r = Initiator::new(
        IH,
        EncryptionPolicy::Prefer,
        &[0; MAX_INITIAL_PAYLOAD_LEN + 1],
        &mut rng(1),
    );
    assert_eq!(r.err(), Some(PayloadTooLong(MAX_INITIAL_PAYLOAD_LEN + 1)));
}

fn policy() -> impl Strategy<Value = EncryptionPolicy> {
    prop_oneof![
        Just(EncryptionPolicy::Prefer),
        Just(EncryptionPolicy::Require),
        Just(EncryptionPolicy::Disable),
    ]
}

fn padding() -> impl Strategy<Value = Padding> {
    (0..=MAX_PAD_LEN, 0..=MAX_PAD_LEN).prop_map(|(after_key, encrypted)| Padding {
        after_key,
        encrypted,
    })
}

prop_compose! {
    fn setup()(
        a_policy in policy(),
        b_policy in policy(),
        ia in proptest::collection::vec(any::<u8>(), 0..=MAX_INITIAL_PAYLOAD_LEN),
        a_pad in padding(),
        b_pad in padding(),
        a_payload in proptest::collection::vec(any::<u8>(), 0..300),
        b_payload in proptest::collection::vec(any::<u8>(), 0..300),
        chunks in proptest::collection::vec(1..100usize, 1..8),
        seed in any::<u64>(),
    ) -> Setup {
        Setup { a_policy, b_policy, ia, a_pad, b_pad, a_payload, b_payload, chunks, seed }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any policies, padding, IA, payloads and chopping of the wire: both sides agree on
    /// the method and the keys, IA and the payload that followed the handshake arrive
    /// intact, or the policies had nothing in common.
    #[test]
    fn handshake_in_random_chunks(s in setup()) {
        match s.b_policy.select(s.a_policy.allowed()) {
            Some(_) => {
                let (mut a, mut b) = run(&s).expect("handshake");
                check(&s, &mut a, &mut b);
            }
            None => {
                let e = run(&s).expect_err("no common method");
                let policy_refused = matches!(e, MseError::NoCommonCrypto { .. });
                prop_assert!(policy_refused, "{:?}", e);
            }
        }
    }
}
