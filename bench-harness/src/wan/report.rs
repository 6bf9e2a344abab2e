//! Figures of `swarm --wan` from the shapers' samples, and the per-client summary table.

use serde::Serialize;

use super::profile::{PathPlan, WanProfile};
use super::{Point, WanRuns};
use crate::report::{spread_table, Row, Spread};

const GIB: f64 = (1u64 << 30) as f64;

pub fn profile_name(p: WanProfile) -> &'static str {
    match p {
        WanProfile::Ubuntu => "ubuntu",
        WanProfile::Fat => "fat",
    }
}

/// "24 libtorrent, 12 transmission, ..." in the plan's order of first appearance, with how
/// many choke now and then and how many paths drop.
pub fn mix(plan: &[PathPlan]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for p in plan {
        match kinds.iter_mut().find(|(k, _)| *k == p.kind.name()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((p.kind.name(), 1)),
        }
    }
    let mut s: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let chokes = plan.iter().filter(|p| p.chokes).count();
    let drops = plan.iter().filter(|p| p.drops).count();
    if chokes > 0 {
        s.push(format!("{chokes} choking now and then"));
    }
    if drops > 0 {
        s.push(format!("{drops} dropping connections"));
    }
    let (lo, hi) = plan.iter().fold((u32::MAX, 0), |(lo, hi), p| {
        (lo.min(p.rtt_ms), hi.max(p.rtt_ms))
    });
    s.push(format!("RTT {lo}-{hi} ms"));
    s.join(", ")
}

/// The time at which the delivered bytes first reached `target`, interpolated between the
/// samples around it.
fn time_to(series: &[Point], target: u64) -> Option<f64> {
    let i = series.iter().position(|p| p.bytes >= target)?;
    let Some(prev) = i.checked_sub(1).map(|j| series[j]) else {
        return Some(series[i].t_s);
    };
    let p = series[i];
    let span = (p.bytes - prev.bytes) as f64;
    let frac = (target - prev.bytes) as f64 / span;
    Some(prev.t_s + frac * (p.t_s - prev.t_s))
}

/// Time until one piece's worth of bytes was delivered.
pub fn first_piece_s(series: &[Point], piece_length: u64) -> Option<f64> {
    time_to(series, piece_length)
}

/// Delivered bytes/s between 20% and 90% of `payload`: the rate once ramped up, before the
/// last pieces' tail.
pub fn ramped_rate(series: &[Point], payload: u64) -> Option<f64> {
    let a = time_to(series, payload / 5)?;
    let b = time_to(series, payload / 10 * 9)?;
    (b > a).then(|| (payload / 10 * 9 - payload / 5) as f64 / (b - a))
}

/// Medians (and spreads) of one client.
#[derive(Debug, Clone, Serialize)]
pub struct WanSummary {
    pub client: String,
    pub ok_runs: usize,
    pub failed_runs: usize,
    pub first_piece_s: Option<Spread>,
    pub wall_s: Option<Spread>,
    pub mb_per_s: Option<Spread>,
    /// Ramped-up rate over the sum of the caps.
    pub cap_used: Option<Spread>,
    pub cpu_s_per_gib: Option<Spread>,
    pub peak_rss_mib: Option<Spread>,
    pub received_per_payload: Option<Spread>,
    pub seeders_cpu_s_per_gib: Option<Spread>,
    pub shapers_cpu_s_per_gib: Option<Spread>,
    pub peak_peers: Option<Spread>,
}

pub fn summarize(runs: &[WanRuns], payload: u64, cap_sum: u64) -> Vec<WanSummary> {
    let gib = payload as f64 / GIB;
    runs.iter()
        .map(|r| {
            let f = |g: &dyn Fn(&super::WanSample) -> Option<f64>| {
                Spread::of(&r.samples.iter().filter_map(g).collect::<Vec<_>>())
            };
            WanSummary {
                client: r.client.clone(),
                ok_runs: r.samples.len(),
                failed_runs: r.failures.len(),
                first_piece_s: f(&|s| s.first_piece_s),
                wall_s: f(&|s| Some(s.download.wall_s)),
                mb_per_s: f(&|s| Some(payload as f64 / 1e6 / s.download.wall_s)),
                cap_used: f(&|s| s.ramped_bytes_per_s.map(|r| r / cap_sum.max(1) as f64)),
                cpu_s_per_gib: f(&|s| Some(s.download.cpu_s() / gib)),
                peak_rss_mib: f(&|s| Some(s.download.max_rss_kib as f64 / 1024.0)),
                received_per_payload: f(&|s| Some(s.received_bytes as f64 / payload as f64)),
                seeders_cpu_s_per_gib: f(&|s| Some(s.seeders_cpu_s / gib)),
                shapers_cpu_s_per_gib: f(&|s| Some(s.shapers_cpu_s / gib)),
                peak_peers: f(&|s| s.series.iter().map(|p| p.open as f64).reduce(f64::max)),
            }
        })
        .collect()
}

/// The Markdown table (medians, with min-max), followed by notes.
pub fn markdown(summaries: &[WanSummary], notes: &[String]) -> String {
    let headers = [
        "client",
        "runs ok/failed",
        "first piece s",
        "done s",
        "MB/s",
        "cap used (ramped)",
        "CPU-s/GiB",
        "peak RSS MiB",
        "received/payload",
        "seeders CPU-s/GiB",
        "shapers CPU-s/GiB",
        "peak peers",
    ];
    let rows: Vec<Row> = summaries
        .iter()
        .map(|s| Row {
            lead: vec![s.client.clone(), format!("{}/{}", s.ok_runs, s.failed_runs)],
            spreads: vec![
                s.first_piece_s,
                s.wall_s,
                s.mb_per_s,
                s.cap_used,
                s.cpu_s_per_gib,
                s.peak_rss_mib,
                s.received_per_payload,
                s.seeders_cpu_s_per_gib,
                s.shapers_cpu_s_per_gib,
                s.peak_peers,
            ],
            tail: Vec::new(),
        })
        .collect();
    let mut t = spread_table(&headers, &rows, &[2, 2, 1, 3, 2, 0, 3, 2, 2, 0]);
    for n in notes {
        t.push_str(&format!("- {n}\n"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, u64)]) -> Vec<Point> {
        v.iter()
            .map(|&(t_s, bytes)| Point {
                t_s,
                bytes,
                open: 0,
            })
            .collect()
    }

    #[test]
    fn first_piece_is_interpolated_between_samples() {
        let s = pts(&[(0.0, 0), (1.0, 100), (2.0, 300)]);
        assert_eq!(first_piece_s(&s, 200), Some(1.5));
        assert_eq!(first_piece_s(&s, 0), Some(0.0));
        assert_eq!(first_piece_s(&s, 301), None);
    }

    #[test]
    fn ramped_rate_leaves_out_the_start_and_the_tail() {
        // Slow start (1 s for the first 100), then 1000/s, then a slow tail.
        let s = pts(&[(0.0, 0), (1.0, 100), (2.0, 1100), (3.0, 2100), (10.0, 2200)]);
        let r = ramped_rate(&s, 2200).expect("rate");
        assert!((r - 1000.0).abs() < 1.0, "{r}");
        assert_eq!(ramped_rate(&s, 10_000), None);
    }
}
