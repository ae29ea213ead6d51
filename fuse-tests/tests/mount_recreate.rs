//! A `-wal` or `-journal` that SQLite removes and creates again is a new
//! file, as on any filesystem, even while the removed one is still open.
//!
//! Inode numbers in the mount are stable per name, and with FUSE
//! passthrough every open of an inode shares one backing-file
//! registration. The daemon used to reuse a live registration for the new
//! file, so the new file's I/O went to the removed one: `stat` showed an
//! empty WAL although SQLite had written frames to it, its commits were
//! never captured (not replicated), and a journal's size read back as 0,
//! so `ROLLBACK` restored nothing. SQLite's own `wal5.test` and
//! `hook.test` failed now and then on a busy machine that way: a close's
//! RELEASE is asynchronous, and a create handled before it finished got
//! the removed file's registration. That window cannot be hit on purpose;
//! a forked child holding the removed files open keeps it open for as
//! long as the test likes (the race itself is tested in `backing.rs`).
//! Runs on both I/O paths (`LITEFS_TEST_IO=classic`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::{fuse_available, python, Node};

/// Removes and creates again the WAL (the last connection removes it) and
/// a rollback journal (each DELETE-mode transaction), each time while a
/// forked child holds the removed file open. Prints `ok` or what differs
/// from a local filesystem.
const SCRIPT: &str = r#"
import os, sqlite3, sys
db = sys.argv[1]
FRAME = 4096 + 24

def pos():
    try:
        return int(open(db + "-pos").read().split("/")[0], 16)
    except FileNotFoundError:  # a plain directory
        return None

def held_by_child():
    """A forked child: it holds every descriptor the parent has, as after
    any fork, until released."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    return pid, w

def release(child):
    pid, w = child
    os.write(w, b"x")
    os.close(w)
    os.waitpid(pid, 0)

problems = []
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(x)")
c.execute("INSERT INTO t VALUES(0)")
child = held_by_child()
# The last connection checkpoints and removes the WAL and the WAL index
# (the child holds no locks: fcntl locks are not inherited).
c.close()
if os.path.exists(db + "-wal"):
    problems.append("the WAL survived the last close")
c = sqlite3.connect(db, isolation_level=None)
before = pos()
for i in range(1, 4):
    c.execute("INSERT INTO t VALUES(?)", (i,))
busy, frames, _ = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
size = os.stat(db + "-wal").st_size
if size != 32 + frames * FRAME:
    problems.append(f"WAL: SQLite wrote {frames} frames, stat shows {size} bytes")
with open(db + "-wal", "rb") as f:
    n = len(f.read())
if n != size:
    problems.append(f"WAL: stat shows {size} bytes, a read gives {n}")
if before is not None and pos() != before + 3:
    problems.append(f"-pos: TXID {before} before 3 commits, {pos()} after")

c.execute("PRAGMA journal_mode=DELETE")
c.execute("BEGIN")
c.execute("INSERT INTO t VALUES(10)")
child2 = held_by_child()
c.execute("COMMIT")  # removes the journal
c.execute("BEGIN")
c.execute("UPDATE t SET x = x + 1")  # creates a new one
size = os.stat(db + "-journal").st_size
with open(db + "-journal", "rb") as f:
    n = len(f.read())
if size == 0 or n != size:
    problems.append(f"journal of an open transaction: stat shows {size} bytes, a read gives {n}")
# ROLLBACK reads the original pages back from the journal.
during = c.execute("SELECT sum(x) FROM t").fetchone()[0]
c.execute("ROLLBACK")
after = c.execute("SELECT sum(x) FROM t").fetchone()[0]
if after != during - 5:
    problems.append(f"ROLLBACK: sum {after}, {during - 5} before the UPDATE")
c.close()
release(child)
release(child2)
print("\n".join(problems) if problems else "ok")
"#;

#[test]
fn side_files_created_again_while_the_removed_ones_are_open() {
    if !fuse_available() {
        return;
    }
    // What the script expects is what a local filesystem does.
    let plain = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        python(SCRIPT, &plain.path().join("f.db")).trim(),
        "ok",
        "plain directory"
    );

    let node = Node::start("");
    let out = python(SCRIPT, &node.path("f.db"));
    let out = out.trim();
    assert_eq!(out, "ok", "on the mount:\n{out}\n--- log ---\n{}", {
        let log = node.log_text();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    });
    // Every commit, including those made in the new WAL, is in the chain.
    let r = node.check_chain("f.db");
    // journal_mode=WAL, CREATE, 4 inserts, journal_mode=DELETE, 1 insert
    // (the rolled back transaction is no commit).
    assert_eq!(r.pos.txid.0, 8, "position {:?}", r.pos);
}
