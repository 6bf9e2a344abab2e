//! The display state of each started torrent in `download`: its progress bar, counters and
//! outcome, how engine alerts and pause/resume commands change it, and the lines and closing
//! table printed from it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar};

use crate::progress::styled_bar;
use ringtorrent::{Alert, Engine, TorrentId};

use crate::download::DownloadArgs;

/// One started torrent as the CLI shows it.
pub struct Progress {
    pub name: String,
    pub info_hash: ringtorrent::InfoHash,
    /// The entry as started (for --on-complete and the table).
    pub started: crate::batch::Started,
    /// When this torrent gives up (`--timeout`, counted from its start).
    pub deadline: Option<Instant>,
    /// Why it failed (a storage error, the timeout); it is paused and the batch goes on.
    pub failed: Option<String>,
    /// When it completed, for the table.
    pub finished: Option<Instant>,
    pub since: Instant,
    /// Last `--json` progress event.
    pub last_event: Option<Instant>,
    /// Its completion or failure was announced (JSON, --on-complete).
    pub reported: bool,
    pub bar: Option<ProgressBar>,
    pub done: bool,
    pub total: u64,
    pub verified: u64,
    pub rate: u64,
    pub peers: u32,
    pub downloaded: u64,
    /// Received payload that was not kept, by reason.
    pub waste: ringtorrent::WasteStats,
    /// How long adding took (a recheck happens there).
    pub add_secs: f64,
    /// Paused by a command (or by a storage error).
    pub paused: bool,
}

impl Progress {
    /// Still downloading (or paused by the user): it holds a slot of `--max-active`.
    pub fn running(&self) -> bool {
        !self.done && self.failed.is_none()
    }
}

/// The display state of a started torrent, with its bar on a terminal.
pub fn track(
    engine: &Engine,
    started: crate::batch::Started,
    args: &DownloadArgs,
    tty: bool,
    multi: &MultiProgress,
) -> Progress {
    // The bar counts the selected pieces only (all of them unless files are skipped).
    let (total, verified) = engine
        .stats(started.id)
        .map_or((0, 0), |s| (s.wanted_bytes, s.wanted_verified_bytes));
    let bar = tty.then(|| {
        let template =
            "{msg:20!} [{bar:30}] {percent:>3}% {binary_bytes_per_sec:>12} ETA {eta:>4} {prefix}";
        let b = styled_bar(multi.add(ProgressBar::new(total)), template, &started.name);
        b.set_position(verified);
        b
    });
    let now = Instant::now();
    Progress {
        name: started.name.clone(),
        info_hash: started.info_hash,
        deadline: (args.timeout > 0).then(|| now + Duration::from_secs(args.timeout)),
        failed: None,
        finished: None,
        since: now,
        last_event: None,
        reported: false,
        bar,
        done: false,
        total,
        verified,
        rate: 0,
        peers: 0,
        downloaded: 0,
        waste: Default::default(),
        add_secs: started.add_secs,
        paused: false,
        started,
    }
}

/// The plain total line of a batch: aggregate rate, done/active/queued/failed.
pub fn totals_line(
    progress: &HashMap<TorrentId, Progress>,
    queue: &std::collections::VecDeque<crate::inputs::Entry>,
    failed: &[(String, anyhow::Error)],
) -> String {
    let running = || progress.values().filter(|p| p.running());
    let rate: u64 = running().map(|p| p.rate).sum();
    let left: u64 = running().map(|p| p.total.saturating_sub(p.verified)).sum();
    // Of the started torrents only: the queued ones' sizes are not known before they start.
    let eta = left.checked_div(rate).map_or_else(
        || "-".into(),
        |s| crate::util::format_duration(Duration::from_secs(s)),
    );
    format!(
        "total: {:.1} MiB/s, {} done, {} active, {} queued, {} failed, ETA {eta} (active)",
        rate as f64 / 1048576.0,
        progress.values().filter(|p| p.done).count(),
        running().count(),
        queue.len(),
        failed.len() + progress.values().filter(|p| p.failed.is_some()).count()
    )
}

/// The closing table's rows: started torrents in start order, then entries that never started.
pub fn table_rows(
    progress: &HashMap<TorrentId, Progress>,
    failed: &[(String, anyhow::Error)],
) -> Vec<crate::batch::Row> {
    let mut started: Vec<&Progress> = progress.values().collect();
    started.sort_by_key(|p| p.since);
    let mut rows: Vec<crate::batch::Row> = started
        .into_iter()
        .map(|p| crate::batch::Row {
            name: p.name.clone(),
            size: p.total,
            secs: p
                .finished
                .unwrap_or_else(Instant::now)
                .duration_since(p.since)
                .as_secs_f64(),
            status: match (&p.failed, p.done) {
                (Some(f), _) => format!("failed: {f}"),
                (None, true) => "complete".into(),
                (None, false) => "incomplete".into(),
            },
        })
        .collect();
    rows.extend(failed.iter().map(|(origin, e)| crate::batch::Row {
        name: origin.clone(),
        size: 0,
        secs: 0.0,
        status: format!("failed: {e:#}"),
    }));
    rows
}

/// The summary's waste line: received bytes over the bytes kept, and what was not kept.
pub fn waste_line(received: u64, w: &ringtorrent::WasteStats) -> String {
    let kept = received.saturating_sub(w.total());
    format!(
        "received/kept {:.4}: wasted {} bytes (duplicate {}, late {}, unrequested {}, no buffer {}, hash failed {})",
        received as f64 / kept.max(1) as f64,
        w.total(),
        w.duplicate,
        w.late,
        w.unrequested,
        w.no_buffer,
        w.hash_failed
    )
}

