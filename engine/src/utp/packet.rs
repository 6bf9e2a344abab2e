//! The uTP datagram (BEP 29, "Header format" and "Extension"): a 20-byte header, a chain of
//! extensions, then the payload.
//!
//! ```text
//! 0       4       8               16              24              32
//! +-------+-------+---------------+---------------+---------------+
//! | type  | ver   | extension     | connection_id                 |
//! +-------+-------+---------------+---------------+---------------+
//! | timestamp_microseconds                                        |
//! | timestamp_difference_microseconds                             |
//! | wnd_size                                                      |
//! | seq_nr                        | ack_nr                        |
//! +---------------+---------------+---------------+---------------+
//! ```
//!
//! All fields big-endian. Each extension is `next type (u8), length (u8), bytes`; type 0 ends
//! the chain, type 1 is the selective ACK (BEP 29, "Selective ACK"). Unknown extensions are
//! skipped. Limits: at most [`MAX_EXTENSIONS`] links, a SACK of 1 to [`MAX_SACK_LEN`] bytes (BEP 29 asks for a multiple of 4, but libtorrent
//! 2.0 sends any length, e.g. 1, 5 or 9 bytes),
//! a multiple of 4, and at most one SACK per packet.

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version (BEP 29).
pub const VERSION: u8 = 1;
/// Extension type of the selective ACK.
pub const EXT_SACK: u8 = 1;
/// Most extensions one packet may chain.
pub const MAX_EXTENSIONS: usize = 8;
/// Most bytes of a SACK bitmask we accept or send (1024 packets past `ack_nr + 1`).
pub const MAX_SACK_LEN: usize = 128;

/// The packet types (BEP 29, "type").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// Payload, consumes a sequence number.
    Data = 0,
    /// Our last packet: no sequence number after it (consumes one).
    Fin = 1,
    /// An ACK: no payload, does not consume a sequence number.
    State = 2,
    /// Abort (or "no such connection").
    Reset = 3,
    /// Opens a connection; consumes a sequence number.
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
}

/// The fixed header of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the packet is.
    pub ty: PacketType,
    /// The receiver's id (the initiator's recv id in a SYN).
    pub connection_id: u16,
    /// The sender's clock when it sent the packet, µs, wrapping.
    pub timestamp_us: u32,
    /// The sender's last one-way delay sample: its receive time minus our timestamp.
    pub timestamp_diff_us: u32,
    /// The sender's receive window, bytes.
    pub wnd_size: u32,
    /// The packet's sequence number (the next one to come, in a STATE).
    pub seq_nr: u16,
    /// The last sequence number the sender received in order.
    pub ack_nr: u16,
}

/// A parsed datagram, borrowing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective ACK bitmask, if the packet carries one (1 to [`MAX_SACK_LEN`] bytes).
    pub sack: Option<&'a [u8]>,
    /// What follows the extensions.
    pub payload: &'a [u8],
    payload_offset: usize,
}

/// Why a datagram is not a uTP packet. Always the remote's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than the header.
    #[error("uTP datagram of {0} bytes is shorter than the header")]
    TooShort(usize),
    /// A version other than 1.
    #[error("uTP version {0} (only 1 exists)")]
    BadVersion(u8),
    /// A type nibble above 4.
    #[error("uTP packet type {0} is unknown")]
    UnknownType(u8),
    /// An extension runs past the end of the datagram.
    #[error("uTP extension runs past the end of the datagram")]
    TruncatedExtension,
    /// More than [`MAX_EXTENSIONS`] extensions.
    #[error("uTP extension chain longer than {MAX_EXTENSIONS}")]
    TooManyExtensions,
    /// A SACK length that is 0 or above [`MAX_SACK_LEN`].
    #[error("uTP selective ACK of {0} bytes")]
    BadSackLen(usize),
    /// Two SACK extensions in one packet.
    #[error("uTP packet with two selective ACKs")]
    DuplicateSack,
}

