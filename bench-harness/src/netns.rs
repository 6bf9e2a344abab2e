//! `--rtt-ms N`: runs the whole benchmark (harness, tracker, seeders, downloaders) inside a
//! network namespace the harness creates, whose loopback delays every packet by N/2 ms with
//! `tc netem`, so every TCP round trip between peers takes N ms.
//!
//! Why one namespace and its loopback rather than veth pairs: the project's network rule allows
//! only 127.0.0.0/8 (or namespaces the test creates); every address stays 127.x, the peers keep
//! their distinct 127.0.0.x addresses, and nothing outside the namespace can see the traffic.
//!
//! Invariants: the namespace is named `rtbench-<pid>` and deleted when the [`Namespace`] guard
//! drops (also after a failed run); the harness re-executes itself inside it with
//! [`INSIDE_ENV`] set, so it never nests.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Set in the environment of the harness re-executed inside the namespace (holds its name).
pub const INSIDE_ENV: &str = "RT_BENCH_NETNS";

/// netem's queue length in packets (its default of 1000 would drop at GB/s with delay).
const NETEM_LIMIT: u32 = 1_000_000;

/// True when this process already runs inside the benchmark's namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// A network namespace with a delayed loopback; deleted on drop.
pub struct Namespace {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Namespace {
    /// Creates `rtbench-<pid>` with its loopback up and `rtt_ms / 2` of delay on it.
    pub fn create(rtt_ms: u32) -> Result<Namespace> {
        let name = format!("rtbench-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Namespace { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        // The delay applies on egress; loopback packets leave once per direction.
        let half_us = (rtt_ms as u64 * 1000 / 2).to_string() + "us";
        let limit = NETEM_LIMIT.to_string();
        ip(&[
            "netns", "exec", &ns.name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
            &half_us, "limit", &limit,
        ])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e:#}",
                self.name
            );
        }
    }
}

/// Runs this harness again, with the same arguments, inside a fresh namespace with `rtt_ms` of
/// round-trip time; returns its exit code. Prints why and returns `Ok(None)` if namespaces cannot
/// be made here (not root, no `ip`/`tc`, no netem).
pub fn rerun_inside(rtt_ms: u32) -> Result<Option<i32>> {
    let ns = match Namespace::create(rtt_ms) {
        Ok(ns) => ns,
        Err(e) => {
            println!("--rtt-ms {rtt_ms}: skipped, a network namespace with netem could not be set up ({e:#}); it needs root, iproute2 and the sch_netem module");
            return Ok(None);
        }
    };
    eprintln!(
        "running inside network namespace {} with {rtt_ms} ms RTT on loopback",
        ns.name()
    );
    let exe = std::env::current_exe()?;
    let status = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE_ENV, ns.name())
        .status()
        .context("running the harness inside the namespace")?;
    Ok(Some(status.code().unwrap_or(1)))
}
