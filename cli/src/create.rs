//! `ringtorrent create`: hash a file or a directory into a v1 .torrent.
//!
//! The layout matches mktorrent's, so the same content, piece length and private flag give the
//! same info-hash: symbolic links are followed, hidden files are included, a directory's files
//! are ordered by their `/`-joined path byte by byte ([`mktorrent_cmp`]).

use std::collections::HashSet;
use std::fs;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use ringtorrent::metainfo::build::{
    default_piece_length, mktorrent_cmp, BuildFile, TorrentBuilder,
};
use ringtorrent::metainfo::MAX_PIECE_LENGTH;

use crate::util::{human_size, parse_size, print_out};

/// Make a .torrent file from a file or a directory.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file or directory to share.
    pub path: PathBuf,
    /// Where to write the .torrent file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Piece length, a power of two from 16KiB to 128MiB (`256KiB`, `1MiB`, `262144`).
    /// Default: the smallest power of two giving at most 2,000 pieces, within 16KiB..16MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_piece_length)]
    pub piece_length: Option<u32>,
    /// Tracker URL. Repeat for more tiers; comma-separated URLs share one tier (BEP 12).
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Web seed URL (BEP 19). Repeatable.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Mark the torrent private (BEP 27): peers only from its trackers.
    #[arg(long)]
    pub private: bool,
    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// Leave out the creation date, so that the same input gives the same file.
    #[arg(long)]
    pub no_date: bool,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Hashing threads. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

fn parse_piece_length(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    let min = ringtorrent::BLOCK_LEN as u64;
    if !n.is_power_of_two() || n < min || n > MAX_PIECE_LENGTH as u64 {
        return Err(format!(
            "piece length must be a power of two from 16KiB to 128MiB, not {n}"
        ));
    }
    Ok(n as u32)
}

/// What is being shared: the torrent name, and each file's on-disk path and torrent path.
struct Content {
    name: String,
    multi_file: bool,
    files: Vec<(PathBuf, BuildFile)>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "{} already exists (use --force to overwrite)",
            args.output.display()
        );
    }
    let content = collect(&args.path)?;
    let total: u64 = content.files.iter().map(|(_, f)| f.length).sum();
    if total == 0 {
        bail!("nothing to share: {} holds no data", args.path.display());
    }
    let piece_length = args
        .piece_length
        .unwrap_or_else(|| default_piece_length(total));
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let on_disk: Vec<(PathBuf, u64)> = content
        .files
        .iter()
        .map(|(p, f)| (p.clone(), f.length))
        .collect();
    let bar = progress_bar(total);
    let hashes = uring_disk::hash::hash_pieces(&on_disk, piece_length, threads, &|n| bar.inc(n))
        .context("hashing failed")?;
    bar.finish_and_clear();

    let builder = match content.multi_file {
        false => TorrentBuilder::single_file(&content.name, total, piece_length),
        true => {
            let files = content.files.into_iter().map(|(_, f)| f).collect();
            TorrentBuilder::multi_file(&content.name, files, piece_length)
        }
    };
    let (bytes, meta) = with_fields(builder, &args)
        .piece_hashes(hashes)
        .build()
        .context("cannot build the torrent")?;
    write_output(&args.output, &bytes, args.force)?;
    print_out(&format!(
        "wrote {}: {} in {} files, {} pieces of {}\ninfo-hash: {}\n",
        args.output.display(),
        human_size(total),
        meta.info.files.len(),
        meta.info.lengths.num_pieces(),
        human_size(piece_length as u64),
        meta.info_hash,
    ))
}

/// The optional top-level fields from the command line.
fn with_fields(b: TorrentBuilder, args: &Args) -> TorrentBuilder {
    let tiers = args
        .trackers
        .iter()
        .map(|t| {
            t.split(',')
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect();
    let mut b = b
        .trackers(tiers)
        .web_seeds(args.web_seeds.clone())
        .private(args.private)
        .created_by(concat!("ringtorrent ", env!("CARGO_PKG_VERSION")));
    if let Some(c) = &args.comment {
        b = b.comment(c);
    }
    if !args.no_date {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        b = b.creation_date(now.map_or(0, |d| d.as_secs() as i64));
    }
    b
}

/// A byte progress bar on a terminal; nothing when stderr is not one.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "hashing {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

fn write_output(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    match force {
        true => opts.create(true).truncate(true),
        false => opts.create_new(true),
    };
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Finds the files to share. A file gives a single-file torrent named after it; a directory
/// gives every regular file below it (following symbolic links, each directory once).
fn collect(path: &Path) -> anyhow::Result<Content> {
    let shown = path.display();
    let meta = fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    let full = fs::canonicalize(path).with_context(|| format!("cannot read {shown}"))?;
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{shown}: the name is not valid UTF-8"))?
        .to_string();
    if meta.is_file() {
        let f = BuildFile {
            path: vec![name.clone()],
            length: meta.len(),
        };
        return Ok(Content {
            name,
            multi_file: false,
            files: vec![(path.to_path_buf(), f)],
        });
    }
    if !meta.is_dir() {
        bail!("{shown} is neither a file nor a directory");
    }
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    walk(path, &mut Vec::new(), &mut seen, &mut files)?;
    if files.is_empty() {
        bail!("nothing to share: {shown} has no files");
    }
    files.sort_by(|a, b| mktorrent_cmp(&a.1.path, &b.1.path));
    Ok(Content {
        name,
        multi_file: true,
        files,
    })
}

fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    seen: &mut HashSet<(u64, u64)>,
    out: &mut Vec<(PathBuf, BuildFile)>,
) -> anyhow::Result<()> {
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !seen.insert((meta.dev(), meta.ino())) {
        return Ok(()); // a directory reached twice through links
    }
    let entries = fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let p = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("{}: the name {n:?} is not valid UTF-8", dir.display()))?;
        let meta = fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
        rel.push(name);
        if meta.is_dir() {
            walk(&p, rel, seen, out)?;
        } else if meta.is_file() {
            let f = BuildFile {
                path: rel.clone(),
                length: meta.len(),
            };
            out.push((p, f));
        } else {
            bail!("{} is neither a file nor a directory", p.display());
        }
        rel.pop();
    }
    Ok(())
}
