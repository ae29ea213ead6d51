//! Where a backup lives: the [`Storage`] trait, and Litestream 0.5's file
//! layout, `<root>/ltx/<level>/<name>.ltx` ([`FileReplica`]).

use crate::{BackupError, IoCtx};
use litefs_ltx::{format_file_name, parse_file_name, Checksum, Header, Pos, Txid};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Litestream's snapshot level.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One database's backup, wherever it is stored (a directory, an S3
/// prefix). Blocking calls; every write is whole or absent.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages (`/backup/app.db`, `s3://bucket/app.db`).
    fn describe(&self) -> String;
    /// Every LTX file of every level, by level then first TXID.
    fn files(&self) -> Result<Vec<ReplicaFile>, BackupError>;
    /// The whole of one file.
    fn read(&self, file: &ReplicaFile) -> Result<Vec<u8>, BackupError>;
    /// Stores an LTX file (`header` its header) at `level`; returns it as
    /// [`Storage::files`] will list it.
    fn write(&self, level: u8, header: &Header, bytes: &[u8]) -> Result<ReplicaFile, BackupError>;
    /// The position sidecar (see [`FileReplica::read_pos`]).
    fn read_pos(&self) -> Option<Pos>;
    /// Replaces the position sidecar.
    fn write_pos(&self, pos: Pos) -> Result<(), BackupError>;
    /// Moves every file aside (never deleting); where they went.
    fn retire(&self) -> Result<Option<PathBuf>, BackupError>;
    /// Deletes one file that a compacted file covers (retention).
    fn delete(&self, file: &ReplicaFile) -> Result<(), BackupError>;
    /// The newest TXID any file reaches.
    fn max_txid(&self) -> Result<Option<Txid>, BackupError> {
        Ok(self.files()?.iter().map(|f| f.max).max())
    }
}

impl Storage for FileReplica {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
    fn files(&self) -> Result<Vec<ReplicaFile>, BackupError> {
        FileReplica::files(self)
    }
    fn read(&self, file: &ReplicaFile) -> Result<Vec<u8>, BackupError> {
        std::fs::read(&file.path).at(&file.path)
    }
    fn write(&self, level: u8, header: &Header, bytes: &[u8]) -> Result<ReplicaFile, BackupError> {
        FileReplica::write(self, level, header, bytes)
    }
    fn read_pos(&self) -> Option<Pos> {
        FileReplica::read_pos(self)
    }
    fn write_pos(&self, pos: Pos) -> Result<(), BackupError> {
        FileReplica::write_pos(self, pos)
    }
    fn retire(&self) -> Result<Option<PathBuf>, BackupError> {
        FileReplica::retire(self)
    }
    fn delete(&self, file: &ReplicaFile) -> Result<(), BackupError> {
        std::fs::remove_file(&file.path).at(&file.path)
    }
}

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

    /// The sidecar naming the position (TXID and this node's rolling
    /// checksum there) of the newest file written or being written:
    /// `<root>/litefs-pos`, ours (Litestream looks only under `ltx/`). A
    /// new primary continues the backup only if its own history has that
    /// position, so it never appends to files of a history it lacks.
    fn pos_path(&self) -> PathBuf {
        self.root.join("litefs-pos")
    }

    /// The sidecar's position, if there is a readable one.
    pub fn read_pos(&self) -> Option<Pos> {
        let s = std::fs::read_to_string(self.pos_path()).ok()?;
        let (t, c) = s.trim().split_once('/')?;
        Some(Pos {
            txid: Txid(u64::from_str_radix(t, 16).ok()?),
            post_apply_checksum: Checksum(u64::from_str_radix(c, 16).ok()?),
        })
    }

    /// Replaces the sidecar (temporary file, synced, renamed).
    pub fn write_pos(&self, pos: Pos) -> Result<(), BackupError> {
        std::fs::create_dir_all(&self.root).at(&self.root)?;
        let path = self.pos_path();
        let tmp = self.root.join(".litefs-pos.tmp");
        {
            let mut f = std::fs::File::create(&tmp).at(&tmp)?;
            f.write_all(
                format!("{:016x}/{:016x}\n", pos.txid.0, pos.post_apply_checksum.0).as_bytes(),
            )
            .at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, &path).at(&path)
    }

    /// Moves every file of the replica aside (to `<root>/retired/<ms>/`,
    /// where no restore looks) so a new history can start with a
    /// snapshot; nothing is deleted. Returns where they went (`None` if
    /// there was nothing).
    pub fn retire(&self) -> Result<Option<PathBuf>, BackupError> {
        let ltx = self.root.join("ltx");
        if !ltx.exists() {
            return Ok(None);
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dest = self.root.join("retired").join(ms.to_string());
        std::fs::create_dir_all(&dest).at(&dest)?;
        std::fs::rename(&ltx, dest.join("ltx")).at(&ltx)?;
        let _ = std::fs::rename(self.pos_path(), dest.join("litefs-pos"));
        Ok(Some(dest))
    }

    /// Writes `bytes` (an LTX file with `header`) at `level`: to a
    /// temporary name, synced, renamed, the directory synced, its mtime the
    /// header's timestamp. Nothing partial is ever under an LTX name.
    pub fn write(
        &self,
        level: u8,
        header: &Header,
        bytes: &[u8],
    ) -> Result<ReplicaFile, BackupError> {
        let dir = self.level_dir(level);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let name = format_file_name(header.min_txid, header.max_txid);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let time = UNIX_EPOCH + Duration::from_millis(header.timestamp.max(0).unsigned_abs());
        {
            let mut f = std::fs::File::create(&tmp).at(&tmp)?;
            f.write_all(bytes).at(&tmp)?;
            f.set_modified(time).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, &path).at(&path)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .at(&dir)?;
        Ok(ReplicaFile {
            level,
            min: header.min_txid,
            max: header.max_txid,
            path,
            time,
        })
    }
}
