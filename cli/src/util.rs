//! Helpers shared by the subcommands: sizes in and out, and writing to stdout.

use std::io::Write;

/// The rate limits `download` and `seed` take, over all torrents of the engine.
#[derive(clap::Args, Debug, Default)]
pub struct RateArgs {
    /// Upload rate limit in bytes per second over all torrents (10M, 500K...; 0 = none).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub max_upload_rate: u64,
    /// Download rate limit in bytes per second over all torrents (10M, 500K...; 0 = none).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub max_download_rate: u64,
}

/// The DHT options of `download`, `seed` and `info --fetch`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DhtArgs {
    /// Do not use the DHT (BEP 5) to find peers or announce.
    #[arg(long)]
    pub no_dht: bool,
    /// A DHT node to join through, HOST:PORT (repeatable); replaces the default routers
    /// (router.bittorrent.com, dht.transmissionbt.com, router.utorrent.com, dht.libtorrent.org).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub dht_bootstrap: Vec<String>,
    /// UDP port of the DHT node (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub dht_port: u16,
    /// Answer other nodes' queries from the start (a full DHT node). By default the node only
    /// asks until it has found itself reachable, then starts answering.
    #[arg(long)]
    pub dht_server: bool,
}

impl DhtArgs {
    /// The engine's DHT settings; the routing table is kept in `state_dir/dht.dat` if given.
    pub fn config(&self, state_dir: Option<&std::path::Path>) -> ringtorrent::DhtConfig {
        if self.no_dht {
            return ringtorrent::DhtConfig::disabled();
        }
        let mut c = ringtorrent::DhtConfig::default();
        if !self.dht_bootstrap.is_empty() {
            c.bootstrap = self.dht_bootstrap.clone();
        }
        c.port = self.dht_port;
        c.server = self.dht_server;
        c.state_file = state_dir.map(|d| d.join("dht.dat"));
        c
    }
}

/// Parses `HOST:PORT` (a name or an IP address, and a port that is not 0).
pub fn parse_host_port(s: &str) -> Result<String, String> {
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return match addr.port() {
            0 => Err(format!("invalid node {s:?}: port 0")),
            _ => Ok(s.to_string()),
        };
    }
    let bad = || format!("invalid node {s:?}: expected HOST:PORT, e.g. router.bittorrent.com:6881");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match port.parse::<u16>() {
        Ok(p) if p != 0 && host_ok => Ok(s.to_string()),
        _ => Err(bad()),
    }
}

/// Parses a `--tracker` URL: http, https or udp, at most 2048 bytes.
pub fn parse_tracker(s: &str) -> Result<String, String> {
    if !ringtorrent::tracker::tiers::usable_url(s) || s.len() < 10 {
        return Err(format!(
            "invalid tracker {s:?}: expected an http://, https:// or udp:// announce URL"
        ));
    }
    Ok(s.to_string())
}

/// Parses a size: a whole number with an optional unit, case-insensitive, spaces allowed
/// before the unit. Binary units: `K`, `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` (powers of
/// 1024); decimal units: `kB`, `MB`, `GB`, `TB` (powers of 1000); `B` or nothing: bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected a number such as 262144 or 256KiB"
        ));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// A size for people: `1023 B`, `1.50 KiB`, `12.3 MiB`, `2.00 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {}", UNITS[unit])
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("262144"), Ok(262_144));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("256 kib"), Ok(256 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("7B"), Ok(7));
    }

    #[test]
    fn bad_sizes_are_errors() {
        for bad in [
            "",
            "KiB",
            "-1",
            "1.5MiB",
            "12XB",
            "99999999999999999999",
            "17179869184TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tracker_urls() {
        for ok in [
            "http://127.0.0.1:6969/announce",
            "UDP://t.example:80",
            "https://a.b/x",
        ] {
            assert_eq!(parse_tracker(ok).as_deref(), Ok(ok));
        }
        let long = format!("http://a/{}", "x".repeat(2048));
        for bad in [
            "ftp://127.0.0.1/x",
            "127.0.0.1:6969",
            "udp://",
            "",
            long.as_str(),
        ] {
            assert!(parse_tracker(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dht_nodes_and_config() {
        for ok in [
            "127.0.0.1:6881",
            "[::1]:7",
            "router.bittorrent.com:6881",
            "a-b.c:1",
        ] {
            assert_eq!(parse_host_port(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "127.0.0.1:0",
            "host",
            ":6881",
            "host:",
            "host:70000",
            "a b:1",
            "x:0",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad:?} accepted");
        }
        let off = DhtArgs {
            no_dht: true,
            ..Default::default()
        };
        assert!(!off.config(None).enabled);
        let local = DhtArgs {
            dht_bootstrap: vec!["127.0.0.9:4000".into()],
            dht_port: 5000,
            dht_server: true,
            ..Default::default()
        };
        let c = local.config(Some(std::path::Path::new("/d/.ringtorrent")));
        assert!(c.enabled);
        assert_eq!(c.bootstrap, vec!["127.0.0.9:4000".to_string()]);
        assert_eq!(c.port, 5000);
        assert!(c.server);
        assert_eq!(
            c.state_file.as_deref(),
            Some(std::path::Path::new("/d/.ringtorrent/dht.dat"))
        );
        let default = DhtArgs::default().config(None);
        assert_eq!(default.bootstrap.len(), 4, "the public routers by default");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.50 KiB");
        assert_eq!(human_size(20 << 20), "20.0 MiB");
        assert_eq!(human_size(300 << 30), "300 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }
}

/// `1h02m`, `3m05s`, `42s`: a duration for progress lines.
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod duration_tests {
    use std::time::Duration;

    #[test]
    fn durations_read_like_a_clock() {
        let f = |s| super::format_duration(Duration::from_secs(s));
        assert_eq!(
            [f(0), f(42), f(185), f(3720)],
            ["0s", "42s", "3m05s", "1h02m"]
        );
    }
}
