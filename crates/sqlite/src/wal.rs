//! Write-ahead log: header, frame headers, checksum and a committed-transaction
//! scanner.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! WAL header (32 bytes)
//!   0  magic            0x377f0682 (little-endian checksums) or 0x377f0683 (big-endian)
//!   4  format version   3007000
//!   8  page size        (the real value; 65536 is stored as 65536)
//!  12  checkpoint sequence number
//!  16  salt-1, 20 salt-2
//!  24  checksum-1, 28 checksum-2  (wal_checksum over bytes 0..24, from (0, 0))
//! frame i (24 + page_size bytes) at 32 + i * (24 + page_size)
//!   0  page number (never 0)
//!   4  commit: database size in pages after commit, or 0 for non-commit frames
//!   8  salt-1, 12 salt-2 (copies of the header's)
//!  16  checksum-1, 20 checksum-2: wal_checksum over frame bytes 0..8 and then
//!      the page data, continuing from the previous frame's checksum (the
//!      header's checksum for the first frame)
//! ```

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;

use crate::io::{be32, read_full_at};
use crate::{is_valid_page_size, SqliteError};

/// Size in bytes of the WAL file header.
pub const WAL_HEADER_SIZE: usize = 32;
/// Size in bytes of each WAL frame header.
pub const WAL_FRAME_HEADER_SIZE: usize = 24;
/// WAL magic for checksums computed over little-endian 32-bit words.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// WAL magic for checksums computed over big-endian 32-bit words.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL file format version SQLite has ever written.
pub const WAL_VERSION: u32 = 3_007_000;

/// Target size of one positional read while scanning frames.
const SCAN_CHUNK_BYTES: u64 = 1 << 20;

