//! Rebuilding a database from a replica directory (ours or Litestream's),
//! as `litestream restore` plans it: the newest snapshot at or before the
//! target, then the files that continue it (starting at or before the next
//! TXID), preferring the ones that reach furthest.

use crate::layout::{ReplicaFile, Storage};
use crate::upload::Target;
use crate::{BackupError, IoCtx};
use litefs_ltx::{Decoder, Txid, Version};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Which state of the database to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The newest the backup holds.
    Latest,
    /// Exactly this transaction.
    Txid(Txid),
    /// The newest transaction at or before this time.
    Time(SystemTime),
}

/// What [`restore`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The position restored.
    pub txid: Txid,
    /// The files applied, in order.
    pub files: Vec<PathBuf>,
}

/// Writes the database of the replica at `root` as of `target` to `out`
/// (through a temporary file beside it, synced, then renamed: `out` is
/// either the whole database or untouched). Every file's checksum is
/// verified; a missing TXID is an error naming the file after the gap.
pub fn restore(
    replica: &dyn Storage,
    out: &Path,
    target: RestoreTarget,
) -> Result<Restored, BackupError> {
    let all = replica.files()?;
    let root = PathBuf::from(replica.describe());
    let chain = plan(&root, &all, target)?;
    let tmp = out.with_file_name(format!(
        ".{}.restoring",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("db")
    ));
    let r = write_chain(replica, &chain, &tmp);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r?;
    std::fs::rename(&tmp, out).at(out)?;
    Ok(Restored {
        txid: chain.last().map_or(Txid(0), |f| f.max),
        files: chain.into_iter().map(|f| f.path).collect(),
    })
}

fn within(f: &ReplicaFile, target: RestoreTarget) -> bool {
    match target {
        RestoreTarget::Latest => true,
        RestoreTarget::Txid(t) => f.max <= t,
        RestoreTarget::Time(t) => f.time <= t,
    }
}

/// The files to apply, in order.
fn plan(
    root: &Path,
    all: &[ReplicaFile],
    target: RestoreTarget,
) -> Result<Vec<ReplicaFile>, BackupError> {
    let snapshot = all
        .iter()
        .filter(|f| f.min.0 == 1 && within(f, target))
        .max_by_key(|f| (f.max, f.level))
        .ok_or_else(|| BackupError::NoSnapshot {
            root: root.to_path_buf(),
        })?;
    let mut chain = vec![snapshot.clone()];
    let mut at = snapshot.max;
    loop {
        let next = all
            .iter()
            // A file may start before the chain's end: its pages are the
            // newest as of its last TXID, so applying it over a later
            // snapshot is still exact (snapshots fall anywhere).
            .filter(|f| f.min.0 <= at.0 + 1 && f.max > at && within(f, target))
            .max_by_key(|f| (f.max, f.level));
        match next {
            Some(f) => {
                at = f.max;
                chain.push(f.clone());
            }
            None => break,
        }
    }
    // Whatever lies beyond, within the target, and does not continue the
    // chain, is a hole in the backup.
    if let Some(f) = all
        .iter()
        .filter(|f| f.max > at && f.min.0 > at.0 + 1 && within(f, target))
        .min_by_key(|f| f.min)
    {
        return Err(BackupError::Gap {
            root: root.to_path_buf(),
            have: at.0,
            next: f.path.clone(),
            next_min: f.min.0,
            gap_from: at.0 + 1,
        });
    }
    if let RestoreTarget::Txid(t) = target {
        if at != t {
            return Err(BackupError::TxidNotFound {
                root: root.to_path_buf(),
                want: t.0,
                have: at.0,
            });
        }
    }
    Ok(chain)
}

fn write_chain(
    replica: &dyn Storage,
    chain: &[ReplicaFile],
    tmp: &Path,
) -> Result<(), BackupError> {
    let mut out = std::fs::File::create(tmp).at(tmp)?;
    let mut size = 0u64;
    for f in chain {
        let bytes = replica.read(f)?;
        let bad = |source| BackupError::Ltx {
            path: f.path.clone(),
            source,
        };
        let mut dec = Decoder::new(bytes.as_slice(), Version::V3).map_err(bad)?;
        let h = *dec.header();
        if h.min_txid != f.min || h.max_txid != f.max {
            return Err(BackupError::Invalid(format!(
                "{}: its header says TXIDs {}-{}, its name {}-{}",
                f.path.display(),
                h.min_txid,
                h.max_txid,
                f.min,
                f.max
            )));
        }
        let ps = u64::from(h.page_size);
        let mut buf = vec![0u8; h.page_size as usize];
        // Pages go to a scratch list first: a file is applied only once its
        // checksum is proven.
        let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
        while let Some(p) = dec.next_page(&mut buf).map_err(bad)? {
            pages.push((p.pgno, buf.clone()));
        }
        dec.finish().map_err(bad)?;
        for (pgno, data) in pages {
            out.seek(SeekFrom::Start(u64::from(pgno - 1) * ps))
                .at(tmp)?;
            out.write_all(&data).at(tmp)?;
        }
        size = u64::from(h.commit) * ps;
        out.set_len(size).at(tmp)?;
    }
    out.set_len(size).at(tmp)?;
    out.sync_all().at(tmp)?;
    Ok(())
}

/// Restore on start: when this node has no database at all and `backup`
/// holds some, rebuilds each into `store` at the
/// backup's newest TXID (so the backup continues from there), using
/// `scratch` for the files being rebuilt. Returns what was restored.
pub fn restore_empty(
    store: &litefs_store::Store,
    fence: &dyn litefs_store::Fence,
    backup: &Target,
    scratch: &Path,
) -> Result<Vec<(String, Txid)>, BackupError> {
    if !store.dbs().is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    match backup {
        Target::File(dir) => replica_dirs(dir, dir, &mut found)?,
        Target::S3(o) => found = o.databases()?,
    }
    found.sort();
    let mut done = Vec::new();
    for name in found {
        let replica = backup.replica(&name)?;
        let tmp = scratch.join(".restore-on-start.db");
        let _ = std::fs::remove_file(&tmp);
        let r = restore(replica.as_ref(), &tmp, RestoreTarget::Latest)?;
        let image = std::fs::read(&tmp).at(&tmp)?;
        let _ = std::fs::remove_file(&tmp);
        for dir in parents(&name) {
            if !store.dir_exists(&dir) {
                store.mkdir(&dir)?;
            }
        }
        let pos = store.restore(&name, &image, r.txid, fence)?;
        tracing::info!(db = %name, pos = %pos, files = r.files.len(), "restored from the backup on start");
        done.push((name, r.txid));
    }
    Ok(done)
}

/// `a/b/c` -> `a`, `a/b`.
fn parents(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('/').collect();
    (1..parts.len()).map(|i| parts[..i].join("/")).collect()
}

/// Database names (paths relative to `base`) of the replica directories
/// under `dir`: those holding an `ltx` directory.
fn replica_dirs(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(dir),
    };
    for entry in rd {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if !entry.file_type().at(&path)?.is_dir() || entry.file_name() == "ltx" {
            continue;
        }
        if path.join("ltx").is_dir() {
            if let Some(rel) = path.strip_prefix(base).ok().and_then(|p| p.to_str()) {
                out.push(rel.to_owned());
            }
        }
        replica_dirs(base, &path, out)?;
    }
    Ok(())
}
