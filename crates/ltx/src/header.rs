//! The 100-byte header and 16-byte trailer, and the per-version rules they
//! must satisfy.

use crate::error::HeaderError;
use crate::types::{is_valid_page_size, Checksum, Txid, CHECKSUM_FLAG};
use std::fmt;

/// The four bytes every LTX file starts with, in both formats.
pub const MAGIC: [u8; 4] = *b"LTX1";
/// Header length in bytes.
pub const HEADER_SIZE: usize = 100;
/// Trailer length in bytes.
pub const TRAILER_SIZE: usize = 16;
/// v1: the page block is one LZ4 frame.
pub const FLAG_COMPRESS_LZ4: u32 = 0x1;
/// v3: database checksums are not tracked (pre/post-apply are 0).
pub const FLAG_NO_CHECKSUM: u32 = 0x2;

/// Which of the two incompatible LTX formats a file uses. Not stored in the
/// file; the reader must know it from context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// LiteFS v0.5.14 / superfly/ltx v0.3.14.
    V1,
    /// Litestream 0.5.x / superfly/ltx v0.5.x.
    V3,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V3 => "v3",
        })
    }
}

/// The LTX header. Field meanings are the same in both formats; only the
/// allowed flags and the WAL rules differ (see [`Header::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Format flags ([`FLAG_COMPRESS_LZ4`] in v1, [`FLAG_NO_CHECKSUM`] in v3).
    pub flags: u32,
    /// Database page size.
    pub page_size: u32,
    /// Database size in pages after applying the file; 0 deletes it.
    pub commit: u32,
    /// First transaction in the file.
    pub min_txid: Txid,
    /// Last transaction in the file.
    pub max_txid: Txid,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Database checksum before applying; 0 for snapshots and NoChecksum files.
    pub pre_apply_checksum: Checksum,
    /// Offset of the committed range in the source WAL (0 in journal mode).
    pub wal_offset: i64,
    /// Length of that range.
    pub wal_size: i64,
    /// WAL header salt 1.
    pub wal_salt1: u32,
    /// WAL header salt 2.
    pub wal_salt2: u32,
    /// The writing node's ID (LiteFS); 0 if unset.
    pub node_id: u64,
}

/// Now, as an LTX header's `timestamp`: milliseconds since the Unix epoch
/// (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Header {
    /// A snapshot header (MinTXID 1, no pre-apply checksum) up to `max_txid`.
    pub fn snapshot(page_size: u32, commit: u32, max_txid: Txid, timestamp: i64) -> Header {
        Header {
            page_size,
            commit,
            min_txid: Txid(1),
            max_txid,
            timestamp,
            ..Header::default()
        }
    }

    /// Whether the file holds the whole database (MinTXID 1).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == Txid(1)
    }

    /// Whether database checksums are absent (v3 NoChecksum flag).
    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    /// Whether the v1 page block is one LZ4 frame.
    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESS_LZ4 != 0
    }

    /// Checks the rules the reference decoder of `version` enforces.
    pub fn validate(&self, version: Version) -> Result<(), HeaderError> {
        let allowed = match version {
            Version::V1 => FLAG_COMPRESS_LZ4,
            Version::V3 => FLAG_NO_CHECKSUM,
        };
        if self.flags & !allowed != 0 {
            return Err(HeaderError::Flags {
                flags: self.flags,
                version,
            });
        }
        if !is_valid_page_size(self.page_size) {
            return Err(HeaderError::PageSize(self.page_size));
        }
        if self.min_txid.0 == 0 || self.max_txid.0 == 0 || self.min_txid > self.max_txid {
            return Err(HeaderError::TxidRange {
                min: self.min_txid.0,
                max: self.max_txid.0,
            });
        }
        self.validate_wal(version)?;
        let pre = self.pre_apply_checksum.0;
        let bad_pre = |reason| {
            Err(HeaderError::PreApplyChecksum {
                checksum: pre,
                reason,
            })
        };
        if self.no_checksum() {
            if pre != 0 {
                return bad_pre("must be 0 with the NoChecksum flag");
            }
        } else if self.is_snapshot() {
            if pre != 0 {
                return bad_pre("must be 0 in a snapshot");
            }
        } else if pre & CHECKSUM_FLAG == 0 {
            return bad_pre("an incremental file needs one with bit 63 set");
        }
        Ok(())
    }

    fn validate_wal(&self, version: Version) -> Result<(), HeaderError> {
        let (off, size) = (self.wal_offset, self.wal_size);
        let salted = self.wal_salt1 != 0 || self.wal_salt2 != 0;
        let ok = off >= 0
            && size >= 0
            && match version {
                Version::V1 => (off == 0) == (size == 0) && (!salted || (off != 0 && size != 0)),
                // v3: a salt or a size each need an offset.
                Version::V3 => off != 0 || (!salted && size == 0),
            };
        if ok {
            Ok(())
        } else {
            Err(HeaderError::Wal {
                offset: off,
                size,
                salt1: self.wal_salt1,
                salt2: self.wal_salt2,
            })
        }
    }

    /// The 100 header bytes (reserved bytes zero).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.0.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses the 100 header bytes. Checks only the magic; call
    /// [`Header::validate`] for the format rules. Reserved bytes are ignored,
    /// as the reference decoders do.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Result<Header, HeaderError> {
        if b[0..4] != MAGIC {
            return Err(HeaderError::Magic([b[0], b[1], b[2], b[3]]));
        }
        Ok(Header {
            flags: be_u32(&b[4..8]),
            page_size: be_u32(&b[8..12]),
            commit: be_u32(&b[12..16]),
            min_txid: Txid(be_u64(&b[16..24])),
            max_txid: Txid(be_u64(&b[24..32])),
            timestamp: be_u64(&b[32..40]) as i64,
            pre_apply_checksum: Checksum(be_u64(&b[40..48])),
            wal_offset: be_u64(&b[48..56]) as i64,
            wal_size: be_u64(&b[56..64]) as i64,
            wal_salt1: be_u32(&b[64..68]),
            wal_salt2: be_u32(&b[68..72]),
            node_id: be_u64(&b[72..80]),
        })
    }
}

