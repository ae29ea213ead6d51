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
    /// (`<backup.path>/<db>`), `file://` and that path, or
    /// `s3://BUCKET/PREFIX/<db>[?endpoint=URL&region=R&force-path-style=true]`
    /// (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    replica: String,
}

/// The storage a `litefs restore` argument names.
fn storage(arg: &str) -> anyhow::Result<Box<dyn litefs_backup::Storage>> {
    let Some(rest) = arg.strip_prefix("s3://") else {
        let root = PathBuf::from(arg.strip_prefix("file://").unwrap_or(arg));
        if !root.is_dir() {
            bail!("{}: no such backup directory", root.display());
        }
        return Ok(Box::new(litefs_backup::FileReplica::new(root)));
    };
    let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
    if bucket.is_empty() || prefix.trim_matches('/').is_empty() {
        bail!("{arg}: expected s3://BUCKET/PREFIX (the prefix of one database's backup)");
    }
    let mut o = litefs_backup::S3Options {
        bucket: bucket.to_owned(),
        force_path_style: true,
        ..Default::default()
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "endpoint" => o.endpoint = v.to_owned(),
            "region" => o.region = v.to_owned(),
            "force-path-style" | "forcePathStyle" => o.force_path_style = v != "false",
            other => {
                bail!("{arg}: unknown parameter {other:?} (endpoint, region, force-path-style)")
            }
        }
    }
    let client = o.client()?;
    Ok(Box::new(litefs_backup::S3Replica::new(
        client, bucket, prefix,
    )?))
}

/// Runs `litefs restore`.
pub(crate) fn run(a: RestoreArgs) -> anyhow::Result<()> {
    let replica = storage(&a.replica)?;
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
    // A spinner on a terminal while the files are fetched and applied.
    use std::io::IsTerminal;
    let spinner = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("restoring from {}", replica.describe()));
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        pb
    });
    let r = restore(replica.as_ref(), &a.output, target);
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let r = r?;
    if let Err(e) = crate::transfer::check_database(&a.output) {
        let _ = std::fs::remove_file(&a.output);
        return Err(e.context("the restored database is damaged; nothing was kept"));
    }
    eprintln!(
        "Restored {} at TXID {:016x} from {} files of {}",
        a.output.display(),
        r.txid.0,
        r.files.len(),
        replica.describe()
    );
    Ok(())
}
