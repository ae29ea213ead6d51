//! Rollback journal (`-journal` file): headers, records and a reader that
//! mirrors SQLite's hot-journal playback (`pager_playback` in `pager.c`).
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! segment header, at offset 0 and then at sector-size-aligned offsets,
//! occupying a whole sector:
//!   0  magic  d9 d5 05 f9 20 a1 63 d7
//!   8  nRec: number of records in this segment (0xFFFFFFFF: "the rest of
//!      the file", written in no-sync mode)
//!  12  checksum nonce (random, fresh for every segment)
//!  16  database size in pages before the transaction
//!  20  sector size (segment header size; first header only)
//!  24  page size (first header only; 0 = pre-3.5.8, use the database's)
//! record (4 + page_size + 4 bytes):
//!   0  page number
//!   4  original page content
//!   4 + page_size  checksum = nonce + page[page_size - 200] + page[page_size - 400] + ...
//!      (every 200th byte counting down from page_size - 200 while the index is > 0)
//! ```
//!
//! How SQLite writes it (verified against SQLite 3.40 on Linux):
//!
//! * With `synchronous=NORMAL`/`FULL` a segment header is first written with
//!   a **zeroed magic and nRec = 0**; the magic and the real nRec are written
//!   only when the journal is synced, which always happens before any page of
//!   the database file is overwritten (at commit, or when the page cache
//!   spills). A spill then starts a new segment at the next sector boundary,
//!   again with a zeroed magic. A journal captured mid-transaction therefore
//!   commonly ends with a zero-magic segment whose records have not been
//!   written to the database yet — and a journal whose *first* header still
//!   has a zero magic is not hot at all (the database file is untouched).
//! * With `synchronous=OFF` (no-sync) the first header has the magic and
//!   nRec = 0xFFFFFFFF from the start, there is a single segment, and the
//!   record count is computed from the file size.
//! * At commit the journal is deleted (`DELETE`), truncated to 0 bytes
//!   (`TRUNCATE`) or has its first 28 bytes zeroed (`PERSIST`; stale segments
//!   and records remain behind the zeroed header).

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use crate::header::lock_page_pgno;
use crate::io::{be32, read_full_at};
use crate::{is_valid_page_size, SqliteError};

/// The 8-byte magic at the start of every journal segment header.
pub const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// Number of meaningful bytes in a journal segment header (the rest of the
/// sector is padding).
pub const JOURNAL_HEADER_SIZE: usize = 28;

/// nRec value meaning "all remaining records in the file" (no-sync mode).
pub const JOURNAL_NREC_NOSYNC: u32 = 0xFFFF_FFFF;

/// Largest sector size SQLite accepts in a journal header.
const MAX_SECTOR_SIZE: u32 = 0x10000;

/// Minimum sector size SQLite accepts in a journal header.
const MIN_SECTOR_SIZE: u32 = 32;

/// Target size of one positional read of journal records.
const READ_CHUNK_BYTES: u64 = 1 << 20;

/// A rollback journal segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalHeader {
    /// Number of records in this segment; [`JOURNAL_NREC_NOSYNC`] means "compute
    /// from the file size".
    pub nrec: u32,
    /// Checksum nonce (initial value) for this segment's records.
    pub nonce: u32,
    /// Database size in pages before the transaction started.
    pub initial_pages: u32,
    /// Sector size: the size of each segment header, and the alignment of
    /// segment headers. Only meaningful in the first header.
    pub sector_size: u32,
    /// Page size of the records. Only meaningful in the first header; 0 in
    /// journals written by SQLite before 3.5.8.
    pub page_size: u32,
}

impl JournalHeader {
    /// Parses a segment header from the first 28 bytes of `b`, checking only
    /// the length and the magic. Sector and page sizes are not validated here
    /// because SQLite only reads them from the first header (see
    /// [`JournalHeader::sizes_valid`]).
    pub fn parse(b: &[u8]) -> Result<JournalHeader, SqliteError> {
        if b.len() < JOURNAL_HEADER_SIZE {
            return Err(SqliteError::Truncated {
                what: "journal header",
                need: JOURNAL_HEADER_SIZE,
                got: b.len(),
            });
        }
        if b.get(..8) != Some(JOURNAL_MAGIC.as_slice()) {
            return Err(SqliteError::BadJournalMagic);
        }
        Ok(JournalHeader {
            nrec: be32(b, 8),
            nonce: be32(b, 12),
            initial_pages: be32(b, 16),
            sector_size: be32(b, 20),
            page_size: be32(b, 24),
        })
    }