/// SQLite's WAL checksum over `data`, continuing from `init`.
///
/// `data` is read as pairs of 32-bit words, big-endian when `big_endian` is
/// true (WAL magic `0x377f0683`) and little-endian otherwise (`0x377f0682`).
/// For each pair `(x0, x1)`: `s0 += x0 + s1; s1 += x1 + s0` (wrapping).
/// SQLite only checksums multiples of 8 bytes; trailing bytes that do not
/// form a whole pair are ignored.
pub fn wal_checksum(big_endian: bool, data: &[u8], init: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = init;
    let word = |b: &[u8]| -> u32 {
        let a = [
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
            b.get(2).copied().unwrap_or(0),
            b.get(3).copied().unwrap_or(0),
        ];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    for pair in data.chunks_exact(8) {
        let (x0, x1) = pair.split_at(4);
        s0 = s0.wrapping_add(word(x0)).wrapping_add(s1);
        s1 = s1.wrapping_add(word(x1)).wrapping_add(s0);
    }
    (s0, s1)
}

/// The 32-byte WAL file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// True for magic `0x377f0683` (checksums over big-endian words), false
    /// for `0x377f0682` (little-endian words).
    pub big_endian_checksums: bool,
    /// File format version; always [`WAL_VERSION`] for a parsed header.
    pub version: u32,
    /// Database page size in bytes.
    pub page_size: u32,
    /// Checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Salt-1: incremented on every WAL restart.
    pub salt1: u32,
    /// Salt-2: a fresh random value on every WAL restart.
    pub salt2: u32,
    /// Header checksum over bytes 0..24; also the initial value of the
    /// cumulative frame checksum.
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Parses and validates a WAL header: `b` must hold at least 32 bytes,
    /// the magic must be [`WAL_MAGIC_LE`] or [`WAL_MAGIC_BE`], the version
    /// [`WAL_VERSION`], the page size a power of two in 512..=65536, and the
    /// stored checksum must equal [`wal_checksum`] of bytes 0..24.
    pub fn parse(b: &[u8]) -> Result<WalHeader, SqliteError> {
        let Some(b) = b.get(..WAL_HEADER_SIZE) else {
            return Err(SqliteError::Truncated {
                what: "WAL header",
                need: WAL_HEADER_SIZE,
                got: b.len(),
            });
        };
        let magic = be32(b, 0);
        let big_endian_checksums = match magic {
            WAL_MAGIC_LE => false,
            WAL_MAGIC_BE => true,
            _ => return Err(SqliteError::BadWalMagic(magic)),
        };
        let version = be32(b, 4);
        if version != WAL_VERSION {
            return Err(SqliteError::UnsupportedWalVersion(version));
        }
        let page_size = be32(b, 8);
        if !is_valid_page_size(page_size) {
            return Err(SqliteError::InvalidPageSize(page_size));
        }
        let stored = (be32(b, 24), be32(b, 28));
        let computed = wal_checksum(
            big_endian_checksums,
            b.get(..24).unwrap_or_default(),
            (0, 0),
        );
        if stored != computed {
            return Err(SqliteError::WalHeaderChecksum { stored, computed });
        }
        Ok(WalHeader {
            big_endian_checksums,
            version,
            page_size,
            checkpoint_seq: be32(b, 12),
            salt1: be32(b, 16),
            salt2: be32(b, 20),
            checksum: stored,
        })
    }

    /// Encodes the header, writing `self.checksum` as is (see
    /// [`WalHeader::compute_checksum`]).
    pub fn encode(&self) -> [u8; WAL_HEADER_SIZE] {
        let magic = if self.big_endian_checksums {
            WAL_MAGIC_BE
        } else {
            WAL_MAGIC_LE
        };
        let mut b = [0u8; WAL_HEADER_SIZE];
        let words = [
            magic,
            self.version,
            self.page_size,
            self.checkpoint_seq,
            self.salt1,
            self.salt2,
            self.checksum.0,
            self.checksum.1,
        ];
        for (dst, w) in b.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
        b
    }

    /// The checksum SQLite would store for this header (over the first 24
    /// encoded bytes, with the byte order given by `big_endian_checksums`).
    pub fn compute_checksum(&self) -> (u32, u32) {
        let b = self.encode();
        wal_checksum(
            self.big_endian_checksums,
            b.get(..24).unwrap_or_default(),
            (0, 0),
        )
    }

    /// Size in bytes of one frame (frame header plus page).
    pub fn frame_size(&self) -> u64 {
        WAL_FRAME_HEADER_SIZE as u64 + u64::from(self.page_size)
    }
}

/// The 24-byte header preceding each page in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFrameHeader {
    /// Page number (1-based; 0 marks an invalid frame).
    pub pgno: u32,
    /// Database size in pages after the commit for commit frames, 0 for
    /// other frames.
    pub commit: u32,
    /// Copy of the WAL header's salt-1.
    pub salt1: u32,
    /// Copy of the WAL header's salt-2.
    pub salt2: u32,
    /// Cumulative checksum up to and including this frame.
    pub checksum: (u32, u32),
}

impl WalFrameHeader {
    /// Parses a frame header from the first 24 bytes of `b`. No validation
    /// beyond the length is done: salts and checksums can only be checked in
    /// the context of the WAL header and the preceding frames.
    pub fn parse(b: &[u8]) -> Result<Self, SqliteError> {
        if b.len() < WAL_FRAME_HEADER_SIZE {
            return Err(SqliteError::Truncated {
                what: "WAL frame header",
                need: WAL_FRAME_HEADER_SIZE,
                got: b.len(),
            });
        }
        Ok(WalFrameHeader {
            pgno: be32(b, 0),
            commit: be32(b, 4),
            salt1: be32(b, 8),
            salt2: be32(b, 12),
            checksum: (be32(b, 16), be32(b, 20)),
        })
    }

    /// Encodes the frame header.
    pub fn encode(&self) -> [u8; WAL_FRAME_HEADER_SIZE] {
        let mut b = [0u8; WAL_FRAME_HEADER_SIZE];
        let words = [
            self.pgno,
            self.commit,
            self.salt1,
            self.salt2,
            self.checksum.0,
            self.checksum.1,
        ];
        for (dst, w) in b.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
        b
    }

