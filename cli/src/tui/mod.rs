//! `ringtorrent tui`: the torrents of one session in an interactive terminal UI (ratatui on
//! crossterm). It takes `download`'s arguments (inputs, `-i` lists, `-o`, `--peer`, `-j`,
//! rates, discovery switches...), builds the engine the same way, and adds each entry with
//! `batch::start_entry`.
//!
//! Keys: see `view::HELP`. The queue (see `app.rs`): queued entries are not added to the
//! engine until one of the `-j` slots frees; several adds may run at once (each waits for its
//! data check or a magnet's metadata off the event loop). Pause, resume, remove and the peer
//! list are engine calls that block, so they run on the blocking pool and report back.
//! Torrents that complete keep seeding until `q`, which shuts the engine down gracefully
//! (resume data saved: the same command continues). `--json`, `--seed-ratio`,
//! `--seed-time`, `--summary-interval`, `--quiet` and `--verbose` do not apply here.
//!
//! The screen is redrawn at most four times a second, plus after each key. Logs (stderr) and
//! `--on-complete` output go to `<output>/.ringtorrent/tui.log` while the screen is ours.

mod app;
mod term;
mod view;

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ratatui::crossterm::event::Event;
use ringtorrent::{Alert, Engine, PeerInfo, RemoveData, TorrentId, TorrentStats};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::batch::Started;
use crate::download::DownloadArgs;
use app::{Action, App, Op};

/// Screen refresh (and stats poll) period: at most four redraws a second besides keys.
const TICK: Duration = Duration::from_millis(250);
/// How often the selected torrent's peers are asked for.
const PEERS_EVERY: Duration = Duration::from_secs(1);

pub fn run(mut args: DownloadArgs) -> anyhow::Result<i32> {
    if !std::io::stdout().is_terminal() {
        bail!("tui needs a terminal (use `ringtorrent download` instead)");
    }
    if args.json {
        bail!("--json is for `ringtorrent download`; the tui draws on stdout");
    }
    // `start_entry` prints nothing with these: the screen is the display.
    args.quiet = true;
    args.verbose = false;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tui(args))
}

/// What finishes off the event loop.
enum Done {
    /// An add: the row's key, and the torrent with its first stats and the alerts the add
    /// read (a `TorrentComplete` among them counts for `--on-complete`).
    Added(
        u64,
        Box<anyhow::Result<(Started, TorrentStats, Vec<Alert>)>>,
    ),
    Op(Op, TorrentId, Result<(), String>),
    Peers(TorrentId, Result<Vec<PeerInfo>, String>),
}

type Adding = Pin<Box<dyn Future<Output = Done>>>;

/// Adds that are running, each fed a copy of every engine alert.
struct Adds {
    running: Vec<(Adding, UnboundedSender<Alert>)>,
}

impl Adds {
    fn start(
        &mut self,
        engine: &Engine,
        args: &Arc<DownloadArgs>,
        key: u64,
        entry: crate::inputs::Entry,
    ) {
        let (tx, mut rx) = unbounded_channel();
        let engine = engine.clone();
        let args = args.clone();
        let fut = async move {
            let json = crate::batch::Json { on: false };
            let mut held = Vec::new();
            let r = crate::batch::start_entry(&engine, &entry, &args, &mut rx, &mut held, &json)
                .await
                .map(|s| {
                    let stats = engine.stats(s.id).unwrap_or_default();
                    (s, stats, held)
                });
            Done::Added(key, Box::new(r))
        };
        self.running.push((Box::pin(fut), tx));
    }

    fn forward(&mut self, alert: &Alert) {
        for (_, tx) in &self.running {
            let _ = tx.send(alert.clone());
        }
    }

    /// The next add to finish (pending forever while none runs).
    fn next(&mut self) -> impl Future<Output = Done> + '_ {
        std::future::poll_fn(move |cx| {
            for i in 0..self.running.len() {
                if let Poll::Ready(done) = self.running[i].0.as_mut().poll(cx) {
                    drop(self.running.swap_remove(i));
                    return Poll::Ready(done);
                }
            }
            Poll::Pending
        })
    }
}