    /// Encodes the 28 meaningful header bytes (magic included).
    pub fn encode(&self) -> [u8; JOURNAL_HEADER_SIZE] {
        let mut b = [0u8; JOURNAL_HEADER_SIZE];
        let (magic, rest) = b.split_at_mut(8);
        magic.copy_from_slice(&JOURNAL_MAGIC);
        let words = [
            self.nrec,
            self.nonce,
            self.initial_pages,
            self.sector_size,
            self.page_size,
        ];
        for (dst, w) in rest.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
        b
    }

    /// True when the sector size is a power of two in 32..=65536 and the page
    /// size is 0 (legacy) or a valid page size: SQLite's sanity check on the
    /// first header. A first header failing it was torn by a crash and the
    /// journal is ignored.
    pub fn sizes_valid(&self) -> bool {
        let sector_ok = (MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&self.sector_size)
            && self.sector_size.is_power_of_two();
        sector_ok && (self.page_size == 0 || is_valid_page_size(self.page_size))
    }

    /// SQLite's record checksum (`pager_cksum`): this segment's nonce plus
    /// the bytes of `page` at offsets `len - 200`, `len - 400`, … while the
    /// offset is greater than 0 (byte 0 is never sampled), wrapping.
    pub fn record_checksum(&self, page: &[u8]) -> u32 {
        let mut sum = self.nonce;
        let mut i = page.len() as i64 - 200;
        while i > 0 {
            sum = sum.wrapping_add(u32::from(page.get(i as usize).copied().unwrap_or(0)));
            i -= 200;
        }
        sum
    }
}

/// Result of [`read_journal`]: what a hot-journal playback would restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPages {
    /// Database size in pages before the transaction (from the first
    /// header): playback truncates the database to this size.
    pub initial_pages: u32,
    /// Pages (numbered `1..=initial_pages`) the journal holds valid original
    /// content for, sorted and deduplicated. This is a subset of the pages
    /// the transaction writes: reused freelist leaves and pages past
    /// `initial_pages` are written without being journaled.
    pub pgnos: Vec<u32>,
    /// Number of valid segment headers read.
    pub headers: usize,
    /// Page size the records were read with (the first header's, or the
    /// caller's when the header holds 0).
    pub page_size: u32,
    /// Sector size from the first header (segment alignment).
    pub sector_size: u32,
}

/// Reads a rollback journal the way SQLite's hot-journal playback would and
/// returns the initial database size and the set of pages it holds original
/// content for. See [`read_journal_with`] for the exact rules.
pub fn read_journal<F: FileExt>(
    file: &F,
    file_len: u64,
    page_size: u32,
) -> Result<Option<JournalPages>, SqliteError> {
    read_journal_with(file, file_len, page_size, |_, _| Ok(()))
}

