//! Summaries of the swarm benchmark: median, min and max per client, a Markdown table for the
//! terminal and the same data as JSON. [`Spread`] and [`spread_table`] serve the other
//! subcommands too.

use serde::Serialize;

use crate::measure::Sample;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// Median, min and max of one metric.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values. The median of an even count is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One download in the swarm: what the downloader cost, and what the seeders spent on it.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmSample {
    /// The downloader's own cost (its fields sit at the top level of the JSON).
    #[serde(flatten)]
    pub download: Sample,
    /// Payload bytes all seeders uploaded during the download; `None` where the seeders do not
    /// report it (only libtorrent seeders do).
    pub seeders_uploaded_bytes: Option<u64>,
    /// CPU seconds (user + system, all threads) all seeders used during the download.
    pub seeders_cpu_s: f64,
}

impl SwarmSample {
    /// Bytes the seeders uploaded over the payload: 1.0 when no byte was fetched twice.
    pub fn received_per_payload(&self, payload_bytes: u64) -> Option<f64> {
        let up = self.seeders_uploaded_bytes?;
        (payload_bytes > 0).then(|| up as f64 / payload_bytes as f64)
    }
}

/// One client's runs: successful samples and why the others failed (`swarm`'s samples, or
/// `swarm --wan`'s).
#[derive(Debug, Clone, Serialize)]
pub struct ClientRuns<S = SwarmSample> {
    pub client: String,
    pub samples: Vec<S>,
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub client: String,
    pub ok_runs: usize,
    pub failed_runs: usize,
    pub wall_s: Option<Spread>,
    pub mb_per_s: Option<Spread>,
    pub cpu_s_per_gib: Option<Spread>,
    pub peak_rss_mib: Option<Spread>,
    /// Bytes the seeders uploaded over the payload size (`None`: not reported by the seeders).
    pub received_per_payload: Option<Spread>,
    /// The seeders' CPU seconds (summed) per GiB of payload.
    pub seeder_cpu_s_per_gib: Option<Spread>,
    /// This client's median wall time over ringtorrent's (above 1: ringtorrent is faster).
    pub time_vs_ringtorrent: Option<f64>,
}

/// Summaries in input order; ratios are against the client named "ringtorrent", if it ran.
pub fn summarize(runs: &[ClientRuns], payload_bytes: u64) -> Vec<Summary> {
    let bytes = payload_bytes as f64;
    let mut out: Vec<Summary> = runs
        .iter()
        .map(|r| {
            let s = &r.samples;
            let map =
                |f: &dyn Fn(&SwarmSample) -> f64| Spread::of(&s.iter().map(f).collect::<Vec<_>>());
            let waste: Vec<f64> = s
                .iter()
                .filter_map(|x| x.received_per_payload(payload_bytes))
                .collect();
            Summary {
                client: r.client.clone(),
                ok_runs: s.len(),
                failed_runs: r.failures.len(),
                wall_s: map(&|x| x.download.wall_s),
                mb_per_s: map(&|x| bytes / 1e6 / x.download.wall_s),
                cpu_s_per_gib: map(&|x| x.download.cpu_s() / (bytes / GIB)),
                peak_rss_mib: map(&|x| x.download.max_rss_kib as f64 * 1024.0 / MIB),
                received_per_payload: Spread::of(&waste),
                seeder_cpu_s_per_gib: map(&|x| x.seeders_cpu_s / (bytes / GIB)),
                time_vs_ringtorrent: None,
            }
        })
        .collect();
    let base = out
        .iter()
        .find(|s| s.client == "ringtorrent")
        .and_then(|s| s.wall_s)
        .map(|w| w.median);
    if let Some(base) = base.filter(|b| *b > 0.0) {
        for s in &mut out {
            s.time_vs_ringtorrent = s.wall_s.map(|w| w.median / base);
        }
    }
    out
}

fn cell(s: Option<Spread>, decimals: usize) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.min == s.max => format!("{:.*}", decimals, s.median),
        Some(s) => format!(
            "{:.d$} ({:.d$}–{:.d$})",
            s.median,
            s.min,
            s.max,
            d = decimals
        ),
    }
}

/// [`cell`], or "n/a" when runs succeeded but none measured this.
fn cell_or_na(s: Option<Spread>, ok_runs: usize, decimals: usize) -> String {
    if s.is_none() && ok_runs > 0 {
        "n/a".into()
    } else {
        cell(s, decimals)
    }
}

/// One row of [`spread_table`]: leading text cells, spread cells, trailing text cells.
pub struct Row {
    pub lead: Vec<String>,
    pub spreads: Vec<Option<Spread>>,
    pub tail: Vec<String>,
}

