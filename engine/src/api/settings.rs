//! Settings and facts the engine and its shards both read.

/// Which peers are sent blocks the page cache holds with `sendfile` (no copy here) instead of
/// copies; copies come from a mapping of the file on io_uring (the kernel copies the page
/// cache into the socket) or are read into memory first on epoll (DESIGN.md, "Anatomy of an
/// upload").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopyUploads {
    /// Peers on other hosts. A peer on this host (a loopback address, or the address we
    /// listen on) is sent copies: it then copies our bytes out of the CPU cache instead of
    /// out of memory, and on our 2-core machines it downloaded faster that way (our own
    /// downloader fed by four local seeders: 1.14-1.16 CPU-s/GiB with copies against
    /// 1.21-1.30 with `sendfile`).
    #[default]
    RemotePeers,
    /// Every peer (what a seeder on this host costs least with).
    Always,
    /// No peer.
    Never,
}

impl ZeroCopyUploads {
    /// Whether `peer` gets `sendfile`, when we listen on `own` (if a specific address).
    pub fn allows(self, peer: std::net::IpAddr, own: Option<std::net::IpAddr>) -> bool {
        match self {
            ZeroCopyUploads::Always => true,
            ZeroCopyUploads::Never => false,
            ZeroCopyUploads::RemotePeers => {
                let peer = peer.to_canonical();
                !peer.is_loopback() && Some(peer) != own.map(|o| o.to_canonical())
            }
        }
    }
}

impl std::str::FromStr for ZeroCopyUploads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "remote" => Ok(ZeroCopyUploads::RemotePeers),
            "always" => Ok(ZeroCopyUploads::Always),
            "never" => Ok(ZeroCopyUploads::Never),
            _ => Err(format!("{s:?}: expected remote, always or never")),
        }
    }
}

/// The ring driver the engine's shards run on ([`Engine::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring, on every shard.
    IoUring,
    /// The portable epoll backend, on at least one shard: asked for
    /// ([`Config::force_portable`], `RINGTORRENT_NO_URING=1`), or io_uring is unavailable or
    /// its setup failed.
    Epoll,
}

/// Which carriers outgoing connections use ([`Config::transports`]); incoming uTP and TCP are
/// accepted whatever this says.
///
/// [`Config::transports`]: crate::Config::transports
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// TCP only.
    Tcp,
    /// uTP (BEP 29) only.
    Utp,
    /// TCP first; an address that does not take a TCP connection (refused, timed out) is
    /// tried over uTP at once, and the two alternate on later retries. libtorrent tries the
    /// two the other way round; TCP first here because a TCP stream costs this engine less
    /// CPU per byte than uTP's per-packet work (BENCHMARKS.md, uTP).
    #[default]
    Both,
}

impl std::str::FromStr for TransportMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(TransportMode::Tcp),
            "utp" => Ok(TransportMode::Utp),
            "both" => Ok(TransportMode::Both),
            _ => Err(format!("{s:?}: expected tcp, utp or both")),
        }
    }
}

impl TransportMode {
    /// Whether a first dial goes over uTP.
    pub fn dials_utp(self) -> bool {
        self == TransportMode::Utp
    }
}