async fn tui(args: DownloadArgs) -> anyhow::Result<i32> {
    let mut app = App::new(args.max_active);
    for e in crate::inputs::from_args(&args.torrents) {
        app.queue(e);
    }
    if let Some(list) = &args.input_file {
        let (listed, strays) = crate::inputs::read_list(list)?;
        for e in listed {
            app.queue(e);
        }
        for s in strays {
            app.failed(s.origin, s.message);
        }
    }
    let paths: Vec<PathBuf> = app
        .rows
        .iter()
        .filter_map(|r| r.entry.as_ref())
        .filter(|e| e.error.is_none() && !crate::magnet::is_magnet(&e.input))
        .map(|e| e.input.clone().into())
        .collect();
    if let Some(code) = crate::select::preflight(&paths, &args.select)? {
        return Ok(code);
    }
    let config = crate::download::engine_config(&args)?;
    let state_dir = args.output.join(".ringtorrent");
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    // As in `download`: a file-size limit fails the writes instead of killing the process.
    let _xfsz =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ))
            .context("cannot catch SIGXFSZ")?;
    let engine = Engine::start(config).context("cannot start the engine")?;
    let alerts = engine.alerts().context("alert stream already taken")?;
    let log = state_dir.join("tui.log");
    let screen = term::Screen::enter(&log);
    let mut screen = match screen {
        Ok(s) => s,
        Err(e) => {
            engine.shutdown().await.ok();
            return Err(e);
        }
    };
    let stop_keys = Arc::new(AtomicBool::new(false));
    let keys = term::read_events(stop_keys.clone());
    let args = Arc::new(args);
    let mut session = Session {
        engine: &engine,
        args: &args,
        app,
        adds: Adds {
            running: Vec::new(),
        },
        hooks: Vec::new(),
        log,
    };
    let code = session.run(&mut screen, keys, alerts).await;
    stop_keys.store(true, Ordering::Relaxed);
    let Session {
        app, hooks, adds, ..
    } = session;
    // Adds still waiting (a magnet's metadata) are dropped; the shutdown cancels them.
    drop(adds);
    let torrents = app.rows.iter().filter(|r| r.active().is_some()).count();
    let shut = engine.shutdown().await;
    drop(screen);
    let code = code?;
    shut.context("shutdown")?;
    let running = hooks.iter().filter(|h| !h.is_finished()).count();
    if running > 0 {
        eprintln!("waiting for {running} --on-complete command(s)");
    }
    for h in hooks {
        let _ = h.join();
    }
    eprintln!(
        "stopped: resume data of {torrents} torrent(s) saved; run the same command to continue"
    );
    Ok(code)
}

struct Session<'a> {
    engine: &'a Engine,
    args: &'a Arc<DownloadArgs>,
    app: App,
    adds: Adds,
    hooks: Vec<std::thread::JoinHandle<()>>,
    /// `tui.log`, where stderr and `--on-complete` output go.
    log: PathBuf,
}

