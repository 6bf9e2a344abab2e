//! `ringtorrent demo`: a local swarm on loopback, with nothing else installed. It generates a
//! payload and its torrent in a temporary directory, starts `ringtorrent seed` processes on
//! 127.0.0.2, 127.0.0.3, ..., downloads through the real engine in this process with the
//! progress display, verifies the result byte for byte and prints throughput and CPU per GiB.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use ringtorrent::metainfo::build::TorrentBuilder;

use crate::download::DownloadArgs;
use crate::util::parse_size;

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Payload size (e.g. 512MiB, 4GiB).
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    pub size: u64,
    /// Seeder processes.
    #[arg(long, default_value_t = 2)]
    pub seeders: u32,
    /// Piece length.
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub piece_length: u64,
    /// Shard threads of the downloader (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Work directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Kills the seeder processes however the demo ends.
struct Seeders(Vec<Child>);

impl Drop for Seeders {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    if args.seeders == 0 || args.seeders > 200 {
        bail!("--seeders must be between 1 and 200");
    }
    let piece_length = u32::try_from(args.piece_length)
        .ok()
        .filter(|p| (16 * 1024..=16 << 20).contains(p))
        .context("--piece-length must be between 16KiB and 16MiB")?;
    if args.size == 0 {
        bail!("--size must be more than 0");
    }
    let tmp;
    let work = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ringtorrent-demo")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let seed_dir = work.join("seed");
    let out_dir = work.join("download");
    std::fs::create_dir_all(&seed_dir)?;
    let _ = std::fs::remove_dir_all(&out_dir);
    let name = "ringtorrent-demo.bin";
    let payload = seed_dir.join(name);
    eprintln!(
        "generating {} of payload in {}",
        human(args.size),
        work.display()
    );
    generate(&payload, args.size)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hashes = uring_disk::hash_pieces(
        &[(payload.clone(), args.size)],
        piece_length,
        threads,
        &|_| {},
    )?;
    let (bytes, meta) = TorrentBuilder::single_file(name, args.size, piece_length)
        .piece_hashes(hashes)
        .created_by("ringtorrent demo")
        .build()?;
    let torrent = work.join("demo.torrent");
    std::fs::write(&torrent, bytes)?;
    eprintln!(
        "torrent {} ({} pieces)",
        meta.info_hash,
        meta.info.lengths.num_pieces()
    );

    let (seeders, peers) = start_seeders(&torrent, &seed_dir, args.seeders)?;
    eprintln!("{} seeders on {}", peers.len(), list(&peers));
    let before = ProcStats::read();
    let started = Instant::now();
    let code = crate::download::run(DownloadArgs {
        torrents: vec![torrent.display().to_string()],
        input_file: None,
        max_active: 0,
        on_complete: None,
        json: false,
        save_torrent: None,
        output: out_dir.clone(),
        peers,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shards: args.shards,
        max_peers: None,
        no_trackers: true,
        no_pex: false,
        no_lsd: true,
        trackers: Vec::new(),
        no_uring: false,
        zero_copy: ringtorrent::ZeroCopyUploads::default(),
        encryption: ringtorrent::EncryptionPolicy::default(),
        transport: ringtorrent::TransportMode::default(),
        quiet: false,
        verbose: false,
        timeout: 600,
        summary_interval: 2.0,
        recheck: false,
        seed_ratio: 0.0,
        seed_time: 0.0,
        rates: Default::default(),
        select: Default::default(),
        buffer_pool: None,
        // A local swarm: nothing to find on the DHT, and no packet leaves the machine.
        dht: crate::util::DhtArgs {
            no_dht: true,
            ..Default::default()
        },
    })?;
    let wall = started.elapsed();
    let after = ProcStats::read();
    drop(seeders);
    if code != 0 {
        return Ok(code);
    }
    same_bytes(&payload, &out_dir.join(name))?;
    let gib = args.size as f64 / (1u64 << 30) as f64;
    let cpu = after.cpu_s - before.cpu_s;
    println!(
        "verified byte-identical: {} in {:.2} s = {:.1} MiB/s; downloader CPU {:.2} s = {:.2} CPU-s/GiB; peak RSS {} MiB",
        human(args.size),
        wall.as_secs_f64(),
        args.size as f64 / 1048576.0 / wall.as_secs_f64().max(1e-6),
        cpu,
        cpu / gib.max(1e-9),
        after.peak_rss_kib / 1024
    );
    Ok(0)
}

fn start_seeders(
    torrent: &Path,
    data: &Path,
    n: u32,
) -> anyhow::Result<(Seeders, Vec<SocketAddr>)> {
    let exe = std::env::current_exe().context("cannot find the ringtorrent binary")?;
    let mut seeders = Seeders(Vec::new());
    let mut addrs = Vec::new();
    for i in 0..n {
        let listen = format!("127.0.0.{}:0", 2 + i);
        let mut child = Command::new(&exe)
            .args([
                "seed",
                "--no-trackers",
                "--no-dht",
                "--no-lsd",
                "--listen",
                &listen,
            ])
            .arg(torrent)
            .arg(data)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start a seeder")?;
        let stdout = child.stdout.take().context("seeder stdout")?;
        seeders.0.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        // "seeding on 127.0.0.2:40001: N/M pieces verified ..."
        let addr = line
            .strip_prefix("seeding on ")
            .and_then(|r| r.split(": ").next())
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("seeder {i} did not start: {line:?}"))?;
        addrs.push(addr);
    }
    Ok((seeders, addrs))
}

/// Writes `size` bytes of a deterministic xorshift stream, 1 MiB at a time.
fn generate(path: &Path, size: u64) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> anyhow::Result<()> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b).with_context(|| format!("{} missing", b.display()))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        let mut m = 0;
        while m < n {
            let k = fb.read(&mut bb[m..n])?;
            if k == 0 {
                bail!("{} is shorter than the payload", b.display());
            }
            m += k;
        }
        if ba[..n] != bb[..n] {
            bail!("{} differs from the payload", b.display());
        }
        if n == 0 {
            // The payload ended: the download must end here too.
            if fb.read(&mut bb[..1])? != 0 {
                bail!("{} is longer than the payload", b.display());
            }
            return Ok(());
        }
    }
}

/// CPU seconds (user + system) and peak RSS of this process, from /proc.
struct ProcStats {
    cpu_s: f64,
    peak_rss_kib: u64,
}

impl ProcStats {
    fn read() -> ProcStats {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat(5): indices 11 and 12 here. USER_HZ is
        // 100 on Linux.
        let cpu_s = (ticks(11) + ticks(12)) / 100.0;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let peak_rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        ProcStats {
            cpu_s,
            peak_rss_kib,
        }
    }
}

fn human(bytes: u64) -> String {
    crate::util::human_size(bytes)
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_compares_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&a, &payload).unwrap();
        std::fs::write(&b, &payload).unwrap();
        same_bytes(&a, &b).unwrap();
        let mut longer = payload.clone();
        longer.push(0);
        std::fs::write(&b, &longer).unwrap();
        assert!(same_bytes(&a, &b).is_err(), "a longer copy passed");
        std::fs::write(&b, &payload[..payload.len() - 1]).unwrap();
        assert!(same_bytes(&a, &b).is_err(), "a shorter copy passed");
        let mut changed = payload;
        changed[2_500_000] ^= 1;
        std::fs::write(&b, &changed).unwrap();
        assert!(same_bytes(&a, &b).is_err(), "a changed copy passed");
    }
}
