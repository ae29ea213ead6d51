//! Store errors.

use std::path::PathBuf;

/// Why a store operation failed. Capture errors mean a transaction SQLite
/// considers committed may not be in an LTX file; callers must not
/// acknowledge the triggering operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A database name that cannot be used.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An LTX file could not be written.
    #[error("encode {path}: {source}")]
    Encode {
        /// The LTX file.
        path: PathBuf,
        /// The error.
        source: litefs_ltx::EncodeError,
    },
    /// An LTX file in the data directory is damaged.
    #[error("decode {path}: {source}")]
    Decode {
        /// The LTX file.
        path: PathBuf,
        /// The error.
        source: litefs_ltx::DecodeError,
    },
    /// A SQLite file does not parse.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The error.
        source: litefs_sqlite::SqliteError,
    },
    /// The database does not add up to its recorded position.
    #[error("database {db}: checksum {actual} does not match position {pos}")]
    ChecksumMismatch {
        /// Database name.
        db: String,
        /// Recorded position.
        pos: litefs_ltx::Pos,
        /// Checksum of the files.
        actual: litefs_ltx::Checksum,
    },
    /// An LTX file received from elsewhere (the primary, an import) is
    /// malformed or fails its checksum; nothing was changed.
    #[error("database {db}: invalid LTX file: {source}")]
    InvalidLtx {
        /// Database name.
        db: String,
        /// What is wrong with it.
        source: litefs_ltx::DecodeError,
    },
    /// An LTX file that does not continue the database's position; nothing
    /// was changed. The replica needs a snapshot.
    #[error("database {db}: LTX file starting at TXID {min_txid} with pre-apply checksum {pre_apply} does not continue position {pos}")]
    NotContiguous {
        /// Database name.
        db: String,
        /// The database's position.
        pos: litefs_ltx::Pos,
        /// The file's first TXID.
        min_txid: litefs_ltx::Txid,
        /// The file's pre-apply checksum.
        pre_apply: litefs_ltx::Checksum,
    },
    /// A file offered for import is not a usable SQLite database; nothing
    /// was changed.
    #[error("database {db}: cannot import: {reason}")]
    InvalidImport {
        /// Database name.
        db: String,
        /// What is wrong with the file.
        reason: String,
    },
}

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
