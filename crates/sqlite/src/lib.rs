//! Parsers for the SQLite on-disk files that a transaction-capturing
//! filesystem (LiteFS) must understand.
//!
//! Everything here is pure and I/O-light: headers are parsed from byte
//! slices, and the two scanners ([`scan_wal`] / [`WalScanner`] and
//! [`read_journal`]) only issue positional reads through
//! [`std::os::unix::fs::FileExt`], in bounded chunks. No function panics on
//! any input; malformed input yields a typed [`SqliteError`] or, where SQLite
//! itself would silently ignore the data, is ignored the same way.
//!
//! # Formats and their commit points
//!
//! * **Database file** ([`DbHeader`]): the first 100 bytes of page 1. The
//!   in-header page count (offset 28) is only trustworthy when
//!   [`DbHeader::page_count_valid`] holds (SQLite ≥ 3.7.0 writers keep
//!   "version-valid-for" equal to the change counter).
//!
//! * **Write-ahead log** ([`WalHeader`], [`WalFrameHeader`], [`scan_wal`]): a
//!   32-byte header followed by frames of `24 + page_size` bytes. A
//!   transaction is committed at the moment its *commit frame* — a frame
//!   whose `commit` field (the database size in pages after the commit) is
//!   non-zero — is fully on disk with salts equal to the header's salts and a
//!   valid *cumulative* checksum (chained from the WAL header through every
//!   earlier frame). Frames after the last valid commit frame belong to an
//!   uncommitted (in-progress, spilled, or rolled-back) transaction and are
//!   ignored, exactly as SQLite's WAL recovery ignores them. Stale frames left
//!   over from before a WAL restart carry the old salts and are ignored too.
//!
//! * **Rollback journal** ([`JournalHeader`], [`read_journal`]): the journal
//!   holds the *original* content of every page the transaction modifies, so
//!   the transaction commits when the journal stops being "hot": the
//!   `-journal` file is deleted (`journal_mode=DELETE`), truncated to zero
//!   bytes (`TRUNCATE`), or has its header zeroed (`PERSIST`). Before that
//!   point, a crash means the journal is played back and the database file is
//!   restored to its original content and truncated to its original size.
//!   [`read_journal`] reports which pages such a playback would restore.
//!
//!   The journal's page set is **not** the set of pages a transaction
//!   modifies: pages beyond the original database size are never journaled,
//!   and freelist leaf pages that the transaction reuses are written to the
//!   database file without being journaled (SQLite fetches them with
//!   `PAGER_GET_NOCONTENT`, their old content being meaningless). A
//!   filesystem capturing rollback-mode transactions must therefore track
//!   the pages written to the database file itself; the journal only tells
//!   it which original content a rollback would restore.
//!
//! # Byte order
//!
//! All multi-byte integers in all three formats are big-endian. The only
//! exception is the WAL checksum, which interprets the checksummed data as
//! big- or little-endian 32-bit words depending on the WAL magic number
//! (SQLite on little-endian machines writes `0x377f0682`, i.e. little-endian
//! checksums).

mod error;
mod header;
mod io;
mod journal;
mod shm;
mod wal;

pub use error::SqliteError;
pub use header::{
    lock_page_offset, lock_page_pgno, DbHeader, DB_HEADER_MAGIC, DB_HEADER_SIZE, PENDING_BYTE,
};
pub use journal::{
    read_journal, read_journal_with, JournalHeader, JournalPages, JOURNAL_HEADER_SIZE,
    JOURNAL_MAGIC, JOURNAL_NREC_NOSYNC,
};
pub use shm::{WalIndexHeader, WAL_INDEX_HEADER_SIZE};
pub use wal::{
    scan_wal, wal_checksum, WalFrameHeader, WalHeader, WalScanner, WalTxn, WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE, WAL_MAGIC_BE, WAL_MAGIC_LE, WAL_VERSION,
};

/// Returns true when `page_size` is a page size SQLite accepts: a power of
/// two between 512 and 65536 inclusive.
pub fn is_valid_page_size(page_size: u32) -> bool {
    (512..=65536).contains(&page_size) && page_size.is_power_of_two()
}
