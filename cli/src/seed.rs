//! `ringtorrent seed`: check existing data with all cores and serve the pieces that verify.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentSource};

/// Arguments of `seed`.
#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// The .torrent file.
    pub torrent: PathBuf,
    /// Where the content is: the directory holding it (as given to `download -o`), or for a
    /// single-file torrent the file itself.
    pub data: PathBuf,
    /// Address to accept peers on; `[::]` takes IPv6 and IPv4 peers (IPv4 only where IPv6
    /// is off).
    #[arg(long, default_value = "[::]:6881")]
    pub listen: SocketAddr,
    /// A peer to connect to (repeatable).
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Do not contact the torrent's trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// Do not exchange peers with peers (BEP 11 PEX).
    #[arg(long)]
    pub no_pex: bool,
    /// Do not use local service discovery (BEP 14 multicast on the local network).
    #[arg(long)]
    pub no_lsd: bool,
    /// Also announce to this tracker (repeatable); remembered in the resume file.
    #[arg(long = "tracker", value_name = "URL", value_parser = crate::util::parse_tracker)]
    pub trackers: Vec<String>,
    /// Stop after this many minutes (default: until interrupted).
    #[arg(long)]
    pub seed_time: Option<f64>,
    /// Shard threads (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Most peers connected per torrent (default 64).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_peers: Option<u32>,
    /// Use the epoll backend instead of io_uring.
    #[arg(long)]
    pub no_uring: bool,
    /// MSE/PE encryption: `prefer` (accept both; dial plain, and encrypted if a peer closes a
    /// plain handshake), `require` (RC4 only, both ways), `disable` (plain only).
    #[arg(long, default_value = "prefer")]
    pub encryption: ringtorrent::EncryptionPolicy,
    /// Carriers of outgoing connections: `tcp`, `utp` (BEP 29), or `both` (TCP first, uTP
    /// for a peer that does not take TCP). Incoming uTP is accepted on the listen port
    /// whatever this says.
    #[arg(long, default_value = "both")]
    pub transport: ringtorrent::TransportMode,
    /// Which peers get cached blocks with `sendfile` (no copy in the seeder): `remote`
    /// (peers on other hosts), `always`, `never`. The others get copies (from a mapping of
    /// the file on io_uring).
    #[arg(long, default_value = "remote")]
    pub zero_copy: ringtorrent::ZeroCopyUploads,
    #[command(flatten)]
    pub rates: crate::util::RateArgs,
    /// Hash-check the data even if the resume file (`<data dir>/.ringtorrent/<infohash>.resume`)
    /// matches it.
    #[arg(long)]
    pub recheck: bool,
    /// No check progress output.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub dht: crate::util::DhtArgs,
}

/// The directory a torrent's content lives below, given what the user pointed at.
fn data_dir(data: &Path, name: &str, multi_file: bool) -> PathBuf {
    if !multi_file && data.is_file() && data.file_name().is_some_and(|f| f == name) {
        return data
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    }
    data.to_path_buf()
}

pub fn run(args: SeedArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(seed(args))
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let meta = crate::info::load_torrent(&args.torrent)?;
    let dir = data_dir(&args.data, &meta.info.name, meta.info.multi_file);
    let content = dir.join(&meta.info.name);
    if !content.exists() {
        bail!("no data for {} at {}", meta.info.name, content.display());
    }
    let mut config = Config {
        listen: args.listen,
        use_trackers: !args.no_trackers,
        pex: !args.no_pex,
        lsd: !args.no_lsd,
        force_portable: args.no_uring,
        buffer_pool_bytes: 8 << 20,
        upload_rate_limit: args.rates.max_upload_rate,
        download_rate_limit: args.rates.max_download_rate,
        zero_copy_uploads: args.zero_copy,
        encryption: args.encryption,
        transports: args.transport,
        dht: args.dht.config(Some(&dir.join(".ringtorrent"))),
        ..Config::default()
    };
    if let Some(n) = args.shards {
        config.shards = n.max(1);
    }
    if let Some(n) = args.max_peers {
        config.max_peers_per_torrent = n;
    }
    let engine = Engine::start(config).context("cannot start the engine")?;
    let mut alerts = engine.alerts().context("alert stream already taken")?;
    let total = meta.info.lengths.total_length();
    let pieces = meta.info.lengths.num_pieces();
    let name = meta.info.name.clone();
    let piece_length = u64::from(meta.info.piece_length);
    let started = Instant::now();
    let mut add = AddTorrent::new(TorrentSource::Metainfo(Box::new(meta)), &dir);
    add.trackers = args.trackers.clone();
    add.check_existing = true;
    add.recheck = args.recheck;
    add.peers = args.peers.clone();
    let mut held = Vec::new();
    let display = crate::progress::CheckDisplay::for_stderr(args.quiet);
    let id = crate::progress::add_showing_check(
        &engine,
        add,
        &name,
        piece_length,
        &mut alerts,
        &mut held,
        display,
    )
    .await??;
    let stats = engine.stats(id).context("torrent vanished")?;
    println!(
        "seeding on {}: {}/{} pieces verified in {:.2} s ({:.1} MiB/s check)",
        engine.listen_addr(),
        stats.pieces_have,
        pieces,
        started.elapsed().as_secs_f64(),
        total as f64 / 1048576.0 / started.elapsed().as_secs_f64().max(1e-6)
    );
    if stats.pieces_have < pieces {
        eprintln!(
            "warning: {} pieces failed the check and are not served",
            pieces - stats.pieces_have
        );
    }
    let deadline = args
        .seed_time
        .map(|m| Instant::now() + Duration::from_secs_f64(m.max(0.0) * 60.0));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    for a in held {
        if let Alert::TorrentError { message, .. } = a {
            engine.shutdown().await?;
            bail!("{message}");
        }
    }
    // Checked before waiting, so that `--seed-time 0` exits right after the check.
    while deadline.is_none_or(|d| Instant::now() < d) {
        tokio::select! {
            a = alerts.recv() => match a {
                Some(Alert::TorrentError { message, .. }) => {
                    engine.shutdown().await?;
                    bail!("{message}");
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    let uploaded = engine.stats(id).map_or(0, |s| s.uploaded_bytes);
    engine.shutdown().await?;
    println!("uploaded {:.1} MiB", uploaded as f64 / 1048576.0);
    Ok(())
}
