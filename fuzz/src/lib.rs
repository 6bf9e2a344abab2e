//! The bodies of the fuzz targets, as plain functions over bytes.
//!
//! Each `fuzz_targets/<name>.rs` binary is a one-liner that hands libFuzzer's input to the
//! function of the same name here. Keeping the bodies in a library lets the stable-Rust replay
//! test (`tests/replay.rs`) run every committed corpus input and every past crash through
//! exactly the code the fuzzer runs, so a target that stops compiling or starts panicking on
//! a known input fails `cargo test`, not just a nightly fuzzing session.
//!
//! Every function panics (an `assert!`) when a property of the parser it drives is broken and
//! returns normally otherwise; "never panics on any input" is the first property of each.
//!
//! | target      | parsers (all take bytes from a file, a tracker or a peer)                 |
//! |-------------|----------------------------------------------------------------------------|
//! | `bencode`   | `bencode::decode`, `decode_prefix`                                         |
//! | `metainfo`  | `Metainfo::from_bytes` (.torrent), `Info::from_bytes` (BEP 9 metadata)    |
//! | `magnet`    | `Magnet::parse`                                                            |
//! | `wire`      | `wire::Reader` (the message stream after the handshake)                    |
//! | `handshake` | `Handshake::parse`, `HandshakeState` (BEP 3)                              |
//! | `ext`       | `ExtHandshake::parse` (BEP 10), `MetadataMsg::parse` (BEP 9)              |
//! | `pex`       | `PexMessage::parse`, `PexState::incoming` (BEP 11)                        |
//! | `tracker`   | HTTP announce reply, UDP announce response (BEP 15), `UdpAnnounce`        |
//! | `resume`    | `ResumeData::decode` (the resume file)                                     |
//! | `mse`       | `mse::Responder`, `mse::Initiator`, `classify_incoming` (MSE/PE)          |
//! | `utp`       | `utp::packet::Packet::parse`, `utp::Stream` fed packets (BEP 29)           |
//!
#![forbid(unsafe_code)]

mod bencode;
mod ext;
mod handshake;
mod magnet;
mod metainfo;
mod mse;
mod pex;
mod resume;
mod tracker;
mod utp;
mod wire;

pub use crate::bencode::bencode;
pub use crate::ext::ext;
pub use crate::handshake::handshake;
pub use crate::magnet::magnet;
pub use crate::metainfo::metainfo;
pub use crate::mse::{mse, mse_initiator, mse_policy, mse_responder, MSE_INFO_HASH};
pub use crate::pex::pex;
pub use crate::resume::resume;
pub use crate::tracker::tracker;
pub use crate::utp::{utp, UTP_ACCEPT_SEQ, UTP_RECV_ID, UTP_SYN, UTP_SYN_SEQ};
pub use crate::wire::wire;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary, corpus and regression directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("bencode", bencode),
    ("metainfo", metainfo),
    ("magnet", magnet),
    ("wire", wire),
    ("handshake", handshake),
    ("ext", ext),
    ("pex", pex),
    ("tracker", tracker),
    ("resume", resume),
    ("mse", mse),
    ("utp", utp),
];
