//! The TUI's state without the terminal or the engine: the list of torrents (queued, being
//! added, in the engine, failed) in display order, the selection, the mode (list, help,
//! add prompt), and what each key does. Keys that need the engine come back as [`Action`]s
//! for the event loop (`mod.rs`) to carry out; it reports their outcome with
//! [`App::op_done`].
//!
//! The queue: `-j N` rows hold a slot (being added, or in the engine, not complete and
//! without an error; a paused one keeps its slot). Queued rows are not in the engine; the
//! first unheld queued row in display order starts when a slot is free, so moving rows with
//! `+`/`-` orders the queue (for rows already in the engine it only changes the display).

use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ringtorrent::{PeerInfo, TorrentId, TorrentStats, TorrentSummary};

use crate::batch::Started;
use crate::inputs::Entry;

/// What a row is now.
pub enum State {
    /// Waiting for a slot; `held` (space) keeps it from starting.
    Queued { held: bool },
    /// Being added to the engine (its data checked, or a magnet's metadata fetched).
    Adding,
    /// In the engine.
    Active(Box<Active>),
    /// Could not be started (or a list line that names no torrent).
    Failed(String),
}

/// A torrent in the engine.
pub struct Active {
    pub started: Started,
    pub stats: TorrentStats,
    /// A storage error that stopped it.
    pub error: Option<String>,
    /// A pause, resume or remove on its way.
    pub busy: Option<Op>,
    /// Its `--on-complete` command ran.
    pub hooked: bool,
}

/// An engine call that takes a while (it runs off the event loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pause,
    Resume,
    Remove,
}

/// What a key asks of the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Engine(Op, TorrentId),
    Quit,
}

/// One line of the list.
pub struct Row {
    /// Stable through reordering.
    pub key: u64,
    /// The input it came from (`None`: a list line that names no torrent).
    pub entry: Option<Entry>,
    /// The torrent's name once known, else the input's label.
    pub name: String,
    pub state: State,
}

impl Row {
    /// Holds a `-j` slot: being added, or downloading (paused too) without an error.
    pub fn holds_slot(&self) -> bool {
        match &self.state {
            State::Adding => true,
            State::Active(a) => !a.stats.complete && a.error.is_none(),
            _ => false,
        }
    }

    pub fn active(&self) -> Option<&Active> {
        match &self.state {
            State::Active(a) => Some(a),
            _ => None,
        }
    }
}

/// What the keys go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    List,
    Help,
    /// The add prompt with what was typed so far.
    Input(String),
}

pub struct App {
    pub rows: Vec<Row>,
    pub selected: usize,
    pub mode: Mode,
    /// The last message, and when it was set.
    pub status: Option<(String, Instant)>,
    /// `-j`: at most this many rows hold a slot (`usize::MAX`: no limit).
    pub max_active: usize,
    /// The peers of the selected torrent, as last asked.
    pub peers: Option<(TorrentId, Result<Vec<PeerInfo>, String>)>,
    next_key: u64,
}

impl App {
    pub fn new(max_active: usize) -> App {
        App {
            rows: Vec::new(),
            selected: 0,
            mode: Mode::List,
            status: None,
            max_active: if max_active == 0 {
                usize::MAX
            } else {
                max_active
            },
            peers: None,
            next_key: 1,
        }
    }

    /// Appends an entry to the queue.
    pub fn queue(&mut self, entry: Entry) {
        let name = entry.label();
        self.push(Some(entry), name, State::Queued { held: false });
    }

    /// Appends a row for an input that cannot be used.
    pub fn failed(&mut self, name: String, why: String) {
        self.push(None, name, State::Failed(why));
    }

    fn push(&mut self, entry: Option<Entry>, name: String, state: State) {
        let key = self.next_key;
        self.next_key += 1;
        self.rows.push(Row {
            key,
            entry,
            name,
            state,
        });
    }

    pub fn say(&mut self, msg: impl Into<String>) {
        self.status = Some((msg.into(), Instant::now()));
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.rows.get(self.selected)
    }

    /// The selected torrent's id if it is in the engine.
    pub fn selected_id(&self) -> Option<TorrentId> {
        self.selected_row()
            .and_then(Row::active)
            .map(|a| a.started.id)
    }

    fn row_of(&mut self, id: TorrentId) -> Option<(usize, &mut Active)> {
        self.rows
            .iter_mut()
            .enumerate()
            .find_map(|(i, r)| match &mut r.state {
                State::Active(a) if a.started.id == id => Some((i, &mut **a)),
                _ => None,
            })
    }

    /// The next entry to add when a slot is free (marked as being added), with its row's key.
    pub fn next_to_start(&mut self) -> Option<(u64, Entry)> {
        if self.rows.iter().filter(|r| r.holds_slot()).count() >= self.max_active {
            return None;
        }
        let row = self
            .rows
            .iter_mut()
            .find(|r| matches!(r.state, State::Queued { held: false }))?;
        row.state = State::Adding;
        Some((row.key, row.entry.clone()?))
    }

