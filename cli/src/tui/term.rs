//! The terminal while `tui` runs: raw mode and the alternate screen, stderr sent to a log file
//! (engine warnings and hook output would otherwise scribble over the screen), and the way
//! back on every exit: [`Screen`]'s drop, and a panic hook for panics on any thread. Keys are
//! read on a thread of their own and sent to the event loop.

use std::fs::File;
use std::io::Stdout;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use anyhow::Context;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, event, execute, terminal};
use ratatui::Terminal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The terminal is in the TUI's modes (raw, alternate screen): [`restore`] has work to do.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real stderr while it points at the log file.
static SAVED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// The terminal in the TUI's modes; dropping it restores the terminal.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Takes over the terminal; stderr goes to `log` (appended) until [`restore`].
    pub fn enter(log: &Path) -> anyhow::Result<Screen> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open the log file {}", log.display()))?;
        install_panic_hook();
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on every early return must restore: the guard is made first.
        let mut stdout = std::io::stdout();
        let entered = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide);
        let screen = Terminal::new(CrosstermBackend::new(std::io::stdout()))
            .map(|terminal| Screen { terminal });
        match (entered, screen) {
            (Ok(()), Ok(screen)) => {
                redirect_stderr(&log_file);
                Ok(screen)
            }
            (Err(e), _) | (_, Err(e)) => {
                restore();
                Err(e).context("cannot set up the terminal")
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Points fd 2 at `log`, keeping the real stderr for [`restore`]. Best effort: if it fails,
/// stderr stays on the terminal (a stray warning then shows until the next redraw).
fn redirect_stderr(log: &File) {
    let Ok(saved) = rustix::io::dup(std::io::stderr()) else {
        return;
    };
    if rustix::stdio::dup2_stderr(log).is_ok() {
        *SAVED_STDERR.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
    }
}

/// Gives the terminal back: normal screen, cooked mode, cursor shown, stderr on the terminal.
/// Idempotent; safe from the panic hook.
pub fn restore() {
    if let Some(fd) = SAVED_STDERR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        let _ = rustix::stdio::dup2_stderr(&fd);
    }
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// A panic (on any thread) restores the terminal before its message is printed, so the
/// message is readable and the shell usable.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Terminal events read on their own thread; the thread ends when `stop` is set or the
/// receiver is dropped.
pub fn read_events(stop: Arc<AtomicBool>) -> UnboundedReceiver<event::Event> {
    let (tx, rx) = unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("rt-tui-keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(false) => {}
                    Ok(true) => match event::read() {
                        Ok(ev) => {
                            if tx.send(ev).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Err(_) => return,
                }
            }
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the key reader: keys are ignored");
    }
    rx
}
