//! Builds a small valid LTX file from fuzzer choices, encodes it, decodes it
//! and checks that header, pages and trailer round-trip; then XORs one byte
//! of the encoded file with a non-zero value and checks that decoding the
//! corrupted file (pages and `finish`) fails, unless the flip only turned
//! LZ4 data into another encoding of the same bytes (see below).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use litefs_ltx::{
    page_checksum, Checksum, Decoder, Encoder, Format, Header, Trailer, Txid, Version,
    CHECKSUM_FLAG, FLAG_COMPRESS_LZ4, FLAG_NO_CHECKSUM, HEADER_SIZE, TRAILER_SIZE,
};

const PAGE_SIZES: [u32; 5] = [512, 1024, 2048, 4096, 65536];
const MAX_PAGES: usize = 8;

#[derive(Arbitrary, Debug)]
enum Kind {
    V1Raw,
    V1Lz4,
    V3Block,
    V3Frame,
}

/// A page is a fuzzer-chosen pattern tiled over the page, with an optional
/// run of pseudo-random (incompressible) bytes laid over it.
#[derive(Arbitrary, Debug)]
struct PageSpec {
    /// Gap to the previous page number (incremental files only).
    gap: u8,
    pattern: Vec<u8>,
    noise_seed: u64,
    noise_start: u16,
    noise_len: u16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    page_size: u8,
    snapshot: bool,
    /// v3 only: the NoChecksum flag.
    no_checksum: bool,
    /// Incremental only, with no pages: a deletion file (commit 0).
    deletion: bool,
    pages: Vec<PageSpec>,
    commit_extra: u8,
    min_txid: u16,
    txid_span: u8,
    timestamp: i64,
    pre_apply: u64,
    post_apply: u64,
    wal: Option<(u32, u32, u32, u32)>,
    node_id: u64,
    flip_pos: u32,
    flip_xor: u8,
}

fn page_bytes(spec: &PageSpec, page_size: usize) -> Vec<u8> {
    let mut page = vec![0u8; page_size];
    if !spec.pattern.is_empty() {
        for (i, b) in page.iter_mut().enumerate() {
            *b = spec.pattern[i % spec.pattern.len()];
        }
    }
    let start = spec.noise_start as usize % page_size;
    let end = (start + spec.noise_len as usize).min(page_size);
    let mut x = spec.noise_seed | 1;
    for b in &mut page[start..end] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    page
}

struct Decoded {
    header: Header,
    pages: Vec<(u32, Vec<u8>)>,
    trailer: Trailer,
}

fn decode(file: &[u8], version: Version) -> Result<Decoded, litefs_ltx::DecodeError> {
    let mut dec = Decoder::new(file, version)?;
    let header = *dec.header();
    let mut buf = vec![0u8; header.page_size as usize];
    let mut pages = Vec::new();
    while let Some(info) = dec.next_page(&mut buf)? {
        assert_eq!(info.checksum, page_checksum(info.pgno, &buf));
        pages.push((info.pgno, buf.clone()));
    }
    let trailer = dec.finish()?;
    Ok(Decoded { header, pages, trailer })
}

