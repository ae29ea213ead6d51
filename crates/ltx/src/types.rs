//! Small value types shared by every LTX user: TXIDs, checksums, positions,
//! file names and the SQLite lock page.

use std::fmt;
use std::str::FromStr;

/// Bit 63, ORed into every stored checksum so that a real checksum is never 0
/// (0 means "no checksum" in headers and trailers).
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// Smallest SQLite page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest SQLite page size.
pub const MAX_PAGE_SIZE: u32 = 65536;

/// A transaction ID: position of a commit in a database's history, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Txid(pub u64);

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A CRC-64/GO-ISO based checksum as stored in LTX files (bit 63 set when
/// present).
///
/// A database checksum is the XOR of the page checksums of every page but the
/// lock page, with bit 63 forced on; [`Checksum::toggle`] adds or removes one
/// page, which is what keeps it incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Checksum(pub u64);

impl Checksum {
    /// The checksum of an empty database (no pages).
    pub const EMPTY: Checksum = Checksum(CHECKSUM_FLAG);

    /// Adds a page checksum to (or, applied again, removes it from) a
    /// database checksum.
    #[inline]
    #[must_use]
    pub fn toggle(self, page: Checksum) -> Checksum {
        Checksum(CHECKSUM_FLAG | (self.0 ^ page.0))
    }

    /// Whether bit 63 is set, as every stored non-zero checksum must have.
    #[inline]
    pub fn has_flag(self) -> bool {
        self.0 & CHECKSUM_FLAG != 0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A database's replication position: the last applied TXID and the rolling
/// checksum after it. Its text form is LiteFS's `%016x/%016x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pos {
    /// Last applied transaction.
    pub txid: Txid,
    /// Database checksum after that transaction.
    pub post_apply_checksum: Checksum,
}

impl Pos {
    /// The position of a database that has no transactions yet.
    pub const ZERO: Pos = Pos {
        txid: Txid(0),
        post_apply_checksum: Checksum(0),
    };

    /// Builds a position.
    pub fn new(txid: u64, checksum: u64) -> Pos {
        Pos {
            txid: Txid(txid),
            post_apply_checksum: Checksum(checksum),
        }
    }

    /// Whether this is the zero position.
    pub fn is_zero(&self) -> bool {
        *self == Pos::ZERO
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.txid, self.post_apply_checksum)
    }
}

/// Why a position string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid position {input:?}: expected 16 hex digits, '/', 16 hex digits")]
pub struct ParsePosError {
    input: String,
}

impl FromStr for Pos {
    type Err = ParsePosError;

    fn from_str(s: &str) -> Result<Pos, ParsePosError> {
        let err = || ParsePosError {
            input: s.chars().take(64).collect(),
        };
        let (a, b) = s.split_once('/').ok_or_else(err)?;
        Ok(Pos::new(
            parse_hex16(a).ok_or_else(err)?,
            parse_hex16(b).ok_or_else(err)?,
        ))
    }
}

/// Parses exactly 16 lowercase or uppercase hex digits.
fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The LTX file name for a TXID range: `%016x-%016x.ltx`.
pub fn format_file_name(min: Txid, max: Txid) -> String {
    format!("{:016x}-{:016x}.ltx", min.0, max.0)
}

/// Parses an LTX file name (`^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$`, lowercase
/// only, as LiteFS does) into its TXID range.
pub fn parse_file_name(name: &str) -> Option<(Txid, Txid)> {
    let stem = name.strip_suffix(".ltx")?;
    let (a, b) = stem.split_once('-')?;
    let lower = |s: &str| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !lower(a) || !lower(b) {
        return None;
    }
    Some((Txid(parse_hex16(a)?), Txid(parse_hex16(b)?)))
}

/// Whether `page_size` is a power of two between 512 and 65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

/// The page number of SQLite's lock page (the page holding byte offset
/// 2^30), which SQLite never writes and LTX never stores.
pub fn lock_pgno(page_size: u32) -> u32 {
    0x4000_0000 / page_size + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_round_trips_as_text() {
        let p = Pos::new(0x2a, 0x8000_0000_dead_beef);
        assert_eq!(p.to_string(), "000000000000002a/80000000deadbeef");
        assert_eq!("000000000000002a/80000000deadbeef".parse::<Pos>(), Ok(p));
        assert!("2a/80".parse::<Pos>().is_err());
        assert!("000000000000002a-80000000deadbeef".parse::<Pos>().is_err());
        assert!("+00000000000002a/80000000deadbeef".parse::<Pos>().is_err());
    }

    #[test]
    fn file_names() {
        assert_eq!(
            format_file_name(Txid(1), Txid(0x1f)),
            "0000000000000001-000000000000001f.ltx"
        );
        assert_eq!(
            parse_file_name("0000000000000001-000000000000001f.ltx"),
            Some((Txid(1), Txid(0x1f)))
        );
        assert_eq!(
            parse_file_name("0000000000000001-000000000000001F.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("0000000000000001-00000000000001f.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("0000000000000001-000000000000001f.ltx.tmp"),
            None
        );
    }

    #[test]
    fn lock_page_numbers() {
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(65536), 16_385);
        assert_eq!(lock_pgno(512), 2_097_153);
    }

    #[test]
    fn toggle_is_reversible() {
        let a = Checksum(CHECKSUM_FLAG | 0x1234);
        let b = Checksum(CHECKSUM_FLAG | 0x9876);
        let c = Checksum::EMPTY.toggle(a).toggle(b);
        assert_eq!(c.toggle(a).toggle(b), Checksum::EMPTY);
        assert_eq!(c.toggle(b), Checksum::EMPTY.toggle(a));
    }
}
