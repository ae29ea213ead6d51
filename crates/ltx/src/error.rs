//! Typed errors. Each says what is wrong and, for decoding, where: the byte
//! offset in the file (in the compressed stream for LZ4-framed v1 bodies) and
//! the page number when one is involved.

use crate::header::Version;

/// A header field that breaks the format's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first four bytes are not `LTX1`.
    #[error("invalid magic {0:02x?}: not an LTX file")]
    Magic([u8; 4]),
    /// A flag bit the format does not define.
    #[error("invalid header flags 0x{flags:08x} for LTX {version}")]
    Flags {
        /// The flags found.
        flags: u32,
        /// The format being read or written.
        version: Version,
    },
    /// Not a power of two in 512..=65536.
    #[error("invalid page size {0}")]
    PageSize(u32),
    /// MinTXID or MaxTXID is zero, or Min > Max.
    #[error("invalid TXID range {min}..{max}")]
    TxidRange {
        /// MinTXID.
        min: u64,
        /// MaxTXID.
        max: u64,
    },
    /// Inconsistent WAL offset, size and salts.
    #[error("invalid WAL fields: offset {offset}, size {size}, salts {salt1:08x}/{salt2:08x}")]
    Wal {
        /// WALOffset.
        offset: i64,
        /// WALSize.
        size: i64,
        /// WALSalt1.
        salt1: u32,
        /// WALSalt2.
        salt2: u32,
    },
    /// The pre-apply checksum does not fit the file kind.
    #[error("invalid pre-apply checksum {checksum:016x}: {reason}")]
    PreApplyChecksum {
        /// The value found.
        checksum: u64,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

/// Why a file could not be encoded. Nothing about the output is promised
/// after an error; callers write to a temporary file and discard it.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The header breaks the format's rules.
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    /// The format cannot express this header (e.g. LZ4 flag with v3).
    #[error("format {format} cannot encode header flags 0x{flags:08x}")]
    FormatFlags {
        /// The requested format.
        format: &'static str,
        /// The header flags.
        flags: u32,
    },
    /// A page buffer whose length is not the page size.
    #[error("page {pgno}: {len} bytes, expected the page size {page_size}")]
    PageLength {
        /// Page number.
        pgno: u32,
        /// Bytes given.
        len: usize,
        /// Page size in the header.
        page_size: u32,
    },
    /// Page numbers must be strictly ascending, from 1.
    #[error("page {pgno} out of order: previous page was {prev}")]
    PageOrder {
        /// Page number given.
        pgno: u32,
        /// Previous page number (0 = none).
        prev: u32,
    },
    /// A page past the database size in the header.
    #[error("page {pgno} beyond commit size {commit}")]
    PageBeyondCommit {
        /// Page number given.
        pgno: u32,
        /// Commit (database size in pages).
        commit: u32,
    },
    /// The lock page is never stored.
    #[error("page {0} is the lock page and is never stored")]
    LockPage(u32),
    /// A snapshot must hold every page 1..=commit but the lock page.
    #[error("snapshot missing page {expected} (got {got})")]
    SnapshotGap {
        /// The page the snapshot needed next.
        expected: u32,
        /// The page given, or 0 at finish.
        got: u32,
    },
    /// Trailer checksum rules (flag bit, deletion file, NoChecksum).
    #[error("invalid post-apply checksum {checksum:016x}: {reason}")]
    PostApplyChecksum {
        /// The value given.
        checksum: u64,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Writing failed.
    #[error("write: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a file was rejected while decoding. A decoder that returned an error
/// must not be used further.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The header breaks the format's rules.
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    /// The stream ended early.
    #[error("unexpected end of file at offset {offset} while reading {what}")]
    Truncated {
        /// Bytes consumed before the end.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// Bytes after the place where the file must end.
    #[error("unexpected data at offset {offset} after {what}")]
    TrailingData {
        /// Offset of the extra data.
        offset: u64,
        /// What should have been last.
        what: &'static str,
    },
    /// Page numbers must be strictly ascending.
    #[error("page {pgno} at offset {offset} out of order: previous page was {prev}")]
    PageOrder {
        /// Page number read.
        pgno: u32,
        /// Previous page number.
        prev: u32,
        /// Offset of the page header.
        offset: u64,
    },
    /// A page past the database size.
    #[error("page {pgno} at offset {offset} beyond commit size {commit}")]
    PageBeyondCommit {
        /// Page number read.
        pgno: u32,
        /// Commit (database size in pages).
        commit: u32,
        /// Offset of the page header.
        offset: u64,
    },
    /// The lock page is never stored.
    #[error("page {pgno} at offset {offset} is the lock page")]
    LockPage {
        /// Page number read.
        pgno: u32,
        /// Offset of the page header.
        offset: u64,
    },
    /// A snapshot skipped a page.
    #[error("snapshot missing page {expected} at offset {offset} (got {got})")]
    SnapshotGap {
        /// The page the snapshot needed next.
        expected: u32,
        /// The page read, or 0 at the terminator.
        got: u32,
        /// Offset of the page header.
        offset: u64,
    },
    /// A deletion file (commit 0) that carries pages.
    #[error("page {pgno} at offset {offset} in a deletion file (commit 0)")]
    PageInDeletion {
        /// Page number read.
        pgno: u32,
        /// Offset of the page header.
        offset: u64,
    },
    /// An undefined v3 page-header flag, or a non-zero flag on the terminator.
    #[error("page {pgno} at offset {offset}: invalid page flags 0x{flags:04x}")]
    PageFlags {
        /// Page number read.
        pgno: u32,
        /// Flags read.
        flags: u16,
        /// Offset of the page header.
        offset: u64,
    },
    /// A v3 page's compressed size is impossible for the page size.
    #[error("page {pgno} at offset {offset}: compressed size {size} out of range")]
    PageCompressedSize {
        /// Page number read.
        pgno: u32,
        /// Size read.
        size: u32,
        /// Offset of the page header.
        offset: u64,
    },
    /// LZ4 data that does not decode, or decodes to the wrong length.
    #[error("LZ4 at offset {offset} (page {pgno}): {reason}")]
    Lz4 {
        /// Page number involved (0 for a v1 body frame outside a page).
        pgno: u32,
        /// Offset in the file where the bad data starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The v3 page index does not describe the pages that precede it.
    #[error("page index at offset {offset}: {reason}")]
    PageIndex {
        /// Offset of the index.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Trailer checksum rules (flag bit, deletion file, NoChecksum).
    #[error("trailer at offset {offset}: invalid post-apply checksum {checksum:016x}: {reason}")]
    PostApplyChecksum {
        /// Offset of the trailer.
        offset: u64,
        /// Value read.
        checksum: u64,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A snapshot whose pages do not add up to its post-apply checksum.
    #[error("snapshot checksum mismatch: trailer says {expected:016x}, pages give {actual:016x}")]
    SnapshotChecksum {
        /// Post-apply checksum in the trailer.
        expected: u64,
        /// Checksum of the pages read.
        actual: u64,
    },
    /// The file checksum in the trailer does not match the content.
    #[error("file checksum mismatch: trailer says {expected:016x}, content gives {actual:016x}")]
    FileChecksum {
        /// File checksum in the trailer.
        expected: u64,
        /// Checksum computed over the content.
        actual: u64,
    },
    /// Reading failed.
    #[error("read at offset {offset}: {source}")]
    Io {
        /// Offset reached.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
}
