//! Downloads one torrent with the engine from a plain `#[tokio::main]` program.
//!
//! usage: cargo run --release -p ringtorrent --example download -- FILE.torrent OUT_DIR [PEER_ADDR...]

use std::net::SocketAddr;

use ringtorrent::{AddTorrent, Alert, Config, Engine, TorrentSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(torrent), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: download FILE.torrent OUT_DIR [PEER_ADDR...]");
        std::process::exit(2);
    };
    let peers: Vec<SocketAddr> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;

    let engine = Engine::start(Config::default())?;
    let mut alerts = engine
        .alerts()
        .expect("INVARIANT: first call takes the stream");
    let mut add = AddTorrent::new(TorrentSource::File(torrent.into()), out);
    add.peers = peers;
    let id = engine.add_torrent(add)?;

    while let Some(alert) = alerts.recv().await {
        match alert {
            Alert::Stats { stats, .. } => println!(
                "{:5.1}%  {:8.1} MiB/s  {} peers",
                100.0 * stats.verified_bytes as f64 / stats.total_bytes as f64,
                stats.download_rate_bytes_per_s as f64 / 1048576.0,
                stats.peers
            ),
            Alert::TorrentComplete { id: done } if done == id => {
                println!("complete");
                break;
            }
            Alert::TorrentError { message, .. } => {
                eprintln!("error: {message}");
                break;
            }
            Alert::PieceVerified { .. } => {}
            other => eprintln!("{other:?}"),
        }
    }
    engine.shutdown().await?;
    Ok(())
}
