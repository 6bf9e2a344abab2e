//! BEP 9 metadata exchange, fetching side, sans-IO: how a magnet link becomes a torrent.
//!
//! Two parts:
//! - [`MetadataFetch`]: one per magnet. It hands out the 16 KiB pieces of the info dictionary
//!   to the peers that have it (several at once), assembles them, and checks the SHA-1 of the
//!   whole against the info-hash. On a mismatch it cannot tell which peer lied when several
//!   contributed, so every contributor gets a strike and the next attempts take all pieces from
//!   one peer each ("solo"): a peer whose solo attempt fails, or that reaches
//!   [`MAX_STRIKES`], is banned. A peer that disagrees with the attempt's `metadata_size` waits
//!   until the attempt fails.
//! - [`MetadataPeer`]: the byte-level side of one connection used only to fetch metadata: our
//!   handshake, theirs, the BEP 10 extension handshake, `ut_metadata` requests out and
//!   data/reject messages in. Everything else the peer says is read (framing is checked by
//!   [`crate::wire::Reader`]) and ignored.
//!
//! Limits: the size is at most [`crate::ext::MAX_METADATA_SIZE`] (16 MiB, checked when the
//! extension handshake is parsed); a peer has at most [`MAX_REQUESTS_PER_PEER`] pieces
//! requested; a request unanswered for the caller's timeout is handed to someone else.
//! Time is a parameter.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::bencode::Value;
use crate::ext::{self, ExtHandshake, MetadataMsg, UT_METADATA};
use crate::handshake::{Handshake, HandshakeError, HANDSHAKE_LEN};
use crate::types::{InfoHash, PeerId};
use crate::wire::{self, Message, Reader, ReaderConfig};

/// Pieces requested from one peer at a time.
pub const MAX_REQUESTS_PER_PEER: usize = 16;
/// Failed attempts a peer may contribute to before it is banned.
pub const MAX_STRIKES: u32 = 2;

/// Who supplies pieces: the caller's key for a connection.
pub type PeerKey = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Missing,
    Requested { peer: PeerKey, at: Instant },
    Have { peer: PeerKey },
}

struct Attempt {
    size: u32,
    slots: Vec<Slot>,
    data: Vec<u8>,
    /// In solo mode only this peer fills the attempt.
    solo: Option<PeerKey>,
}

/// What one data message did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More pieces are needed.
    More,
    /// The info dictionary, verified against the info-hash.
    Done(Vec<u8>),
    /// The assembled bytes did not hash to the info-hash; these peers are banned now.
    HashMismatch { banned: Vec<PeerKey> },
}

/// Assembles one torrent's info dictionary from many peers. See the module doc.
pub struct MetadataFetch {
    info_hash: InfoHash,
    /// Each ready peer's claimed size.
    peers: HashMap<PeerKey, u32>,
    attempt: Option<Attempt>,
    strikes: HashMap<PeerKey, u32>,
    banned: HashSet<PeerKey>,
    /// Set after the first failure: attempts are filled by one peer each.
    solo_mode: bool,
    /// Sizes that failed (a peer claiming only those is not asked again).
    failed_sizes: HashSet<u32>,
}

impl MetadataFetch {
    pub fn new(info_hash: InfoHash) -> Self {
        MetadataFetch {
            info_hash,
            peers: HashMap::new(),
            attempt: None,
            strikes: HashMap::new(),
            banned: HashSet::new(),
            solo_mode: false,
            failed_sizes: HashSet::new(),
        }
    }

    /// Peers that said they have the metadata and are not banned.
    pub fn ready_peers(&self) -> usize {
        self.peers.len()
    }

    pub fn is_banned(&self, peer: PeerKey) -> bool {
        self.banned.contains(&peer)
    }

    /// A peer's extension handshake announced `size` bytes of metadata.
    pub fn peer_ready(&mut self, peer: PeerKey, size: u32) {
        if !self.banned.contains(&peer) {
            self.peers.insert(peer, size);
        }
    }

    /// The peer is gone: its requested pieces go back to missing.
    pub fn peer_gone(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
        if let Some(a) = &mut self.attempt {
            for s in &mut a.slots {
                if matches!(*s, Slot::Requested { peer: p, .. } if p == peer) {
                    *s = Slot::Missing;
                }
            }
            if a.solo == Some(peer) {
                // Its pieces cannot be mixed with another's in solo mode: start over.
                self.attempt = None;
            }
        }
    }

    /// The peer rejected piece `piece`: it goes back to missing.
    pub fn on_reject(&mut self, peer: PeerKey, piece: u32) {
        if let Some(slot) = self.slot_mut(piece) {
            if matches!(*slot, Slot::Requested { peer: p, .. } if p == peer) {
                *slot = Slot::Missing;
            }
        }
    }