/// Like [`read_journal`], and also calls `on_page(pgno, original_content)` for
/// each page the journal would restore, in journal order, the first time the
/// page is seen (SQLite never journals a page twice in one transaction; if a
/// corrupt journal did, the first copy is the original content).
///
/// Rules, mirroring `pager_playback` / `readJournalHdr` /
/// `pager_playback_one_page` in SQLite's `pager.c` for a hot journal:
///
/// * `Ok(None)` — no hot journal — when the file is shorter than a header,
///   the first 8 bytes are not [`JOURNAL_MAGIC`] (empty, truncated, zeroed by
///   `PERSIST`, or not yet synced), the first header's sector/page sizes are
///   invalid ([`JournalHeader::sizes_valid`]), or the file is shorter than
///   one sector.
/// * Records use the first header's page size (`page_size` is only used when
///   that field is 0, for pre-3.5.8 journals). Segment `k+1`'s header is at
///   the first sector boundary after segment `k`'s records.
/// * nRec = [`JOURNAL_NREC_NOSYNC`] means "every whole record up to end of
///   file"; nRec = 0 means the segment has no records (for a *hot* journal
///   SQLite never infers a count from the file size: unsynced records were
///   never written to the database).
/// * The scan ends (keeping what was found before) at: a record extending past
///   `file_len`; a record with page number 0 or the lock page
///   ([`lock_page_pgno`]); a record whose checksum fails; a segment header
///   position with less than one sector left in the file; or a segment header
///   without the magic.
/// * Records for pages above `initial_pages` are skipped without checking
///   their checksum (playback truncates those pages away anyway).
///
/// Super-journals (multi-database transactions) are not interpreted: a
/// super-journal name record ends the scan like any record for the lock page.
pub fn read_journal_with<F, C>(
    file: &F,
    file_len: u64,
    page_size: u32,
    mut on_page: C,
) -> Result<Option<JournalPages>, SqliteError>
where
    F: FileExt + ?Sized,
    C: FnMut(u32, &[u8]) -> std::io::Result<()>,
{
    let mut hbuf = [0u8; JOURNAL_HEADER_SIZE];
    if file_len < JOURNAL_HEADER_SIZE as u64
        || read_full_at(file, &mut hbuf, 0)? < JOURNAL_HEADER_SIZE
    {
        return Ok(None);
    }
    let Ok(first) = JournalHeader::parse(&hbuf) else {
        return Ok(None);
    };
    if !first.sizes_valid() {
        return Ok(None);
    }
    let sector = u64::from(first.sector_size);
    if file_len < sector {
        return Ok(None);
    }
    let page_size = match first.page_size {
        0 if is_valid_page_size(page_size) => page_size,
        0 => return Err(SqliteError::InvalidPageSize(page_size)),
        p => p,
    };
    let lock_pgno = lock_page_pgno(page_size);
    let page_len = page_size as usize;
    let rec_size = 8 + u64::from(page_size);
    let recs_per_chunk = (READ_CHUNK_BYTES / rec_size).max(1);
    let mut buf: Vec<u8> = Vec::new();

    let mut out = JournalPages {
        initial_pages: first.initial_pages,
        pgnos: Vec::new(),
        headers: 1,
        page_size,
        sector_size: first.sector_size,
    };
    let mut seen: HashSet<u32> = HashSet::new();
    let mut hdr = first;
    let mut off = sector; // first record of the current segment

    'segments: loop {
        let mut remaining = if hdr.nrec == JOURNAL_NREC_NOSYNC {
            file_len.saturating_sub(off) / rec_size
        } else {
            u64::from(hdr.nrec)
        };
        while remaining > 0 {
            let n = remaining
                .min(recs_per_chunk)
                .min(file_len.saturating_sub(off) / rec_size);
            if n == 0 {
                break 'segments; // partial record at end of file
            }
            let want = (n * rec_size) as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let Some(dst) = buf.get_mut(..want) else {
                break 'segments;
            };
            let got = read_full_at(file, dst, off)?;
            let whole = got / rec_size as usize;
            for rec in dst
                .get(..whole * rec_size as usize)
                .unwrap_or_default()
                .chunks_exact(rec_size as usize)
            {
                let pgno = be32(rec, 0);
                let page = rec.get(4..4 + page_len).unwrap_or_default();
                let stored = be32(rec, 4 + page_len);
                if pgno == 0 || pgno == lock_pgno {
                    break 'segments;
                }
                if pgno <= out.initial_pages {
                    if hdr.record_checksum(page) != stored {
                        break 'segments;
                    }
                    if seen.insert(pgno) {
                        on_page(pgno, page)?;
                    }
                }
            }
            if (whole as u64) < n {
                break 'segments; // file shrank underneath us
            }
            off += n * rec_size;
            remaining -= n;
        }

        // Next segment header: first sector boundary at or after `off`.
        off = off.div_ceil(sector) * sector;
        if off.saturating_add(sector) > file_len {
            break;
        }
        if read_full_at(file, &mut hbuf, off)? < JOURNAL_HEADER_SIZE {
            break;
        }
        match JournalHeader::parse(&hbuf) {
            Ok(h) => hdr = h,
            Err(_) => break,
        }
        out.headers += 1;
        off += sector;
    }

    out.pgnos = seen.into_iter().collect();
    out.pgnos.sort_unstable();
    Ok(Some(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(data: &[u8]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    fn page(pgno: u32, size: usize) -> Vec<u8> {
        (0..size)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(pgno) as u8)
            .collect()
    }

    /// Builds a journal: each segment is (nrec field, pgnos).
    fn build(page_size: u32, sector: u32, initial: u32, segs: &[(u32, &[u32])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (nrec, pgnos)) in segs.iter().enumerate() {
            let pad = out.len().div_ceil(sector as usize) * sector as usize;
            out.resize(pad, 0);
            let h = JournalHeader {
                nrec: *nrec,
                nonce: 1000 + i as u32,
                initial_pages: initial,
                sector_size: sector,
                page_size,
            };
            out.extend_from_slice(&h.encode());
            out.resize(pad + sector as usize, 0);
            for &p in pgnos.iter() {
                let data = page(p, page_size as usize);
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(&h.record_checksum(&data).to_be_bytes());
            }
        }
        out
    }

    fn read(data: &[u8], page_size: u32) -> Option<JournalPages> {
        read_journal(&file_with(data), data.len() as u64, page_size).unwrap()
    }

    #[test]
    fn checksum_samples_every_200th_byte_from_the_end() {
        let h = JournalHeader {
            nrec: 0,
            nonce: 7,
            initial_pages: 0,
            sector_size: 512,
            page_size: 512,
        };
        let mut p = vec![0u8; 512];
        assert_eq!(h.record_checksum(&p), 7);
        p[312] = 1; // 512 - 200
        p[112] = 2; // 512 - 400
        p[0] = 100; // never sampled
        p[511] = 100;
        assert_eq!(h.record_checksum(&p), 10);
        let h = JournalHeader {
            nonce: u32::MAX,
            ..h
        };
        assert_eq!(h.record_checksum(&p), 2);
        // 4096: offsets 3896, 3696, ..., 96 -> 20 samples.
        let h = JournalHeader { nonce: 0, ..h };
        assert_eq!(h.record_checksum(&[1u8; 4096]), 20);
        // 600: 400, 200 (offset 0 excluded).
        assert_eq!(h.record_checksum(&[1u8; 600]), 2);
    }

    #[test]
    fn multi_segment() {
        let d = build(1024, 512, 10, &[(2, &[3, 1]), (1, &[7]), (3, &[2, 3, 11])]);
        let j = read(&d, 1024).unwrap();
        assert_eq!(j.initial_pages, 10);
        assert_eq!(j.headers, 3);
        // 11 > initial pages: skipped; 3 deduplicated.
        assert_eq!(j.pgnos, vec![1, 2, 3, 7]);
        assert_eq!(j.page_size, 1024);
        assert_eq!(j.sector_size, 512);
    }

    #[test]
    fn first_occurrence_is_reported() {
        let d = build(512, 512, 10, &[(1, &[3]), (1, &[3])]);
        let mut calls = Vec::new();
        read_journal_with(&file_with(&d), d.len() as u64, 512, |p, data| {
            calls.push((p, data.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, vec![(3, page(3, 512))]);
    }

    #[test]
    fn nosync_counts_from_file_size() {
        let mut d = build(512, 512, 10, &[(JOURNAL_NREC_NOSYNC, &[1, 2, 3])]);
        assert_eq!(read(&d, 512).unwrap().pgnos, vec![1, 2, 3]);
        // Partial trailing record is ignored.
        d.extend_from_slice(&[0, 0, 0, 4, 1, 2, 3]);
        assert_eq!(read(&d, 512).unwrap().pgnos, vec![1, 2, 3]);
    }

    #[test]
    fn nrec_zero_means_no_records_in_hot_journal() {
        let d = build(512, 512, 10, &[(0, &[1, 2, 3])]);
        let j = read(&d, 512).unwrap();
        assert!(j.pgnos.is_empty());
        assert_eq!(j.headers, 1);
        // The records are where a second header would be: no magic there.
        let d = build(512, 512, 10, &[(1, &[1]), (0, &[2, 3])]);
        assert_eq!(read(&d, 512).unwrap().pgnos, vec![1]);
    }

    #[test]
    fn stops_at_bad_checksum_zero_pgno_lock_page_and_eof() {
        let d = build(512, 512, 10, &[(3, &[1, 2, 3]), (1, &[4])]);
        let rec = 520;
        // Corrupt a sampled byte of record 2 (pgno 2).
        let mut c = d.clone();
        c[512 + rec + 4 + 312] ^= 0xff;
        assert_eq!(read(&c, 512).unwrap().pgnos, vec![1]);
        // A non-sampled byte goes unnoticed (SQLite's checksum is sparse).
        let mut c = d.clone();
        c[512 + rec + 4 + 313] ^= 0xff;
        assert_eq!(read(&c, 512).unwrap().pgnos, vec![1, 2, 3, 4]);
        // Zero pgno ends everything, including later segments.
        let mut c = d.clone();
        c[512 + rec..512 + rec + 4].copy_from_slice(&[0; 4]);
        assert_eq!(read(&c, 512).unwrap().pgnos, vec![1]);
        // Lock page.
        let mut c = d.clone();
        c[512 + rec..512 + rec + 4].copy_from_slice(&lock_page_pgno(512).to_be_bytes());
        assert_eq!(read(&c, 512).unwrap().pgnos, vec![1]);
        // Truncation inside record 3.
        assert_eq!(
            read(&d[..512 + 2 * rec + 100], 512).unwrap().pgnos,
            vec![1, 2]
        );
        // Truncation inside the second header's sector.
        let second = (512 + 3 * rec).div_ceil(512) * 512;
        assert_eq!(read(&d[..second + 100], 512).unwrap().headers, 1);
        // Second header magic damaged.
        let mut c = d.clone();
        c[second] = 0;
        let j = read(&c, 512).unwrap();
        assert_eq!((j.headers, j.pgnos), (1, vec![1, 2, 3]));
    }

    #[test]
    fn not_hot() {
        assert_eq!(read(&[], 4096), None);
        assert_eq!(read(&[0; 4096], 4096), None);
        let d = build(512, 512, 10, &[(1, &[1])]);
        assert_eq!(read(&d[..27], 512), None);
        assert_eq!(read(&d[..511], 512), None); // less than a sector
        let mut z = d.clone();
        z[..28].fill(0); // PERSIST-mode commit
        assert_eq!(read(&z, 512), None);
        for (sector, page) in [
            (16, 512),
            (513, 512),
            (1 << 17, 512),
            (512, 1000),
            (512, 1 << 17),
        ] {
            let mut c = d.clone();
            c[20..24].copy_from_slice(&u32::to_be_bytes(sector));
            c[24..28].copy_from_slice(&u32::to_be_bytes(page));
            assert_eq!(read(&c, 512), None, "{sector} {page}");
        }
    }

    #[test]
    fn legacy_zero_page_size_uses_callers() {
        let mut d = build(512, 512, 10, &[(1, &[1])]);
        d[24..28].fill(0);
        let j = read(&d, 512).unwrap();
        assert_eq!((j.page_size, j.pgnos), (512, vec![1]));
        let f = file_with(&d);
        assert!(matches!(
            read_journal(&f, d.len() as u64, 3),
            Err(SqliteError::InvalidPageSize(3))
        ));
    }

    #[test]
    fn header_parse() {
        assert!(matches!(
            JournalHeader::parse(&[0; 27]),
            Err(SqliteError::Truncated { .. })
        ));
        assert!(matches!(
            JournalHeader::parse(&[0; 28]),
            Err(SqliteError::BadJournalMagic)
        ));
        let h = JournalHeader {
            nrec: 1,
            nonce: 2,
            initial_pages: 3,
            sector_size: 512,
            page_size: 4096,
        };
        assert_eq!(JournalHeader::parse(&h.encode()).unwrap(), h);
        assert!(h.sizes_valid());
    }
}
