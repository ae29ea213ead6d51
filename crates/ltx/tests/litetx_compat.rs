//! Cross-checks against `litetx` (superfly/ltx-rs), an independent v1
//! implementation that interoperates with Go's ltx v0.3.x. It has no WAL or
//! node ID fields and no deletion files, so those stay zero here.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use litefs_ltx::*;
use std::time::{Duration, UNIX_EPOCH};

fn their_header(h: &Header) -> litetx::Header {
    let mut flags = litetx::HeaderFlags::empty();
    if h.flags & FLAG_COMPRESS_LZ4 != 0 {
        flags |= litetx::HeaderFlags::COMPRESS_LZ4;
    }
    litetx::Header {
        flags,
        page_size: litetx::PageSize::new(h.page_size).unwrap(),
        commit: litetx::PageNum::new(h.commit).unwrap(),
        min_txid: litetx::TXID::new(h.min_txid.0).unwrap(),
        max_txid: litetx::TXID::new(h.max_txid.0).unwrap(),
        timestamp: UNIX_EPOCH + Duration::from_millis(h.timestamp as u64),
        pre_apply_checksum: (h.pre_apply_checksum.0 != 0)
            .then(|| litetx::Checksum::new(h.pre_apply_checksum.0)),
    }
}

/// Files for the comparison: snapshots and incrementals, raw and LZ4, at
/// several page sizes (no WAL fields or node ID, which litetx lacks).
type Case = (Header, Vec<(u32, Vec<u8>)>, Checksum);

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for flags in [0, FLAG_COMPRESS_LZ4] {
        for page_size in [512u32, 4096, 65536] {
            let pages: Vec<(u32, Vec<u8>)> = (1..=6).map(|p| (p, page(p, page_size, 11))).collect();
            let post = db_checksum(pages.iter().map(|(p, d)| (*p, d.as_slice())));
            let h = Header {
                flags,
                ..Header::snapshot(page_size, 6, Txid(1), 1_700_000_000_000)
            };
            out.push((h, pages, post));
            let pages: Vec<(u32, Vec<u8>)> = [2u32, 5, 9]
                .iter()
                .map(|&p| (p, page(p, page_size, 12)))
                .collect();
            let h = Header {
                flags,
                page_size,
                commit: 9,
                min_txid: Txid(2),
                max_txid: Txid(3),
                timestamp: 1_700_000_000_500,
                pre_apply_checksum: post,
                ..Header::default()
            };
            out.push((h, pages, Checksum(CHECKSUM_FLAG | 0xabc)));
        }
    }
    out
}

#[test]
fn litetx_decodes_our_v1_files() {
    for (h, pages, post) in cases() {
        let mut enc = Encoder::new(Vec::new(), h, Format::V1).unwrap();
        for (p, d) in &pages {
            enc.encode_page(*p, d).unwrap();
        }
        let (bytes, trailer) = enc.finish(post).unwrap();

        let (mut dec, th) = litetx::Decoder::new(&bytes[..]).unwrap();
        assert_eq!(th, their_header(&h));
        let mut buf = vec![0u8; h.page_size as usize];
        let mut got = Vec::new();
        while let Some(p) = dec.decode_page(&mut buf).unwrap() {
            got.push((p.into_inner(), buf.clone()));
        }
        assert_eq!(got, pages);
        let t = dec.finish().unwrap();
        assert_eq!(
            t.post_apply_checksum.into_inner(),
            trailer.post_apply_checksum.0
        );
        assert_eq!(t.file_checksum.into_inner(), trailer.file_checksum.0);
    }
}

#[test]
fn we_decode_litetx_v1_files_and_raw_bytes_are_identical() {
    for (h, pages, post) in cases() {
        let mut theirs = Vec::new();
        let mut enc = litetx::Encoder::new(&mut theirs, &their_header(&h)).unwrap();
        for (p, d) in &pages {
            enc.encode_page(litetx::PageNum::new(*p).unwrap(), d)
                .unwrap();
        }
        let their_trailer = enc.finish(litetx::Checksum::new(post.0)).unwrap();

        let (got_h, got_pages, t) = decode_all(&theirs, Version::V1).unwrap();
        assert_eq!(got_h, h);
        assert_eq!(got_pages, pages);
        assert_eq!(t.file_checksum.0, their_trailer.file_checksum.into_inner());

        // Uncompressed output is fully determined by the format: byte-identical.
        if h.flags & FLAG_COMPRESS_LZ4 == 0 {
            let mut enc = Encoder::new(Vec::new(), h, Format::V1).unwrap();
            for (p, d) in &pages {
                enc.encode_page(*p, d).unwrap();
            }
            let (ours, _) = enc.finish(post).unwrap();
            assert_eq!(ours, theirs, "page size {}", h.page_size);
        }
    }
}
