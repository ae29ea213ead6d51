//! Property tests: random page sets, page sizes and encodings round-trip;
//! applying decoded files to a model database keeps the rolling checksum
//! equal to a full recomputation; random bytes never panic the decoder.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use litefs_ltx::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn encoding() -> impl Strategy<Value = (Format, u32)> {
    prop::sample::select(ENCODINGS.to_vec())
}

fn page_size() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![512u32, 1024, 2048, 4096, 8192, 65536])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any ascending page subset, in any encoding, decodes to what was put in.
    #[test]
    fn arbitrary_page_sets_round_trip(
        (format, flags) in encoding(),
        page_size in page_size(),
        pgnos in prop::collection::btree_set(1u32..200, 0..24),
        seed in any::<u64>(),
        txid in 2u64..1_000_000,
        span in 0u64..5,
    ) {
        let commit = pgnos.iter().next_back().copied().unwrap_or(1).max(1) + (seed % 3) as u32;
        let pages: Vec<(u32, Vec<u8>)> = pgnos.iter().map(|&p| (p, page(p, page_size, seed))).collect();
        let b = build(format, flags, page_size, commit, (txid, txid + span), Checksum(CHECKSUM_FLAG | seed), Checksum(CHECKSUM_FLAG | !seed), &pages);
        let (h, got, t) = decode_all(&b.bytes, format.version()).unwrap();
        prop_assert_eq!(h, b.header);
        prop_assert_eq!(t, b.trailer);
        prop_assert_eq!(got, pages);
    }

    /// A random history of commits applied to a model database: each file's
    /// post-apply checksum, maintained incrementally from page checksums the
    /// decoder returns, equals a full recomputation over the model.
    #[test]
    fn incremental_checksums_match_full_scans(
        (format, flags) in encoding().prop_filter("checksums tracked", |(_, f)| f & FLAG_NO_CHECKSUM == 0),
        page_size in prop::sample::select(vec![512u32, 4096]),
        steps in prop::collection::vec((prop::collection::btree_set(1u32..40, 1..8), 1u32..45, any::<u64>()), 1..8),
    ) {
        let mut db: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut ck = Checksum::EMPTY;
        // Start from a snapshot of 10 pages.
        let snap = snapshot(format, flags, page_size, 10, 0);
        let (_, pages, t) = decode_all(&snap.bytes, format.version()).unwrap();
        for (p, d) in pages { ck = ck.toggle(page_checksum(p, &d)); db.insert(p, d); }
        prop_assert_eq!(ck, t.post_apply_checksum);
        let mut txid = 1;
        for (pgnos, commit, seed) in steps {
            let commit = commit.max(*pgnos.iter().next_back().unwrap());
            // Pages past the new commit are truncated away.
            let mut post = ck;
            let gone: Vec<u32> = db.range(commit + 1..).map(|(p, _)| *p).collect();
            for p in &gone { post = post.toggle(page_checksum(*p, &db[p])); }
            let pages: Vec<(u32, Vec<u8>)> = pgnos.iter().map(|&p| (p, page(p, page_size, seed))).collect();
            for (p, d) in &pages {
                if let Some(old) = db.get(p) { post = post.toggle(page_checksum(*p, old)); }
                post = post.toggle(page_checksum(*p, d));
            }
            txid += 1;
            let b = build(format, flags, page_size, commit, (txid, txid), ck, post, &pages);
            let (h, got, t) = decode_all(&b.bytes, format.version()).unwrap();
            prop_assert_eq!(h.pre_apply_checksum, ck);
            // Apply as the store does: truncate, then write the file's pages,
            // moving the checksum one page at a time.
            let mut inc = ck;
            for p in gone {
                let old = db.remove(&p).unwrap();
                inc = inc.toggle(page_checksum(p, &old));
            }
            for (p, d) in got {
                if let Some(old) = db.insert(p, d.clone()) { inc = inc.toggle(page_checksum(p, &old)); }
                inc = inc.toggle(page_checksum(p, &d));
            }
            let full = db_checksum(db.iter().map(|(p, d)| (*p, d.as_slice())));
            prop_assert_eq!(inc, full);
            prop_assert_eq!(t.post_apply_checksum, full);
            ck = full;
        }
    }

    /// Arbitrary bytes (after a valid-looking magic) never panic the decoder.
    #[test]
    fn random_bytes_never_panic(version in prop::sample::select(vec![Version::V1, Version::V3]), tail in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut f = b"LTX1".to_vec();
        f.extend_from_slice(&tail);
        if let Ok(mut dec) = Decoder::new(&f[..], version) {
            let mut buf = vec![0u8; dec.header().page_size as usize];
            loop {
                match dec.next_page(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => { let _ = dec.finish(); break; }
                    Err(_) => break,
                }
            }
        }
    }

    /// Truncating any valid file anywhere is detected.
    #[test]
    fn truncation_is_always_detected((format, flags) in encoding(), commit in 1u32..12, seed in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let s = snapshot(format, flags, 512, commit, seed);
        let len = cut.index(s.bytes.len());
        prop_assert!(verify(&s.bytes[..len], format.version()).is_err());
    }
}
