//! What each side refuses, against hand-made peers that can put anything in any field, and
//! truncated input (always [`Step::NeedMore`], never a panic).

use super::cipher::{req1, req2, req3, xor, Side};
use super::dh::test_support::key_pair;
use super::dh::KeyPair;
use super::tests::{rng, IH, OTHER};
use super::*;

const KNOWN: [InfoHash; 2] = [OTHER, IH];

fn fake_keys() -> KeyPair {
    key_pair([0x42; 20])
}

// --- a hand-made initiator against a Responder

/// Step 1 (Ya, then `pad_a` bytes) and the fields of step 3.
#[derive(Clone)]
struct FromA {
    pad_a: usize,
    skey: InfoHash,
    vc: [u8; 8],
    provide: u32,
    pad_c_len: u16,
    pad_c: usize,
    ia_len: u16,
    ia: Vec<u8>,
}

impl Default for FromA {
    fn default() -> Self {
        FromA {
            pad_a: 30,
            skey: IH,
            vc: VC,
            provide: CryptoSet::BOTH.bits(),
            pad_c_len: 3,
            pad_c: 3,
            ia_len: 4,
            ia: b"ping".to_vec(),
        }
    }
}

fn responder(policy: EncryptionPolicy) -> Responder {
    let pad = Padding {
        after_key: 40,
        encrypted: 4,
    };
    Responder::with_padding(policy, pad, &mut rng(3))
}

/// Step 1.
fn step1(a: &KeyPair, pad_a: usize) -> Vec<u8> {
    let mut m = a.public().to_vec();
    m.resize(DH_KEY_LEN + pad_a, 0x77);
    m
}

/// Step 3 for the secret `s`.
fn step3(s: &[u8; DH_KEY_LEN], f: &FromA) -> Vec<u8> {
    let mut m = req1(s).to_vec();
    m.extend_from_slice(&xor(&req2(&f.skey.0), &req3(s)));
    let mut plain = f.vc.to_vec();
    plain.extend_from_slice(&f.provide.to_be_bytes());
    plain.extend_from_slice(&f.pad_c_len.to_be_bytes());
    plain.resize(plain.len() + f.pad_c, 0);
    plain.extend_from_slice(&f.ia_len.to_be_bytes());
    plain.extend_from_slice(&f.ia);
    StreamCipher::new(Side::Initiator, s, &f.skey.0).encrypt_into(&plain, &mut m);
    m
}

/// The whole stream a hand-made A sends to `responder(..)` (whose key is always the same).
fn stream_from_a(f: &FromA) -> Vec<u8> {
    let a = fake_keys();
    let mut out = Vec::new();
    let first = responder(EncryptionPolicy::Prefer)
        .on_data(a.public(), &mut out, &KNOWN[..])
        .expect("Ya");
    assert!(matches!(first, Step::NeedMore));
    let yb: [u8; DH_KEY_LEN] = out[..DH_KEY_LEN].try_into().expect("Yb");
    let s = a.shared_secret(&yb).expect("S");
    [step1(&a, f.pad_a), step3(&s, f)].concat()
}

fn to_responder(policy: EncryptionPolicy, f: &FromA) -> Result<Step, MseError> {
    responder(policy).on_data(&stream_from_a(f), &mut Vec::new(), &KNOWN[..])
}

fn done(step: Result<Step, MseError>) -> Established {
    match step {
        Ok(Step::Done(e)) => *e,
        other => panic!("expected Done, got {other:?}"),
    }
}

#[test]
fn responder_accepts_the_hand_made_initiator() {
    let f = FromA::default();
    // Plaintext selected: what follows IA is in the clear.
    let stream = [&stream_from_a(&f)[..], b"after"].concat();
    let mut b = responder(EncryptionPolicy::Prefer);
    let e = done(b.on_data(&stream, &mut Vec::new(), &KNOWN[..]));
    assert_eq!(e.crypto, Crypto::Plaintext);
    assert_eq!(e.info_hash, IH);
    assert_eq!(e.initial_payload, b"ping");
    assert_eq!(e.rest, b"after");
    let table: SkeyTable = KNOWN.into_iter().collect();
    let mut b = responder(EncryptionPolicy::Require);
    let e = done(b.on_data(&stream_from_a(&f), &mut Vec::new(), &table));
    assert_eq!((e.crypto, e.info_hash), (Crypto::Rc4, IH));
    assert_eq!(
        b.on_data(b"x", &mut Vec::new(), &table).err(),
        Some(MseError::Finished)
    );
}

