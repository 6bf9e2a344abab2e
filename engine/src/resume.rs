//! The resume file: what a torrent had verified, durably, when it was last saved (sans-IO).
//!
//! A resume file is one bencoded dictionary (BEP 3 bencoding; the keys are ours, no BEP
//! defines them):
//!
//! ```text
//! format      "ringtorrent-resume-1"
//! info-hash   20 bytes, the torrent it belongs to
//! num-pieces  integer
//! pieces      ceil(num-pieces/8) bytes, BEP 3 BITFIELD order (high bit of byte 0 = piece 0)
//! files       list, one per torrent file in order: {size, mtime-s, mtime-ns} or {missing: 1}
//! trackers    list of tiers (BEP 12), each a list of URLs
//! uploaded    integer, total payload bytes over every session
//! downloaded  integer, total payload bytes over every session
//! ```
//!
//! Invariant (kept by the engine's saver, `engine/persist.rs`): every piece set in `pieces`
//! hashed correctly, was written, and the files it touches were `fdatasync`ed before the
//! file was written; the file itself is written atomically (temp file, fdatasync, rename,
//! fsync of the directory). So after a crash the resume file never claims a piece whose
//! bytes are not on disk.
//!
//! Trust: a resume file is only believed when it decodes within the limits below, names the
//! same torrent, and every file's size and modification time equal what is on disk now
//! ([`ResumeData::check_files`]). Anything else means a full recheck; nothing here panics on
//! a bad file.

use crate::bencode::{self, Dict, Value};
use crate::types::{Bitfield, InfoHash};

/// The value of the `format` key.
pub const FORMAT: &str = "ringtorrent-resume-1";
/// Longest resume file read (checked against the file's length before reading it).
pub const MAX_RESUME_LEN: u64 = 32 << 20;
/// Most tracker tiers, URLs per tier, and bytes per URL kept.
pub const MAX_TIERS: usize = 256;
pub const MAX_URLS_PER_TIER: usize = 256;
pub const MAX_URL_LEN: usize = 4096;

/// A file's size and modification time, or that it does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStamp {
    Missing,
    Present {
        size: u64,
        mtime_s: i64,
        mtime_ns: u32,
    },
}

/// The decoded contents of a resume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    pub info_hash: InfoHash,
    /// Pieces verified and durably on disk.
    pub have: Bitfield,
    /// One stamp per torrent file (padding files included, always `Missing`).
    pub files: Vec<FileStamp>,
    pub trackers: Vec<Vec<String>>,
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
}

/// Why a resume file is not used. Always the file's fault (or another torrent's file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("resume file is {0} bytes, more than the {MAX_RESUME_LEN}-byte limit")]
    TooLarge(u64),
    #[error("resume file is not valid bencode: {0}")]
    Decode(#[from] bencode::DecodeError),
    #[error("resume file: missing or malformed `{0}`")]
    Field(&'static str),
    #[error("resume file has format {0:?}, expected {FORMAT:?}")]
    Format(String),
    #[error("resume file belongs to torrent {0}")]
    OtherTorrent(InfoHash),
    #[error("resume file has {found} pieces, the torrent {expected}")]
    PieceCount { found: u64, expected: u32 },
    #[error("resume file lists {found} files, the torrent has {expected}")]
    FileCount { found: usize, expected: usize },
    #[error("resume file has more trackers than the limits allow")]
    TooManyTrackers,
}

/// Why the files on disk do not match a resume file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("file {file} changed since the resume file was saved ({saved:?} then, {now:?} now)")]
    Changed {
        file: usize,
        saved: FileStamp,
        now: FileStamp,
    },
    #[error("{now} files on disk, {saved} in the resume file")]
    Count { saved: usize, now: usize },
}

impl ResumeData {
    /// Encodes canonically (sorted keys).
    pub fn encode(&self) -> Vec<u8> {
        let pieces = self.have.to_wire();
        let files = self.files.iter().map(stamp_value).collect();
        let trackers = self
            .trackers
            .iter()
            .map(|tier| Value::list(tier.iter().map(|u| Value::bytes(u.as_bytes())).collect()))
            .collect();
        let d = Dict::new()
            .with(b"format", Value::bytes(FORMAT.as_bytes()))
            .with(b"info-hash", Value::bytes(&self.info_hash.0))
            .with(b"num-pieces", Value::int(i64::from(self.have.len())))
            .with(b"pieces", Value::bytes(&pieces))
            .with(b"files", Value::list(files))
            .with(b"trackers", Value::list(trackers))
            .with(b"uploaded", Value::int(clamp_i64(self.uploaded_bytes)))
            .with(b"downloaded", Value::int(clamp_i64(self.downloaded_bytes)));
        Value::dict(d).encode()
    }