    /// An add finished: the row is in the engine, or failed.
    pub fn started(&mut self, key: u64, result: anyhow::Result<(Started, TorrentStats)>) {
        let Some(row) = self.rows.iter_mut().find(|r| r.key == key) else {
            return;
        };
        row.state = match result {
            Ok((started, stats)) => {
                row.name = started.name.clone();
                State::Active(Box::new(Active {
                    started,
                    stats,
                    error: None,
                    busy: None,
                    hooked: false,
                }))
            }
            Err(e) => {
                let why = format!("{e:#}").replace('\n', " ");
                self.status = Some((format!("{}: {why}", row.name), Instant::now()));
                State::Failed(why)
            }
        };
    }

    /// Fresh stats from [`ringtorrent::Engine::torrents`].
    pub fn refresh(&mut self, torrents: &[TorrentSummary]) {
        for t in torrents {
            if let Some((_, a)) = self.row_of(t.id) {
                a.stats = t.stats.clone();
            }
        }
    }

    /// A storage error stopped the torrent.
    pub fn error(&mut self, id: TorrentId, message: &str) {
        if let Some((_, a)) = self.row_of(id) {
            a.error = Some(message.to_string());
        }
    }

    /// The torrent completed: its entry, the first time (for `--on-complete`).
    pub fn complete(&mut self, id: TorrentId) -> Option<&Started> {
        let (_, a) = self.row_of(id)?;
        a.stats.complete = true;
        if a.hooked {
            return None;
        }
        a.hooked = true;
        Some(&a.started)
    }

    /// An engine call of [`Action::Engine`] returned.
    pub fn op_done(&mut self, op: Op, id: TorrentId, result: Result<(), String>) {
        let Some((i, a)) = self.row_of(id) else {
            return;
        };
        a.busy = None;
        let name = a.started.name.clone();
        let msg = match (op, result) {
            (Op::Pause, Ok(())) => {
                a.stats.paused = true;
                format!("{name}: paused")
            }
            (Op::Resume, Ok(())) => {
                a.stats.paused = false;
                a.error = None;
                format!("{name}: resumed")
            }
            (Op::Remove, Ok(())) => {
                self.rows.remove(i);
                self.clamp();
                format!("{name}: removed (its data is kept)")
            }
            (op, Err(e)) => format!("{name}: {op:?} failed: {e}").to_lowercase(),
        };
        self.say(msg);
    }

    fn clamp(&mut self) {
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }

    /// Handles one key; an action for the event loop if it needs the engine or quits.
    pub fn key(&mut self, k: KeyEvent) -> Option<Action> {
        if k.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        match &mut self.mode {
            Mode::Help => {
                self.mode = Mode::List;
                (k.code == KeyCode::Char('q')).then_some(Action::Quit)
            }
            Mode::Input(text) => {
                match k.code {
                    KeyCode::Esc => {
                        self.mode = Mode::List;
                        self.say("add cancelled");
                    }
                    KeyCode::Enter => {
                        let input = text.trim().to_string();
                        self.mode = Mode::List;
                        if !input.is_empty() {
                            self.add_typed(input);
                        }
                    }
                    KeyCode::Backspace => {
                        text.pop();
                    }
                    KeyCode::Char('u') if ctrl => text.clear(),
                    KeyCode::Char(c) if !ctrl => text.push(c),
                    _ => {}
                }
                None
            }
            Mode::List => self.list_key(k.code),
        }
    }

    fn list_key(&mut self, code: KeyCode) -> Option<Action> {
        let last = self.rows.len().saturating_sub(1);
        match code {
            KeyCode::Char('q') => return Some(Action::Quit),
            KeyCode::Char('?') | KeyCode::F(1) => self.mode = Mode::Help,
            KeyCode::Char('a') => self.mode = Mode::Input(String::new()),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::Char(' ') => return self.toggle(),
            KeyCode::Char('d') | KeyCode::Delete => return self.remove(),
            KeyCode::Char('+') | KeyCode::Char('=') => self.shift(true),
            KeyCode::Char('-') | KeyCode::Char('_') => self.shift(false),
            _ => {}
        }
        None
    }

    fn add_typed(&mut self, input: String) {
        let entry = Entry {
            origin: "typed".into(),
            input,
            options: Default::default(),
            error: None,
        };
        self.say(format!("{}: queued", entry.label()));
        self.queue(entry);
    }

