//! Cross-checks against the real Go `ltx` tool v0.3.14, the LTX library
//! LiteFS v0.5.14 is built on: every v1 file we write (raw and LZ4, every
//! page size, snapshots, incrementals with WAL fields and a node ID,
//! deletions) passes `ltx verify`, a chain of ours applied by `ltx apply`
//! gives the database we expect, and we decode what `ltx encode-db` writes.
//!
//! The binary comes from `LTX_GO_BIN`, else `../shared/peers/ltx-0.3.14`
//! beside the workspace. Without it these tests print one SKIP line, and
//! fail when `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use litefs_ltx::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Go tool, or `None` (after a SKIP line) where it may be missing.
fn go_ltx() -> Option<PathBuf> {
    let path = std::env::var_os("LTX_GO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers/ltx-0.3.14")
        });
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "the Go ltx tool is missing at {} (set LTX_GO_BIN)",
        path.display()
    );
    let required = std::env::var_os("CI").is_some_and(|v| v == "true")
        || std::env::var_os("LITEFS_REQUIRE_DEPS").is_some_and(|v| v == "1");
    assert!(!required, "{msg}");
    eprintln!("SKIP: {msg}");
    None
}

fn run(bin: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(bin).args(args).output().expect("run ltx");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ltx {args:?} failed:\n{text}");
    text
}

const PAGE_SIZES: [u32; 8] = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/// Every kind of v1 file we write, for every page size, raw and LZ4, all
/// verified by the Go tool in one call per page size.
#[test]
fn go_ltx_verifies_every_v1_file_we_write() {
    let Some(bin) = go_ltx() else { return };
    let dir = tempfile::tempdir().unwrap();
    for page_size in PAGE_SIZES {
        let mut files = Vec::new();
        for flags in [0, FLAG_COMPRESS_LZ4] {
            let s = snapshot(Format::V1, flags, page_size, 5, 3);
            let mut pages: Vec<(u32, Vec<u8>)> =
                (1..=5).map(|p| (p, page(p, page_size, 3))).collect();
            // An incremental as WAL capture writes it: WAL fields, node ID,
            // a page past the old end (the database grew).
            let changed = [(2u32, page(2, page_size, 9)), (7, page(7, page_size, 9))];
            for (p, d) in &changed {
                match pages.iter_mut().find(|(q, _)| q == p) {
                    Some(slot) => slot.1 = d.clone(),
                    None => pages.push((*p, d.clone())),
                }
            }
            pages.push((6, vec![0; page_size as usize]));
            pages.sort_by_key(|(p, _)| *p);
            let post = db_checksum(pages.iter().map(|(p, d)| (*p, d.as_slice())));
            let h = Header {
                flags,
                page_size,
                commit: 7,
                min_txid: Txid(2),
                max_txid: Txid(2),
                timestamp: 1_700_000_000_999,
                pre_apply_checksum: s.trailer.post_apply_checksum,
                wal_offset: 32,
                wal_size: 2 * (24 + i64::from(page_size)),
                wal_salt1: 0x1234_5678,
                wal_salt2: 0x9abc_def0,
                node_id: 0xdead_beef_0102_0304,
            };
            let mut enc = Encoder::new(Vec::new(), h, Format::V1).unwrap();
            for (p, d) in &changed {
                enc.encode_page(*p, d).unwrap();
            }
            let (inc, _) = enc.finish(post).unwrap();
            // A deletion file (the database dropped).
            let del = Header {
                flags,
                page_size,
                commit: 0,
                min_txid: Txid(3),
                max_txid: Txid(3),
                timestamp: 1_700_000_001_000,
                pre_apply_checksum: post,
                ..Header::default()
            };
            let (del, _) = Encoder::new(Vec::new(), del, Format::V1)
                .unwrap()
                .finish(Checksum::EMPTY)
                .unwrap();
            for (i, bytes) in [s.bytes, inc, del].into_iter().enumerate() {
                let f = dir.path().join(format!("{page_size}-{flags}-{i}.ltx"));
                std::fs::write(&f, bytes).unwrap();
                files.push(f);
            }
            // `ltx apply` of the snapshot and the incremental gives the
            // database the pages make, which our checksum describes.
            let db = dir.path().join(format!("{page_size}-{flags}.db"));
            let n = files.len();
            run(
                &bin,
                &[
                    "apply".as_ref(),
                    "-db".as_ref(),
                    db.as_os_str(),
                    files[n - 3].as_os_str(),
                    files[n - 2].as_os_str(),
                ],
            );
            let want: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
            assert!(
                std::fs::read(&db).unwrap() == want,
                "ltx apply of our chain (page size {page_size}, flags {flags}) differs"
            );
        }
        let mut args: Vec<&std::ffi::OsStr> = vec!["verify".as_ref()];
        args.extend(files.iter().map(|f| f.as_os_str()));
        run(&bin, &args);
    }
}

/// A database file the Go tool can encode: `pages` pages of `page_size`,
/// page 1 carrying SQLite's header (magic, page size, page count).
fn database(page_size: u32, pages: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for p in 1..=pages {
        out.extend(page(p, page_size, 21));
    }
    out[..16].copy_from_slice(b"SQLite format 3\0");
    let ps = if page_size == 65536 {
        1u16
    } else {
        page_size as u16
    };
    out[16..18].copy_from_slice(&ps.to_be_bytes());
    out[28..32].copy_from_slice(&pages.to_be_bytes());
    out
}

/// What `ltx encode-db` writes, raw and compressed, we decode to the same
/// pages, with the checksum our definition gives.
#[test]
fn we_decode_what_go_ltx_encodes() {
    let Some(bin) = go_ltx() else { return };
    let dir = tempfile::tempdir().unwrap();
    for page_size in PAGE_SIZES {
        let db = database(page_size, 9);
        let path = dir.path().join(format!("{page_size}.db"));
        std::fs::write(&path, &db).unwrap();
        for compress in [false, true] {
            let out = dir.path().join(format!("{page_size}-{compress}.ltx"));
            let mut args: Vec<&std::ffi::OsStr> = vec!["encode-db".as_ref()];
            if compress {
                args.push("-c".as_ref());
            }
            args.extend(["-o".as_ref(), out.as_os_str(), path.as_os_str()]);
            run(&bin, &args);
            let bytes = std::fs::read(&out).unwrap();
            let (h, pages, t) = decode_all(&bytes, Version::V1).unwrap();
            assert_eq!(h.page_size, page_size);
            assert_eq!(h.commit, 9);
            assert_eq!(h.flags & FLAG_COMPRESS_LZ4 != 0, compress);
            let got: Vec<u8> = pages.iter().flat_map(|(_, d)| d.clone()).collect();
            assert!(got == db, "page size {page_size}: pages differ");
            let want = db_checksum(pages.iter().map(|(p, d)| (*p, d.as_slice())));
            assert_eq!(t.post_apply_checksum, want);
        }
    }
}
