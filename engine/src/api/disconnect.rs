//! Why a peer connection ended: [`DisconnectReason`], typed, with [`Fault`] saying whose doing
//! it was. Carried by [`crate::Alert::PeerDisconnected`] and [`crate::Alert::ConnectionFailed`]
//! and logged when a connection closes (the peer's faults at `info`, the rest at `debug`).

use std::time::Duration;

use crate::ext::ExtError;
use crate::handshake::HandshakeError;
use crate::metadata::MetadataPeerError;
use crate::mse::MseError;
use crate::peer::PeerError;
use crate::pex::PexError;
use crate::types::GeometryError;
use crate::wire::{DecodeError, ReadError};

/// Whose doing a disconnect was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The peer broke the protocol, lied or went silent: it is dropped (and for corrupt data,
    /// banned).
    Peer,
    /// The network: refused, reset, closed, timed out while connecting.
    Network,
    /// Our side ended it, as it should: the torrent stopped, a limit, a duplicate, shutdown.
    Local,
}

/// Why a peer connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    // --- the peer's fault
    /// The handshake was not a BitTorrent handshake.
    #[error("bad handshake: {0}")]
    BadHandshake(HandshakeError),
    /// The encrypted handshake (MSE/PE) failed: see [`MseError`] (its own fault says whose).
    #[error("encrypted handshake: {0}")]
    Encryption(MseError),
    /// A peer we dialed answered for another torrent.
    #[error("peer answered with another info-hash")]
    WrongInfoHash,
    /// A peer that connected to us asked for a torrent we do not have.
    #[error("handshake for a torrent we do not have")]
    UnknownTorrent,
    /// A malformed message: unknown id, a length wrong for its id, or over the size limit
    /// (a 4 GiB length prefix ends here before anything is buffered).
    #[error("protocol violation: {0}")]
    Malformed(DecodeError),
    /// A bitfield of the wrong length, or with spare bits set.
    #[error("bitfield of {got} bytes, expected {expected}, or spare bits set")]
    BadBitfield {
        /// Bytes received.
        got: usize,
        /// Bytes the torrent's piece count calls for.
        expected: usize,
    },
    /// HAVE-ALL or HAVE-NONE from a peer that did not negotiate the Fast extension (BEP 6).
    #[error("have-all/have-none without the fast extension (BEP 6)")]
    FastNotNegotiated,
    /// A piece index out of range (in a HAVE, REQUEST, PIECE, ...) or a block that does not
    /// fit its piece.
    #[error("bad piece or block: {0}")]
    BadGeometry(GeometryError),
    /// Too many blocks we never asked for.
    #[error("sent {0} blocks we did not request")]
    Unrequested(u32),
    /// It supplied data for pieces that failed their hash check; it is banned.
    #[error("supplied data for pieces that failed their hash check")]
    HashFailures,
    /// It requested a piece we do not have.
    #[error("requested piece {0}, which we do not have")]
    RequestedMissing(u32),
    /// More requests queued than we accept from one peer.
    #[error("more than {0} requests queued")]
    RequestFlood(usize),
    /// A malformed or oversized extension message (BEP 10, BEP 9).
    #[error("bad extension message: {0}")]
    Extension(ExtError),
    /// A malformed PEX message (BEP 11).
    #[error("bad PEX message: {0}")]
    Pex(PexError),
    /// Metadata that does not hash to the info-hash (BEP 9).
    #[error("sent metadata that does not match the info-hash")]
    BadMetadata,
    /// A metadata connection that cannot help: no extension protocol, no `ut_metadata`, or
    /// nothing offered in time.
    #[error("peer offers no metadata: {0}")]
    NoMetadata(&'static str),
    /// No message for this long.
    #[error("no message for {0:?}")]
    Idle(Duration),
    /// Connected, but no complete handshake in time (a silent or trickling peer).
    #[error("handshake timed out")]
    HandshakeTimeout,

    // --- the network
    /// The connection could not be made.
    #[error("connect failed: {0}")]
    ConnectFailed(std::io::ErrorKind),
    /// No answer to the connection attempt in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
    /// Receiving failed (reset, ...).
    #[error("receive failed: {0}")]
    RecvFailed(std::io::ErrorKind),
    /// Sending failed (reset, broken pipe, ...).
    #[error("send failed: {0}")]
    SendFailed(std::io::ErrorKind),

    /// The peer closed the connection during our encrypted handshake: it probably does not
    /// speak MSE/PE (a plaintext-only peer, while we require encryption).
    #[error("peer closed the connection during the encrypted handshake (no MSE/PE support?)")]
    ClosedDuringEncryption,

    // --- our side, a normal end
    /// A plaintext handshake from a peer while encryption is required (`--encryption
    /// require`).
    #[error("plaintext handshake refused: encryption is required")]
    PlaintextRefused,
    /// An encrypted handshake from a peer while encryption is disabled (`--encryption
    /// disable`).
    #[error("encrypted handshake refused: encryption is disabled")]
    EncryptedRefused,
    /// Both sides are seeders: nothing to exchange.
    #[error("both sides are seeders")]
    BothSeeding,
    /// The torrent was paused or stopped.
    #[error("torrent stopped")]
    TorrentStopped,
    /// The torrent was removed from the engine.
    #[error("torrent removed")]
    TorrentRemoved,
    /// The engine is shutting down.
    #[error("engine shutting down")]
    Shutdown,
    /// The peer's address is banned (it sent corrupt data before).
    #[error("peer is banned")]
    Banned,
    /// The torrent has its maximum number of peers.
    #[error("peer limit reached")]
    PeerLimit,
    /// A connection to ourselves, or a second one to the same peer.
    #[error("connection to ourselves or duplicate peer")]
    Duplicate,
    /// A bug on our side, named.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl DisconnectReason {
    /// Whether the encryption handshake or policy ended the connection (MSE/PE).
    pub fn about_encryption(&self) -> bool {
        matches!(
            self,
            DisconnectReason::Encryption(_)
                | DisconnectReason::ClosedDuringEncryption
                | DisconnectReason::PlaintextRefused
                | DisconnectReason::EncryptedRefused
        )
    }

    /// Whose doing the disconnect was.
    pub fn fault(&self) -> Fault {
        use DisconnectReason::*;
        match self {
            BadHandshake(_)
            | WrongInfoHash
            | UnknownTorrent
            | Malformed(_)
            | BadBitfield { .. }
            | FastNotNegotiated
            | BadGeometry(_)
            | Unrequested(_)
            | HashFailures
            | RequestedMissing(_)
            | RequestFlood(_)
            | Extension(_)
            | Pex(_)
            | BadMetadata
            | NoMetadata(_)
            | Idle(_)
            | HandshakeTimeout => Fault::Peer,
            Encryption(e) => e.fault(),
            ConnectFailed(_)
            | ConnectTimeout
            | Closed
            | ClosedDuringEncryption
            | RecvFailed(_)
            | SendFailed(_) => Fault::Network,
            PlaintextRefused | EncryptedRefused => Fault::Local,
            BothSeeding | TorrentStopped | TorrentRemoved | Shutdown | Banned | PeerLimit
            | Duplicate | Internal(_) => Fault::Local,
        }
    }
}

