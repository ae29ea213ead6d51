//! LTX codec throughput: encode, decode+verify, and the raw checksums.
//!
//! Every file is a 256-page snapshot of 4 KiB pages (1 MiB of page bytes).
//! Throughput is always the logical page bytes (1 MiB per file), whatever the
//! encoded size, so the four formats compare directly. Pages look like
//! SQLite table b-tree leaves: a page header and cell-pointer array, free
//! space (zeros), and cells holding repeated text plus random bytes: about
//! half of each page is random (incompressible), and LZ4 shrinks the file
//! about 2x. The data is deterministic (xorshift).
//!
//! cargo bench -p litefs-ltx --bench codec

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use litefs_ltx::{
    crc64, page_checksum, Checksum, Decoder, Encoder, Format, Header, Txid, Version,
    FLAG_COMPRESS_LZ4,
};
use std::hint::black_box;
use std::time::Duration;

const PAGE_SIZE: usize = 4096;
const PAGES: u32 = 256;
const FILE_BYTES: u64 = PAGE_SIZE as u64 * PAGES as u64;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// One SQLite-like table leaf page: 8-byte header, cell pointers, a gap of
/// zeros, then cells packed at the end of the page. Each cell is a short
/// record: a repeated-text column (compressible) and a random blob.
fn sqlite_like_page(pgno: u32, rng: &mut XorShift) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    const CELL: usize = 160; // 4 header bytes + 52 text + 104 random
    const CELLS: usize = 20; // 3200 bytes of cells, 2080 of them random
    let content_start = PAGE_SIZE - CELLS * CELL;
    page[0] = 0x0d; // table leaf
    page[3..5].copy_from_slice(&(CELLS as u16).to_be_bytes());
    page[5..7].copy_from_slice(&(content_start as u16).to_be_bytes());
    for i in 0..CELLS {
        let off = content_start + i * CELL;
        page[8 + 2 * i..10 + 2 * i].copy_from_slice(&(off as u16).to_be_bytes());
        let rowid = pgno as usize * CELLS + i;
        let cell = &mut page[off..off + CELL];
        cell[0] = (CELL - 2) as u8; // payload length
        cell[1] = (rowid & 0x7f) as u8; // rowid varint (truncated)
        cell[2] = 3; // record header size
        cell[3] = 0x75; // text serial type
        let text = format!("user{rowid:08}@example.com status=active plan=free ");
        let tb = text.as_bytes();
        for (j, b) in cell[4..56].iter_mut().enumerate() {
            *b = tb[j % tb.len()];
        }
        rng.fill(&mut cell[56..CELL]);
    }
    page
}

fn pages() -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    (1..=PAGES).map(|p| sqlite_like_page(p, &mut rng)).collect()
}

const CASES: [(&str, Format, u32); 4] = [
    ("v1", Format::V1, 0),
    ("v1-lz4", Format::V1, FLAG_COMPRESS_LZ4),
    ("v3-block", Format::V3Block, 0),
    ("v3-frame", Format::V3Frame, 0),
];

fn header(flags: u32) -> Header {
    Header {
        flags,
        ..Header::snapshot(PAGE_SIZE as u32, PAGES, Txid(1), 1_700_000_000_000)
    }
}

fn post_checksum(pages: &[Vec<u8>]) -> Checksum {
    pages
        .iter()
        .zip(1..)
        .fold(Checksum::EMPTY, |c, (d, p)| c.toggle(page_checksum(p, d)))
}

/// Encodes the snapshot into `out` (cleared first). The encoder computes the
/// file checksum and, as for every snapshot, each page's checksum to check
/// the post-apply checksum.
fn encode_into(out: &mut Vec<u8>, pages: &[Vec<u8>], format: Format, flags: u32, post: Checksum) {
    out.clear();
    let mut enc = Encoder::new(&mut *out, header(flags), format).unwrap();
    for (d, p) in pages.iter().zip(1..) {
        enc.encode_page(p, d).unwrap();
    }
    let (_, trailer) = enc.finish(post).unwrap();
    black_box(trailer);
}

/// Full decode: every page, page checksums, then `finish` (file checksum,
/// snapshot checksum, trailer rules).
fn decode_all(file: &[u8], version: Version, buf: &mut [u8]) {
    let mut dec = Decoder::new(file, version).unwrap();
    while let Some(info) = dec.next_page(buf).unwrap() {
        black_box(info);
    }
    black_box(dec.finish().unwrap());
}

fn bench_codec(c: &mut Criterion) {
    let pages = pages();
    let post = post_checksum(&pages);

    let mut encoded = Vec::new();
    for (name, format, flags) in CASES {
        let mut out = Vec::new();
        encode_into(&mut out, &pages, format, flags, post);
        eprintln!(
            "{name}: {} bytes encoded for {FILE_BYTES} page bytes ({:.2}x)",
            out.len(),
            FILE_BYTES as f64 / out.len() as f64
        );
        encoded.push((name, format, flags, out));
    }

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(FILE_BYTES));
    for (name, format, flags, file) in &encoded {
        let mut out = Vec::with_capacity(file.len() + 4096);
        g.bench_function(*name, |b| {
            b.iter(|| encode_into(&mut out, &pages, *format, *flags, post))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(FILE_BYTES));
    let mut buf = vec![0u8; PAGE_SIZE];
    for (name, format, _, file) in &encoded {
        g.bench_function(*name, |b| {
            b.iter(|| decode_all(file, format.version(), &mut buf))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(PAGE_SIZE as u64));
    g.bench_function("page_checksum-4k", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % pages.len();
            black_box(page_checksum(i as u32 + 1, black_box(&pages[i])))
        })
    });
    g.throughput(Throughput::Bytes(FILE_BYTES));
    let flat: Vec<u8> = pages.concat();
    g.bench_function("crc64-1m", |b| {
        b.iter(|| black_box(crc64(black_box(&flat))))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_codec
}
criterion_main!(benches);
