//! Encoder/decoder tests: known answers, round trips in every encoding,
//! the lock page, deletion files, and rejection of every corruption.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use litefs_ltx::*;

/// A v1 raw file built byte by byte from the reference layout, with the
/// file checksum computed by the table-driven `crc` crate: our encoder must
/// produce exactly these bytes.
#[test]
fn known_answer_v1_raw_incremental() {
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
    let page_size = 512u32;
    let p2: Vec<u8> = (0..512u32).map(|i| (i % 251) as u8).collect();
    let p5 = vec![0xA5u8; 512];
    let pre = 0x8000_0000_1234_5678u64;
    let post = 0x8000_0000_8765_4321u64;

    let mut want = Vec::new();
    want.extend_from_slice(b"LTX1");
    want.extend_from_slice(&0u32.to_be_bytes()); // flags
    want.extend_from_slice(&page_size.to_be_bytes());
    want.extend_from_slice(&9u32.to_be_bytes()); // commit
    want.extend_from_slice(&7u64.to_be_bytes()); // min txid
    want.extend_from_slice(&8u64.to_be_bytes()); // max txid
    want.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    want.extend_from_slice(&pre.to_be_bytes());
    want.extend_from_slice(&4152i64.to_be_bytes()); // wal offset
    want.extend_from_slice(&1040i64.to_be_bytes()); // wal size
    want.extend_from_slice(&0xAABB_CCDDu32.to_be_bytes());
    want.extend_from_slice(&0x1122_3344u32.to_be_bytes());
    want.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    want.extend_from_slice(&[0u8; 20]);
    assert_eq!(want.len(), 100);
    for (pgno, data) in [(2u32, &p2), (5, &p5)] {
        want.extend_from_slice(&pgno.to_be_bytes());
        want.extend_from_slice(data);
    }
    want.extend_from_slice(&[0u8; 4]);
    want.extend_from_slice(&post.to_be_bytes());
    let file_ck = (1u64 << 63) | crc.checksum(&want);
    want.extend_from_slice(&file_ck.to_be_bytes());

    let header = Header {
        flags: 0,
        page_size,
        commit: 9,
        min_txid: Txid(7),
        max_txid: Txid(8),
        timestamp: 1_700_000_000_000,
        pre_apply_checksum: Checksum(pre),
        wal_offset: 4152,
        wal_size: 1040,
        wal_salt1: 0xAABB_CCDD,
        wal_salt2: 0x1122_3344,
        node_id: 0x0102_0304_0506_0708,
    };
    let mut enc = Encoder::new(Vec::new(), header, Format::V1).unwrap();
    enc.encode_page(2, &p2).unwrap();
    enc.encode_page(5, &p5).unwrap();
    let (got, trailer) = enc.finish(Checksum(post)).unwrap();
    assert_eq!(got, want);
    assert_eq!(trailer.file_checksum, Checksum(file_ck));

    let (h, pages, t) = decode_all(&want, Version::V1).unwrap();
    assert_eq!(h, header);
    assert_eq!(pages, vec![(2, p2), (5, p5)]);
    assert_eq!(t, trailer);
}

/// The page and database checksums by their definition, computed with the
/// table-driven `crc` crate, against ours.
#[test]
fn known_answer_checksums() {
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
    let pages: Vec<(u32, Vec<u8>)> = (1..=5).map(|p| (p, page(p, 4096, 3))).collect();
    let mut want = 1u64 << 63;
    for (p, d) in &pages {
        let mut buf = p.to_be_bytes().to_vec();
        buf.extend_from_slice(d);
        let pc = (1u64 << 63) | crc.checksum(&buf);
        assert_eq!(page_checksum(*p, d), Checksum(pc));
        want = (1u64 << 63) | (want ^ pc);
    }
    assert_eq!(
        db_checksum(pages.iter().map(|(p, d)| (*p, d.as_slice()))),
        Checksum(want)
    );
}

