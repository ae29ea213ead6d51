//! WAL scanner against WAL files written by real SQLite (python3 `sqlite3`).
//!
//! The generator runs a series of transactions in WAL mode with automatic
//! checkpoints disabled — including a cache-spilling transaction that is
//! rolled back, a cache-spilling one that commits, a shrinking VACUUM, and a
//! spilled uncommitted tail — recording the page count and a logical hash of
//! the database after every commit, and copying the `-wal` file while the
//! connection is still open.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{field, logical_hashes, nums, python, HASH_FN};
use litefs_sqlite::{
    scan_wal, wal_checksum, DbHeader, SqliteError, WalFrameHeader, WalHeader, WalScanner, WalTxn,
    WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};

const GEN: &str = r#"
import sqlite3, shutil, sys, os
d, ps = sys.argv[1], int(sys.argv[2])
db = os.path.join(d, "test.db")
c = sqlite3.connect(db, isolation_level=None)
c.execute(f"pragma page_size={ps}")
c.execute("pragma journal_mode=wal")
c.execute("pragma wal_autocheckpoint=0")
c.execute("create table t(id integer primary key, v blob)")
c.execute("create index t_v on t(v)")
c.execute("begin")
for i in range(2000):
    c.execute("insert into t values(?, randomblob(150))", (i,))
c.execute("commit")
c.execute("pragma wal_checkpoint(truncate)")
shutil.copy(db, os.path.join(d, "base.db"))
base_hash = h(c)

commits, hashes = [], []
def committed():
    commits.append(c.execute("pragma page_count").fetchone()[0])
    hashes.append(h(c))

c.execute("insert into t select id + 10000, randomblob(150) from t where id < 300"); committed()
c.execute("begin")
c.execute("update t set v = randomblob(150) where id % 17 = 0")
c.execute("update t set v = randomblob(150) where id % 19 = 0")
c.execute("commit"); committed()
# Spills uncommitted frames into the WAL, then rolls back: the next
# transaction overwrites them.
c.execute("pragma cache_size=10")
c.execute("begin"); c.execute("update t set v = randomblob(150) where id % 3 = 0"); c.execute("rollback")
c.execute("insert into t values(99999, randomblob(100))"); committed()
# A committing transaction that spills (same page written more than once).
c.execute("begin"); c.execute("update t set v = randomblob(150) where id % 5 = 0"); c.execute("commit"); committed()
c.execute("pragma cache_size=-2000")
c.execute("delete from t where id % 2 = 0"); committed()
c.execute("vacuum"); committed()
shutil.copy(db + "-wal", os.path.join(d, "final.wal"))
# Uncommitted tail.
c.execute("pragma cache_size=10")
c.execute("begin"); c.execute("update t set v = randomblob(150) where id % 7 = 1")
shutil.copy(db + "-wal", os.path.join(d, "uncommitted.wal"))
c.execute("rollback")
c.execute("pragma cache_size=-2000")
c.execute("pragma wal_checkpoint(truncate)")
shutil.copy(db, os.path.join(d, "checkpointed.db"))

# WAL restart: a full passive checkpoint, then the next writer rewinds the WAL
# with new salts, leaving the old frames behind it.
c.execute("update t set v = randomblob(150) where id % 4 = 1")
c.execute("pragma wal_checkpoint(passive)")
shutil.copy(db, os.path.join(d, "restart_base.db"))
c.execute("insert into t values(123456, randomblob(100))")
shutil.copy(db + "-wal", os.path.join(d, "restarted.wal"))
print("restart_commit=%d" % c.execute("pragma page_count").fetchone()[0])
print("restart_hash=" + h(c))
print("base_hash=" + base_hash)
print("commits=" + ",".join(map(str, commits)))
print("hashes=" + ",".join(hashes))
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    d: PathBuf,
    out: String,
}

impl Fixture {
    fn new(page_size: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let script = format!("{HASH_FN}\n{GEN}");
        let out = python(&script, &[d.to_str().unwrap(), &page_size.to_string()]);
        Fixture { _dir: dir, d, out }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.d.join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }

    fn commits(&self) -> Vec<u32> {
        nums(field(&self.out, "commits"))
            .into_iter()
            .map(|n| n as u32)
            .collect()
    }

    fn hashes(&self) -> Vec<String> {
        field(&self.out, "hashes")
            .split(',')
            .map(str::to_owned)
            .collect()
    }
}

