//! Hash-check progress while a torrent is added: `download` (rechecks) and `seed` (the initial
//! check) show pieces checked of the total and the rate, as a bar on a terminal or as plain
//! lines (at most one a second) otherwise.
//!
//! `Engine::add_torrent` does the check before it returns, so it runs on its own thread while
//! this one reads the engine's `CheckProgress` alerts. Other alerts that arrive meanwhile (the
//! torrent's `Rechecked`, `TorrentComplete`, ...) are handed back to the caller in order, to
//! be handled once it knows the torrent.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ringtorrent::{AddTorrent, Alert, Engine, EngineError, TorrentId};
use tokio::sync::mpsc::UnboundedReceiver;

/// How check progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDisplay {
    /// A bar on stderr (a terminal).
    Bar,
    /// `name: checked N/M pieces (X GB/s)` lines on stderr, at most one a second.
    Lines,
    /// Nothing.
    Quiet,
}

impl CheckDisplay {
    /// A bar if stderr is a terminal, lines if not, nothing if `quiet`.
    pub fn for_stderr(quiet: bool) -> CheckDisplay {
        use std::io::IsTerminal;
        if quiet {
            CheckDisplay::Quiet
        } else if std::io::stderr().is_terminal() {
            CheckDisplay::Bar
        } else {
            CheckDisplay::Lines
        }
    }
}

/// Adds `add` on a helper thread and shows its check's progress until the add returns.
/// Alerts other than `CheckProgress` read meanwhile are appended to `held`.
pub async fn add_showing_check(
    engine: &Engine,
    add: AddTorrent,
    name: &str,
    piece_length: u64,
    alerts: &mut UnboundedReceiver<Alert>,
    held: &mut Vec<Alert>,
    display: CheckDisplay,
) -> anyhow::Result<Result<TorrentId, EngineError>> {
    let e = engine.clone();
    let adding = std::thread::Builder::new()
        .name("rt-add".into())
        .spawn(move || e.add_torrent(add))?;
    let mut view = CheckView::new(name, piece_length, display);
    while !adding.is_finished() {
        tokio::select! {
            a = alerts.recv() => match a {
                Some(a) => view.take(a, held),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let result = adding
        .join()
        .map_err(|_| anyhow::anyhow!("adding the torrent panicked"))?;
    // Whatever the add sent last (its final progress, `Rechecked`) is queued by now.
    while let Ok(a) = alerts.try_recv() {
        view.take(a, held);
    }
    view.finish();
    Ok(result)
}

/// The progress of one check on screen.
struct CheckView {
    name: String,
    piece_length: u64,
    display: CheckDisplay,
    started: Instant,
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    /// The last `(checked, total)` seen.
    state: Option<(u32, u32)>,
}

impl CheckView {
    fn new(name: &str, piece_length: u64, display: CheckDisplay) -> CheckView {
        CheckView {
            name: name.to_string(),
            piece_length,
            display,
            started: Instant::now(),
            bar: None,
            last_line: None,
            state: None,
        }
    }

    fn take(&mut self, alert: Alert, held: &mut Vec<Alert>) {
        match alert {
            Alert::CheckProgress { checked, total, .. } => self.show(checked, total),
            other => held.push(other),
        }
    }

    fn rate_gb_per_s(&self, checked: u32) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        u64::from(checked).saturating_mul(self.piece_length) as f64 / secs / 1e9
    }

    fn show(&mut self, checked: u32, total: u32) {
        self.state = Some((checked, total));
        let rate = self.rate_gb_per_s(checked);
        match self.display {
            CheckDisplay::Quiet => {}
            CheckDisplay::Bar => {
                let bar = self.bar.get_or_insert_with(|| {
                    let template = "{msg:20!} checking [{bar:30}] {pos}/{len} pieces {prefix}";
                    styled_bar(ProgressBar::new(u64::from(total)), template, &self.name)
                });
                bar.set_position(u64::from(checked));
                bar.set_prefix(format!("{rate:.2} GB/s"));
            }
            CheckDisplay::Lines => {
                let due = self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due && checked < total {
                    self.last_line = Some(Instant::now());
                    eprintln!(
                        "{}: checked {checked}/{total} pieces ({rate:.2} GB/s)",
                        self.name
                    );
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.display == CheckDisplay::Lines && self.last_line.is_some() {
            if let Some((checked, total)) = self.state {
                eprintln!(
                    "{}: checked {checked}/{total} pieces ({:.2} GB/s)",
                    self.name,
                    self.rate_gb_per_s(checked)
                );
            }
        }
    }
}

/// `bar` in our style (`template`, `=> ` progress characters), labelled `name`.
pub fn styled_bar(bar: ProgressBar, template: &str, name: &str) -> ProgressBar {
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}