/// A v3 block-page file built byte by byte from the reference layout
/// (6-byte page headers, size prefix, LZ4 block, terminator, varint index,
/// index size, trailer), with the logical-stream file checksum.
#[test]
fn known_answer_v3_block_layout() {
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
    let p1 = page(1, 1024, 9);
    let p2 = page(2, 1024, 9);
    let b = build(
        Format::V3Block,
        FLAG_NO_CHECKSUM,
        1024,
        2,
        (1, 1),
        Checksum(0),
        Checksum(0),
        &[(1, p1.clone()), (2, p2.clone())],
    );
    let f = &b.bytes;
    let mut logical = f[..100].to_vec();
    let mut off = 100usize;
    let mut index = Vec::new();
    for (pgno, data) in [(1u32, &p1), (2, &p2)] {
        assert_eq!(&f[off..off + 4], &pgno.to_be_bytes());
        assert_eq!(
            &f[off + 4..off + 6],
            &[0, 1],
            "page flag 0x1 (size-prefixed block)"
        );
        let size = u32::from_be_bytes(f[off + 6..off + 10].try_into().unwrap()) as usize;
        let block = &f[off + 10..off + 10 + size];
        assert_eq!(&lz4_flex::block::decompress(block, 1024).unwrap(), data);
        logical.extend_from_slice(&f[off..off + 10]);
        logical.extend_from_slice(data);
        // Each entry: pgno, absolute offset, frame size; all < 128 here, so one byte each
        // except the offset, which is LEB128.
        let mut entry = Vec::new();
        for v in [pgno as u64, off as u64, 10 + size as u64] {
            let mut v = v;
            while v >= 0x80 {
                entry.push((v as u8) | 0x80);
                v >>= 7;
            }
            entry.push(v as u8);
        }
        index.extend_from_slice(&entry);
        off += 10 + size;
    }
    assert_eq!(&f[off..off + 6], &[0u8; 6]);
    logical.extend_from_slice(&[0u8; 6]);
    off += 6;
    index.push(0);
    assert_eq!(&f[off..off + index.len()], &index[..]);
    off += index.len();
    assert_eq!(&f[off..off + 8], &(index.len() as u64).to_be_bytes());
    logical.extend_from_slice(&index);
    logical.extend_from_slice(&(index.len() as u64).to_be_bytes());
    off += 8;
    assert_eq!(&f[off..off + 8], &[0u8; 8], "NoChecksum: post-apply 0");
    logical.extend_from_slice(&[0u8; 8]);
    let ck = (1u64 << 63) | crc.checksum(&logical);
    assert_eq!(&f[off + 8..], &ck.to_be_bytes());
}

#[test]
fn round_trip_every_encoding_and_page_size() {
    for (format, flags) in ENCODINGS {
        for page_size in [512u32, 1024, 4096, 16384, 65536] {
            // Snapshot.
            let s = snapshot(format, flags, page_size, 7, 1);
            let (h, pages, t) = decode_all(&s.bytes, format.version())
                .unwrap_or_else(|e| panic!("{format:?} {flags:#x} {page_size}: {e}"));
            assert_eq!(h, s.header);
            assert_eq!(t, s.trailer);
            assert_eq!(pages.len(), 7);
            for (p, d) in &pages {
                assert_eq!(d, &page(*p, page_size, 1));
            }
            // Incremental with a gap in page numbers.
            let pre = s.trailer.post_apply_checksum;
            let new3 = page(3, page_size, 2);
            let new9 = page(9, page_size, 2);
            let post = pre
                .toggle(page_checksum(3, &page(3, page_size, 1)))
                .toggle(page_checksum(3, &new3))
                .toggle(page_checksum(9, &new9));
            let pre = if pre.0 == 0 { Checksum::EMPTY } else { pre };
            let inc = build(
                format,
                flags,
                page_size,
                9,
                (2, 4),
                pre,
                post,
                &[(3, new3.clone()), (9, new9.clone())],
            );
            let (h, pages, t) = decode_all(&inc.bytes, format.version()).unwrap();
            assert_eq!(h, inc.header);
            assert_eq!(t, inc.trailer);
            assert_eq!(pages, vec![(3, new3), (9, new9)]);
        }
    }
}

