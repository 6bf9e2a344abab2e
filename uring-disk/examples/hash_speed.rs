//! Measures `hash_pieces` throughput: `hash_speed FILE [PIECE_LEN] [THREADS]`.
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = std::path::PathBuf::from(args.next().ok_or("usage: hash_speed FILE")?);
    let piece_len: u32 = args.next().map_or(Ok(256 * 1024), |s| s.parse())?;
    let threads: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let len = std::fs::metadata(&path)?.len();
    let start = Instant::now();
    let hashes = uring_disk::hash_pieces(&[(path, len)], piece_len, threads, &|_| {})?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} pieces, {:.2} GB/s ({:.3} s)",
        hashes.len(),
        len as f64 / secs / 1e9,
        secs
    );
    Ok(())
}
