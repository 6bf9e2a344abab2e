//! The batch side of `download`: starting each entry (a .torrent path or a magnet link, with
//! its own options), `--on-complete` commands, `--json` event lines and the closing table.
//! One engine serves the whole batch; `download.rs` runs the queue.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ringtorrent::{AddTorrent, Alert, Engine, InfoHash, TorrentId, TorrentSource};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::download::DownloadArgs;
use crate::inputs::Entry;

/// A started entry: what the queue and the display need to know of it.
pub struct Started {
    pub id: TorrentId,
    pub name: String,
    pub info_hash: InfoHash,
    pub dir: PathBuf,
    /// How long adding took (a recheck, or the metadata fetch of a magnet).
    pub add_secs: f64,
    pub seed_ratio: f64,
}

/// Adds one entry to the engine and waits until its torrent is set up (data checked, or
/// metadata fetched). Alerts of other torrents that come meanwhile are kept in `held`.
pub async fn start_entry(
    engine: &Engine,
    entry: &Entry,
    args: &DownloadArgs,
    alerts: &mut UnboundedReceiver<Alert>,
    held: &mut Vec<Alert>,
    json: &Json,
) -> anyhow::Result<Started> {
    if let Some(e) = &entry.error {
        bail!("{e}");
    }
    let o = &entry.options;
    let dir = o.dir.clone().unwrap_or_else(|| args.output.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut select = args.select.clone();
    if let Some(s) = &o.select {
        select.select = Some(s.clone());
        select.select_glob.clear();
    }
    let seed_ratio = o.seed_ratio.unwrap_or(args.seed_ratio);
    let add_started = Instant::now();
    let id = if crate::magnet::is_magnet(&entry.input) {
        let m = crate::magnet::parse(&entry.input)?;
        let name = crate::magnet::display_name(&m);
        json.event("added", &m.info_hash, &[("name", name.as_str().into())]);
        let mut add = AddTorrent::new(TorrentSource::Magnet(Box::new(m)), &dir);
        fill(&mut add, args, o.max_download_rate);
        let deadline =
            (args.timeout > 0).then(|| Instant::now() + Duration::from_secs(args.timeout));
        let id = crate::magnet::add_and_wait(
            engine,
            add,
            &name,
            alerts,
            held,
            crate::magnet::WaitOpts {
                quiet: args.quiet || json.on,
                verbose: args.verbose,
                deadline,
            },
        )
        .await?;
        let meta = engine.metainfo(id).context("torrent vanished")?;
        json.event(
            "metadata",
            &meta.info_hash,
            &[
                ("name", meta.info.name.as_str().into()),
                ("seconds", add_started.elapsed().as_secs_f64().into()),
            ],
        );
        if select.is_selective() {
            for (i, p) in select.priorities(&meta.info)?.into_iter().enumerate() {
                engine.set_file_priority(id, i, p)?;
            }
        }
        if let Some(dest) = &args.save_torrent {
            crate::magnet::save_torrent(engine, id, dest)?;
        }
        id
    } else {
        let path = PathBuf::from(&entry.input);
        let meta = crate::info::load_torrent(&path)?;
        let priorities = select.priorities(&meta.info)?;
        json.event(
            "added",
            &meta.info_hash,
            &[("name", meta.info.name.as_str().into())],
        );
        // Data from an earlier run: the engine trusts its resume file if the files match it,
        // else hash-checks what exists and keeps the pieces that verify (only verified pieces
        // are ever written, so the check finds exactly what is left to fetch).
        let existing = dir.join(&meta.info.name).exists();
        let quiet = args.quiet || json.on;
        if (existing || args.recheck) && !quiet {
            eprintln!("{}: looking at existing data", meta.info.name);
        }
        let name = meta.info.name.clone();
        let piece_length = u64::from(meta.info.piece_length);
        let mut add = AddTorrent::new(TorrentSource::Metainfo(Box::new(meta)), &dir);
        add.check_existing = existing;
        add.file_priorities = priorities;
        fill(&mut add, args, o.max_download_rate);
        let display = crate::progress::CheckDisplay::for_stderr(quiet);
        crate::progress::add_showing_check(engine, add, &name, piece_length, alerts, held, display)
            .await??
    };
    let meta = engine.metainfo(id).context("torrent vanished")?;
    json.event("started", &meta.info_hash, &[]);
    Ok(Started {
        id,
        name: meta.info.name.clone(),
        info_hash: meta.info_hash,
        dir,
        add_secs: add_started.elapsed().as_secs_f64(),
        seed_ratio,
    })
}

/// The options every entry shares.
fn fill(add: &mut AddTorrent, args: &DownloadArgs, rate: Option<u64>) {
    add.recheck = args.recheck;
    add.peers = args.peers.clone();
    add.sequential = args.select.sequential;
    add.trackers = args.trackers.clone();
    add.download_rate_limit = rate.unwrap_or(0);
}

/// Runs `--on-complete CMD` through `sh -c` for a finished torrent, with
/// `RINGTORRENT_NAME`, `RINGTORRENT_INFO_HASH` and `RINGTORRENT_PATH` (the downloaded file or
/// directory) in its environment. It runs beside the batch; a failure is reported on stderr.
/// The returned thread ends when the command does: the CLI waits for it before exiting.
/// `output`: where its stdout and stderr go (inherited when `None`).
pub fn on_complete(
    cmd: &str,
    s: &Started,
    output: Option<(std::process::Stdio, std::process::Stdio)>,
) -> Option<std::thread::JoinHandle<()>> {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .env("RINGTORRENT_NAME", &s.name)
        .env("RINGTORRENT_INFO_HASH", s.info_hash.to_hex())
        .env("RINGTORRENT_PATH", s.dir.join(&s.name))
        .stdin(std::process::Stdio::null());
    if let Some((out, err)) = output {
        c.stdout(out).stderr(err);
    }
    let name = s.name.clone();
    match c.spawn() {
        Ok(mut child) => Some(std::thread::spawn(move || match child.wait() {
            Ok(st) if st.success() => {}
            Ok(st) => eprintln!("{name}: --on-complete command failed ({st})"),
            Err(e) => eprintln!("{name}: --on-complete command: {e}"),
        })),
        Err(e) => {
            eprintln!("{name}: cannot run the --on-complete command: {e}");
            None
        }
    }
}

/// `--json`: one object a line on stdout, each with `type`, `time` (seconds since the Unix
/// epoch) and `info_hash`.
pub struct Json {
    pub on: bool,
}

impl Json {
    pub fn event(&self, kind: &str, ih: &InfoHash, fields: &[(&str, serde_json::Value)]) {
        if self.on {
            let mut all = vec![("info_hash", ih.to_hex().into())];
            all.extend(fields.iter().cloned());
            self.emit(kind, &all);
        }
    }

    /// An entry that could not be started (no info hash known): `input-error` with where it
    /// was given (`origin`), the input as given and why.
    pub fn input_error(&self, origin: &str, input: &str, message: &str) {
        if self.on {
            let fields = [
                ("origin", origin.into()),
                ("input", input.into()),
                ("message", message.into()),
            ];
            self.emit("input-error", &fields);
        }
    }

    fn emit(&self, kind: &str, fields: &[(&str, serde_json::Value)]) {
        let mut o = serde_json::Map::new();
        o.insert("type".into(), kind.into());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        o.insert("time".into(), now.into());
        for (k, v) in fields {
            o.insert((*k).into(), v.clone());
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (a reader that went away) must not stop the downloads.
        let _ = writeln!(out, "{}", serde_json::Value::Object(o));
        let _ = out.flush();
    }
}

/// One row of the closing table.
pub struct Row {
    pub name: String,
    pub size: u64,
    pub secs: f64,
    pub status: String,
}

/// The closing table: name, size, time, average rate, status or reason.
pub fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>8}  {:>12}  status\n",
        "name", "size", "time", "rate"
    );
    for r in rows {
        let name: String = r.name.chars().take(width).collect();
        let rate = if r.secs > 0.0 && r.status == "complete" {
            format!(
                "{}/s",
                crate::util::human_size((r.size as f64 / r.secs) as u64)
            )
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{name:<width$}  {:>10}  {:>7.1}s  {rate:>12}  {}\n",
            crate::util::human_size(r.size),
            r.secs,
            r.status
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_rates_only_completed_rows() {
        let t = table(&[
            Row {
                name: "ubuntu.iso".into(),
                size: 4 << 30,
                secs: 4.0,
                status: "complete".into(),
            },
            Row {
                name: "x".into(),
                size: 0,
                secs: 0.0,
                status: "failed: list:3: no such file".into(),
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("name      "));
        assert!(lines[1].contains("1.00 GiB/s"), "{t}");
        assert!(lines[2].contains(" -  failed: list:3"), "{t}");
    }
}