/// The 16-byte trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Database checksum after applying the file (0 with NoChecksum).
    pub post_apply_checksum: Checksum,
    /// `1<<63 | crc64` over the logical (decompressed) file content.
    pub file_checksum: Checksum,
}

impl Trailer {
    /// The 16 trailer bytes.
    pub fn to_bytes(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.0.to_be_bytes());
        b
    }

    /// Parses the 16 trailer bytes.
    pub fn from_bytes(b: &[u8; TRAILER_SIZE]) -> Trailer {
        Trailer {
            post_apply_checksum: Checksum(be_u64(&b[0..8])),
            file_checksum: Checksum(be_u64(&b[8..16])),
        }
    }
}

/// Checks the post-apply checksum rules shared by encoder and decoder;
/// returns the reason a value is wrong.
pub(crate) fn post_apply_rule(header: &Header, post: Checksum) -> Result<(), &'static str> {
    if header.no_checksum() {
        if post.0 != 0 {
            return Err("must be 0 with the NoChecksum flag");
        }
    } else if header.commit == 0 {
        if post != Checksum::EMPTY {
            return Err(
                "a deletion file (commit 0) must carry the empty checksum 8000000000000000",
            );
        }
    } else if !post.has_flag() {
        return Err("bit 63 must be set");
    }
    Ok(())
}

pub(crate) fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr() -> Header {
        Header {
            page_size: 4096,
            commit: 3,
            min_txid: Txid(2),
            max_txid: Txid(2),
            pre_apply_checksum: Checksum(CHECKSUM_FLAG | 5),
            ..Header::default()
        }
    }

    #[test]
    fn header_bytes_round_trip() {
        let h = Header {
            flags: 1,
            wal_offset: 32,
            wal_size: 4120,
            wal_salt1: 0xdead_beef,
            wal_salt2: 7,
            node_id: 0x0102_0304_0506_0708,
            timestamp: -5,
            ..incr()
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"LTX1");
        assert_eq!(b[80..], [0u8; 20]);
        assert_eq!(Header::from_bytes(&b), Ok(h));
    }

    #[test]
    fn validation_rules() {
        assert_eq!(incr().validate(Version::V1), Ok(()));
        let bad = |h: Header, v| h.validate(v).is_err();
        assert!(bad(Header { flags: 2, ..incr() }, Version::V1));
        assert!(bad(Header { flags: 1, ..incr() }, Version::V3));
        assert!(bad(
            Header {
                page_size: 1000,
                ..incr()
            },
            Version::V1
        ));
        assert!(bad(
            Header {
                page_size: 256,
                ..incr()
            },
            Version::V1
        ));
        assert!(bad(
            Header {
                page_size: 131072,
                ..incr()
            },
            Version::V1
        ));
        assert!(bad(
            Header {
                min_txid: Txid(0),
                ..incr()
            },
            Version::V1
        ));
        assert!(bad(
            Header {
                min_txid: Txid(3),
                ..incr()
            },
            Version::V1
        ));
        assert!(bad(
            Header {
                pre_apply_checksum: Checksum(5),
                ..incr()
            },
            Version::V1
        ));
        assert!(bad(
            Header {
                pre_apply_checksum: Checksum(0),
                ..incr()
            },
            Version::V1
        ));
        let snap = Header::snapshot(4096, 3, Txid(4), 0);
        assert_eq!(snap.validate(Version::V1), Ok(()));
        assert!(bad(
            Header {
                pre_apply_checksum: Checksum(CHECKSUM_FLAG),
                ..snap
            },
            Version::V1
        ));
        // WAL rules differ between versions.
        let wal = |o, s, salt| Header {
            wal_offset: o,
            wal_size: s,
            wal_salt1: salt,
            ..incr()
        };
        assert!(bad(wal(32, 0, 0), Version::V1));
        assert_eq!(wal(32, 0, 0).validate(Version::V3), Ok(()));
        assert!(bad(wal(0, 10, 0), Version::V3));
        assert!(bad(wal(0, 0, 1), Version::V3));
        assert!(bad(wal(-1, 0, 0), Version::V3));
        assert_eq!(wal(32, 4120, 9).validate(Version::V1), Ok(()));
        // NoChecksum requires pre-apply 0.
        let nc = Header {
            flags: FLAG_NO_CHECKSUM,
            ..incr()
        };
        assert!(bad(nc, Version::V3));
        assert_eq!(
            Header {
                pre_apply_checksum: Checksum(0),
                ..nc
            }
            .validate(Version::V3),
            Ok(())
        );
    }

    #[test]
    fn bad_magic() {
        let mut b = incr().to_bytes();
        b[3] = b'2';
        assert!(matches!(Header::from_bytes(&b), Err(HeaderError::Magic(_))));
    }
}
