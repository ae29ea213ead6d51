//! Locking modes, size limits, the lock page, retention and shutdown, each
//! against a real mount and checked against the replayed LTX chain.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{fuse_available, is_mounted, sqlite3, Node};
use std::time::Duration;

/// Runs `cmd` and fails the test with its stderr unless it succeeds.
fn run_ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn txid(node: &Node, db: &str) -> u64 {
    let pos = std::fs::read_to_string(node.path(&format!("{db}-pos"))).expect("pos");
    u64::from_str_radix(&pos[..16], 16).expect("hex txid")
}

/// `locking_mode=EXCLUSIVE`, with a rollback journal and with WAL (where
/// SQLite keeps the WAL index in heap memory): each commit is captured
/// while the connection stays open.
#[test]
fn exclusive_locking_mode() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for mode in ["delete", "wal"] {
        let db = format!("excl-{mode}.db");
        let c = rusqlite::Connection::open(node.path(&db)).unwrap();
        c.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |_| Ok(()))
            .unwrap();
        c.query_row(&format!("PRAGMA journal_mode={mode}"), [], |_| Ok(()))
            .unwrap();
        c.execute_batch("CREATE TABLE t(x);").unwrap();
        let mut last = txid(&node, &db);
        for i in 0..20 {
            c.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
            let now = txid(&node, &db);
            assert_eq!(
                now,
                last + 1,
                "{mode}: commit {i} captured while the connection is open"
            );
            last = now;
        }
        drop(c);
        assert!(!node.path(&format!("{db}-shm")).exists() || mode == "delete");
        node.check_chain(&db);
    }
}

/// `journal_size_limit` truncates the journal and the WAL to a non-zero
/// size (LiteFS rejects the WAL truncation).
#[test]
fn journal_size_limit() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    for (mode, limit) in [("persist", 8192), ("wal", 16384)] {
        let db = format!("limit-{mode}.db");
        let path = node.path(&db);
        let side = if mode == "wal" { "wal" } else { "journal" };
        sqlite3(
            &path,
            &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(x);"),
        );
        for round in 0..3 {
            sqlite3(
                &path,
                &format!(
                    "PRAGMA journal_size_limit={limit};
                     WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300)
                     INSERT INTO t SELECT randomblob(900) FROM c;
                     UPDATE t SET x = randomblob(800) WHERE rowid % 3 = {round};
                     PRAGMA wal_checkpoint(RESTART);
                     INSERT INTO t VALUES (1);"
                ),
            );
            let backing = node.data.join("dbs").join(&db).join(side);
            if let Ok(m) = std::fs::metadata(&backing) {
                assert!(
                    m.len() <= limit,
                    "{mode}: {side} is {} bytes, limit {limit}",
                    m.len()
                );
            }
        }
        node.check_chain(&db);
    }
}

/// A database past 1 GiB: pages on both sides of the lock page (page 16385
/// at 64 KiB pages) are captured and replay, and the lock page is skipped.
#[test]
fn database_past_the_lock_page() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    let db = "big.db";
    let path = node.path(db);
    sqlite3(
        &path,
        "PRAGMA page_size=65536; PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 16600)
         INSERT INTO t(b) SELECT zeroblob(60000) FROM c;",
    );
    sqlite3(
        &path,
        "UPDATE t SET b = randomblob(100) WHERE id IN (1, 8000, 16300, 16600);",
    );
    let pages: u64 = sqlite3(&path, "PRAGMA page_count;").trim().parse().unwrap();
    assert!(pages > 16386, "database has {pages} pages");
    node.check_chain(db);
}

/// A plain write that damages the header so that it claims 4 billion
/// pages (what SQLite's corruptC.test does to its databases) is captured
/// as the file it leaves: the daemon once tried to list every claimed page
/// and died on a 32 GB allocation. Writing the header back is captured too.
#[test]
fn a_header_claiming_more_pages_than_the_file_is_captured_as_the_file() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    let db = "damaged.db";
    let path = node.path(db);
    sqlite3(
        &path,
        "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(9000));",
    );
    let before = txid(&node, db);
    let good = std::fs::read(&path).unwrap();
    // Bytes 28..32: the page count, valid while the change counter (24)
    // equals version-valid-for (92), as it does after any commit.
    assert_eq!(good[24..28], good[92..96]);
    let mut bad = good.clone();
    bad[28..32].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(
        txid(&node, db),
        before + 1,
        "the damaged header was not captured"
    );
    let r = litefs_fuse_tests::replay::replay_dir(&node.ltx_dir(db));
    assert!(r.bytes == bad, "the replayed file is not the damaged file");

    std::fs::write(&path, &good).unwrap();
    assert_eq!(txid(&node, db), before + 2);
    node.check_chain(db);
}

