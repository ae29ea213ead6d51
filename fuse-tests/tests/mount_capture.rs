//! One node: unmodified SQLite clients on the mount, every commit captured.
//! After each workload: `integrity_check` is ok, every LTX file decodes and
//! verifies, and replaying the chain from nothing rebuilds the database byte
//! for byte with the same checksum.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{fuse_available, sqlite3, sqlite3_output, Node};
use std::path::Path;

const MODES: [&str; 4] = ["delete", "truncate", "persist", "wal"];

fn workload(path: &Path, mode: &str) {
    sqlite3(path, &format!("PRAGMA journal_mode={mode};"));
    sqlite3(
        path,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b BLOB);
         CREATE TABLE u(k TEXT PRIMARY KEY, v INTEGER);",
    );
    sqlite3(
        path,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 400)
         INSERT INTO t(a, b) SELECT 'row ' || x, randomblob(300) FROM c;",
    );
    for i in 0..10 {
        sqlite3(path, &format!("INSERT INTO u VALUES ('k{i}', {i}); UPDATE t SET a = a || '!' WHERE id % 10 = {i};"));
    }
    sqlite3(path, "DELETE FROM t WHERE id % 7 = 0;");
    sqlite3(
        path,
        "BEGIN; INSERT INTO u VALUES ('keep', 1); SAVEPOINT s1; INSERT INTO u VALUES ('gone', 2);
         UPDATE t SET b = randomblob(500); ROLLBACK TO s1; RELEASE s1; COMMIT;",
    );
    sqlite3(path, "BEGIN; DELETE FROM t; ROLLBACK;");
    sqlite3(path, "CREATE INDEX t_a ON t(a);");
    sqlite3(path, "VACUUM;");
    if mode == "wal" {
        sqlite3(
            path,
            "INSERT INTO u VALUES ('after-vacuum', 3); PRAGMA wal_checkpoint(PASSIVE);",
        );
        sqlite3(
            path,
            "INSERT INTO u VALUES ('x', 4); PRAGMA wal_checkpoint(RESTART);",
        );
        sqlite3(
            path,
            "INSERT INTO u VALUES ('y', 5); PRAGMA wal_checkpoint(FULL);",
        );
        sqlite3(
            path,
            "INSERT INTO u VALUES ('z', 6); PRAGMA wal_checkpoint(TRUNCATE);",
        );
        sqlite3(path, "INSERT INTO u VALUES ('w', 7);");
    }
    let rows = sqlite3(path, "SELECT count(*) FROM u WHERE k IN ('keep', 'gone');");
    assert_eq!(rows.trim(), "1", "savepoint rollback kept 'keep' only");
}

#[test]
fn sqlite3_cli_in_every_journal_mode() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for mode in MODES {
        let db = format!("cli-{mode}.db");
        workload(&node.path(&db), mode);
        node.check_chain(&db);
    }
}

#[test]
fn page_sizes_and_auto_vacuum() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for (ps, mode) in [
        (512, "wal"),
        (65536, "delete"),
        (1024, "truncate"),
        (8192, "wal"),
    ] {
        let db = format!("ps{ps}.db");
        let path = node.path(&db);
        sqlite3(&path, &format!("PRAGMA page_size={ps}; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode={mode};"));
        sqlite3(
            &path,
            "CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300)
             INSERT INTO t SELECT randomblob(700) FROM c;",
        );
        sqlite3(
            &path,
            "DELETE FROM t WHERE rowid % 2 = 0; PRAGMA incremental_vacuum(5);",
        );
        sqlite3(&path, "PRAGMA incremental_vacuum;");
        node.check_chain(&db);
    }
}

#[test]
fn unlink_drops_and_recreate_continues() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    let path = node.path("drop.db");
    sqlite3(&path, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    std::fs::remove_file(&path).expect("unlink db");
    assert!(!path.exists());
    sqlite3(&path, "CREATE TABLE t2(y); INSERT INTO t2 VALUES (2);");
    assert_eq!(
        sqlite3(&path, "SELECT name FROM sqlite_master;").trim(),
        "t2"
    );
    node.check_chain("drop.db");
}