    /// Decodes a resume file for the torrent `info_hash` with `num_pieces` pieces and
    /// `num_files` files; anything else is an error.
    pub fn decode(
        bytes: &[u8],
        info_hash: &InfoHash,
        num_pieces: u32,
        num_files: usize,
    ) -> Result<ResumeData, ResumeError> {
        if bytes.len() as u64 > MAX_RESUME_LEN {
            return Err(ResumeError::TooLarge(bytes.len() as u64));
        }
        let root = bencode::decode(bytes)?;
        let d = root
            .as_dict()
            .ok_or(ResumeError::Field("root dictionary"))?;
        let format = d
            .get(b"format")
            .and_then(Value::as_bytes)
            .ok_or(ResumeError::Field("format"))?;
        if format != FORMAT.as_bytes() {
            return Err(ResumeError::Format(
                String::from_utf8_lossy(format).into_owned(),
            ));
        }
        let hash: [u8; 20] = d
            .get(b"info-hash")
            .and_then(Value::as_bytes)
            .and_then(|b| b.try_into().ok())
            .ok_or(ResumeError::Field("info-hash"))?;
        if hash != info_hash.0 {
            return Err(ResumeError::OtherTorrent(InfoHash(hash)));
        }
        let found = uint(d, "num-pieces")?;
        if found != u64::from(num_pieces) {
            return Err(ResumeError::PieceCount {
                found,
                expected: num_pieces,
            });
        }
        let have = d
            .get(b"pieces")
            .and_then(Value::as_bytes)
            .and_then(|b| Bitfield::from_wire(b, num_pieces))
            .ok_or(ResumeError::Field("pieces"))?;
        let list = d
            .get(b"files")
            .and_then(Value::as_list)
            .ok_or(ResumeError::Field("files"))?;
        if list.len() != num_files {
            return Err(ResumeError::FileCount {
                found: list.len(),
                expected: num_files,
            });
        }
        let files = list.iter().map(decode_stamp).collect::<Result<_, _>>()?;
        Ok(ResumeData {
            info_hash: *info_hash,
            have,
            files,
            trackers: decode_trackers(d)?,
            uploaded_bytes: uint(d, "uploaded")?,
            downloaded_bytes: uint(d, "downloaded")?,
        })
    }

    /// Ok if every file on disk (`now`, in torrent order) has the size and modification time
    /// saved; the first difference otherwise.
    pub fn check_files(&self, now: &[FileStamp]) -> Result<(), Mismatch> {
        if now.len() != self.files.len() {
            return Err(Mismatch::Count {
                saved: self.files.len(),
                now: now.len(),
            });
        }
        for (file, (saved, now)) in self.files.iter().zip(now).enumerate() {
            if saved != now {
                return Err(Mismatch::Changed {
                    file,
                    saved: *saved,
                    now: *now,
                });
            }
        }
        Ok(())
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(d: &Dict<'_>, key: &'static str) -> Result<u64, ResumeError> {
    d.get(key.as_bytes())
        .and_then(Value::as_int)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or(ResumeError::Field(key))
}

fn stamp_value(s: &FileStamp) -> Value<'static> {
    let d = match *s {
        FileStamp::Missing => Dict::new().with(b"missing", Value::int(1)),
        FileStamp::Present {
            size,
            mtime_s,
            mtime_ns,
        } => Dict::new()
            .with(b"size", Value::int(clamp_i64(size)))
            .with(b"mtime-s", Value::int(mtime_s))
            .with(b"mtime-ns", Value::int(i64::from(mtime_ns))),
    };
    Value::dict(d)
}

fn decode_stamp(v: &Value<'_>) -> Result<FileStamp, ResumeError> {
    let d = v.as_dict().ok_or(ResumeError::Field("files"))?;
    if d.get(b"missing").and_then(Value::as_int) == Some(1) {
        return Ok(FileStamp::Missing);
    }
    let mtime_s = d
        .get(b"mtime-s")
        .and_then(Value::as_int)
        .ok_or(ResumeError::Field("mtime-s"))?;
    let mtime_ns = uint(d, "mtime-ns")?;
    Ok(FileStamp::Present {
        size: uint(d, "size")?,
        mtime_s,
        mtime_ns: u32::try_from(mtime_ns)
            .ok()
            .filter(|&ns| ns < 1_000_000_000)
            .ok_or(ResumeError::Field("mtime-ns"))?,
    })
}

fn decode_trackers(d: &Dict<'_>) -> Result<Vec<Vec<String>>, ResumeError> {
    let tiers = d
        .get(b"trackers")
        .and_then(Value::as_list)
        .ok_or(ResumeError::Field("trackers"))?;
    if tiers.len() > MAX_TIERS {
        return Err(ResumeError::TooManyTrackers);
    }
    let mut out = Vec::with_capacity(tiers.len());
    for tier in tiers {
        let urls = tier.as_list().ok_or(ResumeError::Field("trackers"))?;
        if urls.len() > MAX_URLS_PER_TIER {
            return Err(ResumeError::TooManyTrackers);
        }
        let mut t = Vec::with_capacity(urls.len());
        for u in urls {
            let s = u
                .as_str()
                .filter(|s| s.len() <= MAX_URL_LEN)
                .ok_or(ResumeError::Field("trackers"))?;
            t.push(s.to_owned());
        }
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResumeData {
        // Pieces 0, 3, 7 and 12 of 13.
        let have = Bitfield::from_wire(&[0x91, 0x08], 13).unwrap();
        assert_eq!(have.count(), 4);
        ResumeData {
            info_hash: InfoHash([7; 20]),
            have,
            files: vec![
                FileStamp::Present {
                    size: 1 << 20,
                    mtime_s: 1_700_000_000,
                    mtime_ns: 123_456_789,
                },
                FileStamp::Missing,
            ],
            trackers: vec![vec!["http://127.0.0.1:1/announce".into()], vec![]],
            uploaded_bytes: 42,
            downloaded_bytes: 1 << 40,
        }
    }

    fn decode(bytes: &[u8]) -> Result<ResumeData, ResumeError> {
        ResumeData::decode(bytes, &InfoHash([7; 20]), 13, 2)
    }

    #[test]
    fn roundtrip() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(decode(&bytes), Ok(r.clone()));
        // Canonical: encoding the decoded value gives the same bytes.
        assert_eq!(decode(&bytes).map(|d| d.encode()), Ok(bytes));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"garbage"[..],
            b"le",
            b"i5e",
            b"d6:formati1ee",
            b"\xff\x00",
        ] {
            assert!(decode(bad).is_err());
        }
        let bytes = sample().encode();
        let flipped: Vec<u8> = bytes.iter().map(|b| b ^ 0x5a).collect();
        assert!(decode(&flipped).is_err());
    }

