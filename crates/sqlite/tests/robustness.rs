//! No input makes the parsers panic, and whatever they return is
//! self-consistent.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;

use litefs_sqlite::{
    read_journal, scan_wal, DbHeader, JournalHeader, WalFrameHeader, WalHeader, WAL_VERSION,
};
use proptest::prelude::*;

fn file_with(data: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f
}

/// A valid WAL (512-byte pages) followed by `frames` of arbitrary bytes, with
/// some frame headers made plausible (right salts and valid checksums) so the
/// scanner gets past the first frame.
fn wal_with(frames: &[(u32, u32, Vec<u8>)], chain: bool, big_endian: bool) -> (WalHeader, Vec<u8>) {
    let mut h = WalHeader {
        big_endian_checksums: big_endian,
        version: WAL_VERSION,
        page_size: 512,
        checkpoint_seq: 0,
        salt1: 11,
        salt2: 22,
        checksum: (0, 0),
    };
    h.checksum = h.compute_checksum();
    let mut out = h.encode().to_vec();
    let mut c = h.checksum;
    for (pgno, commit, page) in frames {
        let mut page = page.clone();
        page.resize(512, 0);
        let mut fh = WalFrameHeader {
            pgno: *pgno,
            commit: *commit,
            salt1: 11,
            salt2: 22,
            checksum: (0, 0),
        };
        if chain {
            fh.checksum = fh.compute_checksum(big_endian, &page, c);
            c = fh.checksum;
        }
        out.extend_from_slice(&fh.encode());
        out.extend_from_slice(&page);
    }
    (h, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn headers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = DbHeader::parse(&b);
        let _ = WalHeader::parse(&b);
        let _ = WalFrameHeader::parse(&b);
        let _ = JournalHeader::parse(&b);
        let mut db = b.clone();
        db.resize(100, 0);
        db[..16].copy_from_slice(b"SQLite format 3\0");
        if let Ok(h) = DbHeader::parse(&db) {
            prop_assert!(h.page_size.is_power_of_two() && (512..=65536).contains(&h.page_size));
        }
    }

    #[test]
    fn scan_wal_is_consistent(
        frames in proptest::collection::vec((0u32..8, prop_oneof![Just(0u32), 0u32..10], proptest::collection::vec(any::<u8>(), 0..64)), 0..12),
        chain in any::<bool>(),
        be in any::<bool>(),
        cut in any::<u16>(),
        flip in any::<(u16, u8)>(),
        limit in proptest::option::of(0u64..8000),
    ) {
        let (h, mut data) = wal_with(&frames, chain, be);
        if !data.is_empty() {
            let at = flip.0 as usize % data.len();
            if at >= 32 { data[at] ^= flip.1; }
            let keep = data.len() - (cut as usize % 600).min(data.len() - 32);
            data.truncate(keep);
        }
        let f = file_with(&data);
        let txns = scan_wal(&f, &h, 32, h.checksum, limit).unwrap();
        let mut start = 32;
        for t in &txns {
            prop_assert_eq!(t.start, start);
            prop_assert!(t.end <= data.len() as u64);
            prop_assert!(limit.is_none_or(|l| t.end <= l));
            prop_assert!(t.commit != 0);
            prop_assert!(t.pages.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(t.pages.iter().all(|&(p, o)| p != 0 && o > t.start && o < t.end));
            // Resuming after it gives the remaining transactions.
            let rest = scan_wal(&f, &h, t.end, t.checksum, limit).unwrap();
            prop_assert_eq!(rest.len(), txns.iter().filter(|x| x.start >= t.end).count());
            start = t.end;
        }
    }

    #[test]
    fn read_journal_is_consistent(
        nrecs in proptest::collection::vec(prop_oneof![Just(0u32), 0u32..4, Just(u32::MAX), any::<u32>()], 1..4),
        sector in prop_oneof![Just(512u32), Just(1024), Just(32), any::<u32>()],
        page_size in prop_oneof![Just(512u32), Just(0), any::<u32>()],
        initial in 0u32..10,
        body in proptest::collection::vec(any::<u8>(), 0..6000),
        len_delta in -100i64..100,
    ) {
        let mut data = Vec::new();
        for (i, nrec) in nrecs.iter().enumerate() {
            let h = JournalHeader { nrec: *nrec, nonce: 5, initial_pages: initial, sector_size: sector, page_size };
            data.extend_from_slice(&h.encode());
            let part = body.len() / nrecs.len();
            data.extend_from_slice(&body[i * part..(i + 1) * part]);
        }
        let f = file_with(&data);
        let len = (data.len() as i64 + len_delta).max(0) as u64;
        match read_journal(&f, len, 512) {
            Ok(Some(j)) => {
                prop_assert_eq!(j.initial_pages, initial);
                prop_assert!(j.headers >= 1);
                prop_assert!(j.pgnos.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(j.pgnos.iter().all(|&p| p >= 1 && p <= initial));
            }
            Ok(None) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
