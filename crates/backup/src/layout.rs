//! Litestream 0.5's file-replica layout: `<root>/ltx/<level>/<name>.ltx`.

use crate::{BackupError, IoCtx};
use litefs_ltx::{format_file_name, parse_file_name, Header, Txid};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Litestream's snapshot level.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One database's replica directory.
#[derive(Debug, Clone)]
pub struct FileReplica {
    root: PathBuf,
}

/// A file of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFile {
    /// Its level (0 to 9).
    pub level: u8,
    /// First TXID.
    pub min: Txid,
    /// Last TXID.
    pub max: Txid,
    /// Where it is.
    pub path: PathBuf,
    /// Its mtime: the time of its newest transaction.
    pub time: SystemTime,
}

impl FileReplica {
    /// The replica rooted at `root` (need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> FileReplica {
        FileReplica { root: root.into() }
    }

    /// The replica's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn level_dir(&self, level: u8) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }

    /// Every LTX file of every level, by level then first TXID. Names that
    /// are not LTX file names (temporary files) are skipped.
    pub fn files(&self) -> Result<Vec<ReplicaFile>, BackupError> {
        let mut out = Vec::new();
        for level in 0..=SNAPSHOT_LEVEL {
            let dir = self.level_dir(level);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&dir),
            };
            for entry in rd {
                let entry = entry.at(&dir)?;
                let name = entry.file_name();
                let Some((min, max)) = name.to_str().and_then(parse_file_name) else {
                    continue;
                };
                let path = entry.path();
                let time = entry.metadata().and_then(|m| m.modified()).at(&path)?;
                out.push(ReplicaFile {
                    level,
                    min,
                    max,
                    path,
                    time,
                });
            }
        }
        out.sort_by_key(|f| (f.level, f.min, f.max));
        Ok(out)
    }

    /// The newest TXID any file reaches, `None` for an empty replica.
    pub fn max_txid(&self) -> Result<Option<Txid>, BackupError> {
        Ok(self.files()?.iter().map(|f| f.max).max())
    }

    /// Writes `bytes` (an LTX file with `header`) at `level`: to a
    /// temporary name, synced, renamed, the directory synced, its mtime the
    /// header's timestamp. Nothing partial is ever under an LTX name.
    pub fn write(&self, level: u8, header: &Header, bytes: &[u8]) -> Result<PathBuf, BackupError> {
        let dir = self.level_dir(level);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let name = format_file_name(header.min_txid, header.max_txid);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp).at(&tmp)?;
            f.write_all(bytes).at(&tmp)?;
            let t = UNIX_EPOCH + Duration::from_millis(header.timestamp.max(0).unsigned_abs());
            f.set_modified(t).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, &path).at(&path)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .at(&dir)?;
        Ok(path)
    }
}