#[test]
fn deletion_files_round_trip() {
    for (format, flags) in ENCODINGS {
        let b = build(
            format,
            flags,
            4096,
            0,
            (5, 5),
            Checksum(CHECKSUM_FLAG | 77),
            Checksum::EMPTY,
            &[],
        );
        let (h, pages, t) = decode_all(&b.bytes, format.version()).unwrap();
        assert_eq!(h.commit, 0);
        assert!(pages.is_empty());
        let want = if flags & FLAG_NO_CHECKSUM != 0 {
            Checksum(0)
        } else {
            Checksum::EMPTY
        };
        assert_eq!(t.post_apply_checksum, want);
    }
    // Tracking checksums, a deletion file must end at the empty checksum.
    let header = Header {
        page_size: 4096,
        commit: 0,
        min_txid: Txid(2),
        max_txid: Txid(2),
        pre_apply_checksum: Checksum(CHECKSUM_FLAG | 1),
        ..Header::default()
    };
    let enc = Encoder::new(Vec::new(), header, Format::V1).unwrap();
    assert!(matches!(
        enc.finish(Checksum(CHECKSUM_FLAG | 5)),
        Err(EncodeError::PostApplyChecksum { .. })
    ));
    // A page in a deletion file is refused.
    let mut enc = Encoder::new(Vec::new(), header, Format::V1).unwrap();
    assert!(matches!(
        enc.encode_page(1, &[0u8; 4096]),
        Err(EncodeError::PageBeyondCommit { .. })
    ));
}

/// Pages just below and just above the lock page, commit past it.
#[test]
fn incremental_straddling_the_lock_page() {
    for (format, flags) in ENCODINGS {
        for page_size in [4096u32, 65536] {
            let lock = lock_pgno(page_size);
            let below = page(lock - 1, page_size, 4);
            let above = page(lock + 1, page_size, 4);
            let pre = Checksum(CHECKSUM_FLAG | 99);
            let post = pre
                .toggle(page_checksum(lock - 1, &below))
                .toggle(page_checksum(lock + 1, &above));
            let b = build(
                format,
                flags,
                page_size,
                lock + 2,
                (3, 3),
                pre,
                post,
                &[(lock - 1, below.clone()), (lock + 1, above.clone())],
            );
            let (_, pages, _) = decode_all(&b.bytes, format.version()).unwrap();
            assert_eq!(
                pages,
                vec![(lock - 1, below.clone()), (lock + 1, above.clone())]
            );

            // The encoder never writes the lock page.
            let h = b.header;
            let mut enc = Encoder::new(Vec::new(), h, format).unwrap();
            enc.encode_page(lock - 1, &below).unwrap();
            assert!(
                matches!(enc.encode_page(lock, &above), Err(EncodeError::LockPage(p)) if p == lock)
            );
        }
    }
}

/// A 1 GiB+ snapshot at 64 KiB pages: every page but the lock page, and a
/// database checksum that skips it. Pages are mostly zero so the compressed
/// encodings stay small.
#[test]
fn snapshot_straddling_the_lock_page() {
    let page_size = 65536u32;
    let lock = lock_pgno(page_size);
    let commit = lock + 2;
    let mk = |p: u32| {
        let mut d = vec![0u8; page_size as usize];
        d[..4].copy_from_slice(&p.to_be_bytes());
        d
    };
    let mut want = Checksum::EMPTY;
    for p in (1..=commit).filter(|&p| p != lock) {
        want = want.toggle(page_checksum(p, &mk(p)));
    }
    for (format, flags) in [
        (Format::V1, FLAG_COMPRESS_LZ4),
        (Format::V3Block, 0),
        (Format::V3Frame, 0),
    ] {
        let header = Header::snapshot(page_size, commit, Txid(10), 0);
        let header = Header { flags, ..header };
        let mut enc = Encoder::new(Vec::new(), header, format).unwrap();
        for p in (1..=commit).filter(|&p| p != lock) {
            enc.encode_page(p, &mk(p)).unwrap();
        }
        let (bytes, trailer) = enc.finish(want).unwrap();
        assert_eq!(trailer.post_apply_checksum, want);
        let mut dec = Decoder::new(&bytes[..], format.version()).unwrap();
        let mut buf = vec![0u8; page_size as usize];
        let mut n = 0u32;
        let mut last = 0;
        while let Some(info) = dec.next_page(&mut buf).unwrap() {
            assert_ne!(info.pgno, lock);
            assert_eq!(&buf[..4], &info.pgno.to_be_bytes());
            n += 1;
            last = info.pgno;
        }
        assert_eq!((n, last), (commit - 1, commit));
        assert_eq!(dec.finish().unwrap().post_apply_checksum, want);
    }
}

