//! Error type shared by all parsers of this crate.

/// Errors returned by the parsers in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The input is shorter than the structure being parsed.
    #[error("{what}: need {need} bytes, got {got}")]
    Truncated {
        /// What was being parsed.
        what: &'static str,
        /// Number of bytes required.
        need: usize,
        /// Number of bytes available.
        got: usize,
    },
    /// The database file does not start with `"SQLite format 3\0"`.
    #[error("not an SQLite database: bad header magic")]
    BadDbMagic,
    /// A page size field is not a power of two between 512 and 65536.
    #[error("invalid page size {0}")]
    InvalidPageSize(u32),
    /// The WAL header magic is neither `0x377f0682` nor `0x377f0683`.
    #[error("bad WAL magic {0:#010x}")]
    BadWalMagic(u32),
    /// The WAL file format version is not 3007000.
    #[error("unsupported WAL format version {0}")]
    UnsupportedWalVersion(u32),
    /// The WAL header checksum (over bytes 0..24) does not match.
    #[error("WAL header checksum mismatch: stored {stored:08x?}, computed {computed:08x?}")]
    WalHeaderChecksum {
        /// Checksum stored in bytes 24..32 of the header.
        stored: (u32, u32),
        /// Checksum computed over bytes 0..24.
        computed: (u32, u32),
    },
    /// The rollback journal header does not start with the journal magic.
    #[error("bad rollback journal magic")]
    BadJournalMagic,
    /// An I/O error while reading a file.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
