//! BEP 10 extension messages on a data connection: the extension handshake both ways,
//! serving our info dictionary to peers that fetch it (BEP 9), and peer exchange (BEP 11).
//!
//! Limits: a peer gets at most [`MAX_METADATA_SERVED`] metadata pieces per connection (then
//! rejects), which is enough to fetch the dictionary a few times over; PEX messages are parsed
//! and rate-limited by [`crate::pex::PexState`]; learned addresses wait in `learned` for the
//! shard, at most [`MAX_LEARNED`] at a time. PEX is off for private torrents (BEP 27).

use std::net::SocketAddr;
use std::time::Instant;

use super::{PeerError, PeerSession};
use crate::ext::{self, ExtHandshake, MetadataMsg, OUR_UT_METADATA_ID, OUR_UT_PEX_ID};
use crate::pex::{PexMessage, PexPeer, PexState};
use crate::torrent::TorrentShared;
use crate::wire::{self, Message};

/// Metadata pieces served to one connection before we reject further requests.
pub const MAX_METADATA_SERVED: u32 = 4 * (crate::ext::MAX_METADATA_SIZE / ext::METADATA_PIECE_LEN);
/// Peer addresses learned through PEX and not yet taken by the shard.
pub const MAX_LEARNED: usize = 200;

/// The extension state of one connection.
#[derive(Default)]
pub struct Extensions {
    /// The ids the peer receives `ut_metadata` / `ut_pex` on (0 or absent: not supported).
    peer_ut_metadata: Option<u8>,
    peer_ut_pex: Option<u8>,
    /// Where the peer accepts connections (its address with BEP 10 `p`), once known.
    listen_addr: Option<SocketAddr>,
    listen_addr_reported: bool,
    metadata_served: u32,
    /// PEX with this peer, once it offered `ut_pex` (never on a private torrent).
    pex: Option<PexState>,
    /// Addresses the peer told us about (PEX), for the shard to dial.
    pub learned: Vec<SocketAddr>,
    /// The client name from its extension handshake (`v`, length-capped by the parser).
    pub client: Option<String>,
}

impl PeerSession {
    /// Our extension handshake (queued by `new`): `ut_metadata` with our info dictionary's
    /// size, `ut_pex` unless the torrent is private, our listen port, `reqq`, the client name
    /// and the address we see the peer at.
    pub(super) fn send_ext_handshake(&mut self, t: &TorrentShared) {
        let size = u32::try_from(t.meta.info_bytes.len())
            .ok()
            .filter(|&s| s > 0);
        let mut hs = ExtHandshake::ours(size, t.listen_port(), super::MAX_QUEUED_REQUESTS as u32)
            .with_yourip(self.addr.ip());
        if t.pex_allowed() {
            hs = hs.with_pex();
        }
        let mut payload = Vec::new();
        hs.encode(&mut payload);
        wire::encode(
            &Message::Extended {
                id: 0,
                payload: &payload,
            },
            &mut self.out,
        );
    }

    /// An EXTENDED message. A handshake of the wrong shape only costs the peer its
    /// extensions (a buggy client); one over our limits (a metadata size over 16 MiB, more
    /// than 128 extensions) drops it, as does a malformed `ut_metadata` or `ut_pex` message.
    pub(super) fn on_extended(
        &mut self,
        id: u8,
        payload: &[u8],
        now: Instant,
        t: &TorrentShared,
    ) -> Result<(), PeerError> {
        match id {
            ext::EXT_HANDSHAKE_ID => {
                let hs = match ExtHandshake::parse(payload) {
                    Ok(hs) => hs,
                    Err(e) if e.is_over_limit() => return Err(PeerError::Extension(e)),
                    Err(_) => return Ok(()),
                };
                if let Some(reqq) = hs.reqq {
                    self.peer_reqq = (reqq as usize).clamp(1, super::pipeline::MAX);
                }
                let e = &mut self.ext;
                e.peer_ut_metadata = hs.id_of(ext::UT_METADATA);
                e.peer_ut_pex = hs.id_of(ext::UT_PEX);
                if e.peer_ut_pex.is_some() && t.pex_allowed() && e.pex.is_none() {
                    e.pex = Some(PexState::new(now));
                }
                if let Some(p) = hs.p {
                    e.listen_addr = Some(SocketAddr::new(self.addr.ip(), p));
                }
                if hs.v.is_some() {
                    e.client = hs.v;
                }
            }
            OUR_UT_METADATA_ID => match MetadataMsg::parse(payload) {
                Ok(MetadataMsg::Request { piece }) => self.serve_metadata(piece, t),
                // We have the metadata: data or rejects are unexpected but harmless.
                Ok(_) => {}
                Err(e) if e.is_ignorable() => {}
                Err(e) => return Err(PeerError::Extension(e)),
            },
            OUR_UT_PEX_ID => self.on_pex(now, payload, t)?,
            // Extensions we did not offer: ignored.
            _ => {}
        }
        Ok(())
    }