/// Hand-builds a v1 raw file, bypassing the encoder's checks.
fn raw_v1(header: Header, pages: &[(u32, &[u8])], post: u64) -> Vec<u8> {
    let mut f = header.to_bytes().to_vec();
    for (p, d) in pages {
        f.extend_from_slice(&p.to_be_bytes());
        f.extend_from_slice(d);
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&post.to_be_bytes());
    let ck = CHECKSUM_FLAG | crc64(&f);
    f.extend_from_slice(&ck.to_be_bytes());
    f
}

#[test]
fn decoder_rejects_structural_errors_with_a_valid_file_checksum() {
    let ps = 512u32;
    let d = vec![1u8; 512];
    let inc = Header {
        page_size: ps,
        commit: 10,
        min_txid: Txid(2),
        max_txid: Txid(2),
        pre_apply_checksum: Checksum(CHECKSUM_FLAG),
        ..Header::default()
    };
    let post = CHECKSUM_FLAG | 3;
    // Sanity: the builder makes valid files.
    verify(&raw_v1(inc, &[(1, &d), (2, &d)], post)[..], Version::V1).unwrap();

    let err = |f: Vec<u8>| verify(&f[..], Version::V1).unwrap_err();
    assert!(matches!(
        err(raw_v1(inc, &[(2, &d), (1, &d)], post)),
        DecodeError::PageOrder {
            pgno: 1,
            prev: 2,
            ..
        }
    ));
    assert!(matches!(
        err(raw_v1(inc, &[(2, &d), (2, &d)], post)),
        DecodeError::PageOrder { .. }
    ));
    assert!(matches!(
        err(raw_v1(inc, &[(11, &d)], post)),
        DecodeError::PageBeyondCommit {
            pgno: 11,
            commit: 10,
            ..
        }
    ));
    // The lock page, in a database big enough to hold it.
    let lock = lock_pgno(ps);
    let big = Header {
        commit: lock + 5,
        ..inc
    };
    assert!(
        matches!(err(raw_v1(big, &[(lock, &d)], post)), DecodeError::LockPage { pgno, .. } if pgno == lock)
    );
    // A snapshot with a gap, and one that stops early.
    let snap = Header {
        commit: 3,
        ..Header::snapshot(ps, 3, Txid(1), 0)
    };
    assert!(matches!(
        err(raw_v1(snap, &[(1, &d), (3, &d)], post)),
        DecodeError::SnapshotGap {
            expected: 2,
            got: 3,
            ..
        }
    ));
    assert!(matches!(
        err(raw_v1(snap, &[(1, &d), (2, &d)], post)),
        DecodeError::SnapshotGap {
            expected: 3,
            got: 0,
            ..
        }
    ));
    // A snapshot whose checksum does not add up.
    assert!(matches!(
        err(raw_v1(snap, &[(1, &d), (2, &d), (3, &d)], post)),
        DecodeError::SnapshotChecksum { .. }
    ));
    // Trailer rules: flag bit, deletion file checksum.
    assert!(matches!(
        err(raw_v1(inc, &[(1, &d)], 3)),
        DecodeError::PostApplyChecksum { .. }
    ));
    let del = Header { commit: 0, ..inc };
    assert!(matches!(
        err(raw_v1(del, &[], post)),
        DecodeError::PostApplyChecksum { .. }
    ));
    assert!(matches!(
        err(raw_v1(del, &[(1, &d)], CHECKSUM_FLAG)),
        DecodeError::PageInDeletion { .. }
    ));
    // Header rules.
    assert!(matches!(
        err(raw_v1(Header { flags: 2, ..inc }, &[], post)),
        DecodeError::Header(HeaderError::Flags { .. })
    ));
    assert!(matches!(
        err(raw_v1(
            Header {
                page_size: 1000,
                ..inc
            },
            &[],
            post
        )),
        DecodeError::Header(HeaderError::PageSize(1000))
    ));
    let mut bad_magic = raw_v1(inc, &[], post);
    bad_magic[0] = b'X';
    assert!(matches!(
        err(bad_magic),
        DecodeError::Header(HeaderError::Magic(_))
    ));
    // Empty input.
    assert!(matches!(
        verify(&[][..], Version::V1),
        Err(DecodeError::Truncated { offset: 0, .. })
    ));
}

