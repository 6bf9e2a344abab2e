//! Code the examples share: argument parsing helpers, starting the engine, the exit status,
//! waiting for alerts until Ctrl-C, and rate/progress formatting. Each example includes it with
//! `mod common;` (cargo does not build a subdirectory's `mod.rs` as an example of its own).

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;

use ringtorrent::magnet::Magnet;
use ringtorrent::{Alert, Config, DhtConfig, Engine, TorrentSource};
use tokio::sync::mpsc::UnboundedReceiver;

/// Logs to stderr as `RUST_LOG` asks.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
}

/// What an example's `run` returns when it did not fail outright.
pub trait Outcome {
    fn exit_code(self) -> ExitCode;
}

impl Outcome for () {
    fn exit_code(self) -> ExitCode {
        ExitCode::SUCCESS
    }
}

/// `false`: something failed, and `run` printed what.
impl Outcome for bool {
    fn exit_code(self) -> ExitCode {
        if self {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Runs `run` with the parsed arguments. Prints the usage instead, and exits with success for
/// `--help` (`Ok(None)`) or with 2 after an error; prints `run`'s error and exits with 1.
pub async fn main<A, T, F>(
    parsed: Result<Option<A>, String>,
    usage: &str,
    run: impl FnOnce(A) -> F,
) -> ExitCode
where
    T: Outcome,
    F: Future<Output = Result<T, Box<dyn Error>>>,
{
    let args = match parsed {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value after an option, parsed as an address.
pub fn addr_value(option: &str, value: Option<String>) -> Result<SocketAddr, String> {
    let value = value.ok_or_else(|| format!("{option} needs an IP:PORT"))?;
    value
        .parse()
        .map_err(|_| format!("{option} {value:?}: expected IP:PORT, e.g. 127.0.0.1:6881"))
}

/// Exactly two positional arguments.
pub fn two_positional(positional: Vec<String>) -> Result<[String; 2], String> {
    positional
        .try_into()
        .map_err(|p: Vec<String>| format!("expected 2 arguments, got {}", p.len()))
}

/// The output directory (the first positional argument) and at least one torrent after it,
/// each made into a `T` by `source`.
pub fn out_dir_and_torrents<T>(
    mut positional: Vec<String>,
    source: impl Fn(&str) -> Result<T, String>,
) -> Result<(String, Vec<T>), String> {
    if positional.len() < 2 {
        return Err("expected an output directory and at least one torrent".into());
    }
    let out_dir = positional.remove(0);
    let torrents = positional
        .iter()
        .map(|a| source(a))
        .collect::<Result<_, _>>()?;
    Ok((out_dir, torrents))
}

/// A magnet link, or else the path of a .torrent file.
pub fn source_of(arg: &str) -> Result<TorrentSource, String> {
    if arg
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
    {
        let magnet = Magnet::parse(arg).map_err(|e| format!("{arg:?}: {e}"))?;
        Ok(TorrentSource::Magnet(Box::new(magnet)))
    } else {
        Ok(TorrentSource::File(arg.into()))
    }
}

/// Starts an engine listening on `listen` (default: any free port) and takes its alerts.
/// `isolated` turns DHT and local service discovery off, so a test on one host talks to nobody
/// else.
pub fn start_engine(
    listen: Option<SocketAddr>,
    isolated: bool,
) -> Result<(Engine, UnboundedReceiver<Alert>), Box<dyn Error>> {
    let mut config = Config::default();
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if isolated {
        config.dht = DhtConfig::disabled();
        config.lsd = false;
    }
    let engine = Engine::start(config)?;
    let alerts = engine
        .alerts()
        .ok_or("the alert stream was already taken")?;
    Ok((engine, alerts))
}

/// What [`Alerts::next`] waited for.
pub enum Next {
    Alert(Alert),
    /// Ctrl-C was pressed.
    Interrupted,
    /// The engine closed the alert stream.
    Closed,
}

/// The engine's alerts, until Ctrl-C.
pub struct Alerts {
    alerts: UnboundedReceiver<Alert>,
    ctrl_c: Pin<Box<dyn Future<Output = std::io::Result<()>>>>,
}

impl Alerts {
    pub fn new(alerts: UnboundedReceiver<Alert>) -> Self {
        Alerts {
            alerts,
            ctrl_c: Box::pin(tokio::signal::ctrl_c()),
        }
    }

    /// The next alert, or why there is none. Call no more after `Interrupted` or `Closed`.
    pub async fn next(&mut self) -> Next {
        tokio::select! {
            alert = self.alerts.recv() => match alert {
                Some(alert) => Next::Alert(alert),
                None => Next::Closed,
            },
            _ = &mut self.ctrl_c => Next::Interrupted,
        }
    }

    /// The next alert; `None` after Ctrl-C (printing "interrupted") or when the stream closes.
    pub async fn next_or_interrupted(&mut self) -> Option<Alert> {
        match self.next().await {
            Next::Alert(alert) => Some(alert),
            Next::Interrupted => {
                println!("interrupted");
                None
            }
            Next::Closed => None,
        }
    }
}

/// `part` of `whole` in percent (100 for an empty whole).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