/// Pauses or resumes every torrent of the session (pausing saves each resume file).
pub fn apply_command(
    engine: &Engine,
    c: crate::control::Command,
    progress: &mut HashMap<TorrentId, Progress>,
    multi: &MultiProgress,
    quiet: bool,
) {
    use crate::control::Command;
    let pause = match c {
        Command::Pause => true,
        Command::Resume => false,
        Command::Toggle => !progress.values().all(|p| p.paused),
        Command::Quit => return,
    };
    for (id, p) in progress.iter_mut().filter(|(_, p)| !p.done) {
        let res = if pause {
            engine.pause(*id)
        } else {
            engine.resume(*id)
        };
        let word = if pause { "paused" } else { "resumed" };
        let line = match res {
            Ok(()) => {
                p.paused = pause;
                if let Some(b) = &p.bar {
                    b.set_prefix(if pause { "paused" } else { "" });
                }
                format!("{}: {word}", p.name)
            }
            Err(e) => format!("{}: could not be {word}: {e}", p.name),
        };
        if p.bar.is_some() {
            multi.println(line).ok();
        } else if !quiet {
            eprintln!("{line}");
        }
    }
}

/// Updates the display state from one engine alert (and prints it with --verbose).
pub fn handle_alert(
    alert: Alert,
    progress: &mut HashMap<TorrentId, Progress>,
    args: &DownloadArgs,
    json: &crate::batch::Json,
) {
    let verbose = args.verbose;
    let ih = |progress: &HashMap<TorrentId, Progress>, id: &TorrentId| {
        progress.get(id).map(|p| p.info_hash)
    };
    let name = |id: &TorrentId| {
        progress
            .get(id)
            .map_or("torrent".to_string(), |p| p.name.clone())
    };
    match alert {
        Alert::ResumeAccepted { id, pieces } if !args.quiet => {
            eprintln!(
                "{}: resume data matches the files: {pieces} pieces, no recheck",
                name(&id)
            )
        }
        Alert::Rechecked { id, reason, pieces } if !args.quiet => {
            let (secs, total) = progress
                .get(&id)
                .map_or((0.0, 0), |p| (p.add_secs, p.total));
            eprintln!(
                "{}: rechecked ({reason}): {pieces} pieces verified in {secs:.2} s ({:.2} GB/s)",
                name(&id),
                total as f64 / secs.max(1e-6) / 1e9
            )
        }
        Alert::PieceVerified { id, piece } if verbose => {
            eprintln!("{id}: piece {piece} verified")
        }
        Alert::Stats { id, stats } => {
            if let Some(p) = progress.get_mut(&id) {
                let due = p
                    .last_event
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if json.on && due && p.running() {
                    p.last_event = Some(Instant::now());
                    json.event(
                        "progress",
                        &p.info_hash,
                        &[
                            ("verified_bytes", stats.wanted_verified_bytes.into()),
                            ("wanted_bytes", stats.wanted_bytes.into()),
                            ("download_rate", stats.download_rate_bytes_per_s.into()),
                            ("peers", stats.peers.into()),
                        ],
                    );
                }
                p.verified = stats.wanted_verified_bytes;
                p.total = stats.wanted_bytes;
                p.rate = stats.download_rate_bytes_per_s;
                p.peers = stats.peers;
                p.downloaded = stats.downloaded_bytes;
                p.paused = stats.paused;
                if let Some(b) = &p.bar {
                    b.set_length(stats.wanted_bytes);
                    b.set_position(stats.wanted_verified_bytes);
                    if stats.paused {
                        b.set_prefix("paused");
                    } else {
                        b.set_prefix(format!("{} peers", stats.peers));
                    }
                }
            }
        }
        Alert::TorrentComplete { id } => {
            if let Some(p) = progress.get_mut(&id) {
                p.done = true;
                p.finished = Some(Instant::now());
                p.verified = p.total;
                if let Some(b) = &p.bar {
                    b.set_position(p.total);
                }
            }
        }
        Alert::TorrentError { id, message } => {
            if let Some(p) = progress.get_mut(&id) {
                p.failed = Some(format!(
                    "{message} (verified data is kept; free space and run again)"
                ));
            }
        }
        Alert::HashFailed { id, piece } => {
            if let Some(h) = ih(progress, &id) {
                json.event("piece-failed", &h, &[("piece", piece.into())]);
            }
            if verbose {
                eprintln!("{id}: hash failed for piece {piece}")
            }
        }
        Alert::PeerConnected { id, addr, utp, .. } if verbose => {
            let over = if utp { " over uTP" } else { "" };
            eprintln!("{id}: peer {addr} connected{over}")
        }
        Alert::PeerDisconnected { id, addr, reason } if verbose => {
            eprintln!("{id}: peer {addr} disconnected: {reason}")
        }
        // Refused dials are routine; a peer that misbehaved before its handshake, or one that
        // the encryption policy kept out, is worth a line.
        Alert::ConnectionFailed {
            id: Some(id),
            addr,
            reason,
            ..
        } if verbose
            && (reason.fault() == ringtorrent::Fault::Peer || reason.about_encryption()) =>
        {
            eprintln!("{id}: peer {addr} dropped before its handshake: {reason}")
        }
        Alert::TrackerError { id, url, message } => {
            if let Some(h) = ih(progress, &id) {
                json.event(
                    "tracker-error",
                    &h,
                    &[
                        ("url", url.as_str().into()),
                        ("message", message.as_str().into()),
                    ],
                );
            }
            if verbose {
                eprintln!("{id}: tracker {url}: {message}")
            }
        }
        Alert::DhtPeers { id, peers } if verbose => eprintln!("{id}: DHT: {peers} peers"),
        Alert::TrackerReply { id, url, peers } if verbose => {
            eprintln!("{id}: tracker {url}: {peers} peers")
        }
        _ => {}
    }
}