impl From<PeerError> for DisconnectReason {
    fn from(e: PeerError) -> Self {
        use DisconnectReason as R;
        match e {
            PeerError::Decode(e) => R::Malformed(e),
            PeerError::BadBitfield { got, expected } => R::BadBitfield { got, expected },
            PeerError::FastNotNegotiated => R::FastNotNegotiated,
            PeerError::BadBlock(e) => R::BadGeometry(e),
            PeerError::Unrequested(n) => R::Unrequested(n),
            PeerError::HashFailures => R::HashFailures,
            PeerError::Idle(d) => R::Idle(d),
            PeerError::BothSeeding => R::BothSeeding,
            PeerError::RequestedMissing(p) => R::RequestedMissing(p),
            PeerError::RequestFlood => R::RequestFlood(crate::peer::MAX_QUEUED_REQUESTS),
            PeerError::Stopped => R::TorrentStopped,
            PeerError::Extension(e) => R::Extension(e),
            PeerError::Pex(e) => R::Pex(e),
        }
    }
}

impl From<ReadError<PeerError>> for DisconnectReason {
    fn from(e: ReadError<PeerError>) -> Self {
        match e {
            ReadError::Decode(e) => DisconnectReason::Malformed(e),
            ReadError::Handler(e) => e.into(),
            ReadError::Poisoned => DisconnectReason::Internal("reader fed again after an error"),
        }
    }
}

impl From<MetadataPeerError> for DisconnectReason {
    fn from(e: MetadataPeerError) -> Self {
        use DisconnectReason as R;
        match e {
            MetadataPeerError::Handshake(HandshakeError::InfoHashMismatch { .. }) => {
                R::WrongInfoHash
            }
            MetadataPeerError::Handshake(e) => R::BadHandshake(e),
            MetadataPeerError::WrongInfoHash => R::WrongInfoHash,
            MetadataPeerError::NoExtensions => R::NoMetadata("no extension protocol (BEP 10)"),
            MetadataPeerError::NoMetadata => R::NoMetadata("no ut_metadata or metadata size"),
            MetadataPeerError::Ext(e) => R::Extension(e),
            MetadataPeerError::Wire(e) => R::Malformed(e),
            MetadataPeerError::Poisoned => R::Internal("metadata reader fed again after an error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_error_keeps_its_kind_and_fault() {
        let r: DisconnectReason = PeerError::RequestFlood.into();
        assert_eq!(r, DisconnectReason::RequestFlood(2000));
        assert_eq!(r.fault(), Fault::Peer);
        let r: DisconnectReason = ReadError::Decode(DecodeError::TooLong {
            id: 7,
            len: u32::MAX,
            max: 1 << 20,
        })
        .into();
        assert!(matches!(
            r,
            DisconnectReason::Malformed(DecodeError::TooLong { .. })
        ));
        let r: DisconnectReason = PeerError::Stopped.into();
        assert_eq!(r.fault(), Fault::Local);
        assert_eq!(DisconnectReason::Closed.fault(), Fault::Network);
        assert_eq!(
            DisconnectReason::from(PeerError::BothSeeding).to_string(),
            "both sides are seeders"
        );
    }
}