#[test]
fn non_sqlite_file_named_like_a_database() {
    if !fuse_available() {
        return;
    }
    let mut node = Node::start("");
    let path = node.path("notes.db");
    std::fs::write(&path, b"hello, not a database\n").expect("write plain file");
    assert_eq!(
        std::fs::read(&path).expect("read back"),
        b"hello, not a database\n"
    );
    let out = sqlite3_output(&path, "SELECT * FROM sqlite_master;");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a database"));
    // Writing past the first pages works: it is a plain file, not refused.
    let big = vec![b'z'; 64 * 1024];
    std::fs::write(&path, &big).expect("rewrite plain file");
    assert_eq!(std::fs::read(&path).expect("read back"), big);
    // The daemon is still serving, and restarts with the plain file in place.
    sqlite3(&node.path("ok.db"), "CREATE TABLE t(x);");
    node.stop();
    node.spawn();
    assert_eq!(std::fs::read(&path).expect("read after restart"), big);
}

fn py_script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

#[test]
fn python_sqlite3_in_every_journal_mode() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for mode in MODES {
        let db = format!("py-{mode}.db");
        let out = std::process::Command::new("python3")
            .arg(py_script("workload.py"))
            .arg(node.path(&db))
            .arg(mode)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        node.check_chain(&db);
    }
}

/// 4 writer and 4 reader processes on one WAL database: no error but
/// SQLITE_BUSY (absorbed by the busy timeout), readers always see a
/// consistent snapshot, and the chain replays to the final database.
#[test]
fn concurrent_writers_and_readers_in_wal_mode() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    let path = node.path("conc.db");
    sqlite3(
        &path,
        "PRAGMA journal_mode=wal; CREATE TABLE r(id INTEGER PRIMARY KEY, writer INT, v INT);
         CREATE TABLE meta(id INTEGER PRIMARY KEY, total INT); INSERT INTO meta VALUES (1, 0);",
    );
    let procs: Vec<_> = (0..8)
        .map(|i| {
            let role = if i < 4 { "writer" } else { "reader" };
            std::process::Command::new("python3")
                .arg(py_script("rw.py"))
                .arg(&path)
                .arg(role)
                .arg(i.to_string())
                .arg("6")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn python3")
        })
        .collect();
    let mut writes = 0u64;
    for (i, p) in procs.into_iter().enumerate() {
        let out = p.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "process {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i < 4 {
            writes += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .expect("count");
        }
    }
    assert!(writes > 0);
    let rows: u64 = sqlite3(&path, "SELECT count(*) FROM r;")
        .trim()
        .parse()
        .expect("rows");
    assert_eq!(rows, writes, "every committed write is there");
    node.check_chain("conc.db");
}

