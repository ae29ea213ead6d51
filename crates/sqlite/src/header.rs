//! The 100-byte database header at the start of page 1.

use crate::io::{be16, be32, byte};
use crate::{is_valid_page_size, SqliteError};

/// The 16-byte magic string every SQLite 3 database file starts with.
pub const DB_HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Size in bytes of the database header.
pub const DB_HEADER_SIZE: usize = 100;

/// File offset of SQLite's `PENDING_BYTE`, the first byte of the lock page.
pub const PENDING_BYTE: u64 = 0x4000_0000;

/// File offset of SQLite's lock byte range (`PENDING_BYTE`, 1 GiB).
///
/// The database page containing this offset (the "lock page") is never used
/// to store data and is never written to the WAL or the rollback journal.
pub fn lock_page_offset() -> u64 {
    PENDING_BYTE
}

/// Page number (1-based) of the lock page for the given page size, i.e. the
/// page containing [`lock_page_offset`]. A zero page size is treated as 1.
pub fn lock_page_pgno(page_size: u32) -> u32 {
    let pgno = PENDING_BYTE / u64::from(page_size.max(1)) + 1;
    u32::try_from(pgno).unwrap_or(u32::MAX)
}

/// Database header (first 100 bytes of page 1).
///
/// Only the fields a replicating filesystem needs are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    /// Page size in bytes, decoded: the on-disk value 1 is reported as 65536.
    pub page_size: u32,
    /// File format write version (offset 18): 1 = legacy (rollback), 2 = WAL.
    pub write_version: u8,
    /// File format read version (offset 19): 1 = legacy (rollback), 2 = WAL.
    pub read_version: u8,
    /// File change counter (offset 24).
    pub change_counter: u32,
    /// In-header database size in pages (offset 28). Only meaningful when
    /// [`DbHeader::page_count_valid`] is true.
    pub page_count: u32,
    /// "Version-valid-for" number (offset 92): the change counter value for
    /// which `page_count` is valid.
    pub version_valid_for: u32,
    /// Bytes of unused "reserved" space at the end of each page (offset 20).
    pub reserved_bytes: u8,
}

impl DbHeader {
    /// Parses the header from the first bytes of a database file.
    ///
    /// `b` must hold at least [`DB_HEADER_SIZE`] bytes; only the first 100
    /// are examined. The 16-byte magic must match [`DB_HEADER_MAGIC`] and the
    /// page size must be a power of two in 512..=65536 (stored as 1 for
    /// 65536).
    pub fn parse(b: &[u8]) -> Result<DbHeader, SqliteError> {
        if b.len() < DB_HEADER_SIZE {
            return Err(SqliteError::Truncated {
                what: "database header",
                need: DB_HEADER_SIZE,
                got: b.len(),
            });
        }
        if b.get(..16) != Some(DB_HEADER_MAGIC.as_slice()) {
            return Err(SqliteError::BadDbMagic);
        }
        let raw = be16(b, 16);
        let page_size = if raw == 1 { 65536 } else { u32::from(raw) };
        if !is_valid_page_size(page_size) {
            return Err(SqliteError::InvalidPageSize(u32::from(raw)));
        }
        Ok(DbHeader {
            page_size,
            write_version: byte(b, 18),
            read_version: byte(b, 19),
            reserved_bytes: byte(b, 20),
            change_counter: be32(b, 24),
            page_count: be32(b, 28),
            version_valid_for: be32(b, 92),
        })
    }

    /// True when the database is in WAL mode (read and write versions are 2).
    pub fn is_wal(&self) -> bool {
        self.write_version == 2 && self.read_version == 2
    }

    /// True when the in-header database size can be trusted: it is non-zero
    /// and the version-valid-for number equals the change counter (SQLite
    /// otherwise computes the size from the file size).
    pub fn page_count_valid(&self) -> bool {
        self.version_valid_for == self.change_counter && self.page_count != 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn header(page_size_raw: u16) -> Vec<u8> {
        let mut b = vec![0u8; 100];
        b[..16].copy_from_slice(DB_HEADER_MAGIC);
        b[16..18].copy_from_slice(&page_size_raw.to_be_bytes());
        b[18] = 2;
        b[19] = 2;
        b[20] = 8;
        b[24..28].copy_from_slice(&7u32.to_be_bytes());
        b[28..32].copy_from_slice(&42u32.to_be_bytes());
        b[92..96].copy_from_slice(&7u32.to_be_bytes());
        b
    }

    #[test]
    fn parses_fields() {
        let h = DbHeader::parse(&header(4096)).unwrap();
        assert_eq!(
            h,
            DbHeader {
                page_size: 4096,
                write_version: 2,
                read_version: 2,
                change_counter: 7,
                page_count: 42,
                version_valid_for: 7,
                reserved_bytes: 8
            }
        );
        assert!(h.is_wal());
        assert!(h.page_count_valid());
        let stale = DbHeader {
            version_valid_for: 6,
            ..h
        };
        assert!(!stale.page_count_valid());
        let empty = DbHeader { page_count: 0, ..h };
        assert!(!empty.page_count_valid());
        let legacy = DbHeader {
            write_version: 1,
            read_version: 1,
            ..h
        };
        assert!(!legacy.is_wal());
    }

    #[test]
    fn page_size_one_means_64k() {
        assert_eq!(DbHeader::parse(&header(1)).unwrap().page_size, 65536);
        assert_eq!(DbHeader::parse(&header(512)).unwrap().page_size, 512);
        assert_eq!(DbHeader::parse(&header(32768)).unwrap().page_size, 32768);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [0u16, 2, 256, 1000, 4097, 0xffff] {
            assert!(
                matches!(
                    DbHeader::parse(&header(bad)),
                    Err(SqliteError::InvalidPageSize(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            DbHeader::parse(&header(4096)[..99]),
            Err(SqliteError::Truncated { need: 100, .. })
        ));
        let mut b = header(4096);
        b[15] = b'x';
        assert!(matches!(DbHeader::parse(&b), Err(SqliteError::BadDbMagic)));
    }

    #[test]
    fn lock_page() {
        assert_eq!(lock_page_offset(), 0x4000_0000);
        assert_eq!(lock_page_pgno(4096), 262_145);
        assert_eq!(lock_page_pgno(512), 2_097_153);
        assert_eq!(lock_page_pgno(65536), 16_385);
        assert_eq!(lock_page_pgno(0), 0x4000_0001);
    }
}