#[test]
fn responder_syncs_on_req1_within_512_bytes_of_padding() {
    for pad_a in [0, 1, 511, MAX_PAD_LEN] {
        let f = FromA {
            pad_a,
            ..FromA::default()
        };
        done(to_responder(EncryptionPolicy::Prefer, &f));
    }
    let f = FromA {
        pad_a: MAX_PAD_LEN + 1,
        ..FromA::default()
    };
    assert_eq!(
        to_responder(EncryptionPolicy::Prefer, &f).err(),
        Some(MseError::Req1NotFound)
    );
}

#[test]
fn responder_rejects_garbage_after_the_key() {
    let mut garbage = step1(&fake_keys(), REQ1_SYNC_WINDOW - 1);
    let mut b = responder(EncryptionPolicy::Prefer);
    let mut out = Vec::new();
    assert!(matches!(
        b.on_data(&garbage, &mut out, &KNOWN[..]),
        Ok(Step::NeedMore)
    ));
    assert_eq!(out.len(), DH_KEY_LEN + 40, "Yb and PadB went out");
    let err = b.on_data(&[0x77], &mut out, &KNOWN[..]).err();
    assert_eq!(err, Some(MseError::Req1NotFound));
    assert_eq!(err.map(|e| e.fault()), Some(crate::Fault::Peer));
    assert_eq!(
        b.on_data(&[], &mut out, &KNOWN[..]).err(),
        Some(MseError::Finished)
    );
    // A megabyte in one call ends the handshake in that call.
    garbage.resize(1 << 20, 0x77);
    let r = responder(EncryptionPolicy::Prefer).on_data(&garbage, &mut out, &KNOWN[..]);
    assert_eq!(r.err(), Some(MseError::Req1NotFound));
}

#[test]
fn responder_rejects_a_degenerate_key_before_answering() {
    let mut out = Vec::new();
    let r = responder(EncryptionPolicy::Prefer).on_data(&[0; DH_KEY_LEN], &mut out, &KNOWN[..]);
    assert_eq!(r.err(), Some(MseError::BadPublicKey));
    assert!(out.is_empty());
}

#[test]
fn responder_rejects_bad_fields() {
    use EncryptionPolicy::*;
    let cases: Vec<(EncryptionPolicy, FromA, MseError)> = vec![
        (
            Prefer,
            FromA {
                vc: [0, 0, 0, 0, 0, 0, 0, 1],
                ..FromA::default()
            },
            MseError::BadVc,
        ),
        (
            Prefer,
            FromA {
                skey: InfoHash([0x99; 20]),
                ..FromA::default()
            },
            MseError::UnknownInfoHash,
        ),
        (
            Prefer,
            FromA {
                pad_c_len: 513,
                pad_c: 513,
                ..FromA::default()
            },
            MseError::PadTooLong(513),
        ),
        (
            Prefer,
            FromA {
                pad_c_len: u16::MAX,
                ..FromA::default()
            },
            MseError::PadTooLong(65535),
        ),
        (
            Prefer,
            FromA {
                ia_len: 69,
                ia: vec![0; 69],
                ..FromA::default()
            },
            MseError::InitialPayloadTooLong(69),
        ),
    ];
    for (policy, f, expected) in cases {
        assert_eq!(to_responder(policy, &f).err(), Some(expected));
    }
}