fn open_scan(path: &Path) -> (WalHeader, fs::File, Vec<WalTxn>) {
    let bytes = fs::read(path).unwrap();
    let h = WalHeader::parse(&bytes).unwrap();
    let f = fs::File::open(path).unwrap();
    let txns = scan_wal(&f, &h, WAL_HEADER_SIZE as u64, h.checksum, None).unwrap();
    (h, f, txns)
}

/// Applies transactions' latest pages onto `db` and truncates to the commit
/// size of the last one (as a checkpoint does).
fn apply(db: &mut Vec<u8>, wal: &[u8], txns: &[WalTxn], page_size: u32) {
    let ps = page_size as usize;
    for t in txns {
        for &(pgno, off) in &t.pages {
            let start = (pgno as usize - 1) * ps;
            if db.len() < start + ps {
                db.resize(start + ps, 0);
            }
            db[start..start + ps].copy_from_slice(&wal[off as usize..off as usize + ps]);
        }
    }
    if let Some(last) = txns.last() {
        db.resize(last.commit as usize * ps, 0);
    }
}

fn write_db(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p
}

fn check_wal_against_sqlite(page_size: u32) {
    let fx = Fixture::new(page_size);
    let ps = page_size as usize;
    let base = fx.read("base.db");
    let dbh = DbHeader::parse(&base).unwrap();
    assert_eq!(dbh.page_size, page_size);
    assert!(dbh.is_wal());
    assert!(dbh.page_count_valid());
    assert_eq!(dbh.page_count as usize * ps, base.len());

    let wal = fx.read("final.wal");
    let (h, _f, txns) = open_scan(&fx.path("final.wal"));
    assert_eq!(h.page_size, page_size);
    assert!(
        !h.big_endian_checksums,
        "SQLite on a little-endian host writes magic 0x377f0682"
    );
    assert_eq!(h.version, 3_007_000);

    // One WalTxn per committed transaction, with SQLite's page counts (the
    // VACUUM shrinks the database).
    let commits = fx.commits();
    assert!(commits.windows(2).any(|w| w[1] < w[0]), "{commits:?}");
    assert_eq!(
        txns.iter().map(|t| t.commit).collect::<Vec<_>>(),
        commits,
        "commit sizes"
    );
    let fs_ = h.frame_size();
    let mut expect_start = WAL_HEADER_SIZE as u64;
    for t in &txns {
        assert_eq!(t.start, expect_start);
        assert!(t.end > t.start && (t.end - t.start) % fs_ == 0);
        assert!(
            t.pages.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted by pgno"
        );
        for &(pgno, off) in &t.pages {
            assert!(pgno >= 1);
            assert!(off >= t.start + WAL_FRAME_HEADER_SIZE as u64 && off < t.end);
            assert_eq!(
                (off - WAL_HEADER_SIZE as u64) % fs_,
                WAL_FRAME_HEADER_SIZE as u64
            );
            let fh = WalFrameHeader::parse(&wal[(off as usize - 24)..]).unwrap();
            assert_eq!(fh.pgno, pgno);
            // Latest version: no later frame of this transaction has this pgno.
            let mut later = off - 24 + fs_;
            while later < t.end {
                let fh2 = WalFrameHeader::parse(&wal[later as usize..]).unwrap();
                assert_ne!(fh2.pgno, pgno, "page {pgno} has a later frame");
                later += fs_;
            }
        }
        let last = WalFrameHeader::parse(&wal[(t.end - fs_) as usize..]).unwrap();
        assert_eq!(last.commit, t.commit);
        assert_eq!(last.checksum, t.checksum);
        expect_start = t.end;
    }
    assert!(txns.last().unwrap().end <= wal.len() as u64);

    // Applying every transaction onto the base gives SQLite's checkpoint
    // result byte for byte.
    let mut db = base.clone();
    apply(&mut db, &wal, &txns, page_size);
    assert!(
        db == fx.read("checkpointed.db"),
        "replayed WAL differs from SQLite's checkpoint"
    );

    // Every intermediate state matches SQLite's logical content.
    let check_dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for k in 0..txns.len() {
        let mut db = base.clone();
        apply(&mut db, &wal, &txns[..=k], page_size);
        paths.push(write_db(check_dir.path(), &format!("state{k}.db"), &db));
    }
    let path_refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    assert_eq!(logical_hashes(&path_refs), fx.hashes());
}

