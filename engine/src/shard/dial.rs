//! Which dial follows an outgoing attempt that failed before its handshake: the same address
//! again later, or at once with the other carrier (TCP, uTP) or with encryption. A pure
//! decision, so each rule has a unit test.

use std::time::Duration;

use crate::api::{DisconnectReason, TransportMode};
use crate::mse::EncryptionPolicy;

/// Dial attempts per address after the first fails before the handshake (peers that are
/// starting up refuse or drop connections for a moment; libtorrent and rqbit retry too).
const MAX_REDIALS: u32 = 6;

/// How long to wait before dial attempt `attempt + 1` of an address whose attempt `attempt`
/// (0 = the first) failed before the handshake: 1, 2, 4, ... s, at most 30 s; `None` once
/// [`MAX_REDIALS`] retries are spent.
pub fn redial_delay(attempt: u32) -> Option<Duration> {
    (attempt < MAX_REDIALS).then(|| Duration::from_secs((1u64 << attempt.min(5)).min(30)))
}

/// A dial to try again later (see [`redial_delay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redial {
    pub torrent: u64,
    pub addr: std::net::SocketAddr,
    pub attempt: u32,
    pub delay: Duration,
    /// Open it with the MSE/PE handshake.
    pub encrypt: bool,
    /// Carry it over uTP.
    pub utp: bool,
}

/// How a failed outgoing attempt went.
pub struct Attempt<'a> {
    pub attempt: u32,
    pub encrypt: bool,
    pub utp: bool,
    /// The carrier connected (the failure came during the handshake).
    pub connected: bool,
    pub reason: &'a DisconnectReason,
}

/// The settings that choose the next dial.
#[derive(Clone, Copy)]
pub struct Policies {
    pub encryption: EncryptionPolicy,
    pub transports: TransportMode,
}

/// The next dial after `a` failed, as (attempt, delay, encrypt, utp), or `None`.
///
/// - Under [`EncryptionPolicy::Prefer`], a plaintext attempt that the peer closed once
///   connected is tried again at once with MSE (the peer may require encryption, as
///   libtorrent's and Transmission's settings allow), on the same carrier.
/// - Under [`TransportMode::Both`], a TCP attempt that failed before the handshake for any
///   other reason is tried at once over uTP, keeping the attempt count: the peer may not take
///   TCP at all. That covers a refused or timed-out connect, and also a connection that opens
///   and is reset at once (a libtorrent with incoming TCP off still listens on TCP and resets
///   every connection).
/// - A complete torrent (a seeder dialing a leecher) retries only those switches; otherwise
///   the address is dialed again after [`redial_delay`], with the configured first choices.
pub fn next_dial(
    a: &Attempt<'_>,
    p: Policies,
    complete: bool,
) -> Option<(u32, Duration, bool, bool)> {
    let first_encrypt = p.encryption.dials_encrypted();
    let prefer = p.encryption == EncryptionPolicy::Prefer;
    if prefer && a.connected && !a.encrypt && matches!(a.reason, DisconnectReason::Closed) {
        return Some((a.attempt, Duration::ZERO, true, a.utp));
    }
    if p.transports == TransportMode::Both && !a.utp {
        return Some((a.attempt, Duration::ZERO, first_encrypt, true));
    }
    if complete {
        return None;
    }
    redial_delay(a.attempt).map(|delay| {
        (
            a.attempt + 1,
            delay,
            first_encrypt,
            p.transports.dials_utp(),
        )
    })
}