#[test]
fn formats_do_not_read_each_other() {
    let v3 = snapshot(Format::V3Block, FLAG_NO_CHECKSUM, 4096, 3, 1);
    assert!(matches!(
        verify(&v3.bytes[..], Version::V1),
        Err(DecodeError::Header(HeaderError::Flags { flags: 2, .. }))
    ));
    let v1 = snapshot(Format::V1, FLAG_COMPRESS_LZ4, 4096, 3, 1);
    assert!(matches!(
        verify(&v1.bytes[..], Version::V3),
        Err(DecodeError::Header(HeaderError::Flags { flags: 1, .. }))
    ));
    // Same flags (0) but different page framing: v1 raw read as v3 fails.
    let v1raw = snapshot(Format::V1, 0, 4096, 3, 1);
    assert!(verify(&v1raw.bytes[..], Version::V3).is_err());
}

/// Every single-byte change anywhere in a file is detected, in every
/// encoding, for snapshots and incrementals.
///
/// One exception is inherent to LZ4: it is not canonical, and the format
/// checksums only the decompressed stream, so a changed byte inside a
/// compressed block that still decodes to the very same pages cannot be
/// seen and does no harm. For those the test demands that the decoded file
/// is identical to the original. Frames carry no block checksums (Go's
/// pierrec/lz4 rejects frames that do), so this holds for every compressed
/// encoding; raw v1 files must reject every change.
#[test]
fn every_single_byte_corruption_is_detected() {
    let mut harmless = 0;
    for (format, flags) in ENCODINGS {
        let s = snapshot(format, flags, 512, 3, 5);
        let pre = if s.trailer.post_apply_checksum.0 == 0 {
            Checksum(CHECKSUM_FLAG | 1)
        } else {
            s.trailer.post_apply_checksum
        };
        let p2 = page(2, 512, 6);
        let inc = build(
            format,
            flags,
            512,
            4,
            (2, 2),
            pre,
            Checksum(CHECKSUM_FLAG | 0x55),
            &[(2, p2), (4, page(4, 512, 6))],
        );
        for file in [&s.bytes, &inc.bytes] {
            verify(&file[..], format.version()).unwrap();
            for i in 0..file.len() {
                for delta in [0x01u8, 0x80, 0xFF] {
                    let mut f = file.clone();
                    f[i] ^= delta;
                    let Ok(got) = decode_all(&f, format.version()) else {
                        continue;
                    };
                    let want = decode_all(file, format.version()).unwrap();
                    let compressed = format != Format::V1 || flags & FLAG_COMPRESS_LZ4 != 0;
                    assert!(
                        compressed && got == want,
                        "{format:?} flags {flags:#x}: byte {i} ^ {delta:#x} of {} went undetected",
                        file.len()
                    );
                    harmless += 1;
                }
            }
        }
    }
    eprintln!("{harmless} byte changes decoded to identical content (LZ4 data)");
}

