//! `ringtorrent`, the command-line client. One module per subcommand; `main` only dispatches.
//!
//! Exit codes: 0 on success, 2 for usage errors (clap's), 1 for anything else (a bad torrent
//! or magnet, a missing file, an IO error, a full disk), with one `error: ...` line on stderr;
//! `download` stopped by SIGINT / SIGTERM exits 130 / 143 after saving its resume data.
#![forbid(unsafe_code)]

mod batch;
mod control;
mod create;
mod demo;
mod download;
mod info;
mod inputs;
mod magnet;
mod progress;
mod seed;
mod select;
mod tracked;
mod tui;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Linux BitTorrent client built on io_uring.
#[derive(Parser, Debug)]
#[command(name = "ringtorrent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Info(info::Args),
    Create(create::Args),
    /// Download torrents: exits 0 only when every piece is verified and on disk.
    Download(download::DownloadArgs),
    /// Check existing data and seed it.
    Seed(seed::SeedArgs),
    /// A local swarm demo: generate a payload, seed it from local processes, download it.
    Demo(demo::DemoArgs),
    /// Download torrents in an interactive terminal UI (same inputs and options as download).
    #[command(mut_arg("torrents", |a| a.required_unless_present(clap::builder::Resettable::Reset)))]
    Tui(download::DownloadArgs),
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // Subcommands that can end without an error but still fail (an incomplete download,
    // an interrupt) return their exit code.
    let result: anyhow::Result<i32> = match cli.command {
        Command::Info(args) => info::run(args).map(|()| 0),
        Command::Create(args) => create::run(args).map(|()| 0),
        Command::Seed(args) => seed::run(args).map(|()| 0),
        Command::Download(args) => download::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Tui(args) => tui::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error chain on one line, joined with ": ". A cause already spelled out by the message
/// before it (error types that print their source too) is left out rather than repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_the_message_already_holds_is_not_repeated() {
        let io = std::io::Error::other("Too many open files");
        let e = anyhow::Error::new(io).context("cannot open f: Too many open files");
        let e = e.context("storage");
        assert_eq!(
            super::one_line(&e),
            "storage: cannot open f: Too many open files"
        );
        let e = anyhow::anyhow!("root cause").context("line one\nline two");
        assert_eq!(super::one_line(&e), "line one line two: root cause");
    }
}
