//! `litefs restore`: a database from a backup (a replica directory in
//! Litestream 0.5's layout, ours or Litestream's), at the newest position,
//! a TXID or a time, checked with `integrity_check` before it is kept.

use anyhow::{bail, Context};
use litefs_backup::{restore, RestoreTarget};
use litefs_ltx::Txid;
use std::path::PathBuf;

/// Flags of `litefs restore`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// Where to write the database (must not exist).
    #[arg(short = 'o', long = "o")]
    output: PathBuf,
    /// Restore exactly this transaction (16 hex digits, or fewer).
    #[arg(long = "txid", conflicts_with = "timestamp")]
    txid: Option<String>,
    /// Restore the newest transaction at or before this time (RFC 3339).
    #[arg(long = "timestamp")]
    timestamp: Option<String>,
    /// The backup of one database: its replica directory
    /// (`<backup.path>/<db>`), or `file://` and that path.
    replica: String,
}

/// Runs `litefs restore`.
pub(crate) fn run(a: RestoreArgs) -> anyhow::Result<()> {
    let root = PathBuf::from(a.replica.strip_prefix("file://").unwrap_or(&a.replica));
    if !root.is_dir() {
        bail!("{}: no such backup directory", root.display());
    }
    if a.output.exists() {
        bail!(
            "{}: already exists; restore writes a new file",
            a.output.display()
        );
    }
    let target = match (&a.txid, &a.timestamp) {
        (Some(t), _) => RestoreTarget::Txid(Txid(
            u64::from_str_radix(t, 16).with_context(|| format!("-txid {t:?}: not hexadecimal"))?,
        )),
        (None, Some(ts)) => RestoreTarget::Time(
            humantime::parse_rfc3339_weak(ts)
                .with_context(|| format!("-timestamp {ts:?}: not an RFC 3339 time"))?,
        ),
        (None, None) => RestoreTarget::Latest,
    };
    let r = restore(&root, &a.output, target)?;
    if let Err(e) = crate::transfer::check_database(&a.output) {
        let _ = std::fs::remove_file(&a.output);
        return Err(e.context("the restored database is damaged; nothing was kept"));
    }
    eprintln!(
        "Restored {} at TXID {:016x} from {} files of {}",
        a.output.display(),
        r.txid.0,
        r.files.len(),
        root.display()
    );
    Ok(())
}
