//! `ringtorrent info`: what a .torrent file or a magnet link contains.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use ringtorrent::magnet::Magnet;
use ringtorrent::metainfo::{Metainfo, MAX_METAINFO_LEN};
use serde_json::{json, Value};

use crate::util::{human_size, print_out};

/// Show the contents of a .torrent file or a magnet link.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .torrent file, or a magnet URI (`magnet:?xt=urn:btih:...`).
    pub source: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// For a magnet link: fetch the metadata from the swarm (its `x.pe` peers, trackers,
    /// `--peer`s) and show the full torrent.
    #[arg(long)]
    pub fetch: bool,
    /// With --fetch: a peer to ask (repeatable).
    #[arg(long = "peer")]
    pub peers: Vec<std::net::SocketAddr>,
    /// With --fetch: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// With --fetch: the DHT is asked for peers too.
    #[command(flatten)]
    pub dht: crate::util::DhtArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let is_magnet = args
        .source
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"));
    let text = if is_magnet {
        let m = Magnet::parse(&args.source).context("bad magnet link")?;
        if args.fetch {
            let timeout = std::time::Duration::from_secs(args.timeout.max(1));
            let bytes = crate::magnet::fetch_torrent_file(&m, &args.peers, timeout, &args.dht)?;
            let t = Metainfo::from_bytes(&bytes).context("fetched metadata")?;
            let text = match args.json {
                true => json_line(&torrent_json(&t)),
                false => torrent_text(&t),
            };
            return print_out(&text);
        }
        match args.json {
            true => json_line(&magnet_json(&m)),
            false => magnet_text(&m),
        }
    } else {
        let path = Path::new(&args.source);
        if !path.exists() && looks_like_uri(&args.source) {
            bail!(
                "unsupported link {:?}: give a .torrent file or a magnet: link",
                args.source
            );
        }
        let m = load_torrent(path)?;
        match args.json {
            true => json_line(&torrent_json(&m)),
            false => torrent_text(&m),
        }
    };
    print_out(&text)
}

