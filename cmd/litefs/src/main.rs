//! The `litefs` binary: parses the command line and wires the libraries.

mod config;
mod exec;
mod logging;
mod mount;
mod node;
mod restore;
mod run;
mod transfer;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Command-line interface, compatible with LiteFS v0.5.14's commands.
#[derive(Debug, Parser)]
#[command(name = "litefs", about = "A replicating filesystem for SQLite (LiteFS-compatible).", version = VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount the filesystem and serve it until SIGINT or SIGTERM.
    Mount(mount::MountArgs),
    /// Write a consistent copy of a database to a file.
    Export(transfer::ExportArgs),
    /// Replace a database with a SQLite database file (on the primary).
    Import(transfer::ImportArgs),
    /// Restore a database from a backup (ours or Litestream's).
    Restore(restore::RestoreArgs),
    /// Run a command against a node: only on a candidate, or after
    /// promoting the node to primary.
    Run(run::RunArgs),
    /// Print the version.
    Version,
}

/// The version string, with the git commit when the build knows it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    match cli.command {
        Command::Mount(args) => match mount::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("litefs: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Export(args) => report(transfer::export(args)),
        Command::Import(args) => report(transfer::import(args)),
        Command::Restore(args) => report(restore::run(args)),
        Command::Run(args) => match run::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("litefs: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Version => {
            println!("litefs-rs {VERSION} (LiteFS v0.5.14 compatible)");
            ExitCode::SUCCESS
        }
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("litefs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts Go-style single-dash long flags (`-config x`) as LiteFS does, by
/// rewriting them to `--config x` before clap sees them. Arguments after
/// `--` (the command to exec) are left alone.
fn normalize_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for a in args {
        if passthrough {
            out.push(a);
            continue;
        }
        match a.to_str() {
            Some("--") => {
                passthrough = true;
                out.push(a);
            }
            Some(s) if s.len() > 2 && s.starts_with('-') && !s.starts_with("--") => {
                out.push(format!("-{s}").into());
            }
            _ => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_long_flags_are_normalized() {
        let args = [
            "litefs", "mount", "-config", "x.yml", "-h", "--", "-app", "-x",
        ];
        let got: Vec<String> = normalize_args(args.iter().map(|s| s.into()))
            .into_iter()
            .map(|s| s.into_string().unwrap_or_default())
            .collect();
        assert_eq!(
            got,
            ["litefs", "mount", "--config", "x.yml", "-h", "--", "-app", "-x"]
        );
    }
}
