//! Drawing the TUI: a totals line, the torrent table, the selected torrent's details and
//! peers, and a key line (or the last message); the help and the add prompt as overlays.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Table, TableState,
};
use ratatui::Frame;

use super::app::{Active, App, Mode, Op, Row, State};
use crate::util::{format_duration, human_size};

/// How long a message stays in the key line.
const MESSAGE_FOR: Duration = Duration::from_secs(8);

pub const HELP: &[(&str, &str)] = &[
    ("up/down, k/j", "select a torrent"),
    (
        "space",
        "pause / resume it (a queued one: hold / release it)",
    ),
    (
        "a",
        "add a .torrent path or a magnet link (Enter adds, Esc cancels)",
    ),
    ("d", "remove it from the session; its data stays on disk"),
    (
        "+ / -",
        "move it up / down: queued torrents start in list order",
    ),
    ("?", "this help (any key closes it)"),
    (
        "q, Ctrl-C",
        "quit: saves resume data, the same command continues",
    ),
];

const HELP_NOTES: &[&str] = &[
    "-j N: at most N torrents download at once; the others wait as \"queued\" and are",
    "added to the session when a slot frees. A paused torrent keeps its slot; a complete",
    "one seeds and frees it. + / - only change the display order of torrents already",
    "downloading or seeding.",
];

pub fn draw(f: &mut Frame, app: &App) {
    let [head, list, details, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(totals(app)), head);
    table(f, app, list);
    f.render_widget(
        Paragraph::new(detail_lines(app)).block(Block::bordered().title(" details ")),
        details,
    );
    f.render_widget(Paragraph::new(key_line(app)), keys);
    match &app.mode {
        Mode::List => {}
        Mode::Help => help(f),
        Mode::Input(text) => prompt(f, text),
    }
}

fn rate(bytes_per_s: u64) -> String {
    if bytes_per_s == 0 {
        "-".into()
    } else {
        format!("{}/s", human_size(bytes_per_s))
    }
}

fn totals(app: &App) -> Line<'static> {
    let active: Vec<&Active> = app.rows.iter().filter_map(Row::active).collect();
    let down: u64 = active
        .iter()
        .map(|a| a.stats.download_rate_bytes_per_s)
        .sum();
    let up: u64 = active.iter().map(|a| a.stats.upload_rate_bytes_per_s).sum();
    let count = |f: &dyn Fn(&Row) -> bool| app.rows.iter().filter(|r| f(r)).count();
    let limit = if app.max_active == usize::MAX {
        "no limit".to_string()
    } else {
        format!("max {}", app.max_active)
    };
    Line::from(vec![
        Span::styled(" ringtorrent ", Style::new().reversed()),
        Span::raw(format!(
            "  down {}  up {}  | {} downloading ({limit}), {} queued, {} complete, {} failed  | ? help",
            rate(down),
            rate(up),
            count(&|r| r.holds_slot()),
            count(&|r| matches!(r.state, State::Queued { .. })),
            count(&|r| r.active().is_some_and(|a| a.stats.complete)),
            count(&|r| matches!(r.state, State::Failed(_))
                || r.active().is_some_and(|a| a.error.is_some())),
        )),
    ])
}

/// A row's state word.
fn state_word(r: &Row) -> String {
    match &r.state {
        State::Queued { held: false } => "queued".into(),
        State::Queued { held: true } => "held".into(),
        State::Adding => "adding".into(),
        State::Failed(_) => "failed".into(),
        State::Active(a) => match (a.busy, &a.error) {
            (Some(Op::Pause), _) => "pausing".into(),
            (Some(Op::Resume), _) => "resuming".into(),
            (Some(Op::Remove), _) => "removing".into(),
            (None, Some(_)) => "error".into(),
            (None, None) if a.stats.paused => "paused".into(),
            (None, None) if a.stats.complete => "seeding".into(),
            (None, None) if a.stats.peers == 0 => "connecting".into(),
            (None, None) => "downloading".into(),
        },
    }
}

fn progress_cell(a: &Active) -> String {
    let total = a.stats.wanted_bytes.max(1);
    let done = if a.stats.complete {
        total
    } else {
        a.stats.wanted_verified_bytes.min(total)
    };
    let frac = done as f64 / total as f64;
    let filled = ((frac * 10.0).floor() as usize).min(10);
    format!(
        "{}{} {:>5.1}%",
        "#".repeat(filled),
        ".".repeat(10 - filled),
        frac * 100.0
    )
}

fn eta(a: &Active) -> String {
    let left = a
        .stats
        .wanted_bytes
        .saturating_sub(a.stats.wanted_verified_bytes);
    match left.checked_div(a.stats.download_rate_bytes_per_s) {
        Some(secs) if !a.stats.complete && !a.stats.paused && left > 0 => {
            format_duration(Duration::from_secs(secs))
        }
        _ => "-".into(),
    }
}

