//! The WAL index header at the start of the `-shm` file.
//!
//! SQLite keeps two copies of a 48-byte header at offsets 0 and 48 of the
//! WAL index, in the machine's native byte order. `mx_frame` is the last
//! frame of the last committed transaction *as SQLite's readers see it*:
//! a commit frame past it (a writer killed between writing its commit frame
//! and publishing it here) is overwritten by the next writer, so capture
//! must not treat it as committed while this header is live.

use crate::wal::WalHeader;

/// Bytes of one copy of the WAL index header.
pub const WAL_INDEX_HEADER_SIZE: usize = 48;

/// The WAL index format version SQLite writes (`WALINDEX_MAX_VERSION`).
const WAL_INDEX_VERSION: u32 = 3_007_000;

/// What capture needs of the WAL index header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalIndexHeader {
    /// Last committed frame (1-based; 0 = none).
    pub mx_frame: u32,
    /// Database size in pages after that commit.
    pub n_page: u32,
    /// The WAL salts the header belongs to, as [`WalHeader`] reads them.
    pub salt1: u32,
    /// Second salt.
    pub salt2: u32,
}

impl WalIndexHeader {
    /// Parses the two header copies at the start of a `-shm` file. Returns
    /// `None` unless both copies are identical, initialised, of the known
    /// version and carry a valid checksum: a header being rewritten, or a
    /// file SQLite has not set up, tells nothing reliable.
    pub fn parse(b: &[u8]) -> Option<WalIndexHeader> {
        let a = b.get(..WAL_INDEX_HEADER_SIZE)?;
        let c = b.get(WAL_INDEX_HEADER_SIZE..2 * WAL_INDEX_HEADER_SIZE)?;
        if a != c {
            return None;
        }
        let ne = |o: usize| -> u32 {
            let mut w = [0u8; 4];
            w.copy_from_slice(&a[o..o + 4]);
            u32::from_ne_bytes(w)
        };
        let be = |o: usize| -> u32 {
            let mut w = [0u8; 4];
            w.copy_from_slice(&a[o..o + 4]);
            u32::from_be_bytes(w)
        };
        if ne(0) != WAL_INDEX_VERSION || a[12] != 1 {
            return None;
        }
        // The header checksum is the WAL checksum over bytes 0..40 in
        // native order.
        let big_endian = cfg!(target_endian = "big");
        if crate::wal::wal_checksum(big_endian, &a[..40], (0, 0)) != (ne(40), ne(44)) {
            return None;
        }
        Some(WalIndexHeader {
            mx_frame: ne(16),
            n_page: ne(20),
            // The salts are copied byte for byte from the WAL header, where
            // they are big-endian.
            salt1: be(32),
            salt2: be(36),
        })
    }

    /// Whether this header describes the WAL generation `wal` starts.
    pub fn matches(&self, wal: &WalHeader) -> bool {
        self.salt1 == wal.salt1 && self.salt2 == wal.salt2
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn header(mx: u32, salt1: u32, salt2: u32) -> [u8; 96] {
        let mut a = [0u8; 48];
        a[0..4].copy_from_slice(&WAL_INDEX_VERSION.to_ne_bytes());
        a[8..12].copy_from_slice(&7u32.to_ne_bytes());
        a[12] = 1;
        a[14..16].copy_from_slice(&4096u16.to_ne_bytes());
        a[16..20].copy_from_slice(&mx.to_ne_bytes());
        a[20..24].copy_from_slice(&3u32.to_ne_bytes());
        a[32..36].copy_from_slice(&salt1.to_be_bytes());
        a[36..40].copy_from_slice(&salt2.to_be_bytes());
        let big = cfg!(target_endian = "big");
        let (c1, c2) = crate::wal::wal_checksum(big, &a[..40], (0, 0));
        a[40..44].copy_from_slice(&c1.to_ne_bytes());
        a[44..48].copy_from_slice(&c2.to_ne_bytes());
        let mut b = [0u8; 96];
        b[..48].copy_from_slice(&a);
        b[48..].copy_from_slice(&a);
        b
    }

    #[test]
    fn parses_a_valid_header() {
        let h = WalIndexHeader::parse(&header(12, 0xdead_beef, 5)).expect("valid");
        assert_eq!(h.mx_frame, 12);
        assert_eq!(h.n_page, 3);
        assert_eq!((h.salt1, h.salt2), (0xdead_beef, 5));
    }

    #[test]
    fn rejects_torn_uninitialised_and_corrupt_headers() {
        let mut b = header(12, 1, 2);
        b[48 + 16] ^= 1; // copies differ: a writer is mid-update
        assert!(WalIndexHeader::parse(&b).is_none());
        let mut b = header(12, 1, 2);
        b[12] = 0;
        b[48 + 12] = 0;
        assert!(WalIndexHeader::parse(&b).is_none());
        let mut b = header(12, 1, 2);
        b[16] ^= 1;
        b[48 + 16] ^= 1; // consistent copies, bad checksum
        assert!(WalIndexHeader::parse(&b).is_none());
        assert!(WalIndexHeader::parse(&[0u8; 95]).is_none());
        assert!(WalIndexHeader::parse(&[0u8; 96]).is_none());
    }
}
