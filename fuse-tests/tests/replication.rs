//! Replication between real `litefs mount` processes on 127.0.0.1: a
//! static primary streams to replicas over HTTP, replicas apply to their
//! own mounts, SQLite clients read there.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{cluster, require_fuse, same_bytes, wait_same_pos};
use litefs_fuse_tests::{sqlite3, sqlite3_output};
use std::process::Command;

#[test]
fn replicas_follow_the_primary_in_every_journal_mode() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(2);
    std::fs::create_dir(p.path("sub")).unwrap();
    let dbs = [
        ("wal.db", "WAL"),
        ("delete.db", "DELETE"),
        ("truncate.db", "TRUNCATE"),
        ("persist.db", "PERSIST"),
        ("sub/nested.db", "WAL"),
    ];
    for (db, mode) in dbs {
        sqlite3(
            &p.path(db),
            &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"),
        );
        for i in 0..20 {
            sqlite3(
                &p.path(db),
                &format!("INSERT INTO t(v) SELECT hex(randomblob(300)) FROM (SELECT 1 UNION ALL SELECT 2) -- {i}"),
            );
        }
        sqlite3(&p.path(db), "DELETE FROM t WHERE id % 3 = 0; VACUUM;");
    }
    for r in &rs {
        for (db, _) in dbs {
            wait_same_pos(&p, r, db);
            assert_eq!(
                sqlite3(&r.path(db), "SELECT count(*), sum(length(v)) FROM t;"),
                sqlite3(&p.path(db), "SELECT count(*), sum(length(v)) FROM t;"),
                "{db}"
            );
            assert_eq!(sqlite3(&r.path(db), "PRAGMA integrity_check;").trim(), "ok");
            same_bytes(&p, r, db);
        }
        assert_eq!(
            std::fs::read_to_string(r.path(".primary")).unwrap(),
            "primary-1\n"
        );
        let lag: i64 = std::fs::read_to_string(r.path(".lag"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!((0..5_000).contains(&lag), "lag {lag}");
        // Replicas' LTX chains rebuild the same database too.
        for (db, _) in dbs {
            r.check_chain(db);
        }
    }
    assert!(
        !p.path(".primary").exists(),
        ".primary exists only on replicas"
    );
    // A replica connection opened before more writes sees them without
    // reopening (WAL index and page cache refreshed at apply).
    for (db, _) in dbs {
        let r = &rs[0];
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                r#"
import sqlite3, subprocess, time, sys
r = sqlite3.connect('{rdb}', timeout=10)
before = r.execute('select count(*) from t').fetchone()[0]
subprocess.run(['sqlite3', '{pdb}', 'insert into t(v) values (1)'], check=True)
deadline = time.time() + 20
while time.time() < deadline:
    n = r.execute('select count(*) from t').fetchone()[0]
    if n == before + 1:
        print('ok'); sys.exit(0)
    time.sleep(0.01)
print('stuck at', n, 'expected', before + 1); sys.exit(1)
"#,
                rdb = r.path(db).display(),
                pdb = p.path(db).display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{db}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The bytes of `db` on `n`, read once the file is as long as its header
/// says. Seen once in a loaded CI-style run: a read right after the
/// replica reached the position returned the first page of a two-page
/// database (a stale size), and the next read all of it; this test is
/// about refused writes, so it starts from the whole file.
/// TODO: find where that stale size comes from.
fn whole_db(n: &litefs_fuse_tests::Node, db: &str) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let b = std::fs::read(n.path(db)).unwrap();
        let whole = b.len() >= 100 && {
            let ps = u32::from(u16::from_be_bytes([b[16], b[17]]));
            let ps = if ps == 1 { 65536 } else { ps } as usize;
            let pages = u32::from_be_bytes([b[28], b[29], b[30], b[31]]) as usize;
            b.len() == ps * pages
        };
        if whole || std::time::Instant::now() > deadline {
            eprintln!("{db}: {} bytes read (whole: {whole})", b.len());
            return b;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every write path on a replica is refused and changes nothing; SQLite
/// says why, and the daemon logs the primary.
#[test]
fn replicas_refuse_writes_and_change_nothing() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(1);
    let r = &rs[0];
    sqlite3(
        &p.path("rb.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    sqlite3(
        &p.path("w.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    wait_same_pos(&p, r, "rb.db");
    wait_same_pos(&p, r, "w.db");
    let before_rb = whole_db(r, "rb.db");
    let before_w = whole_db(r, "w.db");
    let pos_rb = r.sync_pos("rb.db");
    let pos_w = r.sync_pos("w.db");

    let out = sqlite3_output(&r.path("rb.db"), "INSERT INTO t VALUES (2);");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("attempt to write a readonly database"),
        "{err}"
    );
    let out = sqlite3_output(&r.path("w.db"), "INSERT INTO t VALUES (2);");
    assert!(!out.status.success(), "WAL write on a replica must fail");
    // Creating a database, a directory, removing one: refused.
    assert!(std::fs::write(r.path("new.db"), b"x").is_err());
    assert!(std::fs::create_dir(r.path("dir")).is_err());
    assert!(std::fs::remove_file(r.path("rb.db")).is_err());

    assert_eq!(std::fs::read(r.path("rb.db")).unwrap(), before_rb);
    assert_eq!(std::fs::read(r.path("w.db")).unwrap(), before_w);
    assert_eq!(r.sync_pos("rb.db"), pos_rb);
    assert_eq!(r.sync_pos("w.db"), pos_w);
    assert_eq!(
        sqlite3(&r.path("w.db"), "SELECT count(*) FROM t;").trim(),
        "1"
    );
    let log = r.log_text();
    assert!(log.contains("primary-1") && log.contains("rb.db"), "{log}");

    // The primary still writes, and the replica still follows.
    sqlite3(&p.path("w.db"), "INSERT INTO t VALUES (3);");
    wait_same_pos(&p, r, "w.db");
    assert_eq!(
        sqlite3(&r.path("w.db"), "SELECT count(*) FROM t;").trim(),
        "2"
    );
}

/// Readers on a replica always see a transaction boundary: an invariant
/// the primary's transactions keep holds in every read, under load.
#[test]
fn replica_readers_never_see_a_torn_transaction() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(1);
    let r = &rs[0];
    for (db, mode) in [("bank-wal.db", "WAL"), ("bank-del.db", "DELETE")] {
        sqlite3(
            &p.path(db),
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER, pad TEXT);
                 WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<200)
                 INSERT INTO acct SELECT i, 1000, hex(randomblob(200)) FROM s;"
            ),
        );
        wait_same_pos(&p, r, db);
        let script = format!(
            r#"
import sqlite3, threading, random, time, sys
p = sqlite3.connect('{pdb}', timeout=30, isolation_level=None)
stop = False
def write():
    n = 0
    while not stop:
        a, b = random.sample(range(1, 201), 2)
        amt = random.randint(1, 50)
        p.execute('BEGIN IMMEDIATE')
        p.execute('UPDATE acct SET bal = bal - ?, pad = hex(randomblob(200)) WHERE id = ?', (amt, a))
        p.execute('UPDATE acct SET bal = bal + ?, pad = hex(randomblob(200)) WHERE id = ?', (amt, b))
        p.execute('COMMIT')
        n += 1
    print('writes', n)
t = threading.Thread(target=write); t.start()
r = sqlite3.connect('{rdb}', timeout=30)
reads = 0; bad = 0; errors = []
deadline = time.time() + 4
while time.time() < deadline:
    try:
        s, c = r.execute('SELECT sum(bal), count(*) FROM acct').fetchone()
        if (s, c) != (200000, 200):
            bad += 1; errors.append((s, c))
        reads += 1
    except sqlite3.Error as e:
        errors.append(str(e))
stop = True; t.join()
print('reads', reads, 'bad', bad, errors[:5])
sys.exit(1 if errors or reads < 50 else 0)
"#,
            pdb = p.path(db).display(),
            rdb = r.path(db).display()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{db}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            r.log_text()
        );
        wait_same_pos(&p, r, db);
        same_bytes(&p, r, db);
    }
}

/// `litefs export` from a replica gives the primary's database; `litefs
/// import` on the primary replicates; bad files and imports on a replica
/// are refused with the reason and change nothing.
#[test]
fn export_and_import_through_the_cli() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(1);
    let r = &rs[0];
    sqlite3(
        &p.path("x.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES ('a'), ('b');",
    );
    wait_same_pos(&p, r, "x.db");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x-export.db");
    let st = litefs(&[
        "export",
        "-name",
        "x.db",
        "-url",
        &r.url,
        out.to_str().unwrap(),
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(
        sqlite3(&out, "SELECT group_concat(v) FROM t;").trim(),
        "a,b"
    );
    sqlite3(&p.path("x.db"), "PRAGMA wal_checkpoint(TRUNCATE);");
    let exported = std::fs::read(&out).unwrap();
    // The export may carry WAL-mode header bytes the primary's file has too.
    assert_eq!(exported, std::fs::read(p.path("x.db")).unwrap());

    // Import a new database on the primary; it reaches the replica.
    let src = tmp.path().join("src.db");
    sqlite3(&src, "CREATE TABLE u(n); WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<5000) INSERT INTO u SELECT i FROM s;");
    let st = litefs(&[
        "import",
        "-name",
        "imp.db",
        "-url",
        &p.url,
        src.to_str().unwrap(),
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    wait_same_pos(&p, r, "imp.db");
    assert_eq!(
        sqlite3(&r.path("imp.db"), "SELECT sum(n) FROM u;").trim(),
        "12502500"
    );
    // Over an existing database too.
    let st = litefs(&[
        "import",
        "-name",
        "x.db",
        "-url",
        &p.url,
        src.to_str().unwrap(),
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    wait_same_pos(&p, r, "x.db");
    assert_eq!(
        sqlite3(&r.path("x.db"), "SELECT count(*) FROM u;").trim(),
        "5000"
    );
    assert_eq!(
        sqlite3(&p.path("x.db"), "PRAGMA integrity_check;").trim(),
        "ok"
    );

    // Refusals: a replica names the primary; a damaged file is refused
    // before anything is sent.
    let pos = p.sync_pos("x.db");
    let st = litefs(&[
        "import",
        "-name",
        "x.db",
        "-url",
        &r.url,
        src.to_str().unwrap(),
    ]);
    assert!(!st.status.success());
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("primary-1"), "{err}");
    let bad = tmp.path().join("bad.db");
    let mut b = std::fs::read(&src).unwrap();
    let n = b.len();
    for x in &mut b[n / 2..n / 2 + 4096] {
        *x = 0x55;
    }
    std::fs::write(&bad, &b).unwrap();
    let st = litefs(&[
        "import",
        "-name",
        "x.db",
        "-url",
        &p.url,
        bad.to_str().unwrap(),
    ]);
    assert!(!st.status.success());
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("bad.db"), "{err}");
    std::fs::write(&bad, b"not a database at all").unwrap();
    let st = litefs(&[
        "import",
        "-name",
        "x.db",
        "-url",
        &p.url,
        bad.to_str().unwrap(),
    ]);
    assert!(!st.status.success());
    assert_eq!(p.sync_pos("x.db"), pos, "refused imports change nothing");
    let st = litefs(&[
        "export",
        "-name",
        "nope.db",
        "-url",
        &p.url,
        tmp.path().join("n.db").to_str().unwrap(),
    ]);
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("not found"));
    assert!(!tmp.path().join("n.db").exists());
}

fn litefs(args: &[&str]) -> std::process::Output {
    Command::new(litefs_fuse_tests::litefs_bin())
        .args(args)
        .output()
        .expect("run litefs")
}
