//! The report of `bench-harness bulk`: per-run lines, the table of medians, ringtorrent's
//! medians over aria2's, and the JSON line.

use std::io::Write;

use anyhow::{Context, Result};
use rt_testkit::payload::PayloadSpec;

use super::{BulkArgs, Client, ClientResult, Run};
use crate::report::{spread_table, Row, Spread};
use crate::size::format_size;

/// Prints the tables and appends the JSON line.
pub(super) fn report(
    args: &BulkArgs,
    specs: &[PayloadSpec],
    results: &[ClientResult],
) -> Result<()> {
    let payload_bytes: u64 = specs.iter().map(PayloadSpec::total_len).sum();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let files: usize = specs.iter().map(|s| s.files().len()).sum();
    println!(
        "## bulk: {} torrents ({} in {files} files, piece {}), -j {}, {} libtorrent seeder \
         process(es) via opentracker, {} round(s)\n",
        args.torrents,
        format_size(payload_bytes),
        format_size(args.piece_length),
        args.jobs,
        args.seeders,
        args.rounds
    );
    println!("command: bench-harness {}\n", argv.join(" "));
    print!("{}", table(results, payload_bytes));
    let ratios = ratios(results, payload_bytes);
    if let Some(t) = &ratios {
        print!("{}", t.0);
    }
    println!(
        "Median (min–max) over successful rounds. wall: spawn to exit of the client. client \
         CPU: its user+sys (wait4). seeders CPU: all seeder processes' user+sys (/proc) during \
         the run. served/payload: payload bytes the seeders uploaded during the run over the \
         payload (1.000 = nothing fetched twice)."
    );
    for r in results {
        for f in &r.failures {
            println!("- {} failed {f}", r.client.name());
        }
    }
    let Some(path) = &args.json else {
        return Ok(());
    };
    let line = serde_json::json!({
        "bench": "bulk",
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "argv": argv,
        "params": args,
        "payload_bytes": payload_bytes,
        "results": results,
        "ratios_ringtorrent_over_aria2": ratios.map(|r| r.1),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {path:?}"))?;
    writeln!(f, "{line}")?;
    Ok(())
}

pub(super) fn describe(r: &Run, payload: u64) -> String {
    let own = r.client_received_bytes.map_or(String::new(), |b| {
        format!(", own received/payload {:.3}", b as f64 / payload as f64)
    });
    let s = &r.sample;
    format!(
        "{:.2}s, {:.1} MB/s, client {:.2} CPU-s (user {:.2}, sys {:.2}; peak RSS {} MiB), \
         seeders {:.2} CPU-s, served/payload {:.3}{own}",
        s.wall_s,
        payload as f64 / 1e6 / s.wall_s,
        s.cpu_s(),
        s.user_s,
        s.sys_s,
        s.max_rss_kib / 1024,
        r.seeders_cpu_s,
        r.seeders_uploaded_bytes as f64 / payload as f64,
    )
}

/// The medians of one client's runs: wall, client CPU, seeders' CPU, served/payload.
fn medians(r: &ClientResult, payload: u64) -> [Option<Spread>; 4] {
    let of = |f: &dyn Fn(&Run) -> f64| Spread::of(&r.runs.iter().map(f).collect::<Vec<_>>());
    [
        of(&|x| x.sample.wall_s),
        of(&|x| x.sample.cpu_s()),
        of(&|x| x.seeders_cpu_s),
        of(&|x| x.seeders_uploaded_bytes as f64 / payload as f64),
    ]
}

fn table(results: &[ClientResult], payload: u64) -> String {
    let rows: Vec<Row> = results
        .iter()
        .map(|r| {
            let [wall, cpu, seed_cpu, served] = medians(r, payload);
            let of =
                |f: &dyn Fn(&Run) -> f64| Spread::of(&r.runs.iter().map(f).collect::<Vec<_>>());
            Row {
                lead: vec![
                    r.client.name().into(),
                    format!("{}/{}", r.runs.len(), r.failures.len()),
                ],
                spreads: vec![
                    wall,
                    of(&|x| payload as f64 / 1e6 / x.sample.wall_s),
                    cpu,
                    of(&|x| x.sample.max_rss_kib as f64 / 1024.0),
                    seed_cpu,
                    served,
                ],
                tail: vec![],
            }
        })
        .collect();
    spread_table(
        &"client,runs ok/failed,wall s,MB/s,client CPU-s,peak RSS MiB,seeders CPU-s,served/payload"
            .split(',')
            .collect::<Vec<_>>(),
        &rows,
        &[2, 1, 2, 0, 2, 3],
    )
}

/// ringtorrent's medians over aria2's, as a table and as JSON; `None` unless both ran.
fn ratios(results: &[ClientResult], payload: u64) -> Option<(String, serde_json::Value)> {
    let get = |c: Client| results.iter().find(|r| r.client == c && !r.runs.is_empty());
    let (rt, a2) = (get(Client::Ringtorrent)?, get(Client::Aria2)?);
    let (m_rt, m_a2) = (medians(rt, payload), medians(a2, payload));
    let r: Vec<Option<f64>> = m_rt
        .iter()
        .zip(&m_a2)
        .map(|(a, b)| Some(a.as_ref()?.median / b.as_ref()?.median).filter(|v| v.is_finite()))
        .collect();
    let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    let t = format!(
        "| ringtorrent / aria2 (medians) | wall | client CPU | seeders CPU | served/payload |\n\
         |---|---|---|---|---|\n| ratio | {} | {} | {} | {} |\n\n",
        cell(r[0]),
        cell(r[1]),
        cell(r[2]),
        cell(r[3])
    );
    let j =
        serde_json::json!({"wall": r[0], "client_cpu": r[1], "seeders_cpu": r[2], "served": r[3]});
    Some((t, j))
}
