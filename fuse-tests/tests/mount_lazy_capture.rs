//! Capture's barriers. With FUSE passthrough, WAL writes never reach the
//! daemon: commits are captured when something must see them (a `-pos`
//! read, a checkpoint's first database write, the WAL's truncation or
//! last close) and by a periodic pass. These tests turn the periodic pass
//! off (an hour) so that only the barriers can have captured anything, and
//! check the LTX chain against the database. They run on the classic path
//! too (`LITEFS_TEST_IO=classic`), where every commit is captured as its
//! commit frame is written; the chain must be just as right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{classic_io, fuse_available, python, sqlite3, Node};
use std::process::Command;
use std::time::{Duration, Instant};

const WAL_SESSION: &str = r#"
import sqlite3, sys
db = sys.argv[1]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
def pos():
    return int(open(db + "-pos").read().split("/")[0], 16)
base = pos()
# -pos is a barrier: each read shows every commit so far, one TXID each.
for i in range(1, 21):
    c.execute("INSERT INTO t(v) VALUES (randomblob(200))")
    assert pos() == base + i, (pos(), base + i)
# Bring the database file to its final size first: a checkpoint that grows
# the file truncates it upwards (a barrier of its own) before writing.
print(c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
# Many commits with no barrier (updates: the file keeps its size), then a
# checkpoint: its database writes and its final truncate are barriers that
# must capture them before SQLite restarts the WAL over their frames.
for i in range(200):
    c.execute("UPDATE t SET v = randomblob(200) WHERE id = ?", (i % 20 + 1,))
print(c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
# These overwrite the WAL from its start (a restart).
for i in range(50):
    c.execute("UPDATE t SET v = randomblob(300) WHERE id = ?", (i % 20 + 1,))
print(pos())
c.close()
"#;

#[test]
fn barriers_capture_every_commit() {
    if !fuse_available() {
        return;
    }
    let node = Node::start_with_fuse("capture-interval: 1h");
    let out = python(WAL_SESSION, &node.path("a.db"));
    let r = node.check_chain("a.db");
    // 1 (journal_mode) + 1 (create) + 20 + 200 + 50 commits.
    assert_eq!(r.pos.txid.0, 272, "{out}");
    let ranges = node.ltx_ranges("a.db");
    let batched = ranges.iter().any(|(min, max)| max > min && *min > 1);
    if classic_io() {
        assert!(!batched, "classic capture writes one file per commit");
    } else {
        // With passthrough and no periodic pass, the 200 unobserved commits
        // can only have been captured together, at the checkpoint.
        assert!(batched, "expected a batched LTX file: {ranges:?}");
    }
}

const KEEP_OPEN: &str = r#"
import sqlite3, sys, time
db = sys.argv[1]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
for i in range(100):
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))")
sys.stdout.write("committed\n")
sys.stdout.flush()
time.sleep(30)
"#;

#[test]
fn periodic_capture_follows_an_open_connection() {
    if !fuse_available() {
        return;
    }
    let node = Node::start_with_fuse("capture-interval: 5ms");
    let mut child = spawn_until_committed(KEEP_OPEN, &[node.path("b.db").as_os_str()]);
    // No barrier: the connection stays open, nothing reads -pos. The LTX
    // files must still reach the last commit (TXID 102) promptly.
    let last = wait_for_txid(&node, "b.db", 102);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(last, 102, "LTX files stopped short of the last commit");
    node.check_chain("b.db");
}

const KILLED: &str = r#"
import os, sqlite3, sys
db = sys.argv[1]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
for i in range(100):
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))")
os.kill(os.getpid(), 9)
"#;

#[test]
fn last_close_of_a_killed_writer_captures_its_commits() {
    if !fuse_available() {
        return;
    }
    let node = Node::start_with_fuse("capture-interval: 1h");
    let status = Command::new("python3")
        .arg("-c")
        .arg(KILLED)
        .arg(node.path("c.db"))
        .status()
        .expect("run python3");
    assert!(!status.success(), "the writer kills itself");
    // The kernel closed the WAL when the process died; that close is the
    // barrier. Nothing else has run: the LTX files alone must be complete.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && node.ltx_ranges("c.db").last().map(|r| r.1) != Some(102) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(node.ltx_ranges("c.db").last().map(|r| r.1), Some(102));
    let r = node.check_chain("c.db");
    assert_eq!(r.pos.txid.0, 102);
    assert_eq!(
        sqlite3(&node.path("c.db"), "SELECT count(*) FROM t;").trim(),
        "100"
    );
}

const PERSIST_SESSION: &str = r#"
import sqlite3, sys, time
db, locking = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=persist")
c.execute(f"PRAGMA locking_mode={locking}")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
for i in range(30):
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))")
sys.stdout.write("committed\n")
sys.stdout.flush()
time.sleep(30)
"#;

/// Starts a Python `script` with `args` that keeps its connection open,
/// and returns once it printed `committed`; killed when dropped.
fn spawn_until_committed(
    script: &str,
    args: &[&std::ffi::OsStr],
) -> litefs_fuse_tests::cluster::Reaped {
    let mut child = litefs_fuse_tests::cluster::Reaped::spawn(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "committed");
    child
}

/// Waits until the newest LTX file reaches `txid` (or 10 s pass); returns
/// the newest TXID seen.
fn wait_for_txid(node: &Node, db: &str, txid: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = node.ltx_ranges(db).last().map_or(0, |r| r.1);
        if last >= txid || Instant::now() > deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `journal_mode=PERSIST` commits by zeroing the journal header, a write
/// that passthrough hands to the kernel. Normal locking closes the journal
/// after each transaction (the barrier); exclusive locking keeps it open,
/// and each commit is seen when the next transaction, under a new journal
/// nonce, first writes the database. Either way every transaction gets its
/// own TXID and no `-pos` read is needed for the ones before the last.
#[test]
fn persist_journal_commits_are_captured_without_a_position_read() {
    if !fuse_available() {
        return;
    }
    let node = Node::start_with_fuse("capture-interval: 1h");
    for locking in ["normal", "exclusive"] {
        let db = format!("p-{locking}.db");
        let path = node.path(&db);
        let mut child = spawn_until_committed(
            PERSIST_SESSION,
            &[path.as_os_str(), std::ffi::OsStr::new(locking)],
        );
        // CREATE TABLE is TXID 1, the inserts 2..=31. Exclusive locking:
        // the last commit waits for a barrier, the others must not.
        let want = if locking == "normal" { 31 } else { 30 };
        let seen = wait_for_txid(&node, &db, want);
        assert!(
            seen >= want,
            "{locking}: LTX files reached {seen}, want {want}"
        );
        let pos = node.sync_pos(&db);
        assert!(pos.starts_with("000000000000001f/"), "{locking}: {pos}");
        let _ = child.kill();
        let _ = child.wait();
        let r = node.check_chain(&db);
        assert_eq!(r.pos.txid.0, 31, "{locking}");
    }
}
