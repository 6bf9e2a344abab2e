//! `ringtorrent tui` (issue 16) driven like a person would: in a tmux pane, with keys sent by
//! `tmux send-keys` and the screen read back by `tmux capture-pane`. Two torrents, each from
//! its own rate-limited libtorrent seeder so they last several seconds: pausing one stops it
//! while the other goes on, resuming continues it, `d` removes it (its data kept), `a` adds
//! it back from its .torrent path and it goes on from where it was, both complete, `q` exits 0
//! and the files verify. tmux is a Debian package (`tmux`): missing, the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rt_testkit::libtorrent::{LtSeedOpts, LtSeeder};
use rt_testkit::torrent::PayloadFixture;
use rt_testkit::{ringtorrent_bin, wait_until, PayloadSpec};

const PIECE: u32 = 256 * 1024;
const SIZE: u64 = 12 << 20;
const RATE: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(30);

/// A tmux server of our own (its own socket) running one session; killed on drop, with the
/// process in its pane.
struct Tmux {
    socket: String,
    /// The pane's process group (the shell running ringtorrent leads it).
    pane_pgid: Option<i32>,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).env_remove("TMUX");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running tmux")
    }

    /// Starts `shell_command` in a detached 120x30 session.
    fn start(shell_command: &str) -> Tmux {
        assert!(
            rt_testkit::proc::on_path("tmux"),
            "tmux is missing: apt-get install tmux"
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut t = Tmux {
            socket: format!("rt-tui-test-{}-{nanos}", std::process::id()),
            pane_pgid: None,
        };
        let out = t
            .cmd()
            .env("TERM", "xterm-256color")
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
            ])
            .arg(shell_command)
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = t.run(&["display-message", "-p", "#{pane_pid}"]);
        t.pane_pgid = String::from_utf8_lossy(&pid.stdout).trim().parse().ok();
        t
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// `tmux send-keys` names (`Space`, `Enter`, `q`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    /// Types `text` as it is.
    fn type_text(&self, text: &str) {
        assert!(self.run(&["send-keys", "-l", text]).status.success());
    }

    fn alive(&self) -> bool {
        self.run(&["has-session"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if let Some(pgid) = self.pane_pgid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.run(&["kill-server"]);
    }
}

/// The table row naming `name` (rows start with the selection mark or blanks; the details
/// box's lines start with its border).
fn row(screen: &str, name: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| (l.starts_with("> ") || l.starts_with("  ")) && l.contains(name))
        .map(str::to_string)
}

/// The percentage in a row (`####...... 42.1%`).
fn pct(line: &str) -> Option<f64> {
    let end = line.find('%')?;
    line[..end].split_whitespace().last()?.parse().ok()
}