/// The redial of an established outgoing connection that the network broke (a reset, a
/// timeout) while the torrent still needs pieces, as (attempt, delay): on the same carrier and
/// encryption, after [`redial_delay`]. A connection that had delivered payload was a working
/// path that broke, not a peer failing to answer: the count starts over, so a path that drops
/// now and then is dialed again each time (1 s later) instead of being given up after
/// [`MAX_REDIALS`] drops. One that delivered nothing counts as one more failed attempt.
pub fn after_broken(attempt: u32, delivered_payload: bool) -> Option<(u32, Duration)> {
    let attempt = if delivered_payload { 0 } else { attempt };
    redial_delay(attempt).map(|delay| (attempt + 1, delay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn attempt(
        reason: &DisconnectReason,
        utp: bool,
        encrypt: bool,
        connected: bool,
    ) -> Attempt<'_> {
        Attempt {
            attempt: 2,
            encrypt,
            utp,
            connected,
            reason,
        }
    }

    const BOTH: Policies = Policies {
        encryption: EncryptionPolicy::Prefer,
        transports: TransportMode::Both,
    };

    #[test]
    fn a_broken_connection_that_delivered_starts_the_count_over() {
        // A path that drops every few seconds: dialed again 1 s later, every time.
        for attempt in [0, 3, MAX_REDIALS, 40] {
            assert_eq!(
                after_broken(attempt, true),
                Some((1, Duration::from_secs(1)))
            );
        }
        // One that never delivered backs off like a failed dial, and is given up.
        assert_eq!(after_broken(2, false), Some((3, Duration::from_secs(4))));
        assert_eq!(after_broken(MAX_REDIALS, false), None);
    }

    #[test]
    fn redials_back_off_and_stop() {
        let delays: Vec<u64> = (0..10)
            .map_while(redial_delay)
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30]);
    }

    #[test]
    fn a_refused_tcp_dial_is_tried_over_utp_at_once_then_later_over_tcp() {
        let refused = DisconnectReason::ConnectFailed(ErrorKind::ConnectionRefused);
        let tcp = attempt(&refused, false, false, false);
        assert_eq!(
            next_dial(&tcp, BOTH, false),
            Some((2, Duration::ZERO, false, true))
        );
        // Seeders switch too: the leecher may listen on uTP alone.
        assert_eq!(
            next_dial(&tcp, BOTH, true),
            Some((2, Duration::ZERO, false, true))
        );
        let utp = attempt(&refused, true, false, false);
        assert_eq!(
            next_dial(&utp, BOTH, false),
            Some((3, Duration::from_secs(4), false, false))
        );
        assert_eq!(next_dial(&utp, BOTH, true), None);
    }

    #[test]
    fn one_carrier_only_never_switches() {
        let refused = DisconnectReason::ConnectFailed(ErrorKind::ConnectionRefused);
        for (mode, utp) in [(TransportMode::Tcp, false), (TransportMode::Utp, true)] {
            let p = Policies {
                encryption: EncryptionPolicy::Prefer,
                transports: mode,
            };
            let a = attempt(&refused, utp, false, false);
            assert_eq!(
                next_dial(&a, p, false),
                Some((3, Duration::from_secs(4), false, utp))
            );
        }
    }

    #[test]
    fn a_plain_attempt_closed_after_connecting_is_redialed_encrypted_on_its_carrier() {
        let closed = DisconnectReason::Closed;
        for utp in [false, true] {
            let a = attempt(&closed, utp, false, true);
            assert_eq!(
                next_dial(&a, BOTH, true),
                Some((2, Duration::ZERO, true, utp))
            );
        }
        // An encrypted uTP attempt that failed the same way goes back to the first choices
        // (plain TCP) later.
        let a = attempt(&closed, true, true, true);
        assert_eq!(
            next_dial(&a, BOTH, false),
            Some((3, Duration::from_secs(4), false, false))
        );
    }

    #[test]
    fn a_tcp_connection_reset_or_refused_encrypted_is_tried_over_utp_at_once() {
        // libtorrent with TCP off accepts and resets: plain TCP reset -> plain uTP.
        let reset = DisconnectReason::Closed;
        let tcp_mse = attempt(&reset, false, true, true);
        assert_eq!(
            next_dial(&tcp_mse, BOTH, true),
            Some((2, Duration::ZERO, false, true))
        );
        let io = DisconnectReason::ConnectFailed(ErrorKind::ConnectionReset);
        let tcp_plain = attempt(&io, false, false, true);
        assert_eq!(
            next_dial(&tcp_plain, BOTH, false),
            Some((2, Duration::ZERO, false, true))
        );
        // Under `Require`, the uTP dial is encrypted too.
        let require = Policies {
            encryption: EncryptionPolicy::Require,
            transports: TransportMode::Both,
        };
        assert_eq!(
            next_dial(&tcp_mse, require, false),
            Some((2, Duration::ZERO, true, true))
        );
    }
}
