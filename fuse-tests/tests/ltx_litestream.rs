//! Cross-checks the v3 LTX codec (`litefs-ltx`) against the real Litestream
//! 0.5.17 binary, in both directions:
//!
//! * files written by our [`Encoder`] are put into a `file` replica and
//!   restored with `litestream restore -integrity-check full`; the result must
//!   be byte-identical to the source database, and corrupt or gapped chains
//!   must be refused;
//! * files written by `litestream replicate` are decoded with our [`Decoder`]
//!   and replayed by hand; the result must be byte-identical to what
//!   `litestream restore` produces from the same replica.
//!
//! Needs `litestream` (`LITESTREAM_BIN`, see `scripts/install-test-deps.sh`)
//! and `sqlite3` (`SQLITE3_BIN` or `PATH`); skips without them, fails under CI.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::tool;
use litefs_ltx::{
    format_file_name, lock_pgno, parse_file_name, Checksum, Decoder, Encoder, Format, Header, Txid,
    Version, FLAG_NO_CHECKSUM, HEADER_SIZE, TRAILER_SIZE,
};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// Both external programs, or `None` (after printing SKIP) when either is
/// missing outside CI.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let ls = tool("LITESTREAM_BIN", "litestream")?;
    let sq = tool("SQLITE3_BIN", "sqlite3")?;
    Some((ls, sq))
}