    /// True for a commit frame (non-zero `commit`).
    pub fn is_commit(&self) -> bool {
        self.commit != 0
    }

    /// The cumulative checksum SQLite stores in this frame: [`wal_checksum`]
    /// of the first 8 header bytes (pgno, commit) and then `page`, continuing
    /// from `prev` (the previous frame's checksum, or the WAL header's for
    /// the first frame).
    pub fn compute_checksum(&self, big_endian: bool, page: &[u8], prev: (u32, u32)) -> (u32, u32) {
        let b = self.encode();
        let c = wal_checksum(big_endian, b.get(..8).unwrap_or_default(), prev);
        wal_checksum(big_endian, page, c)
    }
}

/// A committed WAL transaction found by [`scan_wal`] / [`WalScanner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalTxn {
    /// File offset of the transaction's first frame.
    pub start: u64,
    /// File offset just past the commit frame (the next frame's offset).
    pub end: u64,
    /// Database size in pages after this commit.
    pub commit: u32,
    /// Cumulative checksum of the commit frame (the `init` to resume
    /// scanning at `end`).
    pub checksum: (u32, u32),
    /// `(pgno, file offset of the page data)` of the latest frame of each
    /// page written by the transaction, sorted by page number. Pages numbered
    /// above `commit` may appear (SQLite truncates them away on checkpoint).
    pub pages: Vec<(u32, u64)>,
}

/// Iterator over the committed transactions of a WAL file, in order.
///
/// Reads frames with positional reads in chunks of about 1 MiB and keeps
/// memory proportional to the number of distinct pages in the transaction
/// being assembled. It ends (returns `None`) at the first frame that is
/// incomplete (end of file or past `limit`), has a zero page number, has
/// salts different from the header's, or fails the cumulative checksum;
/// frames after the last commit frame seen are discarded as uncommitted.
/// After an I/O error it yields the error once and then ends.
#[derive(Debug)]
pub struct WalScanner<'a, F: ?Sized> {
    file: &'a F,
    big_endian: bool,
    salts: (u32, u32),
    page_size: usize,
    frame_size: u64,
    offset: u64,
    checksum: (u32, u32),
    limit: Option<u64>,
    buf: Vec<u8>,
    buf_offset: u64,
    buf_len: usize,
    chunk_bytes: usize,
    pages: HashMap<u32, u64>,
    done: bool,
}