impl<'a> Packet<'a> {
    /// Parses one datagram.
    pub fn parse(datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let Some((fixed, mut rest)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(PacketError::TooShort(datagram.len()));
        };
        let version = fixed[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let ty = PacketType::from_nibble(fixed[0] >> 4)
            .ok_or(PacketError::UnknownType(fixed[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
        let u32_at =
            |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let header = Header {
            ty,
            connection_id: u16_at(2),
            timestamp_us: u32_at(4),
            timestamp_diff_us: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
        };
        let mut next = fixed[1];
        let mut sack = None;
        let mut count = 0;
        while next != 0 {
            count += 1;
            if count > MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions);
            }
            let [following, len, body @ ..] = rest else {
                return Err(PacketError::TruncatedExtension);
            };
            let len = usize::from(*len);
            let Some((bytes, after)) = body.split_at_checked(len) else {
                return Err(PacketError::TruncatedExtension);
            };
            if next == EXT_SACK {
                if len == 0 || len > MAX_SACK_LEN {
                    return Err(PacketError::BadSackLen(len));
                }
                if sack.replace(bytes).is_some() {
                    return Err(PacketError::DuplicateSack);
                }
            }
            next = *following;
            rest = after;
        }
        Ok(Packet {
            header,
            sack,
            payload: rest,
            payload_offset: datagram.len() - rest.len(),
        })
    }

    /// Where the payload starts in the datagram (so the caller can lend `&mut datagram[off..]`).
    pub fn payload_offset(&self) -> usize {
        self.payload_offset
    }
}

/// Writes a header (+ optional SACK extension) followed by `payload` into `out` (cleared
/// first). A SACK is cut to [`MAX_SACK_LEN`] and to a multiple of 4 bytes; an empty one is
/// left out.
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let sack = sack
        .map(|s| &s[..s.len().min(MAX_SACK_LEN) / 4 * 4])
        .filter(|s| !s.is_empty());
    out.push(((header.ty as u8) << 4) | VERSION);
    out.push(if sack.is_some() { EXT_SACK } else { 0 });
    out.extend_from_slice(&header.connection_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp_us.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.to_be_bytes());
    if let Some(sack) = sack {
        // INVARIANT: cut to MAX_SACK_LEN (128) above, so it fits the u8 length.
        let len = u8::try_from(sack.len()).expect("SACK cut to MAX_SACK_LEN");
        out.extend_from_slice(&[0, len]);
        out.extend_from_slice(sack);
    }
    out.extend_from_slice(payload);
}

/// A RESET for an unknown connection (the shard answers stray packets with it): it carries
/// the stray's connection id back (as libutp does), acks the stray's `seq_nr`, and echoes its
/// timestamp as a delay sample.
pub fn reset_for(stray: &Header, now_us: u32, out: &mut Vec<u8>) {
    let header = Header {
        ty: PacketType::Reset,
        connection_id: stray.connection_id,
        timestamp_us: now_us,
        timestamp_diff_us: now_us.wrapping_sub(stray.timestamp_us),
        wnd_size: 0,
        seq_nr: stray.ack_nr.wrapping_add(1),
        ack_nr: stray.seq_nr,
    };
    encode(&header, None, &[], out);
}

/// Sets bit `i` of a SACK bitmask: packet `ack_nr + 2 + i` was received (BEP 29: bit 0 of
/// byte 0 is `ack_nr + 2`, bytes in order, least significant bit first).
pub fn sack_set(mask: &mut [u8], i: usize) {
    if let Some(b) = mask.get_mut(i / 8) {
        *b |= 1 << (i % 8);
    }
}

/// The indices `i` whose bit is set in a SACK bitmask, lowest first (see [`sack_set`]).
pub fn sack_bits(mask: &[u8]) -> impl Iterator<Item = usize> + '_ {
    mask.iter().enumerate().flat_map(|(byte, &b)| {
        (0..8)
            .filter(move |bit| b & (1 << bit) != 0)
            .map(move |bit| byte * 8 + bit)
    })
}
