//! The announcer: one tokio task per torrent that keeps its trackers informed (BEP 3, BEP 12).
//!
//! What it needs from the engine: a tokio runtime (`rt-multi-thread` or current-thread, with
//! `net` and `time` enabled) to spawn on, a callback returning the current transfer totals, and
//! a callback receiving [`TrackerEvent`]s (called from the runtime's threads; keep it short, e.g.
//! push into a channel).
//!
//! Behaviour:
//! - announces `started` at once, then every `interval` the tracker asks for; a failed round
//!   (every tracker failed) is retried with a doubling delay (see [`Schedule`]);
//! - a round tries the trackers in BEP 12 order ([`TrackerList`]) and stops at the first that
//!   answers, which moves to the front of its tier;
//! - [`AnnouncerHandle::completed`] sends `completed` once; [`AnnouncerHandle::announce_soon`]
//!   asks for peers early, not before the tracker's `min interval`;
//! - [`AnnouncerHandle::shutdown`] (or dropping the handle) cancels any round in flight and
//!   sends `stopped`, if a `started` got through, waiting at most `stop_timeout`.

mod client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::schedule::Schedule;
use super::udp::UdpConfig;
use super::{AnnounceReply, AnnounceRequest, Event, TrackerError, TrackerList};
use crate::types::{InfoHash, PeerId};
use client::Transport;

pub use client::announce_once;

/// Transfer totals for this session, as the tracker wants them (BEP 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
}

/// What the announcer reports.
#[derive(Debug)]
pub enum TrackerEvent {
    /// `url` answered. `peers` may contain ourselves: filter by our own listening address.
    Reply {
        url: String,
        peers: Vec<SocketAddr>,
        interval: Duration,
        seeders: Option<u32>,
        leechers: Option<u32>,
        warning: Option<String>,
    },
    /// `url` failed; the next tracker in BEP 12 order is tried.
    Error { url: String, error: TrackerError },
}

/// Everything an announcer needs to know. Build with [`AnnouncerParams::new`] and adjust.
#[derive(Clone)]
pub struct AnnouncerParams {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// Our listening port.
    pub port: u16,
    pub numwant: Option<u32>,
    /// Same for every announce of the session.
    pub key: u32,
    /// Longest wait for one tracker in a regular round.
    pub request_timeout: Duration,
    /// Longest wait for the `stopped` announce on shutdown.
    pub stop_timeout: Duration,
    /// Delay before retrying after a failed round; doubles per failure, capped at the interval.
    pub retry_base: Duration,
    /// BEP 15 retransmission timeout for UDP trackers (15 s by the spec).
    pub udp_base_timeout: Duration,
    /// Current transfer totals; called before each announce.
    pub transfer: Arc<dyn Fn() -> Transfer + Send + Sync>,
    /// Receives every [`TrackerEvent`].
    pub on_event: Arc<dyn Fn(TrackerEvent) + Send + Sync>,
}

impl AnnouncerParams {
    /// Defaults: numwant 200, a random key, 30 s per tracker, 2 s for `stopped`, retries from 30 s.
    pub fn new(
        info_hash: InfoHash,
        peer_id: PeerId,
        port: u16,
        transfer: Arc<dyn Fn() -> Transfer + Send + Sync>,
        on_event: Arc<dyn Fn(TrackerEvent) + Send + Sync>,
    ) -> Self {
        AnnouncerParams {
            info_hash,
            peer_id,
            port,
            numwant: Some(200),
            key: rand::random(),
            request_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(2),
            retry_base: Duration::from_secs(30),
            udp_base_timeout: UdpConfig::default().base_timeout,
            transfer,
            on_event,
        }
    }
}

enum Command {
    Completed,
    AnnounceSoon,
    AnnounceNow,
    Shutdown,
}

