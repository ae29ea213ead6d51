//! Writes a seed corpus for the `decode` target: small valid files in every
//! encoding, each prefixed with the version-selector byte the target expects
//! (0 = v1, 1 = v3).
//!
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus/decode

use litefs_ltx::{
    page_checksum, Checksum, Encoder, Format, Header, Txid, CHECKSUM_FLAG, FLAG_COMPRESS_LZ4,
    FLAG_NO_CHECKSUM,
};
use std::path::PathBuf;

fn page(pgno: u32, size: usize) -> Vec<u8> {
    // Half text (compressible), half xorshift noise.
    let mut p = vec![0u8; size];
    for (i, b) in p[..size / 2].iter_mut().enumerate() {
        *b = b"CREATE TABLE t(x); "[i % 19];
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(pgno);
    for b in &mut p[size / 2..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: seeds DIR")?);
    std::fs::create_dir_all(&dir)?;
    let kinds = [
        ("v1raw", Format::V1, 0u32),
        ("v1lz4", Format::V1, FLAG_COMPRESS_LZ4),
        ("v3block", Format::V3Block, 0),
        ("v3frame", Format::V3Frame, 0),
        ("v3block-nocksum", Format::V3Block, FLAG_NO_CHECKSUM),
        ("v3frame-nocksum", Format::V3Frame, FLAG_NO_CHECKSUM),
    ];
    let mut n = 0;
    for (name, format, flags) in kinds {
        let nocksum = flags & FLAG_NO_CHECKSUM != 0;
        for page_size in [512u32, 4096] {
            for snapshot in [true, false] {
                let pgnos: Vec<u32> = if snapshot { vec![1, 2, 3] } else { vec![2, 5] };
                let header = Header {
                    flags,
                    commit: if snapshot { 3 } else { 6 },
                    min_txid: Txid(if snapshot { 1 } else { 4 }),
                    pre_apply_checksum: Checksum(if snapshot || nocksum { 0 } else { CHECKSUM_FLAG | 7 }),
                    ..Header::snapshot(page_size, 0, Txid(4), 1_700_000_000_000)
                };
                let mut enc = Encoder::new(Vec::new(), header, format)?;
                let mut sum = Checksum::EMPTY;
                for &p in &pgnos {
                    let data = page(p, page_size as usize);
                    sum = sum.toggle(page_checksum(p, &data));
                    enc.encode_page(p, &data)?;
                }
                let post = if nocksum {
                    Checksum(0)
                } else if snapshot {
                    sum
                } else {
                    Checksum(CHECKSUM_FLAG | 9)
                };
                let (file, _) = enc.finish(post)?;
                let mut seed = vec![u8::from(format != Format::V1)];
                seed.extend_from_slice(&file);
                let kind = if snapshot { "snap" } else { "incr" };
                std::fs::write(dir.join(format!("{name}-{page_size}-{kind}")), seed)?;
                n += 1;
            }
        }
    }
    println!("wrote {n} seeds to {}", dir.display());
    Ok(())
}
