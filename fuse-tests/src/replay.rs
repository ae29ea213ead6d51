//! Rebuilds a database from its LTX chain, checking the chain on the way:
//! every file decodes and verifies, TXIDs are contiguous, each file's
//! pre-apply checksum is the previous post-apply checksum, and the rolling
//! checksum recomputed from the rebuilt pages matches every post-apply
//! checksum.

use litefs_ltx::{
    lock_pgno, page_checksum, parse_file_name, Checksum, Decoder, Pos, Txid, Version,
};
use std::collections::BTreeMap;
use std::path::Path;

/// The result of replaying a chain.
#[derive(Debug)]
pub struct Replayed {
    /// The database bytes after the last file.
    pub bytes: Vec<u8>,
    /// The position after the last file.
    pub pos: Pos,
    /// How many files were applied.
    pub files: usize,
    /// Page size of the last file.
    pub page_size: u32,
}

/// Replays every LTX file in `dir` from TXID 1 (the first file must be a
/// snapshot). Panics with a precise message on any inconsistency.
pub fn replay_dir(dir: &Path) -> Replayed {
    let mut files: BTreeMap<(u64, u64), std::path::PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read ltx dir") {
        let e = e.expect("dir entry");
        if let Some((min, max)) = e.file_name().to_str().and_then(parse_file_name) {
            files.insert((max.0, min.0), e.path());
        }
    }
    assert!(!files.is_empty(), "no LTX files in {}", dir.display());
    let mut bytes: Vec<u8> = Vec::new();
    let mut pos = Pos::ZERO;
    let mut page_size = 0u32;
    let mut n = 0;
    for ((max, min), path) in files {
        let f = std::fs::File::open(&path).expect("open ltx");
        let mut dec = Decoder::new(std::io::BufReader::new(f), Version::V1)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let h = *dec.header();
        if min != 1 {
            assert_eq!(
                min,
                pos.txid.0 + 1,
                "{}: TXID gap after {}",
                path.display(),
                pos.txid
            );
            assert_eq!(
                h.pre_apply_checksum,
                pos.post_apply_checksum,
                "{}: pre-apply checksum",
                path.display()
            );
        } else {
            // A snapshot replaces everything.
            assert!(
                max > pos.txid.0 || pos.txid.0 == 0,
                "{}: snapshot goes backwards",
                path.display()
            );
            bytes.clear();
        }
        page_size = h.page_size;
        let ps = page_size as usize;
        let mut buf = vec![0u8; ps];
        while let Some(p) = dec
            .next_page(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            let off = (p.pgno as usize - 1) * ps;
            if bytes.len() < off + ps {
                bytes.resize(off + ps, 0);
            }
            bytes[off..off + ps].copy_from_slice(&buf);
        }
        let t = dec
            .finish()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bytes.resize(h.commit as usize * ps, 0);
        let ck = checksum(&bytes, page_size);
        assert_eq!(
            ck,
            t.post_apply_checksum,
            "{}: rebuilt pages do not match the post-apply checksum",
            path.display()
        );
        pos = Pos {
            txid: Txid(max),
            post_apply_checksum: t.post_apply_checksum,
        };
        n += 1;
    }
    Replayed {
        bytes,
        pos,
        files: n,
        page_size,
    }
}

/// The rolling checksum of a whole database image.
pub fn checksum(bytes: &[u8], page_size: u32) -> Checksum {
    let ps = page_size as usize;
    let lock = lock_pgno(page_size);
    let mut c = Checksum::EMPTY;
    for (i, page) in bytes.chunks(ps).enumerate() {
        let pgno = i as u32 + 1;
        if pgno != lock {
            c = c.toggle(page_checksum(pgno, page));
        }
    }
    c
}
