//! `ringtorrent`, the command-line client. One module per subcommand; `main` only dispatches.
//!
//! Exit codes: 0 on success, 2 for usage errors (clap's), 1 for anything else (a bad torrent
//! or magnet, a missing file, an IO error), with one `error: ...` line on stderr.
#![forbid(unsafe_code)]

mod create;
mod info;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Create(args) => create::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the error chain with ": "; keep it on one line whatever it holds.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