/// Runs `sql` through `sqlite3 -bail <db>` (with a 10 s busy timeout, since
/// `litestream replicate` takes locks of its own) and returns its standard
/// output; panics (with stderr) if sqlite3 fails.
fn sqlite(sq: &Path, db: &Path, sql: &str) -> String {
    let mut child = Command::new(sq)
        .arg("-bail")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sqlite3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {} failed ({}):\n{}\nSQL:\n{sql}",
        db.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn integrity_check(sq: &Path, db: &Path) {
    let out = sqlite(sq, db, "PRAGMA integrity_check;\n");
    assert_eq!(out.trim(), "ok", "integrity_check of {}", db.display());
}

/// `litestream restore -o <out> -integrity-check full file://<replica>`.
fn restore(ls: &Path, replica: &Path, out: &Path) -> Output {
    assert!(replica.is_absolute());
    Command::new(ls)
        .arg("restore")
        .arg("-o")
        .arg(out)
        .args(["-integrity-check", "full"])
        .arg(format!("file://{}", replica.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run litestream restore")
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Restores `replica` and asserts the result is byte-identical to `expected`
/// and passes `PRAGMA integrity_check`.
fn assert_restores_to(ls: &Path, sq: &Path, replica: &Path, expected: &[u8], what: &str) {
    let out_db = replica.with_extension("restored.db");
    let _ = fs::remove_file(&out_db);
    let out = restore(ls, replica, &out_db);
    assert!(
        out.status.success(),
        "{what}: litestream restore failed: {}",
        describe(&out)
    );
    let got = fs::read(&out_db).expect("restored database");
    assert_same_bytes(&got, expected, what);
    integrity_check(sq, &out_db);
    fs::remove_file(&out_db).unwrap();
}

// ---------------------------------------------------------------------------
// Databases and pages
// ---------------------------------------------------------------------------

/// Creates a rollback-journal database of a few hundred rows (indexed text,
/// compressible text, random blobs and a few multi-page random blobs), so it
/// has tens to hundreds of pages at every page size. With `auto_vacuum`,
/// `PRAGMA incremental_vacuum` can later shrink it without rewriting it.
fn make_db(sq: &Path, path: &Path, page_size: u32, auto_vacuum: bool) -> Vec<u8> {
    let av = if auto_vacuum { "INCREMENTAL" } else { "NONE" };
    let sql = format!(
        "PRAGMA page_size={page_size};
         PRAGMA auto_vacuum={av};
         PRAGMA journal_mode=DELETE;
         CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB);
         CREATE INDEX t_name ON t(name);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<300)
         INSERT INTO t
           SELECT i, 'name-' || i,
                  CASE WHEN i % 50 = 0 THEN randomblob(20000)
                       WHEN i % 3 = 0 THEN randomblob(100 + i)
                       ELSE replace(hex(zeroblob(50 + i)), '00', 'ab') END
           FROM c;
         PRAGMA page_size;
        "
    );
    let out = sqlite(sq, path, &sql);
    assert!(
        out.lines().any(|l| l.trim() == page_size.to_string()),
        "page_size not applied: {out}"
    );
    let bytes = fs::read(path).unwrap();
    assert!(!path.with_extension("db-journal").exists());
    assert_eq!(bytes.len() % page_size as usize, 0);
    assert_eq!(db_page_size(&bytes), page_size);
    bytes
}

/// The page size from a database header (offset 16, 1 meaning 65536).
fn db_page_size(db: &[u8]) -> u32 {
    match u16::from_be_bytes([db[16], db[17]]) {
        1 => 65536,
        n => u32::from(n),
    }
}

fn page(db: &[u8], page_size: u32, pgno: u32) -> &[u8] {
    let ps = page_size as usize;
    let at = (pgno as usize - 1) * ps;
    &db[at..at + ps]
}

fn page_count(db: &[u8], page_size: u32) -> u32 {
    u32::try_from(db.len() / page_size as usize).unwrap()
}

/// Every page of `db` (minus the lock page) as `(pgno, data)`.
fn all_pages(db: &[u8], page_size: u32) -> Vec<(u32, &[u8])> {
    let lock = lock_pgno(page_size);
    (1..=page_count(db, page_size))
        .filter(|&p| p != lock)
        .map(|p| (p, page(db, page_size, p)))
        .collect()
}

/// Pages of `new` that are not in `old` or differ from it.
fn changed_pages<'a>(old: &[u8], new: &'a [u8], page_size: u32) -> Vec<(u32, &'a [u8])> {
    let old_count = page_count(old, page_size);
    all_pages(new, page_size)
        .into_iter()
        .filter(|&(p, data)| p > old_count || page(old, page_size, p) != data)
        .collect()
}

fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    let ps = if want.len() >= 100 {
        db_page_size(want) as usize
    } else {
        1
    };
    panic!(
        "{what}: restored database differs from the expected one: lengths {} vs {} (expected); \
         first differing byte: {:?} (page {:?})",
        got.len(),
        want.len(),
        first,
        first.map(|o| o / ps + 1)
    );
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// Writing LTX files into a replica
// ---------------------------------------------------------------------------

/// A v3 NoChecksum header for TXIDs `min..=max`.
fn v3_header(page_size: u32, commit: u32, min: u64, max: u64, timestamp: i64) -> Header {
    Header {
        flags: FLAG_NO_CHECKSUM,
        min_txid: Txid(min),
        ..Header::snapshot(page_size, commit, Txid(max), timestamp)
    }
}

fn ltx_path(replica: &Path, level: u32, h: &Header) -> PathBuf {
    replica
        .join("ltx")
        .join(level.to_string())
        .join(format_file_name(h.min_txid, h.max_txid))
}

/// Encodes `pages` under `h` into `<replica>/ltx/0/<min>-<max>.ltx`, sets the
/// file's mtime to the header timestamp (as Litestream's file backend does),
/// checks the file with our own decoder, and returns its path.
fn write_ltx(replica: &Path, h: Header, format: Format, pages: &[(u32, &[u8])]) -> PathBuf {
    let path = ltx_path(replica, 0, &h);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = fs::File::create(&path).unwrap();
    let mut enc = Encoder::new(BufWriter::new(file), h, format).expect("encoder");
    for &(pgno, data) in pages {
        enc.encode_page(pgno, data).expect("encode_page");
    }
    let (w, trailer) = enc.finish(Checksum(0)).expect("finish");
    let file = w.into_inner().map_err(|e| e.into_error()).unwrap();
    let mtime = UNIX_EPOCH + Duration::from_millis(u64::try_from(h.timestamp).unwrap());
    file.set_modified(mtime).unwrap();
    file.sync_all().unwrap();
    drop(file);

    // Our decoder must give back exactly what went in.
    let bytes = fs::read(&path).unwrap();
    let mut dec = Decoder::new(&bytes[..], Version::V3).expect("decode own file");
    assert_eq!(*dec.header(), h);
    let mut buf = vec![0u8; h.page_size as usize];
    for &(pgno, data) in pages {
        let info = dec.next_page(&mut buf).unwrap().expect("page missing");
        assert_eq!(info.pgno, pgno);
        assert!(buf == data, "page {pgno} did not round-trip");
    }
    assert!(dec.next_page(&mut buf).unwrap().is_none());
    assert_eq!(dec.finish().expect("finish own file"), trailer);
    assert_eq!(trailer.post_apply_checksum, Checksum(0));

    // And its page index must describe the page frames we think it does.
    let flag = match format {
        Format::V3Block => 1,
        Format::V3Frame => 0,
        Format::V1 => unreachable!(),
    };
    let index = check_index(&bytes, Some(flag));
    let pgnos: Vec<u32> = index.iter().map(|e| e.pgno).collect();
    let want: Vec<u32> = pages.iter().map(|p| p.0).collect();
    assert_eq!(pgnos, want, "page index of {}", path.display());
    path
}

// ---------------------------------------------------------------------------
// Reading raw v3 files: the page index
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    pgno: u32,
    offset: usize,
    size: usize,
    /// The page-header flags found at `offset + 4`.
    flags: u16,
}

fn read_uvarint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
        assert!(shift < 64, "varint too long");
    }
}