fn row_pct(screen: &str, name: &str) -> Option<f64> {
    row(screen, name).as_deref().and_then(pct)
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Waits for `cond` on the screen; on a timeout, panics with the screen and the TUI's log.
fn wait_screen(t: &Tmux, log: &Path, what: &str, mut cond: impl FnMut(&str) -> bool) {
    let mut last = String::new();
    let r = wait_until(WAIT, what, || {
        last = t.screen();
        cond(&last)
    });
    if let Err(e) = r {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{e}\nscreen:\n{last}\ntui.log:\n{log}");
    }
}

#[test]
fn the_tui_pauses_removes_adds_and_finishes_two_downloads() {
    let names = ["tui-a.bin", "tui-b.bin"];
    let fixtures: Vec<PayloadFixture> = names
        .iter()
        .enumerate()
        .map(|(i, n)| PayloadFixture::new(PayloadSpec::single(n, SIZE, 700 + i as u64), PIECE))
        .collect::<Result<_, _>>()
        .unwrap();
    let opts = LtSeedOpts {
        upload_rate_limit_bytes_per_s: RATE,
        ..Default::default()
    };
    let seeders = LtSeeder::start_each(&fixtures, &opts).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out: PathBuf = work.path().join("out");
    let exit_file = work.path().join("exit");
    let log = out.join(".ringtorrent").join("tui.log");
    let mut command = format!(
        "{} tui {} {} -o {} --no-dht --no-lsd --no-trackers --listen 127.0.0.1:0",
        quote(&ringtorrent_bin().unwrap()),
        quote(&fixtures[0].torrent),
        quote(&fixtures[1].torrent),
        quote(&out)
    );
    for s in &seeders {
        command += &format!(" --peer {}", s.addr());
    }
    command += &format!("; echo $? > {}", quote(&exit_file));
    let t = Tmux::start(&command);
    let [a, b] = names;

    // Both listed and downloading; `a` (the first row) is selected.
    wait_screen(&t, &log, "both torrents under way", |s| {
        row_pct(s, a).is_some_and(|p| p > 0.0) && row_pct(s, b).is_some_and(|p| p > 0.0)
    });

    // Space pauses `a`: it stands still while `b` goes on.
    t.keys(&["Space"]);
    wait_screen(&t, &log, "a paused", |s| {
        row(s, a).is_some_and(|l| l.contains("paused"))
    });
    // Pieces handed to the disk before the pause may still land: give them a moment.
    std::thread::sleep(Duration::from_secs(1));
    let s = t.screen();
    let (a0, b0) = (row_pct(&s, a).unwrap(), row_pct(&s, b).unwrap());
    assert!(a0 < 90.0, "a finished before the pause:\n{s}");
    wait_screen(&t, &log, "b to go on while a is paused", |s| {
        row_pct(s, b).is_some_and(|p| p >= b0 + 5.0 || p >= 100.0)
    });
    let s = t.screen();
    let line = row(&s, a).unwrap();
    assert!(line.contains("paused"), "a is still paused:\n{s}");
    assert_eq!(pct(&line), Some(a0), "nothing arrives while paused:\n{s}");

    // Space again resumes it.
    t.keys(&["Space"]);
    wait_screen(&t, &log, "a to move again after resuming", |s| {
        row(s, a).is_some_and(|l| !l.contains("paus") && pct(&l).is_some_and(|p| p > a0))
    });

    // `d` removes it from the list (its data stays), `a` + its path adds it back.
    let before = row_pct(&t.screen(), a).unwrap();
    t.keys(&["d"]);
    wait_screen(&t, &log, "a to leave the list", |s| {
        row(s, a).is_none() && row(s, b).is_some()
    });
    t.keys(&["a"]);
    wait_screen(&t, &log, "the add prompt", |s| s.contains("Enter adds"));
    t.type_text(&fixtures[0].torrent.display().to_string());
    t.keys(&["Enter"]);
    wait_screen(&t, &log, "a to be back", |s| row_pct(s, a).is_some());
    let again = row_pct(&t.screen(), a).unwrap();
    assert!(
        again >= before,
        "a re-added starts from its kept data: {again}% < {before}%"
    );

    // Both complete (they keep seeding in the list), then `q` exits 0.
    wait_screen(&t, &log, "both complete", |s| {
        [a, b]
            .iter()
            .all(|n| row(s, n).is_some_and(|l| l.contains("100.0%") && l.contains("seeding")))
    });
    t.keys(&["q"]);
    wait_until(WAIT, "the tui to exit on q", || !t.alive()).unwrap();
    let code = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(code.trim(), "0", "exit code");
    for f in &fixtures {
        f.spec.verify(&out).unwrap();
    }
    // The resume files are saved at the exit: the same command would continue.
    let resumes = std::fs::read_dir(out.join(".ringtorrent"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "resume"))
        .count();
    assert_eq!(resumes, 2);
}

/// Without a terminal there is nothing to draw on: exit 1 with a pointer to `download`.
#[test]
fn the_tui_needs_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ringtorrent_bin().unwrap())
        .arg("tui")
        .arg(dir.path().join("x.torrent"))
        .arg("-o")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: tui needs a terminal (use `ringtorrent download` instead)"),
        "{err}"
    );
}
