//! Decodes arbitrary bytes as an LTX file. The decoder must never panic,
//! hang or allocate without bound, whatever the input.
//!
//! Input layout: byte 0 selects the version (even = v1, odd = v3); the rest
//! is the file.
//!
//! Beyond "no panic", two oracles run on files the decoder accepts:
//! * `verify` (the one-call path) must agree with the page-by-page path;
//! * an accepted uncompressed v1 file with zero reserved header bytes must
//!   re-encode byte for byte (v1 raw has exactly one encoding).

#![no_main]

use libfuzzer_sys::fuzz_target;
use litefs_ltx::{verify, Decoder, Encoder, Format, Version, HEADER_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, file)) = data.split_first() else {
        return;
    };
    let version = if sel & 1 == 0 { Version::V1 } else { Version::V3 };

    let Ok(mut dec) = Decoder::new(file, version) else {
        return;
    };
    let header = *dec.header();
    let mut buf = vec![0u8; header.page_size as usize];
    let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
    loop {
        match dec.next_page(&mut buf) {
            Ok(Some(info)) => {
                assert_eq!(info.checksum, litefs_ltx::page_checksum(info.pgno, &buf));
                // Keep pages only while cheap: they feed the re-encode oracle.
                if pages.len() < 64 {
                    pages.push((info.pgno, buf.clone()));
                }
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    // After the end of pages, next_page keeps returning None.
    assert!(matches!(dec.next_page(&mut buf), Ok(None)));
    let Ok(trailer) = dec.finish() else {
        return;
    };

    // The one-call path must reach the same verdict.
    let (h2, t2) = verify(file, version).expect("verify rejects a file the Decoder accepted");
    assert_eq!(h2, header);
    assert_eq!(t2, trailer);

    // v1 raw has a single encoding: re-encoding must reproduce the input.
    let reserved_zero = file[80..HEADER_SIZE].iter().all(|&b| b == 0);
    if version == Version::V1 && !header.compressed() && reserved_zero && pages.len() < 64 {
        let mut enc = Encoder::new(Vec::new(), header, Format::V1)
            .expect("encoder rejects a header the decoder accepted");
        for (pgno, data) in &pages {
            enc.encode_page(*pgno, data)
                .expect("encoder rejects a page the decoder accepted");
        }
        let (out, t3) = enc
            .finish(trailer.post_apply_checksum)
            .expect("encoder rejects a trailer the decoder accepted");
        assert_eq!(t3, trailer);
        assert!(out == file, "v1 raw re-encoding differs from the accepted input");
    }
});