/// Parses and checks a v3 file's page index against the raw bytes: entries
/// in ascending pgno order, contiguous from the end of the header, each
/// pointing at a page header with its pgno (and, when given, `flags`), a
/// block's size matching its size prefix, the 6-byte terminator right after
/// the last page, and the size field right before the trailer.
fn check_index(b: &[u8], flags: Option<u16>) -> Vec<IndexEntry> {
    let n = b.len();
    assert!(
        n >= HEADER_SIZE + 6 + 1 + 8 + TRAILER_SIZE,
        "file too short: {n}"
    );
    let len_at = n - TRAILER_SIZE - 8;
    let index_len = usize::try_from(u64::from_be_bytes(
        b[len_at..len_at + 8].try_into().unwrap(),
    ))
    .unwrap();
    assert!(
        index_len >= 1 && index_len <= len_at - HEADER_SIZE - 6,
        "index size {index_len}"
    );
    let start = len_at - index_len;
    let mut at = start;
    let mut entries = Vec::new();
    let mut next = HEADER_SIZE;
    loop {
        let pgno = read_uvarint(b, &mut at);
        if pgno == 0 {
            break;
        }
        let offset = usize::try_from(read_uvarint(b, &mut at)).unwrap();
        let size = usize::try_from(read_uvarint(b, &mut at)).unwrap();
        let pgno = u32::try_from(pgno).unwrap();
        assert_eq!(offset, next, "index entry for page {pgno}: offset");
        assert_eq!(
            u32::from_be_bytes(b[offset..offset + 4].try_into().unwrap()),
            pgno,
            "pgno at {offset}"
        );
        let f = u16::from_be_bytes([b[offset + 4], b[offset + 5]]);
        if let Some(want) = flags {
            assert_eq!(f, want, "page {pgno} flags");
        }
        if f == 1 {
            let csize = u32::from_be_bytes(b[offset + 6..offset + 10].try_into().unwrap()) as usize;
            assert_eq!(size, 10 + csize, "page {pgno}: index size vs size prefix");
        }
        if let Some(prev) = entries.last() {
            let prev: &IndexEntry = prev;
            assert!(
                pgno > prev.pgno,
                "index not ascending: {} then {pgno}",
                prev.pgno
            );
        }
        entries.push(IndexEntry {
            pgno,
            offset,
            size,
            flags: f,
        });
        next = offset + size;
    }
    assert_eq!(at, len_at, "index entries end before the size field");
    assert_eq!(&b[next..next + 6], &[0u8; 6], "page block terminator");
    assert_eq!(
        next + 6,
        start,
        "index does not start right after the terminator"
    );
    entries
}

// ---------------------------------------------------------------------------
// 1. Snapshots written by us, restored by Litestream
// ---------------------------------------------------------------------------

