//! `litefs export` and `litefs import`: whole databases to and from a
//! node's API.

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// Downloads the database to a temporary file beside `path`, fsyncs it and
/// renames it into place: `path` is never a partial database.
pub(crate) fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (a, path) = (args.target, args.path);
    let reply = runtime()?.block_on(litefs_http::client::request(
        &a.url,
        Method::GET,
        &format!("/export?name={}", query_name(&a.name)),
        Bytes::new(),
        crate::node::token_or_env(a.auth_token).as_deref(),
        TIMEOUT,
    ))?;
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
    let reply = runtime()?.block_on(litefs_http::client::request(
        &a.url,
        Method::POST,
        &format!("/import?name={}", query_name(&a.name)),
        Bytes::from(image),
        crate::node::token_or_env(a.auth_token).as_deref(),
        TIMEOUT,
    ))?;
    if reply.status != StatusCode::OK {
        bail!("import {}: {} {}", a.name, reply.status, reply.text());
    }
    eprintln!("Imported {} ({len} bytes): {}", a.name, reply.text());
    Ok(())
}

/// The file must be a SQLite database whose integrity check passes.
fn check_database(path: &Path) -> anyhow::Result<()> {
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
