//! opentracker on loopback, in the whitelist mode Debian builds it with (shared/INTEROP.md): it
//! serves only the info-hashes in its whitelist, chroots into its work directory and loads the
//! list asynchronously, so [`Opentracker::start`] waits until an announce for every hash works.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringtorrent::InfoHash;

use crate::bencode::{self, Node};
use crate::net::{
    free_tcp_udp_port, http_get, http_get_from, url_encode, wait_port_open, LEECHER_IP,
};
use crate::proc::{kit_command, Proc};
use crate::wait::wait_for;

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Peer id the kit's own probe announces use.
const PROBE_PEER_ID: &[u8; 20] = b"-RTKIT0-probeprobe00";

/// An opentracker process; killed on drop.
pub struct Opentracker {
    pub proc: Proc,
    addr: SocketAddr,
}

impl Opentracker {
    /// Starts a tracker on 127.0.0.1 (HTTP and UDP on one fresh port) that serves `hashes`.
    pub fn start(hashes: &[InfoHash]) -> Result<Self> {
        crate::require::require(crate::require::Tool::Opentracker)?;
        let port = free_tcp_udp_port(LEECHER_IP)?;
        let work = tempfile::Builder::new()
            .prefix("rt-opentracker-")
            .tempdir()?;
        let list: String = hashes.iter().map(|h| format!("{}\n", h.to_hex())).collect();
        std::fs::write(work.path().join("whitelist"), list)?;
        // It drops to user `nobody` after the chroot: keep its directory and list readable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(
            work.path().join("whitelist"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        let mut cmd = kit_command("opentracker");
        cmd.arg("-i")
            .arg(LEECHER_IP.to_string())
            .arg("-p")
            .arg(port.to_string())
            .arg("-P")
            .arg(port.to_string())
            .arg("-d")
            .arg(work.path())
            // Relative to the chroot (`-d`).
            .arg("-w")
            .arg("whitelist");
        let proc = Proc::spawn("opentracker", cmd, work)?;
        let mut t = Opentracker {
            proc,
            addr: SocketAddr::from((LEECHER_IP, port)),
        };
        wait_port_open(t.addr, START_TIMEOUT)?;
        for h in hashes {
            let what = format!("opentracker to accept {h}");
            wait_for(START_TIMEOUT, &what, || {
                t.proc.check_alive()?;
                Ok(t.probe(h)?.then_some(()))
            })?;
        }
        Ok(t)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP announce URL.
    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Announces as a probe peer and withdraws it again; true if the tracker served the hash.
    fn probe(&self, h: &InfoHash) -> Result<bool> {
        let (_, body) = http_get(self.addr, &announce_query(h, 0, None), HTTP_TIMEOUT)?;
        let ok = bencode::decode(&body)
            .map(|n| n.get("failure reason").is_none() && n.get("interval").is_some())
            .unwrap_or(false);
        if ok {
            http_get(
                self.addr,
                &announce_query(h, 0, Some("stopped")),
                HTTP_TIMEOUT,
            )?;
        }
        Ok(ok)
    }

    /// Peers the tracker hands out for `h` (other than the probe itself).
    pub fn peers(&self, h: &InfoHash) -> Result<Vec<SocketAddr>> {
        let (_, body) = http_get(self.addr, &announce_query(h, 200, None), HTTP_TIMEOUT)?;
        let _ = http_get(
            self.addr,
            &announce_query(h, 0, Some("stopped")),
            HTTP_TIMEOUT,
        );
        let root = bencode::decode(&body)?;
        if let Some(f) = root.get("failure reason").and_then(Node::as_str) {
            bail!("tracker refused: {f}");
        }
        let compact = root
            .get("peers")
            .and_then(Node::as_bytes)
            .context("no compact peers")?;
        Ok(compact
            .chunks_exact(6)
            .map(|c| {
                let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                SocketAddr::from((ip, u16::from_be_bytes([c[4], c[5]])))
            })
            .filter(|a| a.port() != PROBE_PORT)
            .collect())
    }

    /// Seeders the tracker knows for `h` (scrape's `complete`).
    pub fn seeders(&self, h: &InfoHash) -> Result<u64> {
        let q = format!("/scrape?info_hash={}", url_encode(&h.0));
        let (_, body) = http_get(self.addr, &q, HTTP_TIMEOUT)?;
        let root = bencode::decode(&body)?;
        let files = root
            .get("files")
            .and_then(Node::as_dict)
            .context("no files in scrape")?;
        Ok(files
            .iter()
            .find(|(k, _)| *k == h.0.as_slice())
            .and_then(|(_, v)| v.get("complete"))
            .and_then(Node::as_int)
            .map_or(0, |n| n.max(0) as u64))
    }

    /// Announces a seeder of `h` at `ip:port` on its behalf: the request comes from `ip` (the
    /// tracker takes the peer's address from the connection) with `left=0`. A benchmark puts a
    /// path shaper in front of each seeder this way: the shaper's address is what leechers
    /// learn, and the seeder itself announces nowhere.
    pub fn announce_seeder(
        &self,
        h: &InfoHash,
        ip: Ipv4Addr,
        port: u16,
        peer_id: &[u8; 20],
    ) -> Result<()> {
        anyhow::ensure!(ip.is_loopback(), "{ip} is not a loopback address");
        let q = format!(
            "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left=0&compact=1&numwant=0&event=started",
            url_encode(&h.0),
            url_encode(peer_id)
        );
        let (code, body) = http_get_from(Some(ip), self.addr, &q, HTTP_TIMEOUT)?;
        let root = bencode::decode(&body).context("tracker reply is not bencode")?;
        if let Some(f) = root.get("failure reason").and_then(Node::as_str) {
            bail!("tracker refused {ip}:{port}: {f}");
        }
        anyhow::ensure!(code == 200, "tracker answered {code} for {ip}:{port}");
        Ok(())
    }

    /// Waits until at least `n` seeders have announced `h`.
    pub fn wait_for_seeders(&self, h: &InfoHash, n: u64, timeout: Duration) -> Result<()> {
        wait_for(
            timeout,
            &format!("{n} seeders announced on the tracker"),
            || Ok((self.seeders(h)? >= n).then_some(())),
        )
    }
}

/// Port the probe announces with; filtered out of [`Opentracker::peers`].
const PROBE_PORT: u16 = 1;

fn announce_query(h: &InfoHash, numwant: u32, event: Option<&str>) -> String {
    let mut q = format!(
        "/announce?info_hash={}&peer_id={}&port={PROBE_PORT}&uploaded=0&downloaded=0&left=1&compact=1&numwant={numwant}",
        url_encode(&h.0),
        url_encode(PROBE_PEER_ID)
    );
    if let Some(e) = event {
        q.push_str("&event=");
        q.push_str(e);
    }
    q
}