/// Databases in subdirectories of the mount (LiteFS has a flat namespace).
#[test]
fn databases_in_subdirectories() {
    if !fuse_available() {
        return;
    }
    let mut node = Node::start("");
    std::fs::create_dir(node.path("tenants")).expect("mkdir tenants");
    std::fs::create_dir(node.path("tenants/eu")).expect("mkdir tenants/eu");
    assert!(
        std::fs::create_dir(node.path("tenants")).is_err(),
        "mkdir twice"
    );
    workload(&node.path("tenants/42.db"), "wal");
    workload(&node.path("tenants/eu/7.db"), "delete");
    node.check_chain("tenants/42.db");
    node.check_chain("tenants/eu/7.db");
    let mut names: Vec<String> = std::fs::read_dir(node.path("tenants"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.contains(&"42.db".to_owned()) && names.contains(&"eu".to_owned()),
        "{names:?}"
    );
    // A database cannot be created in a directory that does not exist.
    assert!(
        !sqlite3_output(&node.path("nowhere/x.db"), "CREATE TABLE t(x);")
            .status
            .success()
    );
    // Non-empty directories stay; empty ones go.
    assert!(std::fs::remove_dir(node.path("tenants/eu")).is_err());
    std::fs::remove_file(node.path("tenants/eu/7.db")).expect("drop");
    std::fs::remove_dir(node.path("tenants/eu")).expect("rmdir empty");
    // Everything survives a restart.
    node.stop();
    node.spawn();
    assert!(!node.path("tenants/eu").exists());
    assert_eq!(
        sqlite3(&node.path("tenants/42.db"), "PRAGMA integrity_check;").trim(),
        "ok"
    );
    node.check_chain("tenants/42.db");
}

/// The same kind of workload through `rusqlite` (SQLite compiled into the
/// test, a third independent client), in every journal mode.
#[test]
fn rusqlite_in_every_journal_mode() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for mode in MODES {
        let db = format!("rs-{mode}.db");
        {
            let mut c = rusqlite::Connection::open(node.path(&db)).expect("open");
            c.busy_timeout(std::time::Duration::from_secs(10))
                .expect("busy timeout");
            let got: String = c
                .query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))
                .expect("mode");
            assert_eq!(got, mode);
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b BLOB);")
                .expect("ddl");
            for i in 0..300 {
                c.execute(
                    "INSERT INTO t(a, b) VALUES (?1, zeroblob(?2))",
                    rusqlite::params![format!("r{i}"), i * 3],
                )
                .expect("insert");
            }
            c.execute("UPDATE t SET a = a || '?' WHERE id % 4 = 0", [])
                .expect("update");
            c.execute("DELETE FROM t WHERE id % 9 = 0", [])
                .expect("delete");
            {
                let mut tx = c.transaction().expect("begin");
                tx.execute("INSERT INTO t(a) VALUES ('kept')", [])
                    .expect("insert");
                {
                    let sp = tx.savepoint().expect("savepoint");
                    sp.execute("INSERT INTO t(a) VALUES ('rolled back')", [])
                        .expect("insert");
                    // dropped without commit: rolled back
                }
                tx.commit().expect("commit");
            }
            {
                let tx = c.transaction().expect("begin");
                tx.execute("DELETE FROM t", []).expect("delete all");
                tx.rollback().expect("rollback");
            }
            c.execute_batch("VACUUM;").expect("vacuum");
            if mode == "wal" {
                for kind in ["PASSIVE", "FULL", "RESTART", "TRUNCATE"] {
                    c.execute("INSERT INTO t(a) VALUES (?1)", [kind])
                        .expect("insert");
                    c.query_row(&format!("PRAGMA wal_checkpoint({kind})"), [], |_| Ok(()))
                        .expect("checkpoint");
                }
            }
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM t WHERE a IN ('kept', 'rolled back')",
                    [],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(n, 1);
        }
        node.check_chain(&db);
    }
}

/// Transactions larger than the in-memory encoding limit (8 MiB of pages)
/// stream their LTX file to disk on the commit path: the chain must stay
/// whole and ordered around them, small transactions before and after
/// included, and no temporary file may be left behind.
#[test]
fn large_transactions_stream_their_ltx_files() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for mode in MODES {
        let db = format!("large-{mode}.db");
        let path = node.path(&db);
        sqlite3(
            &path,
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE t(x); INSERT INTO t VALUES (1);
                 BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
                 INSERT INTO t SELECT randomblob(4000) FROM n; COMMIT;
                 INSERT INTO t VALUES (2);
                 BEGIN; UPDATE t SET x = randomblob(4000) WHERE rowid % 2 = 0; COMMIT;
                 INSERT INTO t VALUES (3);"
            ),
        );
        node.check_chain(&db);
        let dir = node.ltx_dir(&db);
        let sizes: Vec<u64> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                assert!(!name.ends_with(".tmp"), "{db}: {name} left behind");
                e.metadata().unwrap().len()
            })
            .collect();
        assert!(
            sizes.iter().any(|&s| s > 16 << 20),
            "{db}: no LTX file holds the 24 MB transaction: {sizes:?}"
        );
    }
}