    /// Requests older than `timeout` go back to missing.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        if let Some(a) = &mut self.attempt {
            for s in &mut a.slots {
                if matches!(*s, Slot::Requested { at, .. } if now.saturating_duration_since(at) >= timeout)
                {
                    *s = Slot::Missing;
                }
            }
        }
    }

    /// The pieces to request from `peer` now (marked requested).
    pub fn requests(&mut self, peer: PeerKey, now: Instant) -> Vec<u32> {
        let Some(&size) = self.peers.get(&peer) else {
            return Vec::new();
        };
        if self.failed_sizes.contains(&size) {
            return Vec::new();
        }
        let attempt = self.attempt.get_or_insert_with(|| Attempt {
            size,
            slots: vec![Slot::Missing; ext::metadata_pieces(size) as usize],
            data: vec![0; size as usize],
            solo: self.solo_mode.then_some(peer),
        });
        if attempt.size != size || attempt.solo.is_some_and(|s| s != peer) {
            return Vec::new();
        }
        let mut busy = attempt
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Requested { peer: p, .. } if *p == peer))
            .count();
        let mut out = Vec::new();
        for (i, s) in attempt.slots.iter_mut().enumerate() {
            if busy >= MAX_REQUESTS_PER_PEER {
                break;
            }
            if *s == Slot::Missing {
                *s = Slot::Requested { peer, at: now };
                busy += 1;
                out.push(i as u32);
            }
        }
        out
    }

    /// A data message from `peer` (already checked by [`MetadataMsg::parse`]: `data` has the
    /// length of `piece` for `total_size`).
    pub fn on_data(&mut self, peer: PeerKey, piece: u32, total_size: u32, data: &[u8]) -> Progress {
        let Some(a) = &mut self.attempt else {
            return Progress::More;
        };
        if a.size != total_size {
            return Progress::More;
        }
        let Some(slot) = a.slots.get_mut(piece as usize) else {
            return Progress::More;
        };
        // Only the peer we asked fills a slot (unrequested data is ignored).
        if !matches!(*slot, Slot::Requested { peer: p, .. } if p == peer) {
            return Progress::More;
        }
        let start = piece as usize * ext::METADATA_PIECE_LEN as usize;
        let Some(dst) = a.data.get_mut(start..start + data.len()) else {
            return Progress::More;
        };
        dst.copy_from_slice(data);
        *slot = Slot::Have { peer };
        if a.slots.iter().any(|s| !matches!(s, Slot::Have { .. })) {
            return Progress::More;
        }
        let Some(a) = self.attempt.take() else {
            return Progress::More;
        };
        if crate::metainfo::info_hash_of(&a.data) == self.info_hash {
            return Progress::Done(a.data);
        }
        self.failed(a)
    }

    fn failed(&mut self, a: Attempt) -> Progress {
        let contributors: HashSet<PeerKey> = a
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Have { peer } => Some(*peer),
                _ => None,
            })
            .collect();
        let mut banned = Vec::new();
        for &p in &contributors {
            let strikes = self.strikes.entry(p).or_insert(0);
            *strikes += 1;
            if contributors.len() == 1 || *strikes >= MAX_STRIKES {
                banned.push(p);
            }
        }
        for p in &banned {
            self.banned.insert(*p);
            self.peers.remove(p);
        }
        self.solo_mode = true;
        // A size that only banned peers claimed is not tried again.
        if !self.peers.values().any(|&s| s == a.size) {
            self.failed_sizes.insert(a.size);
        }
        banned.sort_unstable();
        Progress::HashMismatch { banned }
    }

    fn slot_mut(&mut self, piece: u32) -> Option<&mut Slot> {
        self.attempt.as_mut()?.slots.get_mut(piece as usize)
    }
}

/// Why a metadata connection is dropped (the peer's fault, or it cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataPeerError {
    #[error("bad handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("peer answered for another torrent")]
    WrongInfoHash,
    #[error("peer does not support the extension protocol (BEP 10)")]
    NoExtensions,
    #[error("peer does not offer ut_metadata or did not say the metadata size")]
    NoMetadata,
    #[error("bad extension message: {0}")]
    Ext(#[from] ext::ExtError),
    #[error("bad message: {0}")]
    Wire(wire::DecodeError),
    #[error("reader fed again after an error")]
    Poisoned,
}

/// What a metadata connection learned from one [`MetadataPeer::feed`].
#[derive(Debug, PartialEq, Eq)]
pub enum MetaEvent {
    /// The peer has `size` bytes of metadata and takes requests.
    Ready {
        size: u32,
    },
    Data {
        piece: u32,
        total_size: u32,
        data: Vec<u8>,
    },
    Reject {
        piece: u32,
    },
}

enum Phase {
    Handshake(Vec<u8>),
    Active {
        reader: Box<Reader>,
        ut_metadata: Option<u8>,
    },
}