fn table(f: &mut Frame, app: &App, area: Rect) {
    let header = TableRow::new([
        "#", "name", "size", "progress", "down", "up", "peers", "eta", "state",
    ])
    .style(Style::new().bold());
    let rows = app.rows.iter().enumerate().map(|(i, r)| {
        let cells: Vec<Cell> = match r.active() {
            Some(a) => vec![
                Cell::from(format!("{}", i + 1)),
                Cell::from(r.name.clone()),
                Cell::from(human_size(a.stats.wanted_bytes)),
                Cell::from(progress_cell(a)),
                Cell::from(rate(a.stats.download_rate_bytes_per_s)),
                Cell::from(rate(a.stats.upload_rate_bytes_per_s)),
                Cell::from(a.stats.peers.to_string()),
                Cell::from(eta(a)),
                Cell::from(state_word(r)),
            ],
            None => vec![
                Cell::from(format!("{}", i + 1)),
                Cell::from(r.name.clone()),
                Cell::from("-"),
                Cell::from(""),
                Cell::from(""),
                Cell::from(""),
                Cell::from(""),
                Cell::from(""),
                Cell::from(state_word(r)),
            ],
        };
        let style = match (&r.state, r.active()) {
            (State::Failed(_), _) => Style::new().red(),
            (_, Some(a)) if a.error.is_some() => Style::new().red(),
            (_, Some(a)) if a.stats.complete => Style::new().green(),
            (State::Queued { .. }, _) => Style::new().dim(),
            _ => Style::new(),
        };
        TableRow::new(cells).style(style)
    });
    let widths = [
        Constraint::Length(3),
        Constraint::Min(16),
        Constraint::Length(10),
        Constraint::Length(17),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(11),
    ];
    let t = Table::new(rows, widths)
        .header(header)
        .block(Block::new().borders(Borders::TOP).title(" torrents "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state =
        TableState::default().with_selected((!app.rows.is_empty()).then_some(app.selected));
    f.render_stateful_widget(t, area, &mut state);
}

fn detail_lines(app: &App) -> Vec<Line<'static>> {
    let Some(r) = app.selected_row() else {
        return vec![Line::from("no torrents: press a to add one")];
    };
    let mut lines = vec![Line::from(Span::styled(
        r.name.clone(),
        Style::new().bold(),
    ))];
    let input = r.entry.as_ref().map_or(String::new(), |e| e.input.clone());
    match &r.state {
        State::Queued { .. } => lines.push(Line::from(format!("waiting for a slot: {input}"))),
        State::Adding => lines.push(Line::from(format!(
            "adding (checking existing data, or fetching a magnet's metadata): {input}"
        ))),
        State::Failed(why) => lines.push(Line::from(format!("failed: {why}")).red()),
        State::Active(a) => active_lines(app, a, &mut lines),
    }
    lines
}

fn active_lines(app: &App, a: &Active, lines: &mut Vec<Line<'static>>) {
    let s = &a.stats;
    lines.push(Line::from(format!(
        "{}  in {}",
        a.started.info_hash.to_hex(),
        a.started.dir.display()
    )));
    lines.push(Line::from(format!(
        "pieces {}/{}  downloaded {}  uploaded {}  wasted {}  hash failures {}",
        s.pieces_have,
        s.pieces_total,
        human_size(s.downloaded_bytes),
        human_size(s.uploaded_bytes),
        human_size(s.wasted_bytes),
        s.hash_failures
    )));
    if let Some(e) = &a.error {
        lines.push(Line::from(format!("error: {e} (space resumes once fixed)")).red());
    }
    match &app.peers {
        Some((id, Ok(peers))) if *id == a.started.id => {
            if peers.is_empty() {
                lines.push(Line::from("no peers connected"));
            }
            for p in peers.iter().take(3) {
                let have = 100.0 * f64::from(p.pieces) / f64::from(p.pieces_total.max(1));
                lines.push(Line::from(format!(
                    "peer {:<22} {:<18} down {:>12}  up {:>12}  has {have:.0}%",
                    p.addr.to_string(),
                    p.client.chars().take(18).collect::<String>(),
                    rate(p.download_rate_bytes_per_s),
                    rate(p.upload_rate_bytes_per_s),
                )));
            }
            if peers.len() > 3 {
                lines.push(Line::from(format!("and {} more peers", peers.len() - 3)));
            }
        }
        Some((id, Err(e))) if *id == a.started.id => {
            lines.push(Line::from(format!("peers: {e}")));
        }
        _ => {}
    }
}

fn key_line(app: &App) -> Line<'static> {
    if let Some((msg, at)) = &app.status {
        if at.elapsed() < MESSAGE_FOR {
            return Line::from(format!(" {msg}"));
        }
    }
    Line::from(" space pause/resume  a add  d remove  +/- move in queue  ? help  q quit").dim()
}

/// A `w` x `h` rectangle in the middle of `area` (clipped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn help(f: &mut Frame) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>14}  "), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.extend(HELP_NOTES.iter().map(|l| Line::from(*l)));
    let area = centered(f.area(), 90, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" help: keys ")),
        area,
    );
}

fn prompt(f: &mut Frame, text: &str) {
    let area = centered(f.area(), f.area().width.saturating_sub(4).max(20), 3);
    // The end of a long input stays visible.
    let room = usize::from(area.width.saturating_sub(3));
    let shown: String = {
        let n = text.chars().count();
        text.chars().skip(n.saturating_sub(room)).collect()
    };
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(shown),
            Span::raw("_").slow_blink(),
        ]))
        .block(
            Block::bordered()
                .title(" add: .torrent path or magnet link (Enter adds, Esc cancels) "),
        ),
        area,
    );
}