fuzz_target!(|input: Input| {
    let page_size = PAGE_SIZES[input.page_size as usize % PAGE_SIZES.len()];
    let (format, version) = match input.kind {
        Kind::V1Raw | Kind::V1Lz4 => (Format::V1, Version::V1),
        Kind::V3Block => (Format::V3Block, Version::V3),
        Kind::V3Frame => (Format::V3Frame, Version::V3),
    };
    let max_pages = if page_size == 65536 { 2 } else { MAX_PAGES };
    let specs = &input.pages[..input.pages.len().min(max_pages)];
    let no_checksum = version == Version::V3 && input.no_checksum;

    // Page numbers: 1..=n for a snapshot, strictly ascending otherwise. Even
    // at 512-byte pages they stay far below the lock page (2097153).
    let mut pgnos = Vec::with_capacity(specs.len());
    let mut prev = 0u32;
    for s in specs {
        prev += if input.snapshot { 1 } else { 1 + u32::from(s.gap) };
        pgnos.push(prev);
    }
    let last = pgnos.last().copied().unwrap_or(0);
    let commit = if input.snapshot {
        last
    } else if specs.is_empty() && input.deletion {
        0
    } else {
        last + u32::from(input.commit_extra)
    };
    let pages: Vec<(u32, Vec<u8>)> = pgnos
        .iter()
        .zip(specs)
        .map(|(&p, s)| (p, page_bytes(s, page_size as usize)))
        .collect();

    let min_txid = if input.snapshot { 1 } else { 2 + u64::from(input.min_txid) };
    let mut flags = 0;
    if matches!(input.kind, Kind::V1Lz4) {
        flags |= FLAG_COMPRESS_LZ4;
    }
    if no_checksum {
        flags |= FLAG_NO_CHECKSUM;
    }
    let pre_apply_checksum = if no_checksum || input.snapshot {
        Checksum(0)
    } else {
        Checksum(CHECKSUM_FLAG | input.pre_apply)
    };
    // Non-zero offset and size, with salts: valid in both versions.
    let (wal_offset, wal_size, wal_salt1, wal_salt2) = match input.wal {
        Some((o, s, a, b)) => (i64::from(o) + 1, i64::from(s) + 1, a, b),
        None => (0, 0, 0, 0),
    };
    let header = Header {
        flags,
        page_size,
        commit,
        min_txid: Txid(min_txid),
        max_txid: Txid(min_txid + u64::from(input.txid_span)),
        timestamp: input.timestamp,
        pre_apply_checksum,
        wal_offset,
        wal_size,
        wal_salt1,
        wal_salt2,
        node_id: input.node_id,
    };
    let post = if no_checksum {
        Checksum(0)
    } else if commit == 0 {
        Checksum::EMPTY
    } else if input.snapshot {
        pages
            .iter()
            .fold(Checksum::EMPTY, |c, (p, d)| c.toggle(page_checksum(*p, d)))
    } else {
        Checksum(CHECKSUM_FLAG | input.post_apply)
    };

    // Encode.
    let mut enc = Encoder::new(Vec::new(), header, format).expect("valid header rejected");
    for (p, d) in &pages {
        enc.encode_page(*p, d).expect("valid page rejected");
    }
    let (file, trailer) = enc.finish(post).expect("valid file rejected at finish");
    assert_eq!(trailer.post_apply_checksum, post);

    // Decode and compare.
    let got = decode(&file, version).expect("encoder output does not decode");
    assert_eq!(got.header, header);
    assert!(got.pages == pages, "pages do not round-trip");
    assert_eq!(got.trailer, trailer);
    assert_eq!(
        litefs_ltx::verify(&file[..], version).expect("verify rejects encoder output"),
        (header, trailer)
    );

    // Corrupt one byte: decoding must fail, or (compressed encodings only)
    // yield exactly the original content. The checksums cover the logical
    // bytes, not the LZ4 encoding, and LZ4 has equivalent encodings one byte
    // apart: the match-length nibble of a block's last token is ignored, and
    // a match offset inside a run of equal bytes can point anywhere in the
    // run. Such a flip changes nothing a reader sees, so it is not silent
    // corruption; any other accepted flip is.
    let pos = input.flip_pos as usize % file.len();
    let xor = if input.flip_xor == 0 { 0x80 } else { input.flip_xor };
    let mut bad = file.clone();
    bad[pos] ^= xor;
    if let Ok(d) = decode(&bad, version) {
        let same = d.header == header && d.pages == pages && d.trailer == trailer;
        let compressed = !matches!(input.kind, Kind::V1Raw);
        let in_body = pos >= HEADER_SIZE && pos < file.len() - TRAILER_SIZE;
        if !(same && compressed && in_body) {
            let hex: String = file.iter().map(|b| format!("{b:02x}")).collect();
            panic!(
                "undetected corruption: byte {pos} of {} ^= {xor:#04x} ({:?}, flags {flags:#x}); \
                 decoded content identical to the original: {same}\nfile: {hex}",
                file.len(),
                format,
            );
        }
    }
});
