//! Replica apply, snapshots, exports and imports on stores without FUSE,
//! with database files real SQLite wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_ltx::{Pos, Txid};
use litefs_store::{Applied, NoClients, Store, StoreError, StoreOptions};
use std::path::Path;
use std::process::Command;

/// A SQLite database file made by Python's sqlite3 running `sql`.
fn sqlite_image(dir: &Path, file: &str, sql: &str) -> Vec<u8> {
    let path = dir.join(file);
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect('{}'); c.executescript('''{sql}'''); c.commit(); c.close()",
            path.display()
        ))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

fn opts(node_id: u64) -> StoreOptions {
    StoreOptions {
        compress: true,
        node_id,
    }
}

const V1: &str = "create table t(x); with recursive s(i) as (select 1 union all select i+1 from s where i<2000) insert into t select i from s;";
const V2: &str = "create table t(x); with recursive s(i) as (select 1 union all select i+1 from s where i<3000) insert into t select i from s; create table u(y);";

/// A primary store (node 1) where `a.db` was imported as V1 and then V2,
/// and an empty replica store (node 2).
struct Pair {
    img1: Vec<u8>,
    img2: Vec<u8>,
    p: Store,
    r: Store,
    /// The positions after each import.
    p1: Pos,
    p2: Pos,
    p_dir: tempfile::TempDir,
    _dirs: [tempfile::TempDir; 2],
}

fn pair() -> Pair {
    let scratch = tempfile::tempdir().unwrap();
    let img1 = sqlite_image(scratch.path(), "one.db", V1);
    let img2 = sqlite_image(scratch.path(), "two.db", V2);
    let p_dir = tempfile::tempdir().unwrap();
    let r_dir = tempfile::tempdir().unwrap();
    let p = Store::open(p_dir.path(), opts(1)).unwrap();
    let r = Store::open(r_dir.path(), opts(2)).unwrap();
    let p1 = p.import("a.db", &img1, &NoClients).unwrap();
    let p2 = p.import("a.db", &img2, &NoClients).unwrap();
    Pair {
        img1,
        img2,
        p,
        r,
        p1,
        p2,
        p_dir,
        _dirs: [scratch, r_dir],
    }
}

#[test]
fn a_replica_applies_the_primarys_files_and_lands_on_the_same_bytes() {
    let pair = pair();
    let Pair {
        img1,
        img2,
        p,
        r,
        p1,
        p2,
        ..
    } = &pair;
    let (p1, p2) = (*p1, *p2);
    assert_eq!((p1.txid.0, p2.txid.0), (1, 2));
    let pdb = p.db("a.db").unwrap();
    pdb.verify().unwrap();

    let rdb = r.create_db("a.db").unwrap();
    // Out of order: refused, nothing changes.
    let second = pdb.read_ltx_from(Txid(2)).unwrap().unwrap();
    assert!(matches!(
        rdb.apply_ltx(&second, &NoClients),
        Err(StoreError::NotContiguous { .. })
    ));
    assert!(rdb.pos().is_zero());
    // A damaged file: refused, nothing changes.
    let first = pdb.read_ltx_from(Txid(1)).unwrap().unwrap();
    let mut bad = first.to_vec();
    let n = bad.len();
    bad[n / 2] ^= 0x40;
    assert!(matches!(
        rdb.apply_ltx(&bad, &NoClients),
        Err(StoreError::InvalidLtx { .. })
    ));
    assert!(rdb.pos().is_zero());

    assert_eq!(rdb.apply_ltx(&first, &NoClients).unwrap(), Applied::At(p1));
    assert_eq!(std::fs::read(&rdb.paths().database).unwrap(), *img1);
    assert_eq!(rdb.apply_ltx(&second, &NoClients).unwrap(), Applied::At(p2));
    assert_eq!(std::fs::read(&rdb.paths().database).unwrap(), *img2);
    rdb.verify().unwrap();
    // A file this node wrote itself is skipped.
    let own = r.create_db("own.db").unwrap();
    r.import("own.db", img1, &NoClients).unwrap();
    let own_file = own.read_ltx_from(Txid(1)).unwrap().unwrap();
    assert_eq!(own.apply_ltx(&own_file, &NoClients).unwrap(), Applied::Own);

    // A snapshot brings a fresh replica to the same place.
    let (h, snap) = pdb.snapshot_ltx(&NoClients).unwrap().unwrap();
    assert_eq!((h.min_txid.0, h.max_txid.0), (1, 2));
    let r2_dir = tempfile::tempdir().unwrap();
    let r2 = Store::open(r2_dir.path(), opts(3)).unwrap();
    let r2db = r2.create_db("a.db").unwrap();
    assert_eq!(r2db.apply_ltx(&snap, &NoClients).unwrap(), Applied::At(p2));
    assert_eq!(std::fs::read(&r2db.paths().database).unwrap(), *img2);

    // An export is the database's bytes.
    let mut out = Vec::new();
    let c = pdb
        .read_committed(&NoClients, |_, _, page| {
            out.extend_from_slice(page);
            Ok(())
        })
        .unwrap();
    assert_eq!(c.pos, p2);
    assert_eq!(out, *img2);
    drop(r2);
}

#[test]
fn bad_imports_change_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let img = sqlite_image(scratch.path(), "one.db", V1);
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts(1)).unwrap();
    let pos = s.import("a.db", &img, &NoClients).unwrap();
    for (what, bytes) in [
        ("short", b"SQLite".to_vec()),
        ("not sqlite", vec![7u8; 8192]),
        ("torn", img[..img.len() - 100].to_vec()),
        ("wrong page count", {
            let mut b = img.clone();
            b.extend_from_slice(&vec![0u8; 4096]);
            b
        }),
    ] {
        let e = s.import("a.db", &bytes, &NoClients).unwrap_err();
        assert!(matches!(e, StoreError::InvalidImport { .. }), "{what}: {e}");
        assert_eq!(s.db("a.db").unwrap().pos(), pos, "{what}");
    }
    assert!(s.import("../x", &img, &NoClients).is_err());
    assert_eq!(
        std::fs::read(&s.db("a.db").unwrap().paths().database).unwrap(),
        img
    );
}

