//! Shared builders for the codec tests.
#![allow(dead_code, unreachable_pub)]

use litefs_ltx::{
    page_checksum, Checksum, Decoder, Encoder, Format, Header, Trailer, Txid, Version,
    FLAG_COMPRESS_LZ4, FLAG_NO_CHECKSUM,
};

/// Every encoding the codec writes, with the header flags it needs.
pub const ENCODINGS: [(Format, u32); 6] = [
    (Format::V1, 0),
    (Format::V1, FLAG_COMPRESS_LZ4),
    (Format::V3Block, FLAG_NO_CHECKSUM),
    (Format::V3Frame, FLAG_NO_CHECKSUM),
    (Format::V3Block, 0),
    (Format::V3Frame, 0),
];

/// Deterministic page contents: part text-like (compressible), part noise.
pub fn page(pgno: u32, page_size: u32, seed: u64) -> Vec<u8> {
    let mut x = seed ^ (u64::from(pgno) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    let mut p = vec![0u8; page_size as usize];
    for (i, b) in p.iter_mut().enumerate() {
        if i % 64 < 40 {
            *b = b"hello sqlite page "[i % 18];
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    p
}

/// A file and what was put in it.
pub struct Built {
    pub bytes: Vec<u8>,
    pub header: Header,
    pub trailer: Trailer,
}

/// Encodes `pages` (ascending) as a snapshot (`txid.0 == 1`) or an
/// incremental file. Checksums are dropped when `flags` has NoChecksum.
#[allow(clippy::too_many_arguments)]
pub fn build(
    format: Format,
    flags: u32,
    page_size: u32,
    commit: u32,
    txid: (u64, u64),
    pre: Checksum,
    post: Checksum,
    pages: &[(u32, Vec<u8>)],
) -> Built {
    let no_ck = flags & FLAG_NO_CHECKSUM != 0;
    let header = Header {
        flags,
        page_size,
        commit,
        min_txid: Txid(txid.0),
        max_txid: Txid(txid.1),
        timestamp: 1_700_000_000_123,
        pre_apply_checksum: if no_ck || txid.0 == 1 {
            Checksum(0)
        } else {
            pre
        },
        node_id: if format == Format::V1 { 0x42 } else { 0 },
        ..Header::default()
    };
    let mut enc = Encoder::new(Vec::new(), header, format).expect("header");
    for (pgno, data) in pages {
        enc.encode_page(*pgno, data).expect("page");
    }
    let post = if no_ck { Checksum(0) } else { post };
    let (bytes, trailer) = enc.finish(post).expect("finish");
    Built {
        bytes,
        header,
        trailer,
    }
}

/// A snapshot of a database whose pages are `page(pgno, ..)` for 1..=commit.
pub fn snapshot(format: Format, flags: u32, page_size: u32, commit: u32, seed: u64) -> Built {
    let lock = litefs_ltx::lock_pgno(page_size);
    let pages: Vec<(u32, Vec<u8>)> = (1..=commit)
        .filter(|&p| p != lock)
        .map(|p| (p, page(p, page_size, seed)))
        .collect();
    let post = db_checksum(pages.iter().map(|(p, d)| (*p, d.as_slice())));
    build(
        format,
        flags,
        page_size,
        commit,
        (1, 1),
        Checksum(0),
        post,
        &pages,
    )
}

/// The database checksum of the given pages, by the definition.
pub fn db_checksum<'a>(pages: impl Iterator<Item = (u32, &'a [u8])>) -> Checksum {
    pages.fold(Checksum::EMPTY, |c, (p, d)| c.toggle(page_checksum(p, d)))
}

/// Decoded pages with the header and trailer.
pub type Decoded = (Header, Vec<(u32, Vec<u8>)>, Trailer);

/// Decodes fully and returns every page.
pub fn decode_all(bytes: &[u8], version: Version) -> Result<Decoded, litefs_ltx::DecodeError> {
    let mut dec = Decoder::new(bytes, version)?;
    let header = *dec.header();
    let mut buf = vec![0u8; header.page_size as usize];
    let mut pages = Vec::new();
    while let Some(info) = dec.next_page(&mut buf)? {
        assert_eq!(info.checksum, page_checksum(info.pgno, &buf));
        pages.push((info.pgno, buf.clone()));
    }
    let trailer = dec.finish()?;
    Ok((header, pages, trailer))
}