#[test]
fn responder_selects_by_policy() {
    use EncryptionPolicy::*;
    let provide = |provide: u32| FromA {
        provide,
        ..FromA::default()
    };
    for (policy, provided, expected) in [
        (Prefer, 0x03, Crypto::Plaintext),
        (Prefer, 0x02, Crypto::Rc4),
        (Prefer, 0xffff_ffff, Crypto::Plaintext),
        (Require, 0x03, Crypto::Rc4),
        (Require, 0xffff_fffe, Crypto::Rc4),
        (Disable, 0x03, Crypto::Plaintext),
    ] {
        let e = done(to_responder(policy, &provide(provided)));
        assert_eq!(e.crypto, expected, "{policy:?} {provided:#x}");
        assert_eq!(e.cipher.is_some(), expected == Crypto::Rc4);
    }
    for (policy, provided) in [
        (Require, 0x01),
        (Disable, 0x02),
        (Prefer, 0x00),
        (Prefer, 0xffff_fff0),
    ] {
        let e = to_responder(policy, &provide(provided)).err();
        let allowed = policy.allowed().bits();
        assert_eq!(e, Some(MseError::NoCommonCrypto { provided, allowed }));
    }
}

#[test]
fn responder_waits_on_every_truncation() {
    let f = FromA {
        pad_c_len: 5,
        pad_c: 5,
        ..FromA::default()
    };
    let whole = stream_from_a(&f);
    for len in 0..whole.len() {
        let r =
            responder(EncryptionPolicy::Prefer).on_data(&whole[..len], &mut Vec::new(), &KNOWN[..]);
        assert!(matches!(r, Ok(Step::NeedMore)), "{len} bytes: {r:?}");
    }
    let mut b = responder(EncryptionPolicy::Prefer);
    for (i, byte) in whole.iter().enumerate() {
        let r = b.on_data(&[*byte], &mut Vec::new(), &KNOWN[..]);
        match r {
            Ok(Step::NeedMore) if i + 1 < whole.len() => {}
            Ok(Step::Done(e)) if i + 1 == whole.len() => assert_eq!(e.initial_payload, b"ping"),
            other => panic!("byte {i}: {other:?}"),
        }
    }
}

// --- a hand-made responder against an Initiator

/// Step 2 (Yb, then `pad_b` bytes) and the fields of step 4.
#[derive(Clone)]
struct FromB {
    pad_b: usize,
    vc: [u8; 8],
    select: u32,
    pad_d_len: u16,
    pad_d: usize,
    payload: Vec<u8>,
}

impl Default for FromB {
    fn default() -> Self {
        FromB {
            pad_b: 30,
            vc: VC,
            select: Crypto::Rc4.bit(),
            pad_d_len: 3,
            pad_d: 3,
            payload: b"pong".to_vec(),
        }
    }
}

fn initiator(policy: EncryptionPolicy) -> (Initiator, Vec<u8>) {
    let pad = Padding {
        after_key: 20,
        encrypted: 2,
    };
    let mut a = Initiator::with_padding(IH, policy, b"hi", pad, &mut rng(4)).expect("IA");
    let mut out = Vec::new();
    a.start(&mut out);
    (a, out)
}

/// Steps 2 and 4 from a hand-made B, to `initiator(..)` (whose key is always the same).
fn stream_from_b(f: &FromB) -> Vec<u8> {
    let b = fake_keys();
    let (_, hello) = initiator(EncryptionPolicy::Prefer);
    let ya: [u8; DH_KEY_LEN] = hello[..DH_KEY_LEN].try_into().expect("Ya");
    let s = b.shared_secret(&ya).expect("S");
    let mut m = b.public().to_vec();
    m.resize(DH_KEY_LEN + f.pad_b, 0x55);
    let mut cipher = StreamCipher::new(Side::Responder, &s, &IH.0);
    let mut plain = f.vc.to_vec();
    plain.extend_from_slice(&f.select.to_be_bytes());
    plain.extend_from_slice(&f.pad_d_len.to_be_bytes());
    plain.resize(plain.len() + f.pad_d, 0);
    cipher.encrypt_into(&plain, &mut m);
    if f.select == Crypto::Rc4.bit() {
        cipher.encrypt_into(&f.payload, &mut m);
    } else {
        m.extend_from_slice(&f.payload);
    }
    m
}