/// An apply interrupted after its LTX file was in place but before every
/// page was written is finished at the next start.
#[test]
fn an_interrupted_apply_rolls_forward_at_start() {
    let scratch = tempfile::tempdir().unwrap();
    let img1 = sqlite_image(scratch.path(), "one.db", V1);
    let img2 = sqlite_image(scratch.path(), "two.db", V2);
    let p_dir = tempfile::tempdir().unwrap();
    let p = Store::open(p_dir.path(), opts(1)).unwrap();
    p.import("a.db", &img1, &NoClients).unwrap();
    p.import("a.db", &img2, &NoClients).unwrap();
    let pdb = p.db("a.db").unwrap();
    let r_dir = tempfile::tempdir().unwrap();
    let paths = {
        let r = Store::open(r_dir.path(), opts(2)).unwrap();
        let rdb = r.create_db("a.db").unwrap();
        rdb.apply_ltx(&pdb.read_ltx_from(Txid(1)).unwrap().unwrap(), &NoClients)
            .unwrap();
        rdb.paths().clone()
    };
    // The crash: the second file is in place, half its pages written.
    let second = pdb.read_ltx_from(Txid(2)).unwrap().unwrap();
    std::fs::write(
        paths.ltx.join("0000000000000002-0000000000000002.ltx"),
        &second,
    )
    .unwrap();
    std::fs::write(paths.dir.join("applying"), b"").unwrap();
    let mut half = img2.clone();
    half.truncate(img2.len() / 2);
    half.extend_from_slice(&img1[img2.len() / 2..img1.len().max(img2.len() / 2)]);
    std::fs::write(&paths.database, &half).unwrap();
    let r = Store::open(r_dir.path(), opts(2)).unwrap();
    let rdb = r.db("a.db").unwrap();
    assert_eq!(rdb.pos(), pdb.pos());
    rdb.verify().unwrap();
    assert_eq!(std::fs::read(&paths.database).unwrap(), *img2);
}

/// Files and bytes of LTX files in a database's `ltx/` directory.
fn ltx_on_disk(db: &litefs_store::Db) -> (u64, u64) {
    let mut n = (0, 0);
    for e in std::fs::read_dir(&db.paths().ltx).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".ltx") {
            n.0 += 1;
            n.1 += e.metadata().unwrap().len();
        }
    }
    n
}

#[test]
fn stats_count_applies_ltx_files_and_retention() {
    let Pair { p, r, p_dir, .. } = pair();
    let pdb = p.db("a.db").unwrap();
    let c = pdb.stats().read();
    // Imports are this node's own commits: no lag.
    assert_eq!((c.applied_files, c.apply_errors, c.commits), (2, 0, 2));
    assert_eq!((c.ltx_files, c.ltx_bytes), ltx_on_disk(&pdb));
    assert_eq!(c.ltx_files, 2);
    assert_eq!(c.lag, Some(std::time::Duration::ZERO));
    assert_eq!((c.fences, c.applying), (0, false));

    let rdb = r.create_db("a.db").unwrap();
    assert_eq!(rdb.stats().read().lag, None);
    let first = pdb.read_ltx_from(Txid(1)).unwrap().unwrap();
    let second = pdb.read_ltx_from(Txid(2)).unwrap().unwrap();
    assert!(rdb.apply_ltx(&second, &NoClients).is_err());
    let c = rdb.stats().read();
    assert_eq!((c.applied_files, c.apply_errors, c.ltx_files), (0, 1, 0));
    rdb.apply_ltx_batch(&[&first, &second], &NoClients).unwrap();
    let c = rdb.stats().read();
    assert_eq!((c.applied_files, c.apply_errors, c.commits), (2, 1, 0));
    assert!(c.lag.is_some_and(|l| l.as_secs() < 60), "{c:?}");
    assert_eq!((c.ltx_files, c.ltx_bytes), ltx_on_disk(&rdb));
    assert!(c.apply_time > std::time::Duration::ZERO);
    // A snapshot replaces the history: the gauges follow the directory.
    let (_, snap) = pdb.snapshot_ltx(&NoClients).unwrap().unwrap();
    rdb.apply_ltx(&snap, &NoClients).unwrap();
    let c = rdb.stats().read();
    assert_eq!((c.ltx_files, c.ltx_bytes), ltx_on_disk(&rdb));
    assert_eq!((c.ltx_files, c.applied_files), (1, 3));

    // Retention keeps the newest file and counts what it removes.
    assert_eq!(pdb.enforce_retention(std::time::Duration::ZERO).unwrap(), 1);
    let c = pdb.stats().read();
    assert_eq!((c.ltx_reaped, c.ltx_files), (1, 1));
    assert_eq!((c.ltx_files, c.ltx_bytes), ltx_on_disk(&pdb));
    // A restart counts what is on disk.
    let on_disk = ltx_on_disk(&pdb);
    drop((pdb, p));
    let p = Store::open(p_dir.path(), opts(1)).unwrap();
    let c = p.db("a.db").unwrap().stats().read();
    drop(r);
    assert_eq!((c.ltx_files, c.ltx_bytes), on_disk);
    assert_eq!((c.applied_files, c.ltx_reaped), (0, 0));
}