/// A Markdown table with `headers`; spread column `i` is shown with `decimals[i]` decimals.
pub fn spread_table(headers: &[&str], rows: &[Row], decimals: &[usize]) -> String {
    let mut t = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for r in rows {
        let mut cells = r.lead.clone();
        for (i, s) in r.spreads.iter().enumerate() {
            cells.push(cell(*s, decimals.get(i).copied().unwrap_or(2)));
        }
        cells.extend(r.tail.iter().cloned());
        t.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    t.push('\n');
    t
}

/// The Markdown table, followed by notes (skipped clients, failures).
pub fn markdown(summaries: &[Summary], notes: &[String]) -> String {
    let mut t = String::from(
        "| client | runs ok/failed | wall s | MB/s | CPU-s/GiB | peak RSS MiB | received/payload | seeder CPU-s/GiB | time vs ringtorrent |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let ratio = s
            .time_vs_ringtorrent
            .map_or("-".into(), |r| format!("{r:.2}x"));
        t.push_str(&format!(
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.client,
            s.ok_runs,
            s.failed_runs,
            cell(s.wall_s, 2),
            cell(s.mb_per_s, 1),
            cell(s.cpu_s_per_gib, 2),
            cell(s.peak_rss_mib, 0),
            cell_or_na(s.received_per_payload, s.ok_runs, 3),
            cell(s.seeder_cpu_s_per_gib, 2),
            ratio
        ));
    }
    if !notes.is_empty() {
        t.push('\n');
        for n in notes {
            t.push_str(&format!("- {n}\n"));
        }
    }
    t.push_str(
        "\nMedian (min–max) over runs. CPU and peak RSS are the downloader process's own (wait4 \
         rusage). received/payload: payload bytes the seeders uploaded during the download over \
         the payload size (1.000: no byte fetched twice; n/a: the seeders do not report it, only \
         libtorrent's do). Seeder CPU: all seeders' user + sys (all threads, /proc/<pid>/stat) \
         during the download, per GiB of payload.\n",
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A download whose seeders spent half the downloader's CPU and reported no upload.
    fn sample(wall_s: f64, cpu: f64, rss_kib: u64) -> SwarmSample {
        SwarmSample {
            download: Sample {
                wall_s,
                user_s: cpu,
                sys_s: 0.0,
                max_rss_kib: rss_kib,
                exit_code: Some(0),
                timed_out: false,
            },
            seeders_uploaded_bytes: None,
            seeders_cpu_s: cpu / 2.0,
        }
    }

    fn uploading(uploaded: u64) -> SwarmSample {
        SwarmSample {
            seeders_uploaded_bytes: Some(uploaded),
            ..sample(1.0, 1.0, 1)
        }
    }

    #[test]
    fn spread_takes_median_min_max() {
        assert_eq!(Spread::of(&[]), None);
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    }

    #[test]
    fn summary_derives_rates_and_ratio() {
        let gib = 1u64 << 30;
        let runs = vec![
            ClientRuns {
                client: "ringtorrent".into(),
                samples: vec![sample(2.0, 1.0, 1024), sample(4.0, 3.0, 2048)],
                failures: vec![],
            },
            ClientRuns {
                client: "aria2".into(),
                samples: vec![sample(6.0, 6.0, 4096)],
                failures: vec!["exit 1".into()],
            },
        ];
        let s = summarize(&runs, gib);
        assert_eq!(s[0].wall_s.unwrap().median, 3.0);
        assert_eq!(s[0].cpu_s_per_gib.unwrap().median, 2.0);
        assert!((s[0].mb_per_s.unwrap().max - gib as f64 / 1e6 / 2.0).abs() < 1e-9);
        assert_eq!(s[0].time_vs_ringtorrent, Some(1.0));
        assert_eq!(s[1].time_vs_ringtorrent, Some(2.0));
        assert_eq!(s[1].peak_rss_mib.unwrap().median, 4.0);
        assert_eq!((s[1].ok_runs, s[1].failed_runs), (1, 1));
        assert_eq!(s[0].seeder_cpu_s_per_gib.unwrap().median, 1.0);
        assert_eq!(s[0].received_per_payload, None);
        let md = markdown(&s, &["rqbit skipped".into()]);
        assert!(md.contains("| aria2 | 1/1 | 6.00 |"), "{md}");
        assert!(md.contains("| 4 | n/a | 3.00 | 2.00x |"), "{md}");
        assert!(
            md.contains("2.00x") && md.contains("- rqbit skipped"),
            "{md}"
        );
    }

    #[test]
    fn waste_is_upload_over_payload() {
        let runs = vec![
            ClientRuns {
                client: "libtorrent".into(),
                samples: vec![uploading(1004), uploading(1010), uploading(1000)],
                failures: vec![],
            },
            ClientRuns {
                client: "rqbit".into(),
                samples: vec![],
                failures: vec!["run 1: exit 1".into()],
            },
        ];
        let s = summarize(&runs, 1000);
        let w = s[0].received_per_payload.unwrap();
        assert_eq!((w.median, w.min, w.max), (1.004, 1.0, 1.01));
        let md = markdown(&s, &[]);
        assert!(md.contains("| 1.004 (1.000–1.010) |"), "{md}");
        assert!(
            md.contains("| rqbit | 0/1 | - | - | - | - | - | - | - |"),
            "{md}"
        );
        assert_eq!(uploading(5).received_per_payload(0), None);
    }

    #[test]
    fn spread_table_lays_out_cells() {
        let rows = vec![Row {
            lead: vec!["a".into()],
            spreads: vec![Spread::of(&[1.0, 3.0]), None],
            tail: vec!["x".into()],
        }];
        let t = spread_table(&["name", "v", "w", "r"], &rows, &[1, 0]);
        assert!(
            t.starts_with("| name | v | w | r |\n|---|---|---|---|\n"),
            "{t}"
        );
        assert!(t.contains("| a | 2.0 (1.0–3.0) | - | x |"), "{t}");
    }

    #[test]
    fn no_ratio_without_ringtorrent() {
        let runs = vec![ClientRuns {
            client: "aria2".into(),
            samples: vec![sample(1.0, 1.0, 1)],
            failures: vec![],
        }];
        assert_eq!(summarize(&runs, 1 << 30)[0].time_vs_ringtorrent, None);
    }
}
