//! A guard for a real client process started by a test: its own process group, its own work
//! directory with the log, and a kill of the whole group on drop.
//!
//! Invariants:
//! - every process the kit starts is owned by exactly one [`Proc`]; dropping it sends SIGKILL to
//!   the process group and reaps the child, so no test leaves a peer behind;
//! - the process also gets SIGKILL when the thread that started it exits (`setpriv
//!   --pdeathsig`), which covers a test binary killed from outside; start processes from the
//!   thread that owns the guard;
//! - stdout and stderr go to one log file that outlives the process until the guard drops; when
//!   the guard drops during a panic, the tail of the log is printed, so a failing test shows
//!   what its peers said.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::wait::wait_for;

/// Bytes of log shown when a test fails.
const TAIL_BYTES: usize = 6000;

/// A `Command` for `program` that dies with the thread that spawns it, where `setpriv` exists.
pub fn kit_command(program: impl AsRef<OsStr>) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if Path::new(SETPRIV).exists() {
        let mut c = Command::new(SETPRIV);
        c.args(["--pdeathsig", "KILL", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// True if `program` is found on `PATH` (or is an existing path).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// A running (or finished) client process; see the module docs.
pub struct Proc {
    name: String,
    child: Child,
    log_path: PathBuf,
    /// Set when stdout goes to its own file ([`Proc::spawn_split`]); `log_path` then has stderr.
    stdout_path: Option<PathBuf>,
    status: Option<ExitStatus>,
    // Dropped after the child is killed (field order): holds the log and any config files.
    work: TempDir,
}

impl Proc {
    /// Spawns `cmd` in a new process group with stdout and stderr appended to
    /// `<work>/<name>.log`. `work` is the process's own directory (configs, chroot, ...).
    pub fn spawn(name: &str, cmd: Command, work: TempDir) -> Result<Self> {
        Self::spawn_inner(name, cmd, work, false, false)
    }

    /// Like [`Proc::spawn`], but stdout goes to `<name>.stdout` and stderr to `<name>.log`.
    pub fn spawn_split(name: &str, cmd: Command, work: TempDir) -> Result<Self> {
        Self::spawn_inner(name, cmd, work, true, false)
    }

    /// Like [`Proc::spawn_split`], with stdin a pipe that [`Proc::send_line`] writes to.
    pub fn spawn_split_piped(name: &str, cmd: Command, work: TempDir) -> Result<Self> {
        Self::spawn_inner(name, cmd, work, true, true)
    }

    /// Writes `line` and a newline to the process's stdin (started with a piped stdin).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().context("stdin is not a pipe")?;
        writeln!(stdin, "{line}").context("writing to stdin")?;
        stdin.flush().context("flushing stdin")
    }

    fn spawn_inner(
        name: &str,
        mut cmd: Command,
        work: TempDir,
        split: bool,
        piped: bool,
    ) -> Result<Self> {
        let log_path = work.path().join(format!("{name}.log"));
        let log = File::create(&log_path).with_context(|| format!("creating {log_path:?}"))?;
        let (stdout, stdout_path) = if split {
            let p = work.path().join(format!("{name}.stdout"));
            (File::create(&p)?, Some(p))
        } else {
            (log.try_clone()?, None)
        };
        cmd.stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log_path,
            stdout_path,
            status: None,
            work,
        })
    }

    /// Like [`Proc::spawn`] with a fresh temporary work directory.
    pub fn spawn_fresh(name: &str, cmd: Command) -> Result<Self> {
        let work = tempfile::Builder::new()
            .prefix(&format!("rt-{name}-"))
            .tempdir()?;
        Self::spawn(name, cmd, work)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The process's own directory (its log lives here).
    pub fn workdir(&self) -> &Path {
        self.work.path()
    }

    /// The whole log so far (stdout and stderr; for a split process, stderr then stdout), with
    /// carriage-return progress lines split into lines.
    pub fn log(&self) -> String {
        match &self.stdout_path {
            None => read_text(&self.log_path),
            Some(out) => format!("{}\n{}", read_text(&self.log_path), read_text(out)),
        }
    }

    /// What the process wrote to stderr (for a split process) or to either stream.
    pub fn stderr(&self) -> String {
        read_text(&self.log_path)
    }

    /// What the process wrote to stdout, if it was started with [`Proc::spawn_split`].
    pub fn stdout(&self) -> Option<String> {
        self.stdout_path.as_deref().map(read_text)
    }

    /// The last few KiB of the log, repeated lines collapsed: for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log(), TAIL_BYTES)
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Errors (with the log tail) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.try_status()? {
            None => Ok(()),
            Some(st) => bail!(
                "{} exited early ({st}); log tail:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    /// Waits until a log line contains `needle`; returns that line. Fails if the process exits
    /// first or `timeout` passes.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let what = format!("{} to log {needle:?}", self.name);
        let r = wait_for(timeout, &what, || {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Ok(Some(line.to_string()));
            }
            self.check_alive()?;
            Ok(None)
        });
        r.with_context(|| format!("log tail of {}:\n{}", self.name, self.log_tail()))
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.name);
        let r = wait_for(timeout, &what, || self.try_status());
        r.with_context(|| format!("log tail of {}:\n{}", self.name, self.log_tail()))
    }

    /// Kills the process group now and reaps the child.
    pub fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        let pid = self.child.id() as i32;
        // A pid above 1 names our own child's group (`process_group(0)` made it the leader);
        // never signal group 1 or 0.
        if let Some(pid) = rustix::process::Pid::from_raw(pid).filter(|_| pid > 1) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} (pid {}, {:?}) -----\n{}\n----- end of {} -----",
                self.name,
                self.child.id(),
                self.status,
                self.log_tail(),
                self.name
            );
        }
    }
}

fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\r', "\n")
}

/// The last `max_bytes` of `text`, with runs of identical lines collapsed.
pub fn tail(text: &str, max_bytes: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<&str> = None;
    let mut repeats = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if Some(line) == last {
            repeats += 1;
            continue;
        }
        if repeats > 0 {
            out.push(format!("    (previous line repeated {repeats} more times)"));
            repeats = 0;
        }
        out.push(line.to_string());
        last = Some(line);
    }
    if repeats > 0 {
        out.push(format!("    (previous line repeated {repeats} more times)"));
    }
    let joined = out.join("\n");
    if joined.len() <= max_bytes {
        return joined;
    }
    let mut start = joined.len() - max_bytes;
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]\n{}", &joined[start..])
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, ...) in KiB; `None` for this
/// process.
pub fn status_kib(pid: Option<u32>, field: &str) -> Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no {field} in {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn tail_collapses_repeats_and_truncates() {
        let t = tail("a\nb\nb\nb\n\nc\n", 1000);
        assert_eq!(t, "a\nb\n    (previous line repeated 2 more times)\nc");
        let long = "x".repeat(50) + "\nend";
        let t = tail(&long, 10);
        assert!(t.starts_with("[...]") && t.ends_with("end"), "{t}");
    }

    #[test]
    fn guard_kills_the_process_on_drop() {
        let mut cmd = kit_command("sleep");
        cmd.arg("30");
        let p = Proc::spawn_fresh("sleeper", cmd).unwrap();
        let pid = p.pid();
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        assert!(proc_dir.exists());
        let start = Instant::now();
        drop(p);
        assert!(start.elapsed() < Duration::from_secs(5));
        // Reaped, so the pid is gone (or, very rarely, reused by an unrelated process).
        let stat = std::fs::read_to_string(proc_dir.join("cmdline")).unwrap_or_default();
        assert!(!stat.contains("sleep\u{0}30"), "still running: {stat:?}");
    }

    #[test]
    fn log_lines_are_found_and_early_exit_is_an_error() {
        let mut cmd = kit_command("sh");
        cmd.args(["-c", "printf 'one\\rREADY 127.0.0.2:1\\n'; exit 3"]);
        let mut p = Proc::spawn_fresh("echoer", cmd).unwrap();
        let line = p.wait_for_log("READY", Duration::from_secs(10)).unwrap();
        assert_eq!(line, "READY 127.0.0.2:1");
        let err = p
            .wait_for_log("NEVER", Duration::from_secs(10))
            .unwrap_err();
        assert!(format!("{err:#}").contains("exited early"), "{err:#}");
        assert_eq!(p.try_status().unwrap().and_then(|s| s.code()), Some(3));
    }
}
