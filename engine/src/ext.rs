//! The extension protocol handshake (BEP 10) and the `ut_metadata` messages (BEP 9), sans-IO.
//!
//! Both travel in EXTENDED frames ([`crate::wire::Message::Extended`]): extended id 0 is the
//! handshake; other ids are the ones the *receiving* side chose in its handshake's `m`
//! dictionary (BEP 10), so we send `ut_metadata` with the peer's id and receive it on ours,
//! [`OUR_UT_METADATA_ID`].
//!
//! Limits (everything here comes from a peer): a handshake payload is at most
//! [`MAX_EXT_HANDSHAKE_LEN`] bytes with at most [`MAX_EXTENSIONS`] entries in `m`;
//! `metadata_size` and `total_size` are at most [`MAX_METADATA_SIZE`]; a metadata data message
//! must carry exactly the length of its piece. Informational fields (`v`, `p`, `reqq`,
//! `yourip`) that are malformed are ignored rather than rejected.
//!
//! Past 500 lines only because of its byte-fixture tests.
//!
//! OWNER: helper B.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bencode::{self, Dict, Value};

/// Largest info dictionary we accept from peers (BEP 9 `metadata_size`), 16 MiB.
pub const MAX_METADATA_SIZE: u32 = 16 * 1024 * 1024;
/// BEP 9: metadata is exchanged in pieces of 16 KiB (the last one may be shorter).
pub const METADATA_PIECE_LEN: u32 = 16 * 1024;
/// Largest extension handshake payload we parse.
pub const MAX_EXT_HANDSHAKE_LEN: usize = 64 * 1024;
/// Most entries accepted in the `m` dictionary.
pub const MAX_EXTENSIONS: usize = 128;
/// Longest client name (`v`) kept; a longer one is ignored.
pub const MAX_CLIENT_NAME_LEN: usize = 256;
/// BEP 10: extended message id 0 is the extension handshake.
pub const EXT_HANDSHAKE_ID: u8 = 0;
/// BEP 9 extension name.
pub const UT_METADATA: &str = "ut_metadata";
/// The extended id on which we receive `ut_metadata` messages (advertised in our `m`).
pub const OUR_UT_METADATA_ID: u8 = 1;
/// BEP 11 extension name.
pub const UT_PEX: &str = "ut_pex";
/// The extended id on which we receive `ut_pex` messages (advertised in our `m`).
pub const OUR_UT_PEX_ID: u8 = 2;

