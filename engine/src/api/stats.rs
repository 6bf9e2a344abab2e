//! Snapshots of a torrent's progress.

/// A snapshot of a torrent's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorrentStats {
    /// Size of the whole torrent in bytes (every file, padding files included).
    pub total_bytes: u64,
    /// Bytes of verified pieces on disk.
    pub verified_bytes: u64,
    /// Bytes of the pieces selected for download (all of them unless files are skipped).
    pub wanted_bytes: u64,
    /// Bytes of selected pieces that are verified: `wanted_bytes` when done.
    pub wanted_verified_bytes: u64,
    /// BEP 6 SUGGEST PIECE messages sent (pieces in the seeder's read cache pointed out to
    /// other peers).
    pub suggests_sent: u32,
    /// BEP 6 SUGGEST PIECE messages received from peers.
    pub suggests_received: u32,
    /// Pieces the seeder read whole with one O_DIRECT read for uploads (their blocks were not
    /// in the page cache).
    pub direct_piece_reads: u32,
    /// Blocks sent straight from the page cache by the kernel (`sendfile`; no read into
    /// memory here).
    pub page_cache_sends: u64,
    /// Blocks copied by the kernel from a mapping of their file into the socket (`sendmsg`;
    /// no read into memory here).
    pub mapped_sends: u64,
    /// Payload bytes received (including duplicates and failed pieces).
    pub downloaded_bytes: u64,
    /// Payload bytes sent to peers.
    pub uploaded_bytes: u64,
    /// Received payload bytes that were not kept: the sum of `waste`'s fields.
    pub wasted_bytes: u64,
    /// `wasted_bytes` by reason.
    pub waste: WasteStats,
    /// Payload download rate over the last second, in bytes per second.
    pub download_rate_bytes_per_s: u64,
    /// Payload upload rate over the last second, in bytes per second.
    pub upload_rate_bytes_per_s: u64,
    /// Connected peers (past the handshake), both directions.
    pub peers: u32,
    /// Pieces verified and on disk.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces that failed their hash check (each is downloaded again).
    pub hash_failures: u32,
    /// Every wanted piece is verified and on disk (see [`Alert::TorrentComplete`]).
    pub complete: bool,
    /// Paused by [`Engine::pause`] or by a storage error: no connections, no announces.
    pub paused: bool,
}

/// Received payload bytes that were not kept, by reason (see `torrent::Waste`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WasteStats {
    /// Another peer's copy of the block landed first (endgame).
    pub duplicate: u64,
    /// Arrived after we cancelled or gave up the request.
    pub late: u64,
    /// Never requested from that peer.
    pub unrequested: u64,
    /// Owned but with no piece buffer to land in (kept at 0 by design; counted to show it).
    pub no_buffer: u64,
    /// Went into a piece that failed its hash check.
    pub hash_failed: u64,
}

impl WasteStats {
    /// The sum of every reason: [`TorrentStats::wasted_bytes`].
    pub fn total(&self) -> u64 {
        self.duplicate + self.late + self.unrequested + self.no_buffer + self.hash_failed
    }
}

/// A shard thread's counters ([`crate::Engine::shard_stats`]), cumulative since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Which shard (0-based).
    pub index: usize,
    /// Times its loop woke up (returned from waiting in its ring), for any reason.
    pub wakeups: u64,
    /// Of those, wake-ups of a wait bounded by the 10 ms tick because transfers were in
    /// progress; the rest waited for a deadline, an event, or the idle bound (250 ms).
    pub busy_wakeups: u64,
}