#[test]
fn snapshot_restores_byte_identical() {
    let Some((ls, sq)) = tools() else { return };
    for page_size in [4096u32, 512, 65536] {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("src.db");
        let db = make_db(&sq, &db_path, page_size, false);
        let commit = page_count(&db, page_size);
        assert!(commit >= 4, "page size {page_size}: only {commit} pages");
        let pages = all_pages(&db, page_size);
        for format in [Format::V3Block, Format::V3Frame] {
            let what = format!("{format:?} snapshot, page size {page_size}, {commit} pages");
            let replica = dir.path().join(format!("replica-{format:?}"));
            let h = v3_header(page_size, commit, 1, 1, now_ms());
            let path = write_ltx(&replica, h, format, &pages);
            assert!(path.ends_with("ltx/0/0000000000000001-0000000000000001.ltx"));
            assert_restores_to(&ls, &sq, &replica, &db, &what);
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Incremental chains
// ---------------------------------------------------------------------------

/// One modification of a chain and what it must do to the database.
struct Step {
    sql: &'static str,
    /// Required sign of (new page count - old page count), if any.
    growth: Option<std::cmp::Ordering>,
    /// Whether some pages must be left unchanged (a true incremental).
    partial: bool,
}

const INSERT_UPDATE_DELETE: Step = Step {
    sql: "INSERT INTO t(name, body) VALUES ('new-1', randomblob(3000)), ('new-2', 'hello');
          UPDATE t SET body = upper(body) WHERE id % 37 = 1 AND typeof(body) = 'text';
          DELETE FROM t WHERE id BETWEEN 120 AND 130;",
    growth: None,
    partial: true,
};
const GROW: Step = Step {
    sql: "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<40)
          INSERT INTO t(name, body) SELECT 'grow-' || i, randomblob(400) FROM c;",
    growth: Some(std::cmp::Ordering::Greater),
    partial: true,
};
/// VACUUM rewrites (nearly) every page and shrinks the file.
const SHRINK_VACUUM: Step = Step {
    sql: "DELETE FROM t WHERE id % 2 = 0 OR length(body) > 10000; VACUUM;",
    growth: Some(std::cmp::Ordering::Less),
    partial: false,
};
/// Needs an auto_vacuum database: frees the big blobs' overflow pages and
/// truncates the file, moving only a few pages.
const SHRINK_INCREMENTAL: Step = Step {
    sql: "DELETE FROM t WHERE length(body) > 10000; PRAGMA incremental_vacuum;",
    growth: Some(std::cmp::Ordering::Less),
    partial: true,
};

/// Snapshot TXID 1, then one incremental per step, restored after each.
/// `formats[i]` encodes TXID `i + 1`.
fn run_chain(
    ls: &Path,
    sq: &Path,
    page_size: u32,
    auto_vacuum: bool,
    formats: &[Format],
    steps: &[Step],
) {
    assert_eq!(formats.len(), steps.len() + 1);
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("src.db");
    let replica = dir.path().join("replica");
    let mut db = make_db(sq, &db_path, page_size, auto_vacuum);
    let base = now_ms();
    let h = v3_header(page_size, page_count(&db, page_size), 1, 1, base);
    write_ltx(&replica, h, formats[0], &all_pages(&db, page_size));
    assert_restores_to(ls, sq, &replica, &db, "chain TXID 1");
    for (i, step) in steps.iter().enumerate() {
        let txid = i as u64 + 2;
        sqlite(sq, &db_path, step.sql);
        let new = fs::read(&db_path).unwrap();
        let changed = changed_pages(&db, &new, page_size);
        let (old_n, new_n) = (page_count(&db, page_size), page_count(&new, page_size));
        assert!(
            !changed.is_empty(),
            "TXID {txid}: modification changed no page"
        );
        if step.partial {
            assert!(
                changed.len() < new_n as usize,
                "TXID {txid}: every page changed, the incremental would be a full copy"
            );
        }
        if let Some(g) = step.growth {
            assert_eq!(
                new_n.cmp(&old_n),
                g,
                "TXID {txid}: page count {old_n} -> {new_n}"
            );
        }
        let h = v3_header(
            page_size,
            new_n,
            txid,
            txid,
            base + i64::try_from(txid).unwrap(),
        );
        write_ltx(&replica, h, formats[i + 1], &changed);
        let what = format!(
            "chain TXID {txid} ({:?}, page size {page_size}, {old_n} -> {new_n} pages, {} changed)",
            formats[i + 1],
            changed.len()
        );
        assert_restores_to(ls, sq, &replica, &new, &what);
        db = new;
    }
}

#[test]
fn incremental_restores_byte_identical() {
    let Some((ls, sq)) = tools() else { return };
    for format in [Format::V3Block, Format::V3Frame] {
        run_chain(
            &ls,
            &sq,
            4096,
            false,
            &[format, format],
            &[INSERT_UPDATE_DELETE],
        );
    }
}

#[test]
fn three_file_chain_with_growth_and_shrink() {
    let Some((ls, sq)) = tools() else { return };
    // Mixed page encodings within one chain; a grown and a shrunk database
    // (the shrink once by VACUUM, which rewrites everything, and once by
    // incremental vacuum, which moves only a few pages).
    run_chain(
        &ls,
        &sq,
        4096,
        false,
        &[Format::V3Block, Format::V3Frame, Format::V3Block],
        &[GROW, SHRINK_VACUUM],
    );
    run_chain(
        &ls,
        &sq,
        512,
        true,
        &[
            Format::V3Frame,
            Format::V3Block,
            Format::V3Frame,
            Format::V3Block,
        ],
        &[INSERT_UPDATE_DELETE, GROW, SHRINK_INCREMENTAL],
    );
}

// ---------------------------------------------------------------------------
// 3. Rejections
// ---------------------------------------------------------------------------

/// A replica with snapshot TXID 1 and incremental TXID 2 whose changed pages
/// include whole pages of random bytes. Returns the database after TXID 2 and
/// the TXID 2 file.
fn two_file_replica(sq: &Path, dir: &Path, format: Format) -> (PathBuf, Vec<u8>, PathBuf) {
    let page_size = 4096;
    let db_path = dir.join("src.db");
    let replica = dir.join("replica");
    let db1 = make_db(sq, &db_path, page_size, false);
    let base = now_ms();
    let h = v3_header(page_size, page_count(&db1, page_size), 1, 1, base);
    write_ltx(&replica, h, format, &all_pages(&db1, page_size));
    sqlite(
        sq,
        &db_path,
        "INSERT INTO t(name, body) VALUES ('rand', randomblob(40000));",
    );
    let db2 = fs::read(&db_path).unwrap();
    let changed = changed_pages(&db1, &db2, page_size);
    let h = v3_header(page_size, page_count(&db2, page_size), 2, 2, base + 1);
    let path = write_ltx(&replica, h, format, &changed);
    (replica, db2, path)
}

/// How to damage an LTX file in [`corrupt_page_payload_is_rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Flip a byte of page data.
    Flip,
    /// Flip a byte of page data held in an LZ4 frame and rewrite the frame's
    /// content checksum, so that only the LTX file checksum can notice.
    FlipAndFixFrame,
}

/// Where a page's data is stored verbatim inside its v3 page frame (the
/// literal run of an LZ4 block, or the single uncompressed block of an LZ4
/// frame) and where the frame's XXH32 checksums over it are, if any.
struct StoredPage {
    data_at: usize,
    data_len: usize,
    /// Offset of the frame's block checksum (over the stored block).
    block_xxh_at: Option<usize>,
    /// Offset of the frame's content checksum (over the page).
    content_xxh_at: Option<usize>,
}

fn stored_page_data(b: &[u8], e: &IndexEntry) -> StoredPage {
    let end = e.offset + e.size;
    if e.flags == 1 {
        // Block: token, literal-length bytes, then literals. Only the middle
        // is used, and the decoded page is checked to differ in one byte.
        return StoredPage {
            data_at: e.offset + 10,
            data_len: e.size - 10,
            block_xxh_at: None,
            content_xxh_at: None,
        };
    }
    let f = e.offset + 6;
    assert_eq!(&b[f..f + 4], &[0x04, 0x22, 0x4d, 0x18], "LZ4 frame magic");
    let flg = b[f + 4];
    let mut at = f + 6;
    if flg & 0x08 != 0 {
        at += 8; // content size
    }
    if flg & 0x01 != 0 {
        at += 4; // dictionary ID
    }
    at += 1; // header checksum
    let bsize = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert_ne!(
        bsize & 0x8000_0000,
        0,
        "incompressible page not stored uncompressed"
    );
    let data_len = (bsize & 0x7fff_ffff) as usize;
    let data_at = at + 4;
    at = data_at + data_len;
    let block_xxh_at = (flg & 0x10 != 0).then(|| {
        at += 4;
        at - 4
    });
    assert_eq!(&b[at..at + 4], &[0u8; 4], "frame has more than one block");
    at += 4;
    let content_xxh_at = (flg & 0x04 != 0).then(|| {
        at += 4;
        at - 4
    });
    assert_eq!(at, end, "frame length");
    StoredPage {
        data_at,
        data_len,
        block_xxh_at,
        content_xxh_at,
    }
}

#[test]
fn corrupt_page_payload_is_rejected() {
    let Some((ls, sq)) = tools() else { return };
    let cases = [
        (Format::V3Block, Damage::Flip),
        (Format::V3Frame, Damage::Flip),
        (Format::V3Frame, Damage::FlipAndFixFrame),
    ];
    for (format, damage) in cases {
        let what = format!("{format:?}/{damage:?}");
        let dir = tempfile::tempdir().unwrap();
        let (replica, db2, path) = two_file_replica(&sq, dir.path(), format);
        // Control: the intact chain restores.
        assert_restores_to(&ls, &sq, &replica, &db2, &format!("{what}: intact chain"));

        // Damage the least compressible page, in the middle of its data.
        let mut bytes = fs::read(&path).unwrap();
        let index = check_index(&bytes, None);
        let victim = *index.iter().max_by_key(|e| e.size).unwrap();
        assert!(
            victim.size > 4000,
            "{what}: no incompressible page: {victim:?}"
        );
        let sp = stored_page_data(&bytes, &victim);
        let frame_checked = sp.block_xxh_at.is_some() || sp.content_xxh_at.is_some();
        let at = sp.data_at + sp.data_len / 2;
        bytes[at] ^= 0x55;
        if damage == Damage::FlipAndFixFrame {
            assert!(frame_checked, "{what}: frame has no checksum to fix");
            let sum = twox_hash::XxHash32::oneshot(0, &bytes[sp.data_at..sp.data_at + sp.data_len]);
            for x in [sp.block_xxh_at, sp.content_xxh_at].into_iter().flatten() {
                bytes[x..x + 4].copy_from_slice(&sum.to_le_bytes());
            }
        }
        fs::write(&path, &bytes).unwrap();

        // Our decoder: the damaged page reads back different in exactly one
        // byte (or fails its frame checksum), and the file is refused.
        let mut dec = Decoder::new(&bytes[..], Version::V3).unwrap();
        let mut buf = vec![0u8; 4096];
        let ours = loop {
            match dec.next_page(&mut buf) {
                Ok(Some(info)) if info.pgno == victim.pgno => {
                    let orig = page(&db2, 4096, info.pgno);
                    let diffs = buf.iter().zip(orig).filter(|(a, b)| a != b).count();
                    assert_eq!(
                        diffs, 1,
                        "{what}: damaged page {} decodes with {diffs} changed bytes",
                        info.pgno
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => break dec.finish().err(),
                Err(e) => break Some(e),
            }
        };
        let ours = ours.unwrap_or_else(|| panic!("{what}: our decoder accepted a corrupt file"));
        // Only an LZ4 frame's own checksums can catch the flip before the
        // LTX file checksum does.
        let lz4_catches = damage == Damage::Flip && frame_checked;
        if lz4_catches {
            assert!(
                matches!(ours, litefs_ltx::DecodeError::Lz4 { .. }),
                "{what}: ours: {ours}"
            );
        } else {
            assert!(
                matches!(ours, litefs_ltx::DecodeError::FileChecksum { .. }),
                "{what}: ours: {ours}"
            );
        }

        let out_db = dir.path().join("out.db");
        let out = restore(&ls, &replica, &out_db);
        eprintln!(
            "{what}: page {} byte {at}: ours: {ours}; litestream: {}",
            victim.pgno,
            describe(&out)
        );
        assert!(
            !out.status.success(),
            "{what}: litestream restored a corrupt chain: {}",
            describe(&out)
        );
        let text =
            String::from_utf8_lossy(&[out.stdout.as_slice(), out.stderr.as_slice()].concat())
                .to_lowercase();
        // A damaged frame fails inside Go's LZ4 reader (0.5.17 says "read lz4
        // trailer: expected lz4 end frame") before the LTX checksum is reached.
        let expect = if lz4_catches {
            "lz4"
        } else {
            "file checksum mismatch"
        };
        assert!(
            text.contains(expect),
            "{what}: error does not mention {expect:?}: {}",
            describe(&out)
        );
        assert!(
            !out_db.exists(),
            "{what}: a failed restore left {}",
            out_db.display()
        );
    }
}

#[test]
fn txid_gap_is_rejected() {
    let Some((ls, sq)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (replica, _db2, path2) = two_file_replica(&sq, dir.path(), Format::V3Block);
    // Turn TXID 2 into TXID 3: the chain is now 1, 3.
    let bytes = fs::read(&path2).unwrap();
    let mut dec = Decoder::new(&bytes[..], Version::V3).unwrap();
    let h2 = *dec.header();
    let mut pages = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some(info) = dec.next_page(&mut buf).unwrap() {
        pages.push((info.pgno, buf.clone()));
    }
    dec.finish().unwrap();
    fs::remove_file(&path2).unwrap();
    let h3 = Header {
        min_txid: Txid(3),
        max_txid: Txid(3),
        ..h2
    };
    let refs: Vec<(u32, &[u8])> = pages.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    write_ltx(&replica, h3, Format::V3Block, &refs);

    let out_db = dir.path().join("out.db");
    let out = restore(&ls, &replica, &out_db);
    eprintln!("gap 1,3: {}", describe(&out));
    assert!(
        !out.status.success(),
        "litestream restored across a TXID gap: {}",
        describe(&out)
    );
    let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        text.contains("non-contiguous"),
        "unexpected error: {}",
        describe(&out)
    );
    assert!(
        !out_db.exists(),
        "a failed restore left {}",
        out_db.display()
    );
}

// ---------------------------------------------------------------------------
// 4. Files written by Litestream, decoded by us
// ---------------------------------------------------------------------------

/// Kills the child (SIGKILL) on drop unless it already exited.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl ChildGuard {
    /// Sends SIGINT and waits up to `limit` for a clean exit.
    fn interrupt(&mut self, limit: Duration) -> std::process::ExitStatus {
        let st = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -INT failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "litestream did not exit within {limit:?} of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[derive(Debug)]
struct LtxFile {
    level: u32,
    path: PathBuf,
    header: Header,
    /// (pgno, data) in file order.
    pages: Vec<(u32, Vec<u8>)>,
    index: Vec<IndexEntry>,
    mtime_ms: i64,
    bytes: Vec<u8>,
}

/// Decodes one LTX file completely with our decoder (Version::V3) and checks
/// that its name matches its header's TXID range.
fn decode_file(level: u32, path: &Path) -> Result<LtxFile, String> {
    let fname = path.file_name().unwrap().to_string_lossy();
    let (min, max) = parse_file_name(&fname).ok_or("file name does not parse")?;
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let mut dec = Decoder::new(&bytes[..], Version::V3).map_err(|e| format!("header: {e}"))?;
    let header = *dec.header();
    if (header.min_txid, header.max_txid) != (min, max) {
        return Err(format!(
            "name says {min}-{max}, header {}-{}",
            header.min_txid, header.max_txid
        ));
    }
    let mut pages = Vec::new();
    let mut buf = vec![0u8; header.page_size as usize];
    while let Some(info) = dec.next_page(&mut buf).map_err(|e| format!("page: {e}"))? {
        pages.push((info.pgno, buf.clone()));
    }
    let trailer = dec.finish().map_err(|e| format!("finish: {e}"))?;
    if trailer.post_apply_checksum != Checksum(0) {
        return Err(format!(
            "post-apply checksum {}",
            trailer.post_apply_checksum
        ));
    }
    let mtime = fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let mtime_ms = i64::try_from(mtime.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    Ok(LtxFile {
        level,
        path: path.to_owned(),
        header,
        pages,
        index: Vec::new(),
        mtime_ms,
        bytes,
    })
}

/// The `(level, path)` of every entry under `<replica>/ltx/<level>/`.
fn list_replica(replica: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    let Ok(levels) = fs::read_dir(replica.join("ltx")) else {
        return out;
    };
    for level_dir in levels {
        let level_dir = level_dir.unwrap();
        let name = level_dir.file_name().into_string().unwrap();
        let level: u32 = name
            .parse()
            .unwrap_or_else(|_| panic!("level directory {name:?} is not decimal"));
        for f in fs::read_dir(level_dir.path()).unwrap() {
            out.push((level, f.unwrap().path()));
        }
    }
    out
}

/// Decodes every file under `<replica>/ltx/<level>/`, checking each fully
/// (including its page index); any other file fails the test.
fn decode_replica(replica: &Path) -> Vec<LtxFile> {
    let mut files = Vec::new();
    for (level, path) in list_replica(replica) {
        let mut f = decode_file(level, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f.index = check_index(&f.bytes, None);
        assert_eq!(
            f.index.iter().map(|e| e.pgno).collect::<Vec<_>>(),
            f.pages.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{}: index pages",
            path.display()
        );
        files.push(f);
    }
    files.sort_by_key(|f| (f.level, f.header.min_txid, f.header.max_txid));
    files
}

/// Replays the newest snapshot (MinTXID 1, any level) among `files` plus the
/// L0 files that continue it contiguously; returns the image, the TXID
/// reached and the files used.
fn rebuild(files: &[&LtxFile]) -> (Vec<u8>, Txid, Vec<String>) {
    let snap = files
        .iter()
        .filter(|f| f.header.min_txid == Txid(1))
        .max_by_key(|f| (f.header.max_txid, f.level))
        .expect("no snapshot (MinTXID 1) in the replica");
    let mut applied = Vec::new();
    let mut img = Vec::new();
    let mut apply = |f: &LtxFile, img: &mut Vec<u8>| {
        let ps = f.header.page_size as usize;
        img.resize(f.header.commit as usize * ps, 0);
        for (pgno, data) in &f.pages {
            let at = (*pgno as usize - 1) * ps;
            img[at..at + ps].copy_from_slice(data);
        }
        applied.push(format!(
            "L{} {}-{}",
            f.level, f.header.min_txid, f.header.max_txid
        ));
    };
    apply(snap, &mut img);
    let mut txid = snap.header.max_txid;
    let mut l0: Vec<&LtxFile> = files.iter().copied().filter(|f| f.level == 0).collect();
    l0.sort_by_key(|f| f.header.min_txid);
    for f in l0 {
        if f.header.min_txid.0 == txid.0 + 1 {
            assert_eq!(f.header.page_size, snap.header.page_size);
            apply(f, &mut img);
            txid = f.header.max_txid;
        }
    }
    (img, txid, applied)
}

#[test]
fn decode_files_written_by_litestream() {
    let Some((ls, sq)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    sqlite(
        &sq,
        &db_path,
        "PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<1000)
         INSERT INTO t SELECT i, 'row-' || i, randomblob(i % 300) FROM c;",
    );
    let config = dir.path().join("litestream.yml");
    fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n      sync-interval: 1s\n",
            db_path.display(),
            replica.display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("litestream.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = ChildGuard(
        Command::new(&ls)
            .arg("replicate")
            .arg("-config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn litestream replicate"),
    );
    let log_text = || fs::read_to_string(&log_path).unwrap_or_default();

    std::thread::sleep(Duration::from_millis(1200));
    for batch in 0..4 {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "litestream exited early:\n{}",
            log_text()
        );
        sqlite(
            &sq,
            &db_path,
            &format!(
                "BEGIN IMMEDIATE;
                 INSERT INTO t(name, body) VALUES ('batch-{batch}', randomblob(5000));
                 UPDATE t SET name = name || '-b{batch}' WHERE id % 97 = {batch};
                 DELETE FROM t WHERE id % 113 = {batch};
                 COMMIT;"
            ),
        );
        std::thread::sleep(Duration::from_millis(1200));
    }
    // Wait until the replica, replayed by us, holds every batch. Files that
    // do not decode yet (being written) just mean "not yet".
    let src_dump = sqlite(&sq, &db_path, ".dump\n");
    assert!(src_dump.contains("batch-3"), "source lacks the last batch");
    let probe = dir.path().join("probe.db");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let files: Result<Vec<LtxFile>, String> = list_replica(&replica)
            .into_iter()
            .filter(|(_, p)| parse_file_name(&p.file_name().unwrap().to_string_lossy()).is_some())
            .map(|(level, p)| decode_file(level, &p))
            .collect();
        if let Ok(files) = files {
            if files.iter().any(|f| f.header.min_txid == Txid(1)) {
                let (img, _, _) = rebuild(&files.iter().collect::<Vec<_>>());
                for ext in ["db-wal", "db-shm"] {
                    let _ = fs::remove_file(probe.with_extension(ext));
                }
                fs::write(&probe, &img).unwrap();
                if sqlite(&sq, &probe, ".dump\n") == src_dump {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up within 15 s:\n{}",
            log_text()
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "litestream exited early:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = child.interrupt(Duration::from_secs(15));
    let log = log_text();
    eprintln!("litestream replicate exited with {status}; log:\n{log}");
    assert!(
        status.success(),
        "litestream replicate exited with {status} after SIGINT:\n{log}"
    );

    let files = decode_replica(&replica);
    assert!(!files.is_empty(), "litestream wrote no LTX files:\n{log}");
    for f in &files {
        let h = &f.header;
        let flags: Vec<u16> = f.index.iter().map(|e| e.flags).collect();
        eprintln!(
            "L{} {}-{}: flags {:#x} page_size {} commit {} pages {} ts {} (mtime {}) pre {} wal off {} size {} salts {:08x}/{:08x} node {} page flags {:?}",
            f.level,
            h.min_txid,
            h.max_txid,
            h.flags,
            h.page_size,
            h.commit,
            f.pages.len(),
            h.timestamp,
            f.mtime_ms,
            h.pre_apply_checksum,
            h.wal_offset,
            h.wal_size,
            h.wal_salt1,
            h.wal_salt2,
            h.node_id,
            flags.iter().collect::<std::collections::BTreeSet<_>>(),
        );
        assert_eq!(h.flags, FLAG_NO_CHECKSUM, "{}", f.path.display());
        assert_eq!(h.pre_apply_checksum, Checksum(0), "{}", f.path.display());
        assert_eq!(h.page_size, 4096, "{}", f.path.display());
        // Litestream 0.5.16+ writes size-prefixed LZ4 blocks.
        assert!(
            flags.iter().all(|&fl| fl == 1),
            "{}: page flags {flags:?}",
            f.path.display()
        );
        // The file backend sets each file's mtime to the header timestamp.
        assert_eq!(
            f.mtime_ms,
            h.timestamp,
            "{}: mtime vs header timestamp",
            f.path.display()
        );
    }
    let l0: BTreeMap<Txid, &LtxFile> = files
        .iter()
        .filter(|f| f.level == 0)
        .map(|f| (f.header.min_txid, f))
        .collect();
    assert!(
        l0.len() >= 3,
        "expected several L0 files (one per sync), got {}:\n{log}",
        l0.len()
    );

    let all: Vec<&LtxFile> = files.iter().collect();
    let (img, txid, applied) = rebuild(&all);
    let max_txid = files.iter().map(|f| f.header.max_txid).max().unwrap();
    assert_eq!(
        txid, max_txid,
        "the chain {applied:?} does not reach the newest TXID"
    );
    eprintln!(
        "rebuilt from {applied:?}: {} bytes at TXID {txid}",
        img.len()
    );
    // Level 0 alone starts with its own snapshot (TXID 1) and must replay to
    // the same bytes as the snapshot-level route.
    let l0_only: Vec<&LtxFile> = files.iter().filter(|f| f.level == 0).collect();
    assert!(l0.contains_key(&Txid(1)), "no TXID 1 file at level 0");
    let (img0, txid0, applied0) = rebuild(&l0_only);
    assert_eq!(
        txid0, max_txid,
        "the L0 chain {applied0:?} does not reach the newest TXID"
    );
    assert_same_bytes(
        &img0,
        &img,
        &format!("L0 chain {applied0:?} vs {applied:?}"),
    );

    let out_db = dir.path().join("restored.db");
    let out = restore(&ls, &replica, &out_db);
    assert!(
        out.status.success(),
        "litestream restore of its own replica failed: {}",
        describe(&out)
    );
    let restored = fs::read(&out_db).unwrap();
    assert_same_bytes(
        &img,
        &restored,
        &format!("rebuild via {applied:?} vs litestream restore"),
    );

    let rebuilt = dir.path().join("rebuilt.db");
    fs::write(&rebuilt, &img).unwrap();
    integrity_check(&sq, &rebuilt);
    // The replica must hold every batch: same content as the source.
    let ours = sqlite(&sq, &rebuilt, ".dump\n");
    assert!(
        ours == src_dump,
        "rebuilt database's .dump differs from the source's"
    );
}