    #[test]
    fn oversized_is_refused_before_decoding() {
        let big = vec![b'x'; MAX_RESUME_LEN as usize + 1];
        assert_eq!(decode(&big), Err(ResumeError::TooLarge(MAX_RESUME_LEN + 1)));
    }

    #[test]
    fn wrong_torrent_or_shape_is_refused() {
        let bytes = sample().encode();
        assert_eq!(
            ResumeData::decode(&bytes, &InfoHash([8; 20]), 13, 2),
            Err(ResumeError::OtherTorrent(InfoHash([7; 20])))
        );
        assert!(matches!(
            ResumeData::decode(&bytes, &InfoHash([7; 20]), 14, 2),
            Err(ResumeError::PieceCount { found: 13, .. })
        ));
        assert!(matches!(
            ResumeData::decode(&bytes, &InfoHash([7; 20]), 13, 3),
            Err(ResumeError::FileCount { found: 2, .. })
        ));
    }

    #[test]
    fn spare_bits_and_bad_stamps_are_refused() {
        let mut r = sample();
        let mut bytes = r.encode();
        // The last pieces byte holds pieces 8..13; bit for "piece 15" is a spare bit.
        let key = b"6:pieces2:";
        let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
        bytes[at + 1] |= 0x01;
        assert_eq!(decode(&bytes), Err(ResumeError::Field("pieces")));
        r.files[0] = FileStamp::Present {
            size: 1,
            mtime_s: 0,
            mtime_ns: 0,
        };
        let bytes = r.encode().replace_ns();
        assert_eq!(decode(&bytes), Err(ResumeError::Field("mtime-ns")));
    }

    trait ReplaceNs {
        fn replace_ns(self) -> Vec<u8>;
    }
    impl ReplaceNs for Vec<u8> {
        /// Puts an out-of-range nanosecond count (1e9) in place of `i0e`.
        fn replace_ns(self) -> Vec<u8> {
            let key = b"8:mtime-nsi0e";
            let at = self.windows(key.len()).position(|w| w == key).unwrap();
            let mut out = self[..at].to_vec();
            out.extend_from_slice(b"8:mtime-nsi1000000000e");
            out.extend_from_slice(&self[at + key.len()..]);
            out
        }
    }

    #[test]
    fn too_many_trackers_is_refused() {
        let mut r = sample();
        r.trackers = vec![vec![]; MAX_TIERS + 1];
        assert_eq!(decode(&r.encode()), Err(ResumeError::TooManyTrackers));
        r.trackers = vec![vec!["x".repeat(MAX_URL_LEN + 1)]];
        assert_eq!(decode(&r.encode()), Err(ResumeError::Field("trackers")));
    }

    #[test]
    fn file_mismatch_is_found() {
        let r = sample();
        assert_eq!(r.check_files(&r.files), Ok(()));
        let mut now = r.files.clone();
        now[0] = FileStamp::Present {
            size: 1 << 20,
            mtime_s: 1_700_000_000,
            mtime_ns: 123_456_790,
        };
        assert!(matches!(
            r.check_files(&now),
            Err(Mismatch::Changed { file: 0, .. })
        ));
        now[0] = r.files[0];
        now[1] = FileStamp::Present {
            size: 0,
            mtime_s: 0,
            mtime_ns: 0,
        };
        assert!(matches!(
            r.check_files(&now),
            Err(Mismatch::Changed { file: 1, .. })
        ));
        assert!(matches!(
            r.check_files(&now[..1]),
            Err(Mismatch::Count { saved: 2, now: 1 })
        ));
    }
}