impl Session<'_> {
    /// The event loop, until `q` or a signal; the exit code.
    async fn run(
        &mut self,
        screen: &mut term::Screen,
        mut keys: tokio::sync::mpsc::UnboundedReceiver<Event>,
        mut alerts: tokio::sync::mpsc::UnboundedReceiver<Alert>,
    ) -> anyhow::Result<i32> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
        let (done_tx, mut done_rx) = unbounded_channel::<Done>();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_peers: Option<Instant> = None;
        let mut peers_pending = false;
        // Engine calls on their way: waited for before the shutdown.
        let mut ops = 0usize;
        let mut quit: Option<i32> = None;
        while quit.is_none() {
            let mut draw = false;
            tokio::select! {
                _ = tick.tick() => {
                    self.app.refresh(&self.engine.torrents());
                    draw = true;
                }
                ev = keys.recv() => match ev {
                    Some(Event::Key(k)) => {
                        draw = true;
                        match self.app.key(k) {
                            Some(Action::Quit) => quit = Some(0),
                            Some(Action::Engine(op, id)) => {
                                ops += 1;
                                spawn_op(self.engine, op, id, &done_tx);
                            }
                            None => {}
                        }
                    }
                    Some(Event::Resize(..)) => draw = true,
                    Some(_) => {}
                    // The key reader stopped (the terminal went away): stop as for a hangup.
                    None => quit = Some(129),
                },
                a = alerts.recv() => match a {
                    Some(a) => self.alert(a),
                    None => quit = Some(1),
                },
                done = self.adds.next() => self.done(done),
                Some(done) = done_rx.recv() => {
                    match &done {
                        Done::Op(..) => ops -= 1,
                        Done::Peers(..) => peers_pending = false,
                        Done::Added(..) => {}
                    }
                    self.done(done);
                }
                _ = int.recv() => quit = Some(130),
                _ = term.recv() => quit = Some(143),
                _ = hup.recv() => quit = Some(129),
            }
            while let Some((key, entry)) = self.app.next_to_start() {
                self.adds.start(self.engine, self.args, key, entry);
            }
            if let Some(id) = self.app.selected_id() {
                if !peers_pending && last_peers.is_none_or(|t| t.elapsed() >= PEERS_EVERY) {
                    peers_pending = true;
                    last_peers = Some(Instant::now());
                    let e = self.engine.clone();
                    let tx = done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let r = e.peers(id).map_err(|e| e.to_string());
                        let _ = tx.send(Done::Peers(id, r));
                    });
                }
            }
            if draw || quit.is_some() {
                if quit.is_some() {
                    self.app.say("stopping: saving resume data");
                }
                screen
                    .terminal
                    .draw(|f| view::draw(f, &self.app))
                    .context("cannot draw")?;
            }
        }
        // Pauses and removes on their way finish before the engine goes.
        while ops > 0 {
            match tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await {
                Ok(Some(Done::Op(..))) => ops -= 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Ok(quit.unwrap_or(0))
    }

    fn alert(&mut self, a: Alert) {
        self.adds.forward(&a);
        match a {
            Alert::TorrentError { id, message } => self.app.error(id, &message),
            Alert::TorrentComplete { id } => self.completed(id),
            _ => {}
        }
    }

    /// Runs `--on-complete` for a torrent that completed (once).
    fn completed(&mut self, id: TorrentId) {
        if let Some(started) = self.app.complete(id) {
            if let Some(cmd) = &self.args.on_complete {
                self.hooks.extend(on_complete(cmd, started, &self.log));
            }
        }
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Added(key, added) => match *added {
                Ok((started, stats, held)) => {
                    let id = started.id;
                    let complete = stats.complete
                        || held
                            .iter()
                            .any(|a| matches!(a, Alert::TorrentComplete { id: i } if *i == id));
                    self.app.started(key, Ok((started, stats)));
                    if complete {
                        self.completed(id);
                    }
                }
                Err(e) => self.app.started(key, Err(e)),
            },
            Done::Op(op, id, r) => self.app.op_done(op, id, r),
            Done::Peers(id, r) => self.app.peers = Some((id, r)),
        }
    }
}

/// `--on-complete CMD` as `download` runs it, but with its output in the log: the screen is
/// ours.
fn on_complete(cmd: &str, s: &Started, log: &Path) -> Option<std::thread::JoinHandle<()>> {
    let out = std::fs::File::options().append(true).open(log).ok()?;
    let err = out.try_clone().ok()?;
    crate::batch::on_complete(cmd, s, Some((out.into(), err.into())))
}

/// Runs a pause, resume or remove on the blocking pool; its outcome comes back as `Done::Op`.
fn spawn_op(engine: &Engine, op: Op, id: TorrentId, tx: &UnboundedSender<Done>) {
    let e = engine.clone();
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let r = match op {
            Op::Pause => e.pause(id),
            Op::Resume => e.resume(id),
            Op::Remove => e.remove_torrent(id, RemoveData::Keep),
        };
        let _ = tx.send(Done::Op(op, id, r.map_err(|e| e.to_string())));
    });
}