    /// Space: pause or resume a torrent in the engine, hold or release a queued one, queue a
    /// failed one again.
    fn toggle(&mut self) -> Option<Action> {
        let row = self.rows.get_mut(self.selected)?;
        let name = row.name.clone();
        let (msg, action) = match &mut row.state {
            State::Queued { held } => {
                *held = !*held;
                let msg = if *held { "held in the queue" } else { "queued" };
                (format!("{name}: {msg}"), None)
            }
            State::Adding => (format!("{name}: still being added"), None),
            State::Active(a) if a.busy.is_some() => (format!("{name}: busy"), None),
            State::Active(a) => {
                let op = if a.stats.paused {
                    Op::Resume
                } else {
                    Op::Pause
                };
                a.busy = Some(op);
                return Some(Action::Engine(op, a.started.id));
            }
            State::Failed(_) if row.entry.is_some() => {
                row.state = State::Queued { held: false };
                (format!("{name}: queued again"), None)
            }
            State::Failed(_) => return None,
        };
        self.say(msg);
        action
    }

    /// `d`: remove from the engine (keeping the data) or from the list.
    fn remove(&mut self) -> Option<Action> {
        let row = self.rows.get_mut(self.selected)?;
        let name = row.name.clone();
        match &mut row.state {
            State::Adding => self.say(format!("{name}: still being added")),
            State::Active(a) if a.busy.is_some() => self.say(format!("{name}: busy")),
            State::Active(a) => {
                a.busy = Some(Op::Remove);
                return Some(Action::Engine(Op::Remove, a.started.id));
            }
            State::Queued { .. } | State::Failed(_) => {
                self.rows.remove(self.selected);
                self.clamp();
                self.say(format!("{name}: taken off the list"));
            }
        }
        None
    }

    /// `+` (up) / `-` (down): the selected row trades places with its neighbour.
    fn shift(&mut self, up: bool) {
        let i = self.selected;
        let j = if up {
            i.checked_sub(1)
        } else {
            Some(i + 1).filter(|&j| j < self.rows.len())
        };
        if let Some(j) = j {
            self.rows.swap(i, j);
            self.selected = j;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;
    use std::path::PathBuf;

    fn entry(name: &str) -> Entry {
        Entry {
            origin: "test".into(),
            input: format!("/x/{name}.torrent"),
            options: Default::default(),
            error: None,
        }
    }

    fn started(id: u64, name: &str) -> (Started, TorrentStats) {
        let s = Started {
            id: TorrentId(id),
            name: name.into(),
            info_hash: ringtorrent::InfoHash([id as u8; 20]),
            dir: PathBuf::from("/x"),
            add_secs: 0.0,
            seed_ratio: 0.0,
        };
        (s, TorrentStats::default())
    }

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn the_queue_starts_in_display_order_within_the_limit() {
        let mut app = App::new(1);
        for n in ["a", "b", "c"] {
            app.queue(entry(n));
        }
        // `c` moves to the top of the queue: it starts first.
        app.selected = 2;
        press(&mut app, KeyCode::Char('+'));
        press(&mut app, KeyCode::Char('+'));
        assert_eq!(app.selected, 0);
        let (key, e) = app.next_to_start().unwrap();
        assert_eq!(e.input, "/x/c.torrent");
        assert!(app.next_to_start().is_none(), "one slot");
        app.started(key, Ok(started(1, "c")));
        assert!(
            app.next_to_start().is_none(),
            "a running torrent keeps its slot"
        );
        // Pausing keeps the slot; completing frees it.
        assert_eq!(
            press(&mut app, KeyCode::Char(' ')),
            Some(Action::Engine(Op::Pause, TorrentId(1)))
        );
        app.op_done(Op::Pause, TorrentId(1), Ok(()));
        assert!(app.next_to_start().is_none());
        assert!(app.complete(TorrentId(1)).is_some());
        assert!(app.complete(TorrentId(1)).is_none(), "the hook runs once");
        // `b` is held: `a` goes first.
        app.selected = 2;
        press(&mut app, KeyCode::Char(' '));
        assert!(matches!(app.rows[2].state, State::Queued { held: true }));
        assert_eq!(app.next_to_start().unwrap().1.input, "/x/a.torrent");
    }

    #[test]
    fn remove_add_and_the_prompt() {
        let mut app = App::new(0);
        app.queue(entry("a"));
        let (key, _) = app.next_to_start().unwrap();
        app.started(key, Ok(started(7, "a")));
        assert_eq!(
            press(&mut app, KeyCode::Char('d')),
            Some(Action::Engine(Op::Remove, TorrentId(7)))
        );
        assert_eq!(press(&mut app, KeyCode::Char(' ')), None, "busy");
        app.op_done(Op::Remove, TorrentId(7), Ok(()));
        assert!(app.rows.is_empty());
        press(&mut app, KeyCode::Char('a'));
        for c in "/y/q.torrentx".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Backspace);
        // Keys go to the prompt, not the list: `q` was typed, not quit.
        assert_eq!(app.mode, Mode::Input("/y/q.torrent".into()));
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.mode, Mode::List);
        assert_eq!(app.rows[0].name, "q.torrent");
        press(&mut app, KeyCode::Char('a'));
        press(&mut app, KeyCode::Char('z'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.rows.len(), 1);
        assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Quit));
    }
}
