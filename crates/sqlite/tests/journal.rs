//! Rollback journal reader against journals written by real SQLite.
//!
//! A python3 `sqlite3` connection opens a transaction with a tiny page cache
//! (so pages spill to the database file mid-transaction, forcing journal
//! syncs and new journal segments) and snapshots the `-journal` and database
//! files between statements. For every snapshot we check that the journal
//! covers every page already overwritten in the database, that replaying it
//! restores the original database byte for byte, and that SQLite's own
//! hot-journal rollback of the same snapshot gives the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::{field, page, python};
use litefs_sqlite::{
    read_journal, read_journal_with, DbHeader, JournalHeader, JournalPages, JOURNAL_MAGIC,
};

const GEN: &str = r#"
import sqlite3, shutil, sys, os
d, sync, mode, cache, free = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
db = os.path.join(d, "test.db")
c = sqlite3.connect(db, isolation_level=None)
c.execute(f"pragma journal_mode={mode}")
c.execute("create table t(id integer primary key, v blob)")
c.execute("create index t_v on t(v)")
c.execute("begin")
for i in range(3000):
    c.execute("insert into t values(?, randomblob(200))", (i,))
c.execute("commit")
# A committed transaction first, so PERSIST mode leaves stale records behind.
c.execute("update t set v = randomblob(200) where id % 3 = 0")
if free:
    # Leave a large freelist for the transaction below to reuse.
    c.execute("delete from t where id >= 1000")
c.close()
if os.path.exists(db + "-journal"):
    shutil.copy(db + "-journal", os.path.join(d, "prev.journal"))
shutil.copy(db, os.path.join(d, "orig.db"))

c = sqlite3.connect(db, isolation_level=None)
c.execute(f"pragma journal_mode={mode}")
c.execute(f"pragma synchronous={sync}")
c.execute(f"pragma cache_size={cache}")
c.execute("begin")
snaps = 0
def snap():
    global snaps
    shutil.copy(db + "-journal", os.path.join(d, f"mid{snaps}.journal"))
    shutil.copy(db, os.path.join(d, f"mid{snaps}.db"))
    snaps += 1
c.execute("update t set v = randomblob(200) where id % 11 = 0"); snap()
c.execute("insert into t select id + 100000, randomblob(300) from t where id < 700"); snap()
c.execute("delete from t where id % 13 = 0"); snap()
c.execute("commit")
after = os.path.exists(db + "-journal")
if after:
    shutil.copy(db + "-journal", os.path.join(d, "after.journal"))
c.close()
print(f"snaps={snaps}")
print(f"after={int(after)}")
"#;

/// Opens `db` + `journal` (copied side by side into a fresh directory) with
/// SQLite, which rolls the hot journal back, and returns the database bytes.
fn sqlite_rollback(dir: &Path, db: &[u8], journal: &[u8]) -> Vec<u8> {
    let sub = tempfile::tempdir_in(dir).unwrap();
    let p = sub.path().join("x.db");
    fs::write(&p, db).unwrap();
    fs::write(sub.path().join("x.db-journal"), journal).unwrap();
    python(
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\ntry:\n    \
         c.execute('select count(*) from sqlite_master').fetchall()\nexcept Exception as e:\n    \
         print(e, file=sys.stderr)\nc.close()\n",
        &[p.to_str().unwrap()],
    );
    assert!(
        !sub.path().join("x.db-journal").exists(),
        "SQLite should have finalised the hot journal"
    );
    fs::read(&p).unwrap()
}

/// Independent count of the records SQLite would consider: walk the segment
/// headers, summing nRec (or the file-size-derived count in no-sync mode).
fn expected_records(j: &[u8], page_size: usize) -> (usize, usize) {
    let sector = u32::from_be_bytes(j[20..24].try_into().unwrap()) as usize;
    let rec = page_size + 8;
    let (mut off, mut total, mut headers) = (0usize, 0usize, 0usize);
    while off + sector <= j.len() && j[off..off + 8] == JOURNAL_MAGIC {
        headers += 1;
        let nrec = u32::from_be_bytes(j[off + 8..off + 12].try_into().unwrap());
        let n = if nrec == u32::MAX {
            (j.len() - off - sector) / rec
        } else {
            nrec as usize
        };
        total += n;
        off = (off + sector + n * rec).div_ceil(sector) * sector;
    }
    (total, headers)
}

