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