/// One connection that fetches metadata (see the module doc).
pub struct MetadataPeer {
    info_hash: InfoHash,
    phase: Phase,
    /// Bytes to send.
    pub out: Vec<u8>,
}

impl MetadataPeer {
    /// Queues our handshake and our extension handshake.
    pub fn new(info_hash: InfoHash, our_id: PeerId, listen_port: Option<u16>) -> Self {
        let mut out = Handshake::ours(info_hash, our_id).to_bytes().to_vec();
        let mut payload = Vec::new();
        ExtHandshake::ours(None, listen_port, MAX_REQUESTS_PER_PEER as u32).encode(&mut payload);
        wire::encode(
            &Message::Extended {
                id: 0,
                payload: &payload,
            },
            &mut out,
        );
        MetadataPeer {
            info_hash,
            phase: Phase::Handshake(Vec::with_capacity(HANDSHAKE_LEN)),
            out,
        }
    }

    /// Queues a request for metadata piece `piece` (after [`MetaEvent::Ready`]).
    pub fn request(&mut self, piece: u32) {
        if let Phase::Active {
            ut_metadata: Some(id),
            ..
        } = self.phase
        {
            let mut payload = Vec::new();
            MetadataMsg::Request { piece }.encode(&mut payload);
            wire::encode(
                &Message::Extended {
                    id,
                    payload: &payload,
                },
                &mut self.out,
            );
        }
    }

    /// Reads received bytes; appends what they meant to `events`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        events: &mut Vec<MetaEvent>,
    ) -> Result<(), MetadataPeerError> {
        if let Phase::Handshake(buf) = &mut self.phase {
            let take = (HANDSHAKE_LEN - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if buf.len() < HANDSHAKE_LEN {
                return Ok(());
            }
            let hs = Handshake::parse(buf)?;
            if hs.info_hash != self.info_hash {
                return Err(MetadataPeerError::WrongInfoHash);
            }
            if !hs.supports_extensions() {
                return Err(MetadataPeerError::NoExtensions);
            }
            self.phase = Phase::Active {
                reader: Box::new(Reader::with_config(ReaderConfig::default())),
                ut_metadata: None,
            };
        }
        let Phase::Active {
            reader,
            ut_metadata,
        } = &mut self.phase
        else {
            return Ok(());
        };
        let res = reader.feed(data, |ev| -> Result<(), MetadataPeerError> {
            let wire::Event::Msg(Message::Extended { id, payload }) = ev else {
                return Ok(());
            };
            if id == ext::EXT_HANDSHAKE_ID {
                let hs = ExtHandshake::parse(payload)?;
                let (Some(peer_id), Some(size)) = (hs.id_of(UT_METADATA), hs.metadata_size) else {
                    return Err(MetadataPeerError::NoMetadata);
                };
                *ut_metadata = Some(peer_id);
                events.push(MetaEvent::Ready { size });
            } else if id == ext::OUR_UT_METADATA_ID {
                match MetadataMsg::parse(payload) {
                    Ok(MetadataMsg::Data {
                        piece,
                        total_size,
                        data,
                    }) => events.push(MetaEvent::Data {
                        piece,
                        total_size,
                        data: data.to_vec(),
                    }),
                    Ok(MetadataMsg::Reject { piece }) => events.push(MetaEvent::Reject { piece }),
                    // We have nothing to serve yet; BEP 9 lets us reject, silence is as good.
                    Ok(MetadataMsg::Request { .. }) => {}
                    Err(e) if e.is_ignorable() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        });
        res.map_err(|e| match e {
            wire::ReadError::Handler(e) => e,
            wire::ReadError::Decode(e) => MetadataPeerError::Wire(e),
            wire::ReadError::Poisoned => MetadataPeerError::Poisoned,
        })
    }
}

/// A .torrent file around an info dictionary: `announce` (the first tracker) and
/// `announce-list` (the tiers, BEP 12), then `info` byte for byte as received.
pub fn torrent_file(info_bytes: &[u8], tiers: &[Vec<String>]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    let tiers: Vec<&Vec<String>> = tiers.iter().filter(|t| !t.is_empty()).collect();
    if let Some(first) = tiers.first().and_then(|t| t.first()) {
        Value::bytes(b"announce").encode_to(&mut out);
        Value::bytes(first.as_bytes()).encode_to(&mut out);
        let list = tiers
            .iter()
            .map(|t| Value::list(t.iter().map(|u| Value::bytes(u.as_bytes())).collect()))
            .collect();
        Value::bytes(b"announce-list").encode_to(&mut out);
        Value::list(list).encode_to(&mut out);
    }
    Value::bytes(b"info").encode_to(&mut out);
    out.extend_from_slice(info_bytes);
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests;