    /// BEP 11: peers the peer knows of. Those we are connected to already, and seeds while we
    /// seed, are not worth a connection.
    fn on_pex(&mut self, now: Instant, payload: &[u8], t: &TorrentShared) -> Result<(), PeerError> {
        let Some(pex) = self.ext.pex.as_mut() else {
            // We never offered PEX on this torrent (private), or the peer never offered it.
            return Ok(());
        };
        let Some(added) = pex.incoming(now, payload)? else {
            return Ok(());
        };
        let connected = t.pex_peers();
        let seeding = t.picker.is_complete();
        for p in added {
            if self.ext.learned.len() >= MAX_LEARNED {
                break;
            }
            let known = connected.contains(&p.addr)
                || self.ext.learned.contains(&p.addr)
                || p.addr == self.addr;
            let useless = seeding && p.flags.is_seed();
            if !(known || useless) {
                self.ext.learned.push(p.addr);
            }
        }
        Ok(())
    }

    /// Periodic PEX (from `poll`): once a minute, the peers we are connected to that this
    /// peer has not heard of from us, and those gone since.
    pub(super) fn pex_tick(&mut self, now: Instant, t: &TorrentShared) {
        let (Some(pex), Some(id)) = (self.ext.pex.as_mut(), self.ext.peer_ut_pex) else {
            return;
        };
        if !pex.is_due(now) {
            return;
        }
        let connected: Vec<PexPeer> = t.pex_peers_flagged();
        let mut recipient = vec![self.addr];
        recipient.extend(self.ext.listen_addr);
        let Some(msg): Option<PexMessage> = pex.outgoing(now, &recipient, &connected) else {
            return;
        };
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        wire::encode(
            &Message::Extended {
                id,
                payload: &payload,
            },
            &mut self.out,
        );
    }

    /// BEP 9: answer a request for piece `piece` of our info dictionary.
    fn serve_metadata(&mut self, piece: u32, t: &TorrentShared) {
        let Some(id) = self.ext.peer_ut_metadata else {
            return;
        };
        let info = &t.meta.info_bytes;
        let total = u32::try_from(info.len()).unwrap_or(u32::MAX);
        let range = ext::metadata_piece_len(total, piece).map(|len| {
            let start = (piece * ext::METADATA_PIECE_LEN) as usize;
            start..start + len as usize
        });
        let mut payload = Vec::new();
        match range {
            Some(r) if self.ext.metadata_served < MAX_METADATA_SERVED => {
                self.ext.metadata_served += 1;
                MetadataMsg::Data {
                    piece,
                    total_size: total,
                    data: &info[r],
                }
                .encode(&mut payload);
            }
            _ => MetadataMsg::Reject { piece }.encode(&mut payload),
        }
        wire::encode(
            &Message::Extended {
                id,
                payload: &payload,
            },
            &mut self.out,
        );
    }

    /// The peer's listen address, the first time it is known (for the torrent's PEX list).
    pub fn take_listen_addr(&mut self) -> Option<SocketAddr> {
        if self.ext.listen_addr_reported {
            return None;
        }
        let a = self.ext.listen_addr?;
        self.ext.listen_addr_reported = true;
        Some(a)
    }

    /// Addresses learned through PEX since the last call.
    pub fn take_learned(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.ext.learned)
    }
}
