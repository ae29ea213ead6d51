//! Restarts: the page-checksum table saved at a clean shutdown makes the
//! next start fast, is used only when it provably describes the database
//! file, and is checked against the file in the background.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::replay::{checksum, replay_dir};
use litefs_fuse_tests::{fuse_available, sqlite3, Node};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The saved table's header length (see crates/store/src/saved.rs).
const HEADER_LEN: usize = 88;

fn saved_path(node: &Node, db: &str) -> PathBuf {
    node.data.join("dbs").join(db).join("checksums")
}

fn wait_for_log(node: &Node, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if node.log_text().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("log never said {needle:?}:\n{}", node.log_text());
}

/// A node holding `t.db` (WAL) and `d.db` (DELETE journal), stopped cleanly.
fn stopped_node() -> Node {
    let mut node = Node::start("");
    for (db, mode) in [("t.db", "wal"), ("d.db", "delete")] {
        sqlite3(
            &node.path(db),
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE t(x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
                 INSERT INTO t SELECT randomblob(300) FROM n;"
            ),
        );
    }
    assert!(node.stop().unwrap().success(), "{}", node.log_text());
    node
}

/// The chain replays to the database on the mount, and `-pos` agrees.
fn check(node: &Node, db: &str) {
    let path = node.path(db);
    assert_eq!(sqlite3(&path, "PRAGMA integrity_check;").trim(), "ok");
    let _ = sqlite3(&path, "PRAGMA wal_checkpoint(TRUNCATE);");
    let pos = node.sync_pos(db);
    let bytes = std::fs::read(&path).unwrap();
    let r = replay_dir(&node.ltx_dir(db));
    assert!(r.bytes == bytes, "{db}: replayed database differs");
    assert_eq!(checksum(&bytes, r.page_size), r.pos.post_apply_checksum);
    assert_eq!(pos, format!("{}\n", r.pos));
}

fn ltx_names(node: &Node, db: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(node.ltx_dir(db))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // By the TXID they reach: a snapshot (1-N) sorts by its N.
    v.sort_by_key(|n| n.get(17..).map(str::to_owned));
    v
}

#[test]
fn clean_restart_takes_saved_checksums_and_verifies_them() {
    if !fuse_available() {
        return;
    }
    let mut node = stopped_node();
    let before: Vec<String> = ["t.db", "d.db"]
        .iter()
        .map(|db| {
            assert!(
                saved_path(&node, db).exists(),
                "{db}: nothing saved at shutdown"
            );
            ltx_names(&node, db).last().unwrap().clone()
        })
        .collect();
    node.spawn();
    wait_for_log(&node, "page checksums taken from the clean shutdown");
    wait_for_log(&node, "saved page checksums verified");
    for (db, last) in ["t.db", "d.db"].iter().zip(before) {
        assert!(
            !saved_path(&node, db).exists(),
            "{db}: saved table not removed at start"
        );
        sqlite3(&node.path(db), "INSERT INTO t VALUES (1);");
        // The chain simply continues: no snapshot was needed.
        let names = ltx_names(&node, db);
        let next = &names[names.iter().position(|n| *n == last).unwrap() + 1..];
        assert!(!next.is_empty(), "{db}: nothing captured after restart");
        assert!(
            next.iter().all(|n| !n.starts_with("0000000000000001-")),
            "{db}: unexpected snapshot after a verified restart: {next:?}"
        );
        check(&node, db);
    }
    assert!(
        !node.log_text().contains("saved checksum table"),
        "{}",
        node.log_text()
    );
}

#[test]
fn damaged_saved_checksums_are_not_used() {
    if !fuse_available() {
        return;
    }
    let mut node = stopped_node();
    let p = saved_path(&node, "t.db");
    let mut b = std::fs::read(&p).unwrap();
    b[HEADER_LEN + 3] ^= 1;
    std::fs::write(&p, b).unwrap();
    node.spawn();
    wait_for_log(&node, "saved checksum table unusable");
    sqlite3(&node.path("t.db"), "INSERT INTO t VALUES (1);");
    check(&node, "t.db");
}

#[test]
fn database_changed_while_stopped_is_rescanned() {
    if !fuse_available() {
        return;
    }
    let mut node = stopped_node();
    // Rewrite page 1 with its own bytes: the same content, but a new mtime
    // and ctime, which is all the saved table may rely on.
    let db = node.data.join("dbs").join("d.db").join("database");
    std::thread::sleep(Duration::from_millis(20));
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, bytes).unwrap();
    node.spawn();
    wait_for_log(&node, "the database file changed since it was saved");
    sqlite3(&node.path("d.db"), "INSERT INTO t VALUES (1);");
    check(&node, "d.db");
}

/// A table that passes every cheap check (its CRC, its fold to the
/// position's checksum, the file's stamp) but is wrong: the background
/// scan must catch it, and the next LTX file must be a snapshot so no
/// replica builds on a wrong checksum.
#[test]
fn wrong_saved_checksums_are_caught_by_the_background_scan() {
    if !fuse_available() {
        return;
    }
    let mut node = stopped_node();
    let p = saved_path(&node, "d.db");
    let mut b = std::fs::read(&p).unwrap();
    let body = b.len() - 8;
    // Swap the checksums of pages 1 and 2: the fold is unchanged.
    let (one, two) = (HEADER_LEN, HEADER_LEN + 8);
    let first: [u8; 8] = b[one..one + 8].try_into().unwrap();
    b.copy_within(two..two + 8, one);
    b[two..two + 8].copy_from_slice(&first);
    let crc = litefs_ltx::crc64(&b[..body]);
    b[body..].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&p, b).unwrap();
    node.spawn();
    wait_for_log(&node, "page checksums taken from the clean shutdown");
    wait_for_log(&node, "saved page checksums were wrong");
    sqlite3(&node.path("d.db"), "INSERT INTO t VALUES (1);");
    node.sync_pos("d.db");
    let last = ltx_names(&node, "d.db").pop().unwrap();
    assert!(
        last.starts_with("0000000000000001-"),
        "the first file after the repair must be a snapshot: {last}"
    );
    check(&node, "d.db");
}
