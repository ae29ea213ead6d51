//! Backups Litestream can restore, and restores of Litestream's replicas.
//!
//! A backup of a database is a *replica directory* in Litestream 0.5's
//! file layout: `<root>/ltx/<level>/<min txid>-<max txid>.ltx`, every file
//! LTX v3 with the NoChecksum flag and size-prefixed LZ4 block pages, its
//! mtime set to the header's timestamp (Litestream's `-timestamp` restores
//! go by it). The primary writes snapshots at level 9 (the first backup,
//! and whenever its LTX history no longer continues the backup) and the
//! transactions since at level 0, one file per sync, several commits
//! compacted into it ([`Backup`]); higher levels merge the files below
//! them on their own intervals, fresh snapshots come now and then, and
//! retention deletes what no restore in its window needs
//! (`compaction`). [`restore`] rebuilds a database from
//! such a directory, ours or Litestream's, at the newest position, a TXID
//! or a time, and refuses a broken chain.
//!
//! The crate knows the store (positions, LTX files, snapshots) and files;
//! nothing of FUSE or HTTP.

mod compaction;
mod convert;
mod layout;
mod restore;
mod s3;
mod upload;

pub use convert::v1_to_v3;
pub use layout::{FileReplica, ReplicaFile, Storage, SNAPSHOT_LEVEL};
pub use restore::{restore, restore_empty, RestoreTarget, Restored};
pub use s3::{S3Options, S3Replica};
pub use upload::{Backup, BackupOptions, Target};

use std::path::PathBuf;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An LTX file is malformed or fails its checksum.
    #[error("{path}: {source}")]
    Ltx {
        /// The file (or what it was read from).
        path: PathBuf,
        /// What is wrong.
        source: litefs_ltx::DecodeError,
    },
    /// Encoding a backup file failed.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was encoded.
        what: String,
        /// The error.
        source: litefs_ltx::EncodeError,
    },
    /// The backup has no snapshot to start from at or before the target.
    #[error("{root}: no snapshot (a file starting at TXID 1) at or before the target")]
    NoSnapshot {
        /// The replica directory.
        root: PathBuf,
    },
    /// The chain of files breaks: a TXID is missing.
    #[error("{root}: the backup stops at TXID {have:016x}: the next file, {next}, starts at {next_min:016x} (TXIDs {gap_from:016x}.. are missing)")]
    Gap {
        /// The replica directory.
        root: PathBuf,
        /// The newest TXID restorable.
        have: u64,
        /// The first file after the gap.
        next: PathBuf,
        /// Its first TXID.
        next_min: u64,
        /// The first missing TXID.
        gap_from: u64,
    },
    /// The target TXID is not in the backup.
    #[error("{root}: TXID {want:016x} is not in the backup (it reaches {have:016x})")]
    TxidNotFound {
        /// The replica directory.
        root: PathBuf,
        /// The TXID asked for.
        want: u64,
        /// The newest TXID restorable.
        have: u64,
    },
    /// The object store failed (S3).
    #[error("{what}: {message}")]
    Remote {
        /// The operation and the object.
        what: String,
        /// What the store said.
        message: String,
    },
    /// Inputs that cannot make a backup file.
    #[error("{0}")]
    Invalid(String),
    /// The store failed (reading LTX files, taking a snapshot).
    #[error(transparent)]
    Store(#[from] litefs_store::StoreError),
}

/// Shorthand for I/O errors naming their path.
pub(crate) trait IoCtx<T> {
    fn at(self, path: &std::path::Path) -> Result<T, BackupError>;
}

impl<T> IoCtx<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, BackupError> {
        self.map_err(|source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