#[test]
fn wal_matches_sqlite_4096() {
    check_wal_against_sqlite(4096);
}

#[test]
fn wal_matches_sqlite_512() {
    check_wal_against_sqlite(512);
}

#[test]
fn wal_matches_sqlite_65536() {
    check_wal_against_sqlite(65536);
}

#[test]
fn wal_uncommitted_tail_is_ignored() {
    let fx = Fixture::new(4096);
    let (_, _, committed) = open_scan(&fx.path("final.wal"));
    let (_, _, with_tail) = open_scan(&fx.path("uncommitted.wal"));
    let len = fx.read("uncommitted.wal").len() as u64;
    assert!(
        len > committed.last().unwrap().end,
        "the spilling transaction should have written uncommitted frames"
    );
    assert_eq!(with_tail, committed);
}

#[test]
fn wal_damaged_last_txn_is_dropped() {
    let fx = Fixture::new(4096);
    let wal = fx.read("final.wal");
    let (h, _, txns) = open_scan(&fx.path("final.wal"));
    let n = txns.len();
    let last = txns[n - 1].clone();
    let fs_ = h.frame_size() as usize;
    let (start, end) = (last.start as usize, last.end as usize);
    let dir = tempfile::tempdir().unwrap();

    let scan = |data: &[u8]| {
        let p = dir.path().join("w");
        fs::write(&p, data).unwrap();
        let f = fs::File::open(&p).unwrap();
        scan_wal(&f, &h, 32, h.checksum, None).unwrap()
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut at txn start", wal[..start].to_vec()),
        ("cut mid first frame", wal[..start + fs_ / 2].to_vec()),
        ("cut one byte short", wal[..end - 1].to_vec()),
        (
            "cut mid commit frame header",
            wal[..end - fs_ + 10].to_vec(),
        ),
    ];
    let mut flip = |name: &'static str, at: usize| {
        let mut d = wal.clone();
        d[at] ^= 0x01;
        cases.push((name, d));
    };
    flip("last frame page byte", end - 1);
    flip("last frame page first byte", end - fs_ + 24);
    flip("last frame checksum", end - fs_ + 16);
    flip("last frame salt", end - fs_ + 9);
    flip("last frame commit field", end - fs_ + 7);
    flip("first frame of last txn", start + 100);
    for (name, data) in cases {
        assert_eq!(scan(&data), txns[..n - 1].to_vec(), "{name}");
    }
    // Damage to an earlier transaction drops it and everything after.
    let mut d = wal.clone();
    d[txns[1].start as usize + 30] ^= 0x80;
    assert_eq!(scan(&d), txns[..1].to_vec());
    // Bytes appended after the last commit don't matter.
    let mut d = wal.clone();
    d.extend_from_slice(&vec![0xab; fs_ * 2 + 7]);
    assert_eq!(scan(&d), txns);
}