/// Freelist leaf pages of a database image (walking the trunk chain).
fn freelist_leaves(db: &[u8], psz: usize) -> BTreeSet<u32> {
    let be = |b: &[u8], o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    let mut leaves = BTreeSet::new();
    let mut trunk = be(db, 32);
    let mut guard = 0;
    while trunk != 0 && guard < 100_000 {
        let p = page(db, psz, trunk).expect("freelist trunk within file");
        let n = be(p, 4) as usize;
        leaves.extend((0..n).map(|i| be(p, 8 + 4 * i)));
        trunk = be(p, 0);
        guard += 1;
    }
    leaves
}

/// Applies the journal's pages to `db` and truncates it to the initial size,
/// like SQLite's playback.
fn replay(
    db: &[u8],
    journal_file: &fs::File,
    journal_len: u64,
    page_size: u32,
) -> (Option<JournalPages>, Vec<u8>) {
    let mut out = db.to_vec();
    let mut originals = BTreeMap::new();
    let j = read_journal_with(journal_file, journal_len, page_size, |pgno, data| {
        assert!(
            originals.insert(pgno, data.to_vec()).is_none(),
            "page {pgno} reported twice"
        );
        Ok(())
    })
    .unwrap();
    let Some(jp) = &j else { return (None, out) };
    let ps = page_size as usize;
    out.resize(jp.initial_pages as usize * ps, 0);
    for (pgno, data) in originals {
        let start = (pgno as usize - 1) * ps;
        out[start..start + ps].copy_from_slice(&data);
    }
    assert_eq!(
        read_journal(journal_file, journal_len, page_size)
            .unwrap()
            .as_ref(),
        Some(jp),
        "read_journal and read_journal_with disagree"
    );
    (j, out)
}

struct Outcome {
    max_headers: usize,
    hot_snapshots: usize,
    /// Pages changed in the database file mid-transaction without being in
    /// the journal (all reused freelist leaves).
    unjournaled_free_changes: usize,
}

fn run(sync: &str, mode: &str, cache: u32) -> Outcome {
    run_with(sync, mode, cache, false)
}