impl<'a, F: FileExt + ?Sized> WalScanner<'a, F> {
    /// Creates a scanner starting at `offset`, which must be a frame boundary
    /// (`32 + k * (24 + page_size)`), with the running checksum `init`: the
    /// header's checksum when `offset == 32`, else the checksum of the frame
    /// just before `offset` (e.g. [`WalTxn::checksum`] of the previous
    /// transaction). Frames extending past `limit` (e.g. a snapshot of the
    /// file size) are treated as absent.
    ///
    /// Returns `InvalidInput` if the header's page size is invalid or
    /// `offset` is not a frame boundary.
    pub fn new(
        file: &'a F,
        header: &WalHeader,
        offset: u64,
        init: (u32, u32),
        limit: Option<u64>,
    ) -> io::Result<Self> {
        if !is_valid_page_size(header.page_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                SqliteError::InvalidPageSize(header.page_size),
            ));
        }
        let frame_size = header.frame_size();
        let hdr = WAL_HEADER_SIZE as u64;
        if offset < hdr || (offset - hdr) % frame_size != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "WAL scan offset {offset} is not a frame boundary (frame size {frame_size})"
                ),
            ));
        }
        let frames_per_chunk = (SCAN_CHUNK_BYTES / frame_size).max(1);
        Ok(WalScanner {
            file,
            big_endian: header.big_endian_checksums,
            salts: (header.salt1, header.salt2),
            page_size: header.page_size as usize,
            frame_size,
            offset,
            checksum: init,
            limit,
            buf: Vec::new(),
            buf_offset: 0,
            buf_len: 0,
            chunk_bytes: (frames_per_chunk * frame_size) as usize,
            pages: HashMap::new(),
            done: false,
        })
    }

    /// File offset just past the last transaction returned so far (the
    /// starting offset before any was returned).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Running checksum at [`WalScanner::offset`].
    pub fn checksum(&self) -> (u32, u32) {
        self.checksum
    }

    /// Makes the whole frame at `off` available in `buf`, returning its start
    /// index, or `None` if the frame is incomplete or beyond `limit`.
    fn frame_at(&mut self, off: u64) -> io::Result<Option<usize>> {
        let Some(end) = off.checked_add(self.frame_size) else {
            return Ok(None);
        };
        if self.limit.is_some_and(|limit| end > limit) {
            return Ok(None);
        }
        let buf_end = self.buf_offset + self.buf_len as u64;
        if off >= self.buf_offset && end <= buf_end {
            return Ok(Some((off - self.buf_offset) as usize));
        }
        let mut want = self.chunk_bytes as u64;
        if let Some(limit) = self.limit {
            want = want.min(limit - off);
        }
        let want = want as usize;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let Some(dst) = self.buf.get_mut(..want) else {
            return Ok(None);
        };
        let n = read_full_at(self.file, dst, off)?;
        self.buf_offset = off;
        self.buf_len = n;
        if (n as u64) < self.frame_size {
            return Ok(None);
        }
        Ok(Some(0))
    }

    fn next_txn(&mut self) -> io::Result<Option<WalTxn>> {
        let mut off = self.offset;
        let mut cksum = self.checksum;
        self.pages.clear();
        loop {
            let Some(idx) = self.frame_at(off)? else {
                return Ok(None);
            };
            let Some(frame) = self
                .buf
                .get(idx..idx + WAL_FRAME_HEADER_SIZE + self.page_size)
            else {
                return Ok(None);
            };
            let (head, page) = frame.split_at(WAL_FRAME_HEADER_SIZE);
            let fh = WalFrameHeader::parse(head)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if fh.pgno == 0 || (fh.salt1, fh.salt2) != self.salts {
                return Ok(None);
            }
            cksum = wal_checksum(self.big_endian, head.get(..8).unwrap_or_default(), cksum);
            cksum = wal_checksum(self.big_endian, page, cksum);
            if cksum != fh.checksum {
                return Ok(None);
            }
            self.pages
                .insert(fh.pgno, off + WAL_FRAME_HEADER_SIZE as u64);
            off += self.frame_size;
            if fh.commit != 0 {
                let mut pages: Vec<(u32, u64)> = self.pages.drain().collect();
                pages.sort_unstable();
                let txn = WalTxn {
                    start: self.offset,
                    end: off,
                    commit: fh.commit,
                    checksum: cksum,
                    pages,
                };
                self.offset = off;
                self.checksum = cksum;
                return Ok(Some(txn));
            }
        }
    }
}

