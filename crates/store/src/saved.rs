//! The page-checksum table saved at a clean shutdown, so that start-up
//! need not read every page of every database to rebuild it.
//!
//! Trust is earned, not assumed. The saved table is used only if its own
//! CRC holds, it names the position recovery found in the LTX files, its
//! pages fold to that position's checksum, and the database file is
//! provably untouched since the save: same inode, size, mtime and ctime
//! (ctime cannot be set from user space). The file is removed as soon as
//! it is read, so it can never describe a later state. After a start from
//! it, [`crate::Db`] rescans the database in the background and repairs
//! the table (and forces a snapshot) should the two ever differ.

use litefs_ltx::{crc64, Checksum, Pos, Txid};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"LFRS-CKS";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 4 + 4 + 8 + 8 + Stamp::LEN;

/// What identifies one exact version of the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    const LEN: usize = 8 + 8 + 16 + 16;

    /// The stamp of a file's current metadata.
    pub(crate) fn of(m: &Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ino.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.mtime_ns.to_be_bytes());
        out.extend_from_slice(&self.ctime_ns.to_be_bytes());
    }

    fn get(b: &[u8]) -> Stamp {
        Stamp {
            ino: be64(&b[0..8]),
            len: be64(&b[8..16]),
            mtime_ns: i128::from_be_bytes(b[16..32].try_into().unwrap_or_default()),
            ctime_ns: i128::from_be_bytes(b[32..48].try_into().unwrap_or_default()),
        }
    }
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().unwrap_or_default())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap_or_default())
}

/// A saved page-checksum table and what it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The position the table belongs to.
    pub(crate) pos: Pos,
    /// The database's page size.
    pub(crate) page_size: u32,
    /// Page checksums 1..=commit (0 for the lock page).
    pub(crate) checksums: Vec<u64>,
    /// The database file the table was computed from.
    pub(crate) stamp: Stamp,
}

impl Saved {
    /// The file's bytes: a header, the table, and a CRC-64 of both.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.checksums.len() * 8 + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.page_size.to_be_bytes());
        out.extend_from_slice(&(self.checksums.len() as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&self.pos.txid.0.to_be_bytes());
        out.extend_from_slice(&self.pos.post_apply_checksum.0.to_be_bytes());
        self.stamp.put(&mut out);
        for c in &self.checksums {
            out.extend_from_slice(&c.to_be_bytes());
        }
        let crc = crc64(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a saved file; the reason it is unusable otherwise.
    pub(crate) fn decode(b: &[u8]) -> Result<Saved, &'static str> {
        if b.len() < HEADER_LEN + 8 || &b[..8] != MAGIC {
            return Err("not a saved checksum table");
        }
        let (body, crc) = b.split_at(b.len() - 8);
        if crc64(body) != be64(crc) {
            return Err("CRC mismatch (torn or damaged)");
        }
        if be32(&b[8..12]) != VERSION {
            return Err("unknown version");
        }
        let page_size = be32(&b[12..16]);
        let commit = be32(&b[16..20]) as usize;
        if body.len() != HEADER_LEN + commit * 8 {
            return Err("length does not match its page count");
        }
        let pos = Pos {
            txid: Txid(be64(&b[24..32])),
            post_apply_checksum: Checksum(be64(&b[32..40])),
        };
        let stamp = Stamp::get(&b[40..40 + Stamp::LEN]);
        let checksums = body[HEADER_LEN..].chunks_exact(8).map(be64).collect();
        Ok(Saved {
            pos,
            page_size,
            checksums,
            stamp,
        })
    }

    /// Why the table cannot stand for `database` at `pos`, if it cannot.
    pub(crate) fn check(&self, pos: Pos, database: &Metadata) -> Result<(), &'static str> {
        if self.pos != pos {
            return Err("saved for another position");
        }
        if self.stamp != Stamp::of(database) {
            return Err("the database file changed since it was saved");
        }
        if !self.page_size.is_power_of_two() || !(512..=65536).contains(&self.page_size) {
            return Err("invalid page size");
        }
        if u64::from(self.page_size) * self.checksums.len() as u64 != self.stamp.len {
            return Err("page count does not match the file size");
        }
        if fold(&self.checksums) != pos.post_apply_checksum {
            return Err("pages do not fold to the position's checksum");
        }
        Ok(())
    }
}

/// The database checksum of a page-checksum table (0 entries, such as the
/// lock page, contribute nothing).
pub(crate) fn fold(checksums: &[u64]) -> Checksum {
    checksums
        .iter()
        .filter(|&&c| c != 0)
        .fold(Checksum::EMPTY, |a, &c| a.toggle(Checksum(c)))
}

/// Reads and removes the saved table at `path`: `None` if there is none
/// or it cannot be read (logged), so the caller rescans.
pub(crate) fn take(path: &Path, db: &str) -> Option<Saved> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(db, path = %path.display(), error = %e, "cannot read the saved checksum table; rescanning");
            return None;
        }
    };
    // Gone before anything can change the database: a crash from here on
    // must never find a table describing an older state.
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(db, path = %path.display(), error = %e, "cannot remove the saved checksum table; rescanning");
        return None;
    }
    match Saved::decode(&bytes) {
        Ok(s) => Some(s),
        Err(reason) => {
            tracing::warn!(db, path = %path.display(), reason, "saved checksum table unusable; rescanning");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Saved {
        Saved {
            pos: Pos {
                txid: Txid(7),
                post_apply_checksum: Checksum(0x8000_0000_0000_0003),
            },
            page_size: 4096,
            checksums: vec![0x8000_0000_0000_0001, 0x8000_0000_0000_0002],
            stamp: Stamp {
                ino: 1,
                len: 8192,
                mtime_ns: 5,
                ctime_ns: 6,
            },
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(Saved::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn any_damaged_byte_is_refused() {
        let b = sample().encode();
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(Saved::decode(&d).is_err(), "byte {i} flipped was accepted");
        }
        assert!(Saved::decode(&b[..b.len() - 1]).is_err());
        assert!(Saved::decode(&[]).is_err());
    }

    #[test]
    fn check_refuses_other_positions_and_unfolding_tables() {
        let dir = std::env::temp_dir().join(format!("litefs-saved-{}", std::process::id()));
        std::fs::write(&dir, vec![0u8; 8192]).unwrap();
        let m = std::fs::metadata(&dir).unwrap();
        let mut s = sample();
        s.stamp = Stamp::of(&m);
        assert_eq!(s.check(s.pos, &m), Ok(()));
        let other = Pos {
            txid: Txid(8),
            ..s.pos
        };
        assert!(s.check(other, &m).is_err());
        let mut wrong = s.clone();
        wrong.checksums[1] ^= 1;
        assert!(wrong.check(s.pos, &m).is_err());
        std::fs::write(&dir, vec![0u8; 4096]).unwrap();
        let changed = std::fs::metadata(&dir).unwrap();
        assert!(s.check(s.pos, &changed).is_err());
        std::fs::remove_file(&dir).unwrap();
    }
}