fn run_with(sync: &str, mode: &str, cache: u32, free: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let free_arg = if free { "1" } else { "0" };
    let out = python(
        GEN,
        &[
            d.to_str().unwrap(),
            sync,
            mode,
            &cache.to_string(),
            free_arg,
        ],
    );
    let snaps: usize = field(&out, "snaps").parse().unwrap();
    let orig = fs::read(d.join("orig.db")).unwrap();
    let hdr = DbHeader::parse(&orig).unwrap();
    assert!(!hdr.is_wal());
    assert!(hdr.page_count_valid());
    let ps = hdr.page_size;
    let psz = ps as usize;
    assert_eq!(hdr.page_count as usize, orig.len() / psz);
    let mut outcome = Outcome {
        max_headers: 0,
        hot_snapshots: 0,
        unjournaled_free_changes: 0,
    };

    for k in 0..snaps {
        let ctx = format!("{sync}/{mode}/cache={cache} snapshot {k}");
        let jpath = d.join(format!("mid{k}.journal"));
        let jbytes = fs::read(&jpath).unwrap();
        let jfile = fs::File::open(&jpath).unwrap();
        let mid = fs::read(d.join(format!("mid{k}.db"))).unwrap();
        let (j, restored) = replay(&mid, &jfile, jbytes.len() as u64, ps);

        let Some(j) = j else {
            // Not hot: SQLite has not synced the journal yet, so it cannot
            // have written to the database file either.
            assert_ne!(jbytes[..8], JOURNAL_MAGIC, "{ctx}");
            assert!(
                mid == orig,
                "{ctx}: database modified while journal not hot"
            );
            continue;
        };
        outcome.hot_snapshots += 1;
        outcome.max_headers = outcome.max_headers.max(j.headers);
        let first = JournalHeader::parse(&jbytes).unwrap();
        assert_eq!(j.initial_pages, hdr.page_count, "{ctx}");
        assert_eq!(j.initial_pages, first.initial_pages, "{ctx}");
        assert_eq!(
            (j.page_size, j.sector_size),
            (ps, first.sector_size),
            "{ctx}"
        );
        if sync == "OFF" {
            assert_eq!(
                first.nrec,
                u32::MAX,
                "{ctx}: no-sync journals use nRec=0xFFFFFFFF"
            );
        }

        // Every record of every synced segment was accepted (checksums and
        // segment walking agree with SQLite's), none beyond.
        let (records, headers) = expected_records(&jbytes, psz);
        assert_eq!(j.headers, headers, "{ctx}");
        if j.pgnos.len() != records {
            // Only possible in no-sync mode, where the record count comes from
            // the file size: the first rejected record must be a stale
            // leftover of the previous transaction's journal (PERSIST mode).
            assert_eq!((first.nrec, mode), (u32::MAX, "PERSIST"), "{ctx}");
            assert!(j.pgnos.len() < records, "{ctx}");
            let prev = fs::read(d.join("prev.journal")).unwrap();
            let start = first.sector_size as usize + j.pgnos.len() * (psz + 8);
            let end = start + psz + 8;
            assert_eq!(
                jbytes.get(start..end),
                prev.get(start..end),
                "{ctx}: rejected record is not stale"
            );
        }
        assert!(
            j.pgnos.windows(2).all(|w| w[0] < w[1]),
            "{ctx}: sorted, deduplicated"
        );
        assert!(
            j.pgnos.iter().all(|&p| p >= 1 && p <= j.initial_pages),
            "{ctx}"
        );

        // Every page already overwritten in the database is covered, except
        // freelist leaves of the original database: SQLite reuses those
        // without journaling them (their old content is meaningless).
        let journaled: BTreeSet<u32> = j.pgnos.iter().copied().collect();
        let free = freelist_leaves(&orig, psz);
        for p in 1..=j.initial_pages {
            if page(&mid, psz, p) != page(&orig, psz, p) && !journaled.contains(&p) {
                assert!(
                    free.contains(&p),
                    "{ctx}: page {p} changed on disk but neither journaled nor a freelist leaf"
                );
                outcome.unjournaled_free_changes += 1;
            }
        }

        // Replaying restores the original database exactly (up to those
        // freelist leaves, whose content is irrelevant)...
        assert_eq!(restored.len(), orig.len(), "{ctx}");
        for p in 1..=j.initial_pages {
            if !free.contains(&p) {
                assert!(
                    page(&restored, psz, p) == page(&orig, psz, p),
                    "{ctx}: replay does not restore page {p}"
                );
            }
        }
        // ...and gives exactly the bytes SQLite's own rollback gives.
        let by_sqlite = sqlite_rollback(d, &mid, &jbytes);
        assert!(
            restored == by_sqlite,
            "{ctx}: SQLite's rollback differs from our replay"
        );

        // Damage a sampled byte of a record in the middle: both we and SQLite
        // stop playback at that record.
        let sector = first.sector_size as usize;
        let rec = psz + 8;
        if j.pgnos.len() >= 3 && first.nrec >= 2 {
            let victim = sector + rec; // second record of the first segment
            let mut bad = jbytes.clone();
            bad[victim + 4 + psz - 200] ^= 0x5a;
            let bad_path = d.join("bad.journal");
            fs::write(&bad_path, &bad).unwrap();
            let bad_file = fs::File::open(&bad_path).unwrap();
            let (bj, ours) = replay(&mid, &bad_file, bad.len() as u64, ps);
            let bj = bj.unwrap();
            let first_pgno = u32::from_be_bytes(jbytes[sector..sector + 4].try_into().unwrap());
            assert_eq!(
                bj.pgnos,
                vec![first_pgno],
                "{ctx}: scan must stop at the bad record"
            );
            let theirs = sqlite_rollback(d, &mid, &bad);
            assert!(
                ours == theirs,
                "{ctx}: partial playback differs from SQLite's"
            );
        }
    }

    // After commit the journal is gone, empty, or zeroed: not hot.
    if field(&out, "after") == "1" {
        let p = d.join("after.journal");
        let len = fs::metadata(&p).unwrap().len();
        let f = fs::File::open(&p).unwrap();
        assert_eq!(
            read_journal(&f, len, ps).unwrap(),
            None,
            "{sync}/{mode}: committed journal must not be hot"
        );
        if mode == "PERSIST" {
            assert!(len > 0, "PERSIST keeps the file");
        }
    } else {
        assert_eq!(mode, "DELETE");
    }
    outcome
}