impl<F: FileExt + ?Sized> Iterator for WalScanner<'_, F> {
    type Item = io::Result<WalTxn>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_txn() {
            Ok(Some(txn)) => Some(Ok(txn)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Scans a WAL file with positional reads, starting at `offset` (a frame
/// boundary, >= 32) with the running checksum `init` (the header's checksum
/// when `offset == 32`, else the checksum of the frame before), and returns
/// the committed transactions found, in order.
///
/// Each [`WalTxn`] gives the byte range of its frames, the commit size, the
/// commit frame's checksum and the latest version of each page it wrote.
/// Scanning stops silently at the first frame whose salts don't match the
/// header, whose page number is 0 or whose cumulative checksum fails, or at
/// end of file / a partial frame / a frame extending past `limit`. Frames
/// after the last commit frame are not returned (uncommitted). Memory while
/// scanning is bounded by one read chunk plus the pages of the transaction
/// being assembled (use [`WalScanner`] to avoid holding all results).
///
/// Errors: I/O errors from `file`, and `InvalidInput` when `offset` is not a
/// frame boundary or the header's page size is invalid.
pub fn scan_wal<F: FileExt>(
    file: &F,
    header: &WalHeader,
    offset: u64,
    init: (u32, u32),
    limit: Option<u64>,
) -> io::Result<Vec<WalTxn>> {
    WalScanner::new(file, header, offset, init, limit)?.collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Builds a synthetic WAL: `txns` is a list of transactions, each a list
    /// of page numbers; the last frame of each is the commit frame.
    fn build(big_endian: bool, page_size: u32, txns: &[&[u32]]) -> (WalHeader, Vec<u8>) {
        let mut h = WalHeader {
            big_endian_checksums: big_endian,
            version: WAL_VERSION,
            page_size,
            checkpoint_seq: 3,
            salt1: 0x1234_5678,
            salt2: 0x9abc_def0,
            checksum: (0, 0),
        };
        h.checksum = h.compute_checksum();
        let mut out = h.encode().to_vec();
        let mut c = h.checksum;
        let mut size = 0;
        for (t, pgnos) in txns.iter().enumerate() {
            for (i, &pgno) in pgnos.iter().enumerate() {
                size = size.max(pgno);
                let page: Vec<u8> = (0..page_size)
                    .map(|j| (j as u8) ^ (pgno as u8) ^ (t as u8))
                    .collect();
                let mut fh = WalFrameHeader {
                    pgno,
                    commit: if i + 1 == pgnos.len() { size } else { 0 },
                    salt1: h.salt1,
                    salt2: h.salt2,
                    checksum: (0, 0),
                };
                fh.checksum = fh.compute_checksum(big_endian, &page, c);
                c = fh.checksum;
                out.extend_from_slice(&fh.encode());
                out.extend_from_slice(&page);
            }
        }
        (h, out)
    }

    fn file_with(data: &[u8]) -> std::fs::File {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    #[test]
    fn checksum_known_values() {
        assert_eq!(wal_checksum(false, &[], (5, 6)), (5, 6));
        // s0 = 1 + 0 + 0 = 1; s1 = 2 + 0 + 1 = 3
        let mut d = Vec::new();
        d.extend_from_slice(&1u32.to_le_bytes());
        d.extend_from_slice(&2u32.to_le_bytes());
        assert_eq!(wal_checksum(false, &d, (0, 0)), (1, 3));
        // Big-endian reading of the same bytes: 0x01000000, 0x02000000.
        assert_eq!(wal_checksum(true, &d, (0, 0)), (0x0100_0000, 0x0300_0000));
        // Trailing partial pair is ignored.
        d.push(9);
        assert_eq!(wal_checksum(false, &d, (0, 0)), (1, 3));
        // Wrapping arithmetic.
        let m = [0xffu8; 8];
        assert_eq!(
            wal_checksum(true, &m, (1, 1)),
            (
                0xffff_ffff_u32.wrapping_add(2),
                0xffff_ffff_u32
                    .wrapping_add(2)
                    .wrapping_add(0xffff_ffff)
                    .wrapping_add(1)
            )
        );
    }

    #[test]
    fn header_roundtrip_and_errors() {
        for be in [false, true] {
            let (h, data) = build(be, 4096, &[]);
            assert_eq!(WalHeader::parse(&data).unwrap(), h);
            let mut bad = data.clone();
            bad[3] ^= 1; // flip the byte-order bit: checksum no longer matches
            assert!(matches!(
                WalHeader::parse(&bad),
                Err(SqliteError::WalHeaderChecksum { .. })
            ));
            let mut bad = data.clone();
            bad[0] = 0;
            assert!(matches!(
                WalHeader::parse(&bad),
                Err(SqliteError::BadWalMagic(_))
            ));
            let mut bad = data.clone();
            bad[7] ^= 1;
            assert!(matches!(
                WalHeader::parse(&bad),
                Err(SqliteError::UnsupportedWalVersion(_))
            ));
            let mut bad = data.clone();
            bad[8..12].copy_from_slice(&1000u32.to_be_bytes());
            assert!(matches!(
                WalHeader::parse(&bad),
                Err(SqliteError::InvalidPageSize(1000))
            ));
            assert!(matches!(
                WalHeader::parse(&data[..31]),
                Err(SqliteError::Truncated { .. })
            ));
        }
        assert!(matches!(
            WalFrameHeader::parse(&[0; 23]),
            Err(SqliteError::Truncated { .. })
        ));
    }

    #[test]
    fn scans_synthetic_wal_both_byte_orders() {
        for be in [false, true] {
            let (h, data) = build(be, 512, &[&[1, 2, 1], &[3], &[2, 4, 2, 2], &[5, 6]]);
            let f = file_with(&data);
            let txns = scan_wal(&f, &h, 32, h.checksum, None).unwrap();
            let fs = 24 + 512u64;
            assert_eq!(txns.len(), 4);
            assert_eq!(
                txns[0].pages,
                vec![(1, 32 + 2 * fs + 24), (2, 32 + fs + 24)]
            );
            assert_eq!(
                (txns[0].start, txns[0].end, txns[0].commit),
                (32, 32 + 3 * fs, 2)
            );
            assert_eq!(txns[1].pages, vec![(3, 32 + 3 * fs + 24)]);
            assert_eq!(
                txns[2].pages,
                vec![(2, 32 + 7 * fs + 24), (4, 32 + 5 * fs + 24)]
            );
            assert_eq!(txns[3].commit, 6);
            assert_eq!(txns[3].end, data.len() as u64);
            // Resume from each boundary.
            for k in 0..txns.len() {
                let rest = scan_wal(&f, &h, txns[k].end, txns[k].checksum, None).unwrap();
                assert_eq!(rest, txns[k + 1..].to_vec());
            }
            // Limits.
            for (k, t) in txns.iter().enumerate() {
                let upto = |limit| scan_wal(&f, &h, 32, h.checksum, Some(limit)).unwrap().len();
                assert_eq!(upto(t.end), k + 1);
                assert_eq!(upto(t.end - 1), k);
            }
            // Wrong init checksum: nothing.
            assert!(scan_wal(&f, &h, 32, (1, 2), None).unwrap().is_empty());
            // Wrong byte order: nothing.
            let other = WalHeader {
                big_endian_checksums: !be,
                ..h
            };
            assert!(scan_wal(&f, &other, 32, h.checksum, None)
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn scanner_rejects_bad_offsets() {
        let (h, data) = build(false, 512, &[&[1]]);
        let f = file_with(&data);
        for off in [0, 31, 33, 32 + 535] {
            let e = scan_wal(&f, &h, off, h.checksum, None).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
        let bad = WalHeader { page_size: 0, ..h };
        assert_eq!(
            scan_wal(&f, &bad, 32, h.checksum, None).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        // Offset past EOF is fine: nothing there.
        assert!(scan_wal(&f, &h, 32 + 536 * 10, h.checksum, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn zero_pgno_and_salt_mismatch_stop() {
        let (h, data) = build(false, 512, &[&[1], &[2], &[3]]);
        let fs = 536;
        // Salt mismatch on frame 2 (with otherwise valid checksum chain? no:
        // salts are not checksummed, so only the salt check can catch this).
        let mut d = data.clone();
        d[32 + 2 * fs + 8] ^= 1;
        let f = file_with(&d);
        assert_eq!(scan_wal(&f, &h, 32, h.checksum, None).unwrap().len(), 2);
        // Zero pgno.
        let mut d = data.clone();
        d[32 + fs..32 + fs + 4].copy_from_slice(&[0; 4]);
        let f = file_with(&d);
        assert_eq!(scan_wal(&f, &h, 32, h.checksum, None).unwrap().len(), 1);
    }
}
