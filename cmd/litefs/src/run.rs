//! `litefs run`: run a command against a node, LiteFS-style: only on a
//! candidate (`-if-candidate`), or after moving the primary to this node
//! (`-promote`).

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `litefs run` (LiteFS's).
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The node's API URL.
    #[arg(long = "url", default_value = "http://localhost:20202")]
    url: String,
    /// Make this node the primary first (`POST /promote`); fails on a node
    /// that is not a candidate.
    #[arg(long = "promote", conflicts_with = "with_halt_lock_on")]
    promote: bool,
    /// Do nothing (exit 0) unless the node is a candidate for primary.
    #[arg(long = "if-candidate")]
    if_candidate: bool,
    /// Hold the halt lock of this database (its path in the mount) while
    /// the command runs: on a replica, the database is writable then and
    /// its commits go to the primary.
    #[arg(long = "with-halt-lock-on")]
    with_halt_lock_on: Option<String>,
    /// API token (default: LITEFS_AUTH_TOKEN).
    #[arg(long = "auth-token")]
    auth_token: Option<String>,
    /// Verbose output.
    #[arg(short = 'v')]
    verbose: bool,
    /// The command to run.
    #[arg(last = true)]
    cmd: Vec<String>,
}

/// Runs `litefs run`; the exit code is the command's.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let token = crate::node::token_or_env(args.auth_token.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the client runtime")?;
    let call = |method: Method, path: &str| {
        rt.block_on(litefs_http::client::request(
            &args.url,
            method,
            path,
            Bytes::new(),
            token.as_deref(),
            Duration::from_secs(30),
        ))
        .with_context(|| format!("{} {path}", args.url))
    };
    if args.if_candidate {
        let r = call(Method::GET, "/info")?;
        if r.status != StatusCode::OK {
            bail!("{}/info: {}: {}", args.url, r.status, r.text());
        }
        let info: serde_json::Value = serde_json::from_slice(&r.body).context("/info: not JSON")?;
        if info.get("candidate").and_then(|c| c.as_bool()) != Some(true) {
            if args.verbose {
                eprintln!("litefs run: this node is not a candidate; not running the command");
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    if args.promote {
        let r = call(Method::POST, "/promote")?;
        if !r.status.is_success() {
            bail!("promotion refused ({}): {}", r.status, r.text());
        }
        if args.verbose {
            eprintln!("litefs run: {}", r.text());
        }
    }
    let Some((prog, rest)) = args.cmd.split_first() else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(rest);
    // Held until the command exits (dropped after `status`).
    let _halt = match &args.with_halt_lock_on {
        Some(db) => {
            let f = halt_lock(db)?;
            let fd = f.as_raw_fd();
            // SAFETY: dup2 is async-signal-safe; the child gets the locked
            // descriptor as fd 3, as LiteFS passes it.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            Some(f)
        }
        None => None,
    };
    let status = cmd.status().with_context(|| format!("run {prog}"))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        // Killed by a signal: the shell's convention.
        None => {
            use std::os::unix::process::ExitStatusExt;
            ExitCode::from(128u8.saturating_add(status.signal().unwrap_or(0) as u8))
        }
    })
}

/// Takes the halt lock of the database at `db` (a path in the mount): an
/// `F_OFD_SETLKW` write lock on byte 72 of `<db>-lock`, which the mount
/// turns into the primary's halt lock. Held until the file is closed.
fn halt_lock(db: &str) -> anyhow::Result<std::fs::File> {
    let path = format!("{db}-lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {path}"))?;
    // SAFETY: `flock` is a plain C struct; all-zero is valid (l_pid 0, as
    // OFD locks require).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 72;
    fl.l_len = 1;
    loop {
        // SAFETY: valid descriptor and `flock` for the call.
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLKW, &fl) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e).with_context(|| format!("halt lock on {path}"));
        }
    }
}
