//! Runs one downloader process and measures it: wall time from spawn to reap, and the kernel's
//! own accounting of that process from `wait4(2)` (user and system CPU time, peak RSS).
//!
//! `wait4` is the one FFI call in the harness: std's `Child::wait` discards the rusage, and
//! `getrusage(RUSAGE_CHILDREN)` mixes in the seeders and keeps a max RSS over all children.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

/// What one run of a downloader cost.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// `ru_maxrss`: peak resident set in KiB (on Linux).
    pub max_rss_kib: u64,
    /// Exit code, or `None` if killed by a signal (including our timeout).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
}

impl Sample {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// The raw result of `wait4`.
struct Reaped {
    status: i32,
    usage: libc::rusage,
    at: Instant,
}

/// Spawns `cmd` with stdout and stderr in `log`, waits at most `timeout` (then kills it), and
/// returns the measurements.
pub fn run_measured(mut cmd: Command, log: &Path, timeout: Duration) -> Result<Sample> {
    let out = File::create(log).with_context(|| format!("creating {log:?}"))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(wait4_blocking(pid));
    });
    let (reaped, timed_out) = match rx.recv_timeout(timeout) {
        Ok(r) => (r, false),
        Err(_) => {
            // Not reaped yet (the waiter has not returned), so the pid is still our child.
            let _ = child.kill();
            (rx.recv().context("waiter thread vanished")?, true)
        }
    };
    let _ = waiter.join();
    let reaped = reaped.context("wait4 failed")?;
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let exited = libc::WIFEXITED(reaped.status);
    Ok(Sample {
        wall_s: (reaped.at - start).as_secs_f64(),
        user_s: tv(reaped.usage.ru_utime),
        sys_s: tv(reaped.usage.ru_stime),
        max_rss_kib: reaped.usage.ru_maxrss.max(0) as u64,
        exit_code: exited.then(|| libc::WEXITSTATUS(reaped.status)),
        timed_out,
    })
}

/// Blocks in `wait4(pid)` until the child exits (retrying on EINTR).
#[allow(unsafe_code)]
fn wait4_blocking(pid: libc::pid_t) -> std::io::Result<Reaped> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `usage` are live, writable locals of the types wait4 expects;
        // `pid` is our own unreaped child, so wait4 cannot touch anyone else's process.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok(Reaped {
                status,
                usage,
                at: Instant::now(),
            });
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// CPU seconds (user + system, all threads) process `pid` has used so far, from
/// `/proc/<pid>/stat`: for a long-running seeder that `wait4` cannot measure per leecher.
pub fn proc_cpu_s(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks_per_s())
        .with_context(|| format!("unexpected /proc/{pid}/stat: {stat:?}"))
}

/// utime + stime (fields 14 and 15) in clock ticks. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, at index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[allow(unsafe_code)]
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a configuration value; no pointers are involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_stat_cpu() {
        let stat = "123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 99";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("123 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        let me = proc_cpu_s(std::process::id()).unwrap();
        assert!((0.0..1e6).contains(&me), "{me}");
    }

    use super::*;

    #[test]
    fn measures_cpu_of_a_busy_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        // A CPU-bound loop of roughly 0.2-0.5 s, then exit code 3.
        cmd.args([
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exit 3",
        ]);
        let s = run_measured(cmd, &dir.path().join("log"), Duration::from_secs(60)).unwrap();
        assert_eq!(s.exit_code, Some(3));
        assert!(!s.timed_out);
        assert!(s.cpu_s() > 0.01, "{s:?}");
        assert!(s.wall_s + 0.05 >= s.user_s, "{s:?}");
        assert!(s.max_rss_kib > 100, "{s:?}");
    }

    #[test]
    fn kills_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let s = run_measured(cmd, &dir.path().join("log"), Duration::from_millis(300)).unwrap();
        assert!(s.timed_out);
        assert_eq!(s.exit_code, None);
        assert!(s.wall_s < 5.0, "{s:?}");
    }
}