/// A directory's link count does not claim "no subdirectories": 1 (not
/// counted) or 2 + their number. With 2 always, fts-based recursive
/// deletes (Tcl's `file delete -force`, in SQLite's pager1.test) took
/// subdirectories for files and failed with EISDIR.
#[test]
fn directory_link_counts_do_not_hide_subdirectories() {
    use std::os::unix::fs::MetadataExt;
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    let top = node.path("x");
    std::fs::create_dir_all(top.join("y/z")).unwrap();
    sqlite3(&top.join("y/z/a.db"), "CREATE TABLE t(x);");
    for (dir, subdirs) in [(node.path(""), 1), (top.clone(), 1), (top.join("y"), 1)] {
        let n = std::fs::metadata(&dir).unwrap().nlink();
        assert!(
            n == 1 || n >= 2 + subdirs,
            "{}: link count {n} with {subdirs} subdirectory",
            dir.display()
        );
    }
    run_ok(std::process::Command::new("rm").arg("-rf").arg(&top));
    assert!(!top.exists());
}

/// `mv` of a database: the mount refuses renames with EXDEV (LTX cannot
/// record one), so `mv` copies and deletes, as between two filesystems;
/// the copy is a new database with its own chain and the old name is a
/// deleted database.
#[test]
fn mv_of_a_database_copies_it_and_deletes_the_old_one() {
    if !fuse_available() {
        return;
    }
    let node = Node::start("");
    sqlite3(
        &node.path("old.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (42);",
    );
    let err = std::fs::rename(node.path("old.db"), node.path("new.db")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
    run_ok(
        std::process::Command::new("mv")
            .arg(node.path("old.db"))
            .arg(node.path("new.db")),
    );
    assert!(!node.path("old.db").exists());
    assert_eq!(
        sqlite3(&node.path("new.db"), "SELECT x FROM t;").trim(),
        "42"
    );
    node.check_chain("new.db");
}

/// A mount removed from outside (`fusermount3 -u`) stops the daemon with
/// an error saying so, instead of leaving it running with nothing to serve;
/// what it captured is on disk and the next start serves it.
#[test]
fn external_unmount_stops_the_daemon() {
    if !fuse_available() {
        return;
    }
    let mut node = Node::start("");
    let path = node.path("gone.db");
    sqlite3(&path, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let pos = node.sync_pos("gone.db");
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&node.mount)
        .status()
        .unwrap();
    assert!(status.success());
    let status = node
        .wait_exit(Duration::from_secs(10))
        .expect("daemon was running");
    assert!(!status.success(), "exit status {status}");
    assert!(
        node.log_text().contains("removed from outside"),
        "{}",
        node.log_text()
    );
    node.spawn();
    assert_eq!(node.sync_pos("gone.db"), pos);
    assert_eq!(sqlite3(&path, "SELECT x FROM t;").trim(), "1");
}

/// Old LTX files go after `data.retention`; the newest always stays.
#[test]
fn retention_removes_old_ltx_files_but_keeps_the_newest() {
    if !fuse_available() {
        return;
    }
    let node = Node::start_with("data:\n  retention: 1s\n  retention-monitor-interval: 200ms\n");
    let path = node.path("ret.db");
    sqlite3(&path, "CREATE TABLE t(x);");
    for i in 0..20 {
        sqlite3(&path, &format!("INSERT INTO t VALUES ({i});"));
    }
    node.sync_pos("ret.db");
    // 21 commits wrote 21 LTX files (some may be gone already: on a busy
    // machine the inserts take longer than the retention).
    assert_eq!(txid(&node, "ret.db"), 21);
    let newest = format!("{:016x}-{:016x}.ltx", 21, 21);
    // Retention runs every 200 ms; give a loaded machine time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left: Vec<String> = std::fs::read_dir(node.ltx_dir("ret.db"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if left == [newest.clone()] || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(left, vec![newest], "only the newest LTX file remains");
    sqlite3(&path, "INSERT INTO t VALUES (99);");
    assert_eq!(sqlite3(&path, "SELECT count(*) FROM t;").trim(), "21");
}

/// SIGTERM unmounts and exits 0; the data and position survive a restart.
#[test]
fn sigterm_unmounts_and_exits_zero() {
    if !fuse_available() {
        return;
    }
    let mut node = Node::start("");
    let path = node.path("term.db");
    sqlite3(
        &path,
        "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let pos = std::fs::read_to_string(node.path("term.db-pos")).unwrap();
    // LiteFS's mount files: .lag is zero on a primary, .primary is absent.
    assert_eq!(
        std::fs::read_to_string(node.path(".lag")).unwrap(),
        "+000000000\n"
    );
    assert!(!node.path(".primary").exists());
    // statfs reports the data directory's filesystem, not zeros.
    let df = std::process::Command::new("df")
        .arg("-k")
        .arg(&node.mount)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let total: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(total > 0, "df on the mount: {line}");
    let status = node.stop().expect("daemon was running");
    assert!(status.success(), "exit status {status}");
    assert!(!is_mounted(&node.mount), "still mounted after SIGTERM");
    node.spawn();
    assert_eq!(
        std::fs::read_to_string(node.path("term.db-pos")).unwrap(),
        pos
    );
    assert_eq!(sqlite3(&path, "SELECT x FROM t;").trim(), "1");
}
