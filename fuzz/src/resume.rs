//! The resume file: `ResumeData::decode`.
//!
//! `decode` takes the torrent the file should belong to (info-hash, piece count, file count)
//! and rejects a file for any other. So that the fuzzer gets past those checks to the fields
//! behind them, each input is decoded twice: once against the torrent the file itself names
//! (its `info-hash`, `num-pieces` and the length of its `files` list, where present) and once
//! against a fixed torrent. Properties checked, besides "never panics":
//! - an accepted file describes the torrent asked for: same info-hash, a bitfield over exactly
//!   its pieces, one stamp per file;
//! - it obeys the limits of `ringtorrent::resume` (tracker tiers, URLs per tier, URL length)
//!   and every modification time has its nanoseconds below one second;
//! - it matches its own file stamps (`check_files`);
//! - it encodes canonically to a file that decodes back to the same data.

use ringtorrent::bencode::{self, Value};
use ringtorrent::resume::{FileStamp, ResumeData, MAX_TIERS, MAX_URLS_PER_TIER, MAX_URL_LEN};
use ringtorrent::types::InfoHash;

/// The torrent a resume file is decoded for: info-hash, pieces, files.
type Torrent = (InfoHash, u32, usize);

/// The fixed torrent: 13 pieces in 2 files.
const FIXED: Torrent = (InfoHash([7; 20]), 13, 2);

pub fn resume(data: &[u8]) {
    for t in [named(data), FIXED] {
        if let Ok(r) = ResumeData::decode(data, &t.0, t.1, t.2) {
            check(&r, t);
        }
    }
}

/// The torrent `data` says it belongs to, as far as it says (zeros for what it does not).
fn named(data: &[u8]) -> Torrent {
    let Some(root) = bencode::decode(data).ok() else {
        return (InfoHash([0; 20]), 0, 0);
    };
    let d = root.as_dict();
    let get = |key: &[u8]| d.and_then(|d| d.get(key));
    let mut hash = [0u8; 20];
    if let Some(b) = get(b"info-hash").and_then(Value::as_bytes) {
        if b.len() == hash.len() {
            hash.copy_from_slice(b);
        }
    }
    let pieces = get(b"num-pieces")
        .and_then(Value::as_int)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let files = get(b"files").and_then(Value::as_list).map_or(0, <[_]>::len);
    (InfoHash(hash), pieces, files)
}

fn check(r: &ResumeData, (info_hash, num_pieces, num_files): Torrent) {
    assert_eq!(r.info_hash, info_hash);
    assert_eq!(r.have.len(), num_pieces);
    assert!(r.have.count() <= num_pieces);
    assert_eq!(r.files.len(), num_files);
    assert!(r.trackers.len() <= MAX_TIERS);
    for tier in &r.trackers {
        assert!(tier.len() <= MAX_URLS_PER_TIER);
        assert!(tier.iter().all(|u| u.len() <= MAX_URL_LEN));
    }
    for f in &r.files {
        if let FileStamp::Present { mtime_ns, .. } = f {
            assert!(*mtime_ns < 1_000_000_000);
        }
    }
    assert_eq!(r.check_files(&r.files), Ok(()));

    let encoded = r.encode();
    let value = bencode::decode(&encoded).expect("an encoded resume file is bencode");
    assert_eq!(value.encode(), encoded, "resume encoding is not canonical");
    let again = ResumeData::decode(&encoded, &info_hash, num_pieces, num_files);
    assert_eq!(again.as_ref(), Ok(r));
}