/// Controls a running announcer. Dropping it shuts the announcer down like
/// [`AnnouncerHandle::shutdown`], without a way to wait for it.
pub struct AnnouncerHandle {
    tx: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl AnnouncerHandle {
    /// The download finished: announce `completed` (once per session).
    pub fn completed(&self) {
        let _ = self.tx.send(Command::Completed);
    }

    /// We need peers: announce early, respecting the tracker's `min interval`.
    pub fn announce_soon(&self) {
        let _ = self.tx.send(Command::AnnounceSoon);
    }

    /// Announce now, ignoring the tracker's `min interval` (the user asked).
    pub fn announce_now(&self) {
        let _ = self.tx.send(Command::AnnounceNow);
    }

    /// Stops announcing and sends `stopped`. The returned task ends within about
    /// `stop_timeout`; `.await` it, `Handle::block_on` it, or drop it.
    pub fn shutdown(self) -> JoinHandle<()> {
        let _ = self.tx.send(Command::Shutdown);
        self.task
    }
}

/// Spawns announcers.
pub struct Announcer;

impl Announcer {
    /// Starts announcing `trackers` for `params.info_hash` on `runtime`.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        trackers: TrackerList,
        params: AnnouncerParams,
    ) -> AnnouncerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = runtime.spawn(run(trackers, params, rx));
        AnnouncerHandle { tx, task }
    }
}

/// Per-session state the rounds share.
struct Session {
    list: TrackerList,
    params: AnnouncerParams,
    transport: Transport,
    tracker_ids: HashMap<String, Vec<u8>>,
}

async fn run(list: TrackerList, params: AnnouncerParams, mut rx: mpsc::UnboundedReceiver<Command>) {
    let udp = UdpConfig {
        base_timeout: params.udp_base_timeout,
        ..UdpConfig::default()
    };
    let transport = match Transport::new(udp) {
        Ok(t) => t,
        Err(error) => {
            let url = list.urls().next().unwrap_or_default().to_owned();
            (params.on_event)(TrackerEvent::Error { url, error });
            return;
        }
    };
    let mut s = Session {
        list,
        params,
        transport,
        tracker_ids: HashMap::new(),
    };
    let mut sched = Schedule::new(Instant::now(), s.params.retry_base);
    'session: loop {
        // Wait until due, handling commands meanwhile.
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Completed) => sched.completed(Instant::now()),
                    Some(Command::AnnounceSoon) => sched.announce_soon(Instant::now()),
                    Some(Command::AnnounceNow) => sched.announce_now(Instant::now()),
                    Some(Command::Shutdown) | None => break 'session,
                },
                _ = tokio::time::sleep_until(sched.due_at().into()) => break,
            }
        }
        // Announce; a shutdown cancels the round, other commands wait for its end.
        let mut completed = false;
        let timeout = s.params.request_timeout;
        let round = s.round(sched.event(), timeout);
        tokio::pin!(round);
        let outcome = loop {
            tokio::select! {
                out = &mut round => break out,
                cmd = rx.recv() => match cmd {
                    Some(Command::Completed) => completed = true,
                    Some(Command::AnnounceSoon | Command::AnnounceNow) => {}
                    Some(Command::Shutdown) | None => break 'session,
                },
            }
        };
        let now = Instant::now();
        match outcome {
            Some(reply) => sched.on_success(now, &reply),
            None => sched.on_failure(now),
        }
        if completed {
            sched.completed(now);
        }
    }
    if sched.needs_stopped() {
        let limit = s.params.stop_timeout;
        let _ = tokio::time::timeout(limit, s.round(Some(Event::Stopped), limit)).await;
    }
}

impl Session {
    /// Tries the trackers in BEP 12 order until one answers; reports every outcome.
    async fn round(&mut self, event: Option<Event>, timeout: Duration) -> Option<AnnounceReply> {
        let t = (self.params.transfer)();
        let urls: Vec<String> = self.list.urls().map(str::to_owned).collect();
        for url in urls {
            let req = AnnounceRequest {
                info_hash: self.params.info_hash,
                peer_id: self.params.peer_id,
                port: self.params.port,
                uploaded: t.uploaded,
                downloaded: t.downloaded,
                left: t.left,
                event,
                numwant: if event == Some(Event::Stopped) {
                    Some(0)
                } else {
                    self.params.numwant
                },
                compact: true,
                key: self.params.key,
                tracker_id: self.tracker_ids.get(&url).cloned(),
            };
            match self.transport.announce(&url, &req, timeout).await {
                Ok(reply) => {
                    if let Some(id) = &reply.tracker_id {
                        self.tracker_ids.insert(url.clone(), id.clone());
                    }
                    self.list.mark_success(&url);
                    (self.params.on_event)(TrackerEvent::Reply {
                        url,
                        peers: reply.peers.clone(),
                        interval: reply.interval,
                        seeders: reply.seeders,
                        leechers: reply.leechers,
                        warning: reply.warning.clone(),
                    });
                    return Some(reply);
                }
                Err(error) => (self.params.on_event)(TrackerEvent::Error { url, error }),
            }
        }
        None
    }
}
