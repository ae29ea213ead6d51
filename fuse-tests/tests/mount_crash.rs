//! The daemon is SIGKILLed at random points of a write workload, 20 times.
//! Each restart must come up with `integrity_check` ok, the position
//! matching the last LTX file, the chain replaying to the database, and
//! every transaction the client saw committed present.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::replay::replay_dir;
use litefs_fuse_tests::{fuse_available, sqlite3, Node};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Deterministic pseudo-random delays so a failure can be reproduced.
fn delays(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            50 + x % 700
        })
        .collect()
}

#[test]
fn sigkill_during_writes_loses_nothing_committed() {
    if !fuse_available() {
        return;
    }
    let writer = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join("writer.py");
    let mut node = Node::start("");
    let mut next_id = 1u64;
    let mut confirmed = 0u64;
    for (round, delay) in delays(0x5eed, 20).into_iter().enumerate() {
        let mode = if round % 2 == 0 { "wal" } else { "delete" };
        let db = format!("crash-{mode}.db");
        let path = node.path(&db);
        let mut child = Command::new("python3")
            .arg(&writer)
            .arg(&path)
            .arg(mode)
            .arg(next_id.to_string())
            .arg("1000000")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(id) = line.trim().parse::<u64>() {
                    let _ = tx.send(id);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(delay));
        node.kill();
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        let seen: Vec<u64> = rx.try_iter().collect();
        let last = seen.last().copied();
        node.spawn();

        assert_eq!(
            sqlite3(&path, "PRAGMA integrity_check;").trim(),
            "ok",
            "round {round}:\n{}",
            node.log_text()
        );
        // A writer killed before it created its table (a short delay on a
        // loaded machine: Python had not started yet) committed nothing in
        // this round; then there is nothing to check but the integrity.
        let has_table = sqlite3(
            &path,
            "SELECT count(*) FROM sqlite_master WHERE name = 'w';",
        )
        .trim()
            == "1";
        if !has_table {
            assert!(
                last.is_none(),
                "round {round}: rows up to {last:?} were committed, but table w is gone:\n{}",
                node.log_text()
            );
            continue;
        }
        if let Some(last) = last {
            let n: u64 = sqlite3(
                &path,
                &format!("SELECT count(*) FROM w WHERE id BETWEEN {next_id} AND {last};"),
            )
            .trim()
            .parse()
            .expect("count");
            assert_eq!(
                n,
                last - next_id + 1,
                "round {round}: committed rows missing after restart"
            );
            confirmed += n;
            next_id = last + 1;
        }
        // Rows past the confirmed ones may exist (committed but not yet
        // reported); ids continue after the highest present.
        let max: u64 = sqlite3(&path, "SELECT coalesce(max(id), 0) FROM w;")
            .trim()
            .parse()
            .expect("max");
        next_id = next_id.max(max + 1);

        // The position is the newest LTX file and the chain rebuilds the database.
        let _ = sqlite3(&path, "PRAGMA wal_checkpoint(TRUNCATE);");
        let bytes = std::fs::read(&path).expect("read db");
        let pos = node.sync_pos(&db);
        let r = replay_dir(&node.ltx_dir(&db));
        assert!(
            r.bytes == bytes,
            "round {round}: replayed chain differs from the database"
        );
        assert_eq!(pos.trim(), r.pos.to_string(), "round {round}: -pos");
    }
    assert!(confirmed > 0, "the writer never committed anything");
    let log = node.log_text();
    let count = |pat: &str| log.matches(pat).count();
    eprintln!(
        "{confirmed} transactions confirmed across 20 crashes; recovery: {} hot journals rolled back, {} uncommitted LTX files set aside, {} WAL transactions captured at start-up, {} recovery snapshots, {} damaged LTX files",
        count("rolled back a hot journal"),
        count("was rolled back; set aside"),
        count("captured WAL transaction found at start-up"),
        count("recovery snapshot"),
        count("damaged"),
    );
}