#[test]
fn journal_sync_off_delete_spilling() {
    let o = run("OFF", "DELETE", 10);
    assert_eq!(o.hot_snapshots, 3);
    assert_eq!(o.max_headers, 1, "no-sync mode writes a single segment");
}

#[test]
fn journal_sync_normal_delete_spilling() {
    let o = run("NORMAL", "DELETE", 10);
    assert_eq!(o.hot_snapshots, 3);
    assert!(o.max_headers > 1, "cache spills start new segments");
}

#[test]
fn journal_sync_full_delete_spilling() {
    let o = run("FULL", "DELETE", 10);
    assert_eq!(o.hot_snapshots, 3);
    assert!(o.max_headers > 1);
}

#[test]
fn journal_sync_full_persist_spilling() {
    let o = run("FULL", "PERSIST", 10);
    assert_eq!(o.hot_snapshots, 3);
    assert!(o.max_headers > 1);
}

#[test]
fn journal_sync_off_persist_stale_records() {
    // No-sync journals count records from the file size; in PERSIST mode the
    // file may hold a previous transaction's records, which must fail their
    // checksums (different nonce) rather than be replayed.
    let o = run("OFF", "PERSIST", 10);
    assert_eq!(o.hot_snapshots, 3);
}

#[test]
fn journal_sync_normal_truncate_spilling() {
    let o = run("NORMAL", "TRUNCATE", 10);
    assert_eq!(o.hot_snapshots, 3);
}

#[test]
fn journal_without_spill_is_not_hot_until_commit() {
    // With a large cache nothing is written to the database before commit,
    // and with synchronous=NORMAL the journal header keeps a zero magic until
    // the commit-time sync: the mid-transaction journal is not hot.
    let o = run("NORMAL", "DELETE", 100_000);
    assert_eq!(o.hot_snapshots, 0);
}

#[test]
fn journal_without_spill_nosync_is_hot_from_the_start() {
    // No-sync mode writes the magic and nRec=0xFFFFFFFF up front.
    let o = run("OFF", "PERSIST", 100_000);
    assert_eq!(o.hot_snapshots, 3);
}

#[test]
fn journal_omits_reused_freelist_leaves() {
    // The transaction reuses many freelist pages: SQLite writes them to the
    // database file without ever journaling them, so the journal's page set is
    // NOT the set of pages the transaction modifies.
    for sync in ["OFF", "NORMAL"] {
        let o = run_with(sync, "DELETE", 10, true);
        assert_eq!(o.hot_snapshots, 3);
        assert!(
            o.unjournaled_free_changes > 0,
            "{sync}: expected unjournaled freelist reuse"
        );
    }
}

#[test]
fn journal_truncated_copies() {
    // Truncating a real journal anywhere never panics and only ever loses a
    // suffix of the records.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    python(GEN, &[d.to_str().unwrap(), "NORMAL", "DELETE", "10", "0"]);
    let jbytes = fs::read(d.join("mid0.journal")).unwrap();
    let f = fs::File::open(d.join("mid0.journal")).unwrap();
    let full = read_journal(&f, jbytes.len() as u64, 4096)
        .unwrap()
        .unwrap();
    let sector = u64::from(full.sector_size);
    let mut prev = 0;
    let mut cut = 0u64;
    while cut <= jbytes.len() as u64 {
        match read_journal(&f, cut, 4096).unwrap() {
            None => assert!(
                cut < sector,
                "only a header-less prefix is not hot (cut {cut})"
            ),
            Some(j) => {
                assert!(j.pgnos.iter().all(|p| full.pgnos.contains(p)));
                assert!(j.pgnos.len() >= prev, "monotonic in the length");
                prev = j.pgnos.len();
            }
        }
        cut += 1531;
    }
    assert_eq!(
        read_journal(&f, jbytes.len() as u64 + 10_000, 4096)
            .unwrap()
            .unwrap(),
        full
    );
}