fn to_initiator(policy: EncryptionPolicy, f: &FromB) -> Result<Step, MseError> {
    initiator(policy)
        .0
        .on_data(&stream_from_b(f), &mut Vec::new())
}

#[test]
fn initiator_accepts_the_hand_made_responder() {
    for select in [Crypto::Plaintext, Crypto::Rc4] {
        let f = FromB {
            select: select.bit(),
            ..FromB::default()
        };
        let (mut a, _) = initiator(EncryptionPolicy::Prefer);
        let mut out = Vec::new();
        let e = done(a.on_data(&stream_from_b(&f), &mut out));
        assert_eq!((e.crypto, e.info_hash), (select, IH));
        assert_eq!(e.rest, b"pong");
        assert!(e.initial_payload.is_empty());
        // Step 3: two hashes, VC, crypto_provide, len(PadC), PadC, len(IA), IA.
        assert_eq!(out.len(), 20 + 20 + 8 + 4 + 2 + 2 + 2 + 2);
        assert_eq!(a.on_data(&[], &mut out).err(), Some(MseError::Finished));
    }
}

#[test]
fn initiator_syncs_on_vc_within_512_bytes_of_padding() {
    for pad_b in [0, 7, 8, 9, MAX_PAD_LEN] {
        let f = FromB {
            pad_b,
            ..FromB::default()
        };
        done(to_initiator(EncryptionPolicy::Prefer, &f));
    }
    let f = FromB {
        pad_b: MAX_PAD_LEN + 1,
        ..FromB::default()
    };
    assert_eq!(
        to_initiator(EncryptionPolicy::Prefer, &f).err(),
        Some(MseError::VcNotFound)
    );
    let mut garbage = fake_keys().public().to_vec();
    garbage.resize(DH_KEY_LEN + VC_SYNC_WINDOW - 1, 0x55);
    let (mut a, _) = initiator(EncryptionPolicy::Prefer);
    let mut out = Vec::new();
    assert!(matches!(a.on_data(&garbage, &mut out), Ok(Step::NeedMore)));
    assert_eq!(
        a.on_data(&[0x55], &mut out).err(),
        Some(MseError::VcNotFound)
    );
}

#[test]
fn initiator_rejects_bad_fields() {
    use EncryptionPolicy::*;
    let select = |select: u32| FromB {
        select,
        ..FromB::default()
    };
    let bad_select = |policy: EncryptionPolicy, select: u32| MseError::BadSelect {
        select,
        provided: policy.allowed().bits(),
    };
    for (policy, s) in [
        (Prefer, 0),
        (Prefer, 3),
        (Prefer, 4),
        (Require, 1),
        (Disable, 2),
    ] {
        assert_eq!(
            to_initiator(policy, &select(s)).err(),
            Some(bad_select(policy, s))
        );
    }
    let long_pad = FromB {
        pad_d_len: 513,
        pad_d: 513,
        ..FromB::default()
    };
    assert_eq!(
        to_initiator(Prefer, &long_pad).err(),
        Some(MseError::PadTooLong(513))
    );
    let mut p = super::dh::test_support::prime();
    p[95] -= 1;
    let (mut a, _) = initiator(Prefer);
    let mut out = Vec::new();
    assert_eq!(a.on_data(&p, &mut out).err(), Some(MseError::BadPublicKey));
    assert!(out.is_empty(), "no step 3 after a bad key");
}

#[test]
fn initiator_waits_on_every_truncation() {
    let f = FromB {
        payload: Vec::new(),
        ..FromB::default()
    };
    let whole = stream_from_b(&f);
    for len in 0..whole.len() {
        let r = initiator(EncryptionPolicy::Prefer)
            .0
            .on_data(&whole[..len], &mut Vec::new());
        assert!(matches!(r, Ok(Step::NeedMore)), "{len} bytes: {r:?}");
    }
    done(to_initiator(EncryptionPolicy::Prefer, &f));
}