#[test]
fn truncation_and_trailing_bytes_are_detected() {
    for (format, flags) in ENCODINGS {
        let s = snapshot(format, flags, 512, 4, 8);
        for len in 0..s.bytes.len() {
            assert!(
                verify(&s.bytes[..len], format.version()).is_err(),
                "{format:?} {flags:#x}: prefix of {len} accepted"
            );
        }
        let mut longer = s.bytes.clone();
        longer.push(0);
        assert!(matches!(
            verify(&longer[..], format.version()),
            Err(DecodeError::TrailingData { .. })
        ));
    }
}

#[test]
fn encoder_rejects_bad_input() {
    let h = Header {
        page_size: 4096,
        commit: 10,
        min_txid: Txid(2),
        max_txid: Txid(2),
        pre_apply_checksum: Checksum(CHECKSUM_FLAG),
        ..Header::default()
    };
    let d = vec![0u8; 4096];
    let mut e = Encoder::new(Vec::new(), h, Format::V1).unwrap();
    assert!(matches!(
        e.encode_page(0, &d),
        Err(EncodeError::PageOrder { .. })
    ));
    assert!(matches!(
        e.encode_page(1, &d[..100]),
        Err(EncodeError::PageLength { len: 100, .. })
    ));
    e.encode_page(5, &d).unwrap();
    assert!(matches!(
        e.encode_page(5, &d),
        Err(EncodeError::PageOrder { pgno: 5, prev: 5 })
    ));
    assert!(matches!(
        e.encode_page(11, &d),
        Err(EncodeError::PageBeyondCommit { .. })
    ));
    assert!(matches!(
        e.finish(Checksum(5)),
        Err(EncodeError::PostApplyChecksum { .. })
    ));
    // Flags a format cannot carry.
    assert!(matches!(
        Encoder::new(
            Vec::new(),
            Header {
                flags: FLAG_COMPRESS_LZ4,
                ..h
            },
            Format::V3Block
        ),
        Err(EncodeError::Header(_))
    ));
    assert!(matches!(
        Encoder::new(
            Vec::new(),
            Header {
                flags: FLAG_NO_CHECKSUM,
                ..h
            },
            Format::V1
        ),
        Err(EncodeError::Header(_))
    ));
    // A snapshot must be complete and carry its own checksum.
    let s = Header::snapshot(4096, 3, Txid(1), 0);
    let mut e = Encoder::new(Vec::new(), s, Format::V1).unwrap();
    assert!(matches!(
        e.encode_page(2, &d),
        Err(EncodeError::SnapshotGap {
            expected: 1,
            got: 2
        })
    ));
    e.encode_page(1, &d).unwrap();
    assert!(matches!(
        e.finish(Checksum::EMPTY),
        Err(EncodeError::SnapshotGap {
            expected: 2,
            got: 0
        })
    ));
    let mut e = Encoder::new(
        Vec::new(),
        Header::snapshot(4096, 1, Txid(1), 0),
        Format::V1,
    )
    .unwrap();
    e.encode_page(1, &d).unwrap();
    assert!(matches!(
        e.finish(Checksum::EMPTY),
        Err(EncodeError::PostApplyChecksum { .. })
    ));
}

/// v1 compressed files carry one LZ4 frame with the content checksum, as
/// Go's writer does (FLG 0x64 or 0x60 variants are all accepted).
#[test]
fn v1_compressed_body_is_one_lz4_frame() {
    let s = snapshot(Format::V1, FLAG_COMPRESS_LZ4, 4096, 20, 3);
    assert_eq!(
        &s.bytes[100..104],
        &[0x04, 0x22, 0x4D, 0x18],
        "LZ4 frame magic after the header"
    );
    assert!(
        s.bytes.len() < 100 + 20 * 4100,
        "compressed: {}",
        s.bytes.len()
    );
    // The frame decodes, with lz4_flex's own frame decoder, to the raw body.
    let body = &s.bytes[100..s.bytes.len() - 16];
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(body), &mut out).unwrap();
    let raw = snapshot(Format::V1, 0, 4096, 20, 3);
    assert_eq!(&out[..], &raw.bytes[100..raw.bytes.len() - 16]);
    assert_eq!(
        s.trailer.post_apply_checksum,
        raw.trailer.post_apply_checksum
    );
}
