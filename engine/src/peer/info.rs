//! [`PeerInfo`]: what the API tells about one connected peer ([`crate::Engine::peers`]).

use std::net::SocketAddr;
use std::time::Instant;

use super::PeerSession;
use crate::types::PeerId;

/// One connected peer of a torrent, as [`crate::Engine::peers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address (for an incoming connection, its source port, not its listen port).
    pub addr: SocketAddr,
    /// The client name it gave (BEP 10 `v`), else one read from its peer id (`-lt0D60-` style),
    /// else empty.
    pub client: String,
    /// We dialed it (false: it connected to us).
    pub outgoing: bool,
    /// The connection is carried by uTP (BEP 29), not TCP.
    pub utp: bool,
    /// Payload download rate from it in bytes per second, averaged over a few seconds.
    pub download_rate_bytes_per_s: u64,
    /// Payload upload rate to it in bytes per second, averaged over a few seconds.
    pub upload_rate_bytes_per_s: u64,
    /// Payload bytes from this peer on this connection.
    pub downloaded_bytes: u64,
    /// Payload bytes to this peer on this connection.
    pub uploaded_bytes: u64,
    /// Pieces it says it has, of `pieces_total`.
    pub pieces: u32,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// We want something it has.
    pub am_interested: bool,
    /// It does not let us download.
    pub peer_choking: bool,
    /// It wants something we have.
    pub peer_interested: bool,
    /// We do not let it download.
    pub am_choking: bool,
    /// It has delivered nothing for a while though we asked (one request at a time now).
    pub snubbed: bool,
    /// It shares a piece that failed its hash check (downloads whole pieces of its own).
    pub on_parole: bool,
    /// Requests we have outstanding with it.
    pub requests: usize,
}

impl PeerSession {
    /// This session as the API reports it; `now` refreshes the rate estimates.
    pub fn info(&mut self, now: Instant, outgoing: bool, peer_id: Option<&PeerId>) -> PeerInfo {
        let down = self.down_meter.update(now, self.downloaded_bytes);
        let up = self.up_meter.update(now, self.uploaded_bytes);
        let client = self
            .ext
            .client
            .clone()
            .or_else(|| peer_id.and_then(client_from_peer_id))
            .unwrap_or_default();
        PeerInfo {
            addr: self.addr,
            client,
            outgoing,
            utp: false,
            download_rate_bytes_per_s: down,
            upload_rate_bytes_per_s: up,
            downloaded_bytes: self.downloaded_bytes,
            uploaded_bytes: self.uploaded_bytes,
            pieces: self.peer_has.count(),
            pieces_total: self.peer_has.len(),
            am_interested: self.am_interested,
            peer_choking: self.peer_choking,
            peer_interested: self.peer_interested,
            am_choking: self.am_choking,
            snubbed: self.snubbed,
            on_parole: self.parole,
            requests: self.requests.len(),
        }
    }
}

/// `-XX1234-...` (Azureus style, the common one): `XX 1234`. Anything else: `None`.
fn client_from_peer_id(id: &PeerId) -> Option<String> {
    let b = id.0.get(..8)?;
    let printable = |s: &[u8]| s.iter().all(|c| c.is_ascii_alphanumeric());
    (b[0] == b'-' && b[7] == b'-' && printable(&b[1..7])).then(|| {
        let code = String::from_utf8_lossy(&b[1..3]);
        let version = String::from_utf8_lossy(&b[3..7]);
        format!("{code} {version}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azureus_style_ids_name_their_client() {
        let mut id = [b'x'; 20];
        id[..8].copy_from_slice(b"-lt0D60-");
        assert_eq!(client_from_peer_id(&PeerId(id)).as_deref(), Some("lt 0D60"));
        id[..8].copy_from_slice(b"M7-2-2--");
        assert_eq!(client_from_peer_id(&PeerId(id)), None);
        id[..8].copy_from_slice(b"-lt\x000D6-");
        assert_eq!(client_from_peer_id(&PeerId(id)), None, "not printable");
    }
}