#[test]
fn wal_resume_and_limit() {
    let fx = Fixture::new(4096);
    let (h, f, txns) = open_scan(&fx.path("final.wal"));
    for k in 0..txns.len() {
        let rest = scan_wal(&f, &h, txns[k].end, txns[k].checksum, None).unwrap();
        assert_eq!(rest, txns[k + 1..].to_vec(), "resume after txn {k}");
        // Wrong init checksum at a later offset finds nothing.
        if k + 1 < txns.len() {
            let bad = (txns[k].checksum.0 ^ 1, txns[k].checksum.1);
            assert!(scan_wal(&f, &h, txns[k].end, bad, None).unwrap().is_empty());
        }
        let limited = scan_wal(&f, &h, 32, h.checksum, Some(txns[k].end)).unwrap();
        assert_eq!(limited, txns[..=k].to_vec(), "limit at end of txn {k}");
        let limited = scan_wal(&f, &h, 32, h.checksum, Some(txns[k].end - 1)).unwrap();
        assert_eq!(
            limited,
            txns[..k].to_vec(),
            "limit just before end of txn {k}"
        );
    }
    // The iterator form yields the same and tracks its position.
    let mut it = WalScanner::new(&f, &h, 32, h.checksum, None).unwrap();
    for t in &txns {
        assert_eq!(&it.next().unwrap().unwrap(), t);
        assert_eq!((it.offset(), it.checksum()), (t.end, t.checksum));
    }
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn wal_restart_ignores_stale_frames() {
    let fx = Fixture::new(4096);
    let wal = fx.read("restarted.wal");
    let (h, _, txns) = open_scan(&fx.path("restarted.wal"));
    assert_eq!(txns.len(), 1, "only the transaction after the restart");
    let t = &txns[0];
    assert_eq!(t.start, 32);
    assert_eq!(
        t.commit as u64,
        field(&fx.out, "restart_commit").parse::<u64>().unwrap()
    );
    // Old frames remain behind it, with the previous salts.
    assert!(wal.len() as u64 > t.end);
    let stale = WalFrameHeader::parse(&wal[t.end as usize..]).unwrap();
    assert_eq!(stale.salt1, h.salt1.wrapping_sub(1));
    assert_ne!(stale.salt2, h.salt2);
    // Replaying onto the checkpointed base reproduces SQLite's content.
    let mut db = fx.read("restart_base.db");
    apply(&mut db, &wal, &txns, 4096);
    let check = tempfile::tempdir().unwrap();
    let p = write_db(check.path(), "r.db", &db);
    assert_eq!(
        logical_hashes(&[&p]),
        vec![field(&fx.out, "restart_hash").to_owned()]
    );
}

/// Rewrites a WAL's header and committed frames with big-endian checksums
/// (magic 0x377f0683), as SQLite on a big-endian host would have written it.
fn to_big_endian(wal: &[u8], h: &WalHeader, txns: &[WalTxn]) -> Vec<u8> {
    let mut out = wal.to_vec();
    let mut bh = WalHeader {
        big_endian_checksums: true,
        ..*h
    };
    bh.checksum = bh.compute_checksum();
    out[..32].copy_from_slice(&bh.encode());
    let fs_ = h.frame_size() as usize;
    let mut c = bh.checksum;
    let mut off = 32;
    while off < txns.last().unwrap().end as usize {
        let mut fh = WalFrameHeader::parse(&out[off..]).unwrap();
        fh.checksum = fh.compute_checksum(true, &out[off + 24..off + fs_], c);
        c = fh.checksum;
        out[off..off + 24].copy_from_slice(&fh.encode());
        off += fs_;
    }
    out
}

#[test]
fn wal_big_endian_checksums() {
    let fx = Fixture::new(4096);
    let wal = fx.read("final.wal");
    let (h, _, txns) = open_scan(&fx.path("final.wal"));
    assert!(!h.big_endian_checksums);
    assert_eq!(h.checksum, wal_checksum(false, &wal[..24], (0, 0)));

    // Flipping the magic's byte-order bit alone breaks the header checksum.
    let mut flipped = wal.clone();
    flipped[3] = 0x83;
    assert!(matches!(
        WalHeader::parse(&flipped),
        Err(SqliteError::WalHeaderChecksum { .. })
    ));

    let be = to_big_endian(&wal, &h, &txns);
    let bh = WalHeader::parse(&be).unwrap();
    assert!(bh.big_endian_checksums);
    assert_ne!(bh.checksum, h.checksum);
    let dir = tempfile::tempdir().unwrap();
    let wal_path = dir.path().join("x.db-wal");
    fs::write(&wal_path, &be).unwrap();
    let f = fs::File::open(&wal_path).unwrap();
    let be_txns = scan_wal(&f, &bh, 32, bh.checksum, None).unwrap();
    assert_eq!(be_txns.len(), txns.len());
    for (a, b) in be_txns.iter().zip(&txns) {
        assert_eq!(
            (a.start, a.end, a.commit, &a.pages),
            (b.start, b.end, b.commit, &b.pages)
        );
        assert_ne!(a.checksum, b.checksum);
    }
    // Scanning with the wrong byte order finds nothing.
    let as_le = WalHeader {
        big_endian_checksums: false,
        ..bh
    };
    assert!(scan_wal(&f, &as_le, 32, bh.checksum, None)
        .unwrap()
        .is_empty());

    // SQLite itself accepts the big-endian WAL: recovery replays every
    // committed frame (a checksum mismatch would make it see the base only).
    let db = write_db(dir.path(), "x.db", &fx.read("base.db"));
    let hashes = logical_hashes(&[&db]);
    assert_eq!(hashes[0], *fx.hashes().last().unwrap());
    assert_ne!(hashes[0], field(&fx.out, "base_hash"));
}