/// `scheme:...` with an RFC 3986 scheme of two or more characters.
fn looks_like_uri(s: &str) -> bool {
    s.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Reads and parses a .torrent file, checking its size before reading it.
pub fn load_torrent(path: &Path) -> anyhow::Result<Metainfo> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    if meta.is_dir() {
        bail!("{shown} is a directory, not a .torrent file");
    }
    if meta.len() > MAX_METAINFO_LEN as u64 {
        bail!(
            "{shown}: {} is too large for a .torrent file",
            human_size(meta.len())
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{shown} is not a valid torrent"))
}

fn json_line(v: &Value) -> String {
    format!("{v}\n")
}

/// The JSON schema: `info_hash` (lower-case hex), `name`, `total_length`, `piece_length`,
/// `num_pieces`, `private`, `trackers` (tiers of URLs), `web_seeds`, `comment`, `created_by`,
/// `creation_date`, `files` (torrent order; `path` is below the torrent's root directory,
/// joined with `/`; `padding` marks BEP 47 padding files).
pub fn torrent_json(m: &Metainfo) -> Value {
    let i = &m.info;
    let files: Vec<Value> = i
        .files
        .iter()
        .map(|f| json!({ "path": f.path.join("/"), "length": f.length, "padding": f.padding }))
        .collect();
    json!({
        "info_hash": m.info_hash.to_hex(),
        "name": i.name,
        "total_length": i.lengths.total_length(),
        "piece_length": i.piece_length,
        "num_pieces": i.lengths.num_pieces(),
        "private": i.private,
        "multi_file": i.multi_file,
        "trackers": m.trackers,
        "web_seeds": m.url_list,
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "files": files,
    })
}

/// For a magnet: `info_hash`, `name`, `trackers` (one tier per `tr`, as for a torrent),
/// `peers` (`ip:port`), `select_only` (BEP 53 ranges as `[first, last]`, or null).
pub fn magnet_json(m: &Magnet) -> Value {
    let tiers: Vec<Vec<&String>> = m.trackers.iter().map(|t| vec![t]).collect();
    let peers: Vec<String> = m.peers.iter().map(|p| p.to_string()).collect();
    let so = m.select_only.as_ref().map(|so| {
        so.iter()
            .map(|r| [*r.start(), *r.end()])
            .collect::<Vec<_>>()
    });
    json!({
        "info_hash": m.info_hash.to_hex(),
        "name": m.name,
        "trackers": tiers,
        "peers": peers,
        "select_only": so,
    })
}

fn torrent_text(m: &Metainfo) -> String {
    let i = &m.info;
    let l = &i.lengths;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "name:        {}", i.name);
    let _ = writeln!(s, "info-hash:   {}", m.info_hash);
    let total = l.total_length();
    let _ = writeln!(s, "total size:  {} ({total} bytes)", human_size(total));
    let pl = human_size(i.piece_length as u64);
    let _ = writeln!(s, "pieces:      {} x {pl}", l.num_pieces());
    let _ = writeln!(s, "private:     {}", if i.private { "yes" } else { "no" });
    for (label, v) in [("created by:", &m.created_by), ("comment:", &m.comment)] {
        if let Some(v) = v {
            let _ = writeln!(s, "{label:<12} {v}");
        }
    }
    if let Some(d) = m.creation_date {
        let _ = writeln!(s, "created:     {d} (Unix time)");
    }
    let _ = writeln!(
        s,
        "trackers:{}",
        if m.trackers.is_empty() { " none" } else { "" }
    );
    for (n, tier) in m.trackers.iter().enumerate() {
        let _ = writeln!(s, "  tier {}: {}", n + 1, tier.join(" "));
    }
    if !m.url_list.is_empty() {
        let _ = writeln!(s, "web seeds:");
        for u in &m.url_list {
            let _ = writeln!(s, "  {u}");
        }
    }
    file_tree(m, &mut s);
    s
}

/// Files in torrent order as an indented tree; a directory line is printed where the
/// directory part changes from the previous file. Padding files are hidden.
fn file_tree(m: &Metainfo, s: &mut String) {
    let shown: Vec<_> = m.info.files.iter().filter(|f| !f.padding).collect();
    let _ = writeln!(s, "files ({}):", shown.len());
    let root_depth = usize::from(m.info.multi_file);
    if m.info.multi_file {
        let _ = writeln!(s, "  {}/", m.info.name);
    }
    let mut prev_dirs: &[String] = &[];
    for f in shown {
        // Parsed paths are never empty; an empty one would just not be shown.
        let Some((file_name, dirs)) = f.path.split_last() else {
            continue;
        };
        let common = prev_dirs
            .iter()
            .zip(dirs)
            .take_while(|(a, b)| a == b)
            .count();
        for (depth, d) in dirs.iter().enumerate().skip(common) {
            let _ = writeln!(
                s,
                "{:indent$}{d}/",
                "",
                indent = 2 * (depth + root_depth + 1)
            );
        }
        let indent = 2 * (dirs.len() + root_depth + 1);
        let _ = writeln!(s, "{:indent$}{file_name}  {}", "", human_size(f.length));
        prev_dirs = dirs;
    }
}

fn magnet_text(m: &Magnet) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "magnet link");
    let _ = writeln!(s, "name:        {}", m.name.as_deref().unwrap_or("(none)"));
    let _ = writeln!(s, "info-hash:   {}", m.info_hash);
    let _ = writeln!(
        s,
        "trackers:{}",
        if m.trackers.is_empty() { " none" } else { "" }
    );
    for t in &m.trackers {
        let _ = writeln!(s, "  {t}");
    }
    let _ = writeln!(s, "peers:{}", if m.peers.is_empty() { " none" } else { "" });
    for p in &m.peers {
        let _ = writeln!(s, "  {p}");
    }
    if let Some(so) = &m.select_only {
        let items: Vec<String> = so
            .iter()
            .map(|r| format!("{}-{}", r.start(), r.end()))
            .collect();
        let _ = writeln!(s, "select only: files {}", items.join(", "));
    }
    let _ = writeln!(s, "(sizes and files come with the metadata from peers)");
    s
}
