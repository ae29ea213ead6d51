//! Restarts: the page-checksum table saved at a clean shutdown makes the
//! next start fast, is used only when it provably describes the database
//! file, and is checked against the file in the background.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::wait_log_line;
use litefs_fuse_tests::{fuse_available, sqlite3, Node};
use std::path::PathBuf;
use std::time::Duration;

/// The saved table's header length (see crates/store/src/saved.rs).
const HEADER_LEN: usize = 88;

fn saved_path(node: &Node, db: &str) -> PathBuf {
    node.data.join("dbs").join(db).join("checksums")
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

/// The TXID the newest LTX file of `db` reaches.
fn max_txid(node: &Node, db: &str) -> u64 {
    node.ltx_ranges(db).iter().map(|r| r.1).max().unwrap()
}

#[test]
fn clean_restart_takes_saved_checksums_and_verifies_them() {
    if !fuse_available() {
        return;
    }
    let mut node = stopped_node();
    let before: Vec<u64> = ["t.db", "d.db"]
        .iter()
        .map(|db| {
            assert!(
                saved_path(&node, db).exists(),
                "{db}: nothing saved at shutdown"
            );
            max_txid(&node, db)
        })
        .collect();
    node.spawn();
    wait_log_line(
        &node,
        &["page checksums taken from the clean shutdown"],
        Duration::from_secs(20),
    );
    wait_log_line(
        &node,
        &["saved page checksums verified"],
        Duration::from_secs(20),
    );
    for (db, last) in ["t.db", "d.db"].iter().zip(before) {
        assert!(
            !saved_path(&node, db).exists(),
            "{db}: saved table not removed at start"
        );
        sqlite3(&node.path(db), "INSERT INTO t VALUES (1);");
        node.sync_pos(db);
        // The chain simply continues: no snapshot was needed.
        let next: Vec<(u64, u64)> = node
            .ltx_ranges(db)
            .into_iter()
            .filter(|r| r.1 > last)
            .collect();
        assert!(!next.is_empty(), "{db}: nothing captured after restart");
        assert!(
            next.iter().all(|r| r.0 != 1),
            "{db}: unexpected snapshot after a verified restart: {next:?}"
        );
        node.check_chain(db);
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
    wait_log_line(
        &node,
        &["saved checksum table unusable"],
        Duration::from_secs(20),
    );
    sqlite3(&node.path("t.db"), "INSERT INTO t VALUES (1);");
    node.check_chain("t.db");
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
    wait_log_line(
        &node,
        &["the database file changed since it was saved"],
        Duration::from_secs(20),
    );
    sqlite3(&node.path("d.db"), "INSERT INTO t VALUES (1);");
    node.check_chain("d.db");
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
    wait_log_line(
        &node,
        &["page checksums taken from the clean shutdown"],
        Duration::from_secs(20),
    );
    wait_log_line(
        &node,
        &["saved page checksums were wrong"],
        Duration::from_secs(20),
    );
    sqlite3(&node.path("d.db"), "INSERT INTO t VALUES (1);");
    node.sync_pos("d.db");
    let last = node
        .ltx_ranges("d.db")
        .into_iter()
        .max_by_key(|r| r.1)
        .unwrap();
    assert_eq!(
        last.0, 1,
        "the first file after the repair must be a snapshot: {last:?}"
    );
    node.check_chain("d.db");
}
