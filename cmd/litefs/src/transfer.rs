//! `litefs export` and `litefs import`: whole databases to and from a
//! node's API.

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use litefs_http::client::Progress;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The local node's API, as LiteFS defaults it.
const DEFAULT_URL: &str = "http://localhost:20202";
/// Whole-transfer time limit.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// The flags `litefs export` and `litefs import` share.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The database.
    #[arg(long = "name")]
    name: String,
    /// The node's API URL (for import: the primary's).
    #[arg(long = "url", default_value = DEFAULT_URL)]
    url: String,
    /// API token (default: LITEFS_AUTH_TOKEN).
    #[arg(long = "auth-token")]
    auth_token: Option<String>,
}

/// Flags of `litefs export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    target: Target,
    /// Where to write the database.
    path: PathBuf,
}

/// Flags of `litefs import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    target: Target,
    /// The SQLite database file to import (the database is created if new).
    path: PathBuf,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the client runtime")
}

fn query_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A progress bar (bytes) on stderr for one transfer, drawn only when
/// stdout and stderr are both terminals: scripts and tests see nothing but
/// the summary line.
struct Bar(ProgressBar);

/// While bytes move: how many of how many, speed, time left.
const BAR: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
/// While waiting for the node.
const WAITING: &str = "{spinner} {msg} {elapsed}";

impl Bar {
    /// A bar saying `msg`, waiting for the node until bytes move; `None`
    /// when not on a terminal.
    fn new(msg: String) -> Option<Arc<Bar>> {
        use std::io::IsTerminal;
        if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
            return None;
        }
        let bar = Bar(ProgressBar::with_draw_target(
            None,
            ProgressDrawTarget::stderr(),
        ));
        bar.0.set_message(msg);
        bar.wait("");
        Some(Arc::new(bar))
    }

    /// Shows a spinner with `what` after the message.
    fn wait(&self, what: &str) {
        self.0.set_style(style(WAITING));
        if !what.is_empty() {
            self.0.set_message(format!("{} {what}", self.0.message()));
        }
        self.0.enable_steady_tick(Duration::from_millis(100));
    }

    /// Shows the byte bar, `total` bytes long.
    fn bytes(&self, total: u64) {
        self.0.disable_steady_tick();
        self.0.set_style(style(BAR));
        self.0.set_length(total);
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Progress for Bar {
    fn sent(&self, done: u64, total: u64) {
        if self.0.length() != Some(total) {
            self.bytes(total);
        }
        self.0.set_position(done);
        if done == total {
            self.wait("(sent; the node applies it)");
        }
    }

    fn receiving(&self, total: Option<u64>) {
        match total {
            Some(t) => self.bytes(t),
            None => self.wait("(receiving)"),
        }
    }

    fn received(&self, done: u64) {
        self.0.set_position(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs one request for `export` or `import`, with a progress bar on a
/// terminal.
fn transfer(
    a: &Target,
    method: Method,
    path_and_query: String,
    body: Bytes,
    msg: String,
) -> anyhow::Result<litefs_http::client::Reply> {
    let bar = Bar::new(msg);
    let reply = runtime()?.block_on(litefs_http::client::request_with_progress(
        &a.url,
        method,
        &path_and_query,
        body,
        crate::node::token_or_env(a.auth_token.clone()).as_deref(),
        TIMEOUT,
        bar.clone().map(|b| b as Arc<dyn Progress>),
    ));
    drop(bar);
    Ok(reply?)
}

/// Downloads the database to a temporary file beside `path`, fsyncs it and
/// renames it into place: `path` is never a partial database.
pub(crate) fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (a, path) = (args.target, args.path);
    let reply = transfer(
        &a,
        Method::GET,
        format!("/export?name={}", query_name(&a.name)),
        Bytes::new(),
        format!("export {}", a.name),
    )?;
    if reply.status != StatusCode::OK {
        bail!("export {}: {} {}", a.name, reply.status, reply.text());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(&reply.body)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("write {}", tmp.path().display()))?;
    tmp.persist(&path)
        .with_context(|| format!("rename into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let pos = reply
        .headers
        .get("litefs-pos")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    eprintln!(
        "Exported {} ({} bytes, position {pos}) to {}",
        a.name,
        reply.body.len(),
        path.display()
    );
    Ok(())
}

/// Checks the file with SQLite's own integrity check, then uploads it.
pub(crate) fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (a, path) = (args.target, args.path);
    check_database(&path)?;
    let image = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let len = image.len();
    let reply = transfer(
        &a,
        Method::POST,
        format!("/import?name={}", query_name(&a.name)),
        Bytes::from(image),
        format!("import {}", a.name),
    )?;
    if reply.status != StatusCode::OK {
        bail!("import {}: {} {}", a.name, reply.status, reply.text());
    }
    eprintln!("Imported {} ({len} bytes): {}", a.name, reply.text());
    Ok(())
}

/// The file must be a SQLite database whose integrity check passes.
pub(crate) fn check_database(path: &Path) -> anyhow::Result<()> {
    use rusqlite::OpenFlags;
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let c = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("{}: not a SQLite database", path.display()))?;
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .with_context(|| format!("{}: not a SQLite database", path.display()))?;
    if rows != ["ok"] {
        bail!(
            "{}: integrity check failed: {}",
            path.display(),
            rows.join("; ")
        );
    }
    Ok(())
}