/// A malformed extension message. All variants are the peer's fault (drop the peer), except
/// [`ExtError::UnknownMetadataType`], which BEP 9 says to ignore ([`ExtError::is_ignorable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    #[error("extension message of {len} bytes over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Bencode(#[from] bencode::DecodeError),
    #[error("extension message is not a dictionary")]
    NotADict,
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{0}` has the wrong type or an invalid value")]
    BadField(&'static str),
    #[error("metadata size {0} over the limit of {MAX_METADATA_SIZE} bytes")]
    MetadataTooLarge(i64),
    #[error("`m` has {0} entries, more than {MAX_EXTENSIONS}")]
    TooManyExtensions(usize),
    #[error("metadata piece {piece} out of range for {total_size} bytes of metadata")]
    BadMetadataPiece { piece: u32, total_size: u32 },
    #[error("metadata piece {piece} carries {got} bytes, expected {expected}")]
    BadDataLength {
        piece: u32,
        expected: u32,
        got: usize,
    },
    #[error("data after a ut_metadata request or reject")]
    UnexpectedData,
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownMetadataType(i64),
}

impl ExtError {
    /// True for messages to skip without penalty (BEP 9: unknown message types are ignored).
    pub fn is_ignorable(&self) -> bool {
        matches!(self, ExtError::UnknownMetadataType(_))
    }

    /// True when the message broke one of our limits (sizes and counts no honest client
    /// sends), as opposed to a field of the wrong shape, which a buggy client may send.
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            ExtError::TooLarge { .. }
                | ExtError::MetadataTooLarge(_)
                | ExtError::TooManyExtensions(_)
        )
    }
}

/// The BEP 10 extension handshake dictionary (the fields the engine uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension name to the extended id the sender wants to receive it on; 0 = disabled.
    /// Sorted by name; entries whose id does not fit a byte are dropped.
    pub m: Vec<(String, u8)>,
    /// Client name and version.
    pub v: Option<String>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// BEP 9: size of the info dictionary, 1..=16 MiB.
    pub metadata_size: Option<u32>,
    /// Our address as the sender sees it.
    pub yourip: Option<IpAddr>,
}

impl ExtHandshake {
    /// Our handshake: `ut_metadata` on [`OUR_UT_METADATA_ID`], plus what we know.
    pub fn ours(metadata_size: Option<u32>, listen_port: Option<u16>, reqq: u32) -> Self {
        ExtHandshake {
            m: vec![(UT_METADATA.to_owned(), OUR_UT_METADATA_ID)],
            v: Some(concat!("ringtorrent ", env!("CARGO_PKG_VERSION")).to_owned()),
            p: listen_port,
            reqq: Some(reqq),
            metadata_size,
            yourip: None,
        }
    }

    /// Also offers BEP 11 peer exchange on [`OUR_UT_PEX_ID`] (not for private torrents).
    pub fn with_pex(mut self) -> Self {
        self.m.push((UT_PEX.to_owned(), OUR_UT_PEX_ID));
        self.m.sort();
        self
    }

    /// Tells the peer the address we see it at (BEP 10 `yourip`).
    pub fn with_yourip(mut self, ip: IpAddr) -> Self {
        self.yourip = Some(ip);
        self
    }

    /// The id to send extension `name` with, if the peer enabled it (non-zero id).
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m
            .iter()
            .find(|(n, id)| n == name && *id != 0)
            .map(|&(_, id)| id)
    }

    /// Parses the payload of an EXTENDED message with id 0 (the bytes after the id byte).
    pub fn parse(payload: &[u8]) -> Result<Self, ExtError> {
        if payload.len() > MAX_EXT_HANDSHAKE_LEN {
            return Err(ExtError::TooLarge {
                len: payload.len(),
                max: MAX_EXT_HANDSHAKE_LEN,
            });
        }
        let root = bencode::decode(payload)?;
        let d = root.as_dict().ok_or(ExtError::NotADict)?;
        let m = match d.get(b"m") {
            Some(v) => parse_m(v)?,
            None => Vec::new(),
        };
        let metadata_size = match d.get(b"metadata_size") {
            None => None,
            Some(v) => {
                let size = v.as_int().ok_or(ExtError::BadField("metadata_size"))?;
                Some(checked_metadata_size(size, "metadata_size")?)
            }
        };
        let v = d
            .get(b"v")
            .and_then(|v| v.as_bytes())
            .map(|b| String::from_utf8_lossy(b))
            .filter(|s| s.len() <= MAX_CLIENT_NAME_LEN)
            .map(|s| s.into_owned());
        let int = |key: &[u8]| d.get(key).and_then(|v| v.as_int());
        let p = int(b"p")
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0);
        let reqq = int(b"reqq")
            .and_then(|r| u32::try_from(r).ok())
            .filter(|&r| r != 0);
        let yourip = d.get(b"yourip").and_then(|v| v.as_bytes()).and_then(ip);
        Ok(ExtHandshake {
            m,
            v,
            p,
            reqq,
            metadata_size,
            yourip,
        })
    }

    /// Appends the bencoded dictionary (the EXTENDED payload after the id byte).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut m = Dict::new();
        for (name, id) in &self.m {
            m.insert(name.as_bytes(), Value::int(i64::from(*id)));
        }
        let ip_bytes: Option<Vec<u8>> = self.yourip.map(|ip| match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        });
        let mut d = Dict::new().with(b"m", Value::dict(m));
        if let Some(size) = self.metadata_size {
            d.insert(b"metadata_size", Value::int(i64::from(size)));
        }
        if let Some(p) = self.p {
            d.insert(b"p", Value::int(i64::from(p)));
        }
        if let Some(r) = self.reqq {
            d.insert(b"reqq", Value::int(i64::from(r)));
        }
        if let Some(v) = &self.v {
            d.insert(b"v", Value::bytes(v.as_bytes()));
        }
        if let Some(b) = &ip_bytes {
            d.insert(b"yourip", Value::bytes(b));
        }
        Value::dict(d).encode_to(out);
    }
}

/// BEP 10 `m`: a dictionary of name -> integer id. Entries that are not UTF-8 names with ids in
/// 0..=255 are skipped (they are unusable, not harmful).
fn parse_m(v: &Value<'_>) -> Result<Vec<(String, u8)>, ExtError> {
    let d = v.as_dict().ok_or(ExtError::BadField("m"))?;
    if d.len() > MAX_EXTENSIONS {
        return Err(ExtError::TooManyExtensions(d.len()));
    }
    let mut m = Vec::with_capacity(d.len());
    for (name, id) in d.iter() {
        let name = std::str::from_utf8(name).ok();
        let id = id.as_int().and_then(|i| u8::try_from(i).ok());
        if let (Some(name), Some(id)) = (name, id) {
            m.push((name.to_owned(), id));
        }
    }
    Ok(m)
}

/// A compact address: 4 bytes IPv4, 16 bytes IPv6 (BEP 10 `yourip`).
fn ip(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(a)));
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

fn checked_metadata_size(size: i64, field: &'static str) -> Result<u32, ExtError> {
    if size <= 0 {
        return Err(ExtError::BadField(field));
    }
    u32::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_METADATA_SIZE)
        .ok_or(ExtError::MetadataTooLarge(size))
}

/// Number of 16 KiB metadata pieces for `total_size` bytes (BEP 9).
pub fn metadata_pieces(total_size: u32) -> u32 {
    total_size.div_ceil(METADATA_PIECE_LEN)
}

/// Length of metadata piece `piece`, or `None` if it is out of range.
pub fn metadata_piece_len(total_size: u32, piece: u32) -> Option<u32> {
    let start = piece.checked_mul(METADATA_PIECE_LEN)?;
    (start < total_size).then(|| (total_size - start).min(METADATA_PIECE_LEN))
}

/// A BEP 9 `ut_metadata` message. `Data` borrows the piece from the received payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg<'a> {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u32,
        data: &'a [u8],
    },
    Reject {
        piece: u32,
    },
}

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

impl<'a> MetadataMsg<'a> {
    /// Parses an EXTENDED payload received on our `ut_metadata` id: a bencoded dictionary,
    /// followed, for `Data`, by exactly the bytes of the piece.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ExtError> {
        let (root, used) = bencode::decode_prefix(payload)?;
        let d = root.as_dict().ok_or(ExtError::NotADict)?;
        let field = |key: &'static str| -> Result<i64, ExtError> {
            d.get(key.as_bytes())
                .ok_or(ExtError::MissingField(key))?
                .as_int()
                .ok_or(ExtError::BadField(key))
        };
        let msg_type = field("msg_type")?;
        if !matches!(msg_type, MSG_REQUEST | MSG_DATA | MSG_REJECT) {
            return Err(ExtError::UnknownMetadataType(msg_type));
        }
        let piece = u32::try_from(field("piece")?).map_err(|_| ExtError::BadField("piece"))?;
        let data = &payload[used..];
        if msg_type != MSG_DATA {
            if !data.is_empty() {
                return Err(ExtError::UnexpectedData);
            }
            return Ok(if msg_type == MSG_REQUEST {
                MetadataMsg::Request { piece }
            } else {
                MetadataMsg::Reject { piece }
            });
        }
        let total_size = checked_metadata_size(field("total_size")?, "total_size")?;
        let expected = metadata_piece_len(total_size, piece)
            .ok_or(ExtError::BadMetadataPiece { piece, total_size })?;
        if data.len() != expected as usize {
            return Err(ExtError::BadDataLength {
                piece,
                expected,
                got: data.len(),
            });
        }
        Ok(MetadataMsg::Data {
            piece,
            total_size,
            data,
        })
    }

    /// Appends the payload (dictionary, then the piece for `Data`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, piece) = match *self {
            MetadataMsg::Request { piece } => (MSG_REQUEST, piece),
            MetadataMsg::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMsg::Reject { piece } => (MSG_REJECT, piece),
        };
        let mut d = Dict::new()
            .with(b"msg_type", Value::int(msg_type))
            .with(b"piece", Value::int(i64::from(piece)));
        if let MetadataMsg::Data { total_size, .. } = *self {
            d.insert(b"total_size", Value::int(i64::from(total_size)));
        }
        Value::dict(d).encode_to(out);
        if let MetadataMsg::Data { data, .. } = *self {
            out.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake as libtorrent sends it, written out by hand from BEP 10 / BEP 9.
    fn handshake_fixture() -> Vec<u8> {
        [
            &b"d1:md11:ut_metadatai3e6:ut_pexi0ee13:metadata_sizei31235e1:pi6881e"[..],
            b"4:reqqi500e1:v18:libtorrent/2.0.8.06:yourip4:\x7f\x00\x00\x01e",
        ]
        .concat()
    }

    #[test]
    fn parses_a_full_handshake() {
        let h = ExtHandshake::parse(&handshake_fixture()).unwrap();
        assert_eq!(
            h.m,
            vec![("ut_metadata".to_owned(), 3), ("ut_pex".to_owned(), 0)]
        );
        assert_eq!(h.id_of(UT_METADATA), Some(3));
        assert_eq!(h.id_of("ut_pex"), None, "id 0 means disabled");
        assert_eq!(h.metadata_size, Some(31235));
        assert_eq!(h.p, Some(6881));
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.v.as_deref(), Some("libtorrent/2.0.8.0"));
        assert_eq!(h.yourip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, handshake_fixture(), "canonical encoding round-trips");
    }

    #[test]
    fn ours_encodes_canonically() {
        let mut out = Vec::new();
        ExtHandshake::ours(Some(100), Some(51413), 250).encode(&mut out);
        let v = concat!("ringtorrent ", env!("CARGO_PKG_VERSION"));
        let want = format!(
            "d1:md11:ut_metadatai1ee13:metadata_sizei100e1:pi51413e4:reqqi250e1:v{}:{}e",
            v.len(),
            v
        );
        assert_eq!(out, want.as_bytes());
        let back = ExtHandshake::parse(&out).unwrap();
        assert_eq!(back.id_of(UT_METADATA), Some(OUR_UT_METADATA_ID));
    }

    #[test]
    fn minimal_and_lenient_fields() {
        assert_eq!(ExtHandshake::parse(b"de").unwrap(), ExtHandshake::default());
        // Unusable m entries and malformed informational fields are dropped, not fatal.
        let h = ExtHandshake::parse(
            b"d1:md1:ai300e1:bi-1e1:c1:x1:di7ee1:pi70000e4:reqqi-5e1:vi5e6:yourip3:abce",
        )
        .unwrap();
        assert_eq!(h.m, vec![("d".to_owned(), 7)]);
        assert_eq!((h.p, h.reqq, h.v, h.yourip), (None, None, None, None));
        let h = ExtHandshake::parse(b"d6:yourip16:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01e").unwrap();
        assert_eq!(h.yourip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn bad_handshakes() {
        assert!(matches!(
            ExtHandshake::parse(b"d1:m"),
            Err(ExtError::Bencode(_))
        ));
        assert!(matches!(
            ExtHandshake::parse(b"dee"),
            Err(ExtError::Bencode(_))
        ));
        assert_eq!(ExtHandshake::parse(b"li1ee"), Err(ExtError::NotADict));
        assert_eq!(
            ExtHandshake::parse(b"d1:mi1ee"),
            Err(ExtError::BadField("m"))
        );
        assert_eq!(
            ExtHandshake::parse(b"d13:metadata_sizei16777217ee"),
            Err(ExtError::MetadataTooLarge(16_777_217))
        );
        assert!(ExtHandshake::parse(b"d13:metadata_sizei16777216ee").is_ok());
        assert_eq!(
            ExtHandshake::parse(b"d13:metadata_sizei0ee"),
            Err(ExtError::BadField("metadata_size"))
        );
        assert_eq!(
            ExtHandshake::parse(b"d13:metadata_size1:5e"),
            Err(ExtError::BadField("metadata_size"))
        );
        let big = vec![b' '; MAX_EXT_HANDSHAKE_LEN + 1];
        assert_eq!(
            ExtHandshake::parse(&big),
            Err(ExtError::TooLarge {
                len: big.len(),
                max: MAX_EXT_HANDSHAKE_LEN
            })
        );
        let mut many = b"d1:md".to_vec();
        for i in 0..=MAX_EXTENSIONS {
            many.extend_from_slice(format!("4:e{i:03}i1e").as_bytes());
        }
        many.extend_from_slice(b"ee");
        assert_eq!(
            ExtHandshake::parse(&many),
            Err(ExtError::TooManyExtensions(MAX_EXTENSIONS + 1))
        );
    }

    #[test]
    fn metadata_messages_both_ways() {
        let data = vec![0x5a; 100];
        let cases: Vec<(MetadataMsg<'_>, Vec<u8>)> = vec![
            (
                MetadataMsg::Request { piece: 0 },
                b"d8:msg_typei0e5:piecei0ee".to_vec(),
            ),
            (
                MetadataMsg::Reject { piece: 2 },
                b"d8:msg_typei2e5:piecei2ee".to_vec(),
            ),
            (
                MetadataMsg::Data {
                    piece: 1,
                    total_size: 16484,
                    data: &data,
                },
                [&b"d8:msg_typei1e5:piecei1e10:total_sizei16484ee"[..], &data].concat(),
            ),
        ];
        for (msg, bytes) in cases {
            let mut out = Vec::new();
            msg.encode(&mut out);
            assert_eq!(out, bytes);
            assert_eq!(MetadataMsg::parse(&bytes), Ok(msg));
        }
    }

    #[test]
    fn bad_metadata_messages() {
        let p = |b: &[u8]| MetadataMsg::parse(b).map(|_| ());
        assert_eq!(
            p(b"d8:msg_typei7e5:piecei0ee"),
            Err(ExtError::UnknownMetadataType(7))
        );
        assert!(ExtError::UnknownMetadataType(7).is_ignorable());
        assert_eq!(p(b"d5:piecei0ee"), Err(ExtError::MissingField("msg_type")));
        assert_eq!(p(b"d8:msg_typei0ee"), Err(ExtError::MissingField("piece")));
        assert_eq!(
            p(b"d8:msg_typei0e5:piecei-1ee"),
            Err(ExtError::BadField("piece"))
        );
        assert_eq!(
            p(b"d8:msg_typei0e5:piece1:0e"),
            Err(ExtError::BadField("piece"))
        );
        assert_eq!(
            p(b"d8:msg_typei0e5:piecei0eexyz"),
            Err(ExtError::UnexpectedData)
        );
        assert_eq!(p(b"i1e"), Err(ExtError::NotADict));
        assert!(matches!(p(b""), Err(ExtError::Bencode(_))));
        let data_msg = |piece: u32, total: i64, len: usize| {
            let head = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{total}ee");
            [head.as_bytes(), &vec![0u8; len]].concat()
        };
        assert_eq!(p(&data_msg(0, 100, 100)), Ok(()));
        assert_eq!(p(&data_msg(0, 16384, 16384)), Ok(()));
        assert_eq!(
            p(&data_msg(0, 100, 99)),
            Err(ExtError::BadDataLength {
                piece: 0,
                expected: 100,
                got: 99
            })
        );
        assert_eq!(
            p(&data_msg(0, 20000, 20000)),
            Err(ExtError::BadDataLength {
                piece: 0,
                expected: 16384,
                got: 20000
            })
        );
        assert_eq!(
            p(&data_msg(1, 16384, 0)),
            Err(ExtError::BadMetadataPiece {
                piece: 1,
                total_size: 16384
            })
        );
        assert_eq!(
            p(&data_msg(0, 16_777_217, 0)),
            Err(ExtError::MetadataTooLarge(16_777_217))
        );
        assert_eq!(p(&data_msg(0, 0, 0)), Err(ExtError::BadField("total_size")));
        assert_eq!(
            p(b"d8:msg_typei1e5:piecei0ee"),
            Err(ExtError::MissingField("total_size"))
        );
    }

    #[test]
    fn metadata_piece_geometry() {
        assert_eq!(metadata_pieces(1), 1);
        assert_eq!(metadata_pieces(16384), 1);
        assert_eq!(metadata_pieces(16385), 2);
        assert_eq!(metadata_piece_len(16385, 1), Some(1));
        assert_eq!(metadata_piece_len(16385, 2), None);
        assert_eq!(metadata_piece_len(16384, u32::MAX), None);
    }
}
