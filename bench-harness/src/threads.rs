//! Per-thread accounting of this process from `/proc/self/task`: CPU time (`schedstat`'s
//! nanoseconds on a CPU, as the scheduler counts them; the 10 ms ticks of `stat` cannot
//! resolve an idle engine's fraction of a percent) and
//! context switches (voluntary + involuntary: every time a thread went to sleep or was put
//! off the CPU, so a thread that blocks and wakes N times a second shows about N a second).
//! The in-process engine's threads are named (`rt-shard-0`, `rt-disk`, ...), so a sample
//! tells them apart from the harness's own.

use std::collections::BTreeMap;

/// One thread's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTimes {
    pub cpu_ns: u64,
    pub switches: u64,
}

/// Every live thread of this process: (tid, name) -> counters.
pub type Sample = BTreeMap<(u32, String), ThreadTimes>;

/// Reads every thread of this process (threads that end while being read are skipped).
pub fn sample() -> Sample {
    let mut out = Sample::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let base = entry.path();
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(base.join("stat")),
            std::fs::read_to_string(base.join("status")),
        ) else {
            continue;
        };
        let Some((name, ticks)) = parse_stat(&stat) else {
            continue;
        };
        let tick_ns = 1e9 / crate::measure::clock_ticks_per_s();
        let cpu_ns = std::fs::read_to_string(base.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or((ticks as f64 * tick_ns) as u64);
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let switches = field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:");
        out.insert((tid, name), ThreadTimes { cpu_ns, switches });
    }
    out
}

/// The thread name (field 2) and utime + stime (fields 14, 15) of a `stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// What a group of threads did between two samples.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupDelta {
    pub threads: usize,
    pub cpu_s: f64,
    pub switches: u64,
}

/// The group a thread belongs to: shards by their own name, hashing threads, the disk
/// thread, the control runtime, the rest of the engine (`rt-*`), and everything else
/// (the harness, libraries' threads).
pub fn group_of(name: &str) -> String {
    if name.starts_with("rt-shard") {
        return name.to_string();
    }
    for g in ["rt-disk", "rt-control", "rt-resume", "rt-dht"] {
        if name.starts_with(g) {
            return g.to_string();
        }
    }
    if name.contains("hash") {
        return "hash threads".into();
    }
    if name.starts_with("rt-") {
        return "rt-other".into();
    }
    "other".into()
}

/// Per group: what the threads did from `a` to `b` (threads born in between count from 0).
pub fn delta(a: &Sample, b: &Sample) -> BTreeMap<String, GroupDelta> {
    let mut out: BTreeMap<String, GroupDelta> = BTreeMap::new();
    for (key, after) in b {
        let before = a.get(key).copied().unwrap_or_default();
        let g = out.entry(group_of(&key.1)).or_default();
        g.threads += 1;
        g.cpu_s += after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9;
        g.switches += after.switches.saturating_sub(before.switches);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_thread_stat_line() {
        let stat = "42 (rt-shard 0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 99";
        assert_eq!(parse_stat(stat), Some(("rt-shard 0".into(), 300)));
        assert_eq!(parse_stat("garbage"), None);
        let me = sample();
        assert!(!me.is_empty());
        assert_eq!(group_of("rt-shard-1"), "rt-shard-1");
        assert_eq!(group_of("rt-disk"), "rt-disk");
        assert_eq!(group_of("bench-harness"), "other");
    }
}
