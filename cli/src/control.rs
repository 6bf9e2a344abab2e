//! Commands typed while `ringtorrent download` runs: on a terminal, single keys (`p` pauses or
//! resumes every torrent, `q` stops gracefully like Ctrl-C); when stdin is not a terminal, the
//! same as lines (`pause`, `resume`, `quit`), so that scripts and tests can drive a session.
//! End of input (e.g. `< /dev/null`) just ends the commands.

use std::io::{IsTerminal, Read};

use rustix::termios::{
    tcgetattr, tcsetattr, LocalModes, OptionalActions, SpecialCodeIndex, Termios,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// A command from the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Pause if running, resume if paused (the `p` key).
    Toggle,
    Pause,
    Resume,
    Quit,
}

/// Parses one line of non-terminal input; `None` for anything else.
pub fn parse_line(line: &str) -> Option<Command> {
    match line.trim() {
        "pause" => Some(Command::Pause),
        "resume" => Some(Command::Resume),
        "quit" => Some(Command::Quit),
        _ => None,
    }
}

/// Parses one key typed on a terminal; `None` for anything else.
pub fn parse_key(key: u8) -> Option<Command> {
    match key {
        b'p' | b'P' | b' ' => Some(Command::Toggle),
        b'q' | b'Q' => Some(Command::Quit),
        _ => None,
    }
}

/// Puts the terminal on stdin in non-canonical, no-echo mode while alive (keys arrive one by
/// one and are not printed over the progress bars); restores it when dropped.
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    fn enable() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut t = saved.clone();
        t.local_modes.remove(LocalModes::ICANON | LocalModes::ECHO);
        t.special_codes[SpecialCodeIndex::VMIN] = 1;
        t.special_codes[SpecialCodeIndex::VTIME] = 0;
        tcsetattr(&stdin, OptionalActions::Now, &t).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Starts reading commands from stdin on a thread. Returns the receiver and, on a terminal, the
/// guard that restores it (keep it alive for the session). `interactive`: stderr shows progress
/// to a person, so keys are read; otherwise lines are.
pub fn start(interactive: bool) -> (UnboundedReceiver<Command>, Option<RawTerminal>) {
    let (tx, rx) = unbounded_channel();
    let stdin = std::io::stdin();
    let guard = if stdin.is_terminal() {
        if !interactive {
            // A terminal, but progress goes elsewhere: typing is not expected.
            return (rx, None);
        }
        RawTerminal::enable()
    } else {
        None
    };
    let keys = guard.is_some();
    let spawned = std::thread::Builder::new()
        .name("rt-commands".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            if keys {
                let mut b = [0u8; 1];
                while let Ok(1) = stdin.read(&mut b) {
                    if let Some(c) = parse_key(b[0]) {
                        if tx.send(c).is_err() {
                            return;
                        }
                    }
                }
            } else {
                let mut line = String::new();
                loop {
                    line.clear();
                    match std::io::BufRead::read_line(&mut stdin, &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if let Some(c) = parse_line(&line) {
                        if tx.send(c).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the command reader: keys are ignored");
    }
    (rx, guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_keys() {
        assert_eq!(parse_line("pause\n"), Some(Command::Pause));
        assert_eq!(parse_line("  resume "), Some(Command::Resume));
        assert_eq!(parse_line("quit"), Some(Command::Quit));
        assert_eq!(parse_line("paus"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_key(b'p'), Some(Command::Toggle));
        assert_eq!(parse_key(b'q'), Some(Command::Quit));
        assert_eq!(parse_key(b'x'), None);
    }
}
