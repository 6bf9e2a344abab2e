//! What the engine reports ([`Alert`]), where it goes ([`AlertSink`]), and the id that names a
//! torrent in it.

use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::{DisconnectReason, TorrentStats};

/// A torrent inside an engine: the number [`Engine::add_torrent`] returns, unique for the
/// engine's lifetime (never reused after a remove). Displays as `#N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TorrentId(
    /// The raw number (ids start at 1).
    pub u64,
);

impl std::fmt::Display for TorrentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Everything the engine reports, from [`Engine::alerts`]. Every variant names the torrent
/// it is about by `id`.
#[derive(Debug, Clone)]
pub enum Alert {
    /// A torrent is set up and running (for a magnet: once its metadata arrived).
    TorrentAdded {
        /// The torrent.
        id: TorrentId,
        /// Its name from the metainfo.
        name: String,
        /// Its info-hash.
        info_hash: crate::InfoHash,
    },
    /// A peer finished its handshake and counts as connected.
    PeerConnected {
        /// The torrent.
        id: TorrentId,
        /// The peer's address.
        addr: SocketAddr,
        /// We dialed it (false: it connected to us).
        outgoing: bool,
        /// Carried by uTP (BEP 29), not TCP.
        utp: bool,
    },
    /// A connected peer was disconnected.
    PeerDisconnected {
        /// The torrent.
        id: TorrentId,
        /// The peer's address.
        addr: SocketAddr,
        /// Why; [`DisconnectReason::fault`] says whose doing it was.
        reason: DisconnectReason,
    },
    /// A connection that ended before its handshake completed (never preceded by
    /// [`Alert::PeerConnected`]): a dial refused or timed out, a peer that answered for another
    /// torrent, stayed silent, or asked for a torrent we do not have.
    ConnectionFailed {
        /// The torrent, when known (a peer that connected to us names it in its handshake).
        id: Option<TorrentId>,
        /// The peer's address.
        addr: SocketAddr,
        /// We dialed it (false: it connected to us).
        outgoing: bool,
        /// Why.
        reason: DisconnectReason,
    },
    /// A downloaded piece passed its hash check and is being written.
    PieceVerified {
        /// The torrent.
        id: TorrentId,
        /// The piece's index.
        piece: u32,
    },
    /// A downloaded piece failed its hash check; it is downloaded again.
    HashFailed {
        /// The torrent.
        id: TorrentId,
        /// The piece's index.
        piece: u32,
    },
    /// A tracker answered an announce.
    TrackerReply {
        /// The torrent.
        id: TorrentId,
        /// The tracker's announce URL.
        url: String,
        /// How many peer addresses it returned (they are dialed).
        peers: usize,
    },
    /// An announce to a tracker failed (unreachable, timed out, or a failure reason).
    TrackerError {
        /// The torrent.
        id: TorrentId,
        /// The tracker's announce URL.
        url: String,
        /// What went wrong, in words.
        message: String,
    },
    /// Once a second per torrent.
    Stats {
        /// The torrent.
        id: TorrentId,
        /// Its progress now (what [`Engine::stats`] would return).
        stats: TorrentStats,
    },
    /// Every wanted piece is verified and on disk.
    TorrentComplete {
        /// The torrent.
        id: TorrentId,
    },
    /// The torrent stopped (disk full, I/O error); verified data stays on disk. A
    /// `TorrentPaused` with the same message follows once its resume file is saved.
    TorrentError {
        /// The torrent.
        id: TorrentId,
        /// What went wrong, in words.
        message: String,
    },
    /// The torrent is paused and its resume file saved; `error` if a storage error paused it.
    TorrentPaused {
        /// The torrent.
        id: TorrentId,
        /// The storage error that paused it; `None` for [`Engine::pause`].
        error: Option<String>,
    },
    /// [`Engine::resume`] restarted a paused torrent.
    TorrentResumed {
        /// The torrent.
        id: TorrentId,
    },
    /// [`Engine::remove_torrent`] finished: the id is no longer valid.
    TorrentRemoved {
        /// The torrent that was removed.
        id: TorrentId,
    },
    /// At add: the resume file matched the files on disk; `pieces` were taken from it without
    /// a recheck.
    ResumeAccepted {
        /// The torrent.
        id: TorrentId,
        /// Pieces the resume file records as verified.
        pieces: u32,
    },
    /// During an add's hash check of existing data: `checked` of `total` pieces hashed so far.
    /// At most ten a second per torrent, and one with `checked == total` when the check ends
    /// (before `Rechecked`). The torrent's id is not yet returned by `add_torrent` then.
    CheckProgress {
        /// The torrent being added.
        id: TorrentId,
        /// Pieces hashed so far.
        checked: u32,
        /// Pieces to hash.
        total: u32,
    },
    /// At add: existing data was hash-checked (why: no or a mismatched resume file, or asked);
    /// `pieces` verified.
    Rechecked {
        /// The torrent.
        id: TorrentId,
        /// Why the data was checked, in words.
        reason: String,
        /// Pieces that verified.
        pieces: u32,
    },
    /// Once a second while a magnet's metadata is fetched: `peers` have said they have it,
    /// `connecting` metadata connections are open or being opened.
    MetadataProgress {
        /// The magnet's reserved id.
        id: TorrentId,
        /// Peers that said they have the metadata.
        peers: usize,
        /// Metadata connections open or being opened.
        connecting: usize,
    },
    /// A magnet's metadata arrived and matched its info-hash; `TorrentAdded` with the same id
    /// follows once the torrent is set up (or `TorrentError` if that fails).
    MetadataReceived {
        /// The magnet's id, which the torrent keeps.
        id: TorrentId,
        /// The torrent's name from the metadata.
        name: String,
        /// Its info-hash.
        info_hash: crate::InfoHash,
    },
    /// A DHT lookup (BEP 5) of the torrent (or magnet) found `peers` new addresses, which are
    /// being dialed.
    DhtPeers {
        /// The torrent (or magnet).
        id: TorrentId,
        /// New peer addresses found.
        peers: usize,
    },
}

/// Where alerts go; cheap to clone, never blocks.
#[derive(Clone)]
pub struct AlertSink(pub(crate) mpsc::UnboundedSender<Alert>);

impl AlertSink {
    /// Queues an alert; dropped silently when nobody holds the receiver.
    pub fn send(&self, alert: Alert) {
        // A dropped receiver means nobody listens; that is not an error.
        let _ = self.0.send(alert);
    }
}
