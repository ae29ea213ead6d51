//! The halt lock (write forwarding) end to end: a static primary and two
//! replicas, `litefs run -with-halt-lock-on` around the `sqlite3` CLI on a
//! replica, and the API's refusals of bad halt and `/tx` requests.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    cluster, get, pos_of, require_fuse, run_bounded, same_bytes, sample, sql, wait_same_pos,
};
use litefs_fuse_tests::{litefs_bin, sqlite3_output, Node};
use std::process::Command;
use std::time::{Duration, Instant};

/// `litefs run -url <replica> -with-halt-lock-on <db> -- sh -c <script>`.
fn with_halt(replica: &Node, db: &str, script: &str) -> std::process::Output {
    run_bounded(
        Command::new(litefs_bin())
            .arg("run")
            .args(["-url", &replica.url])
            .args(["-with-halt-lock-on", replica.path(db).to_str().unwrap()])
            .args(["--", "sh", "-c", script]),
        Duration::from_secs(120),
    )
}

/// The primary's halt-lock expiry (`litefs_http::HALT_TTL`).
const HALT_TTL: Duration = Duration::from_secs(30);

fn count(n: &Node, db: &str) -> i64 {
    sql(&n.path(db), "SELECT count(*) FROM t;")
        .trim()
        .parse()
        .unwrap()
}

/// 1,000 rows inserted by the `sqlite3` CLI on a replica, one transaction
/// each, in WAL and in DELETE mode: every row reaches the primary and the
/// other replica (same position, same bytes). While the replica holds the
/// lock, the primary's own writers get SQLITE_BUSY ("database is
/// locked"), and they write again once it is released.
#[test]
fn halt_lock_forwards_a_replicas_writes() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(2);
    let (a, b) = (&rs[0], &rs[1]);
    sql(
        &p.path("wal.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    sql(
        &p.path("del.db"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    for db in ["wal.db", "del.db"] {
        wait_same_pos(&p, a, db);
    }
    let inserts = a.dir.path().join("inserts.sql");
    let text: String = (1..=1000)
        .map(|i| format!("INSERT INTO t(id, v) VALUES ({i}, 'row {i}');\n"))
        .collect();
    std::fs::write(&inserts, text).unwrap();

    for db in ["wal.db", "del.db"] {
        let t = Instant::now();
        let out = with_halt(
            a,
            db,
            &format!(
                "sqlite3 -bail -init {} {} .quit",
                inserts.display(),
                a.path(db).display()
            ),
        );
        assert!(
            out.status.success(),
            "{db}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            a.log_text()
        );
        eprintln!("{db}: 1,000 forwarded transactions in {:?}", t.elapsed());
        // Counted on both sides.
        for (n, who) in [(&p, "primary"), (a, "replica")] {
            let m = get(n, "/metrics").1;
            let v = sample(&m, &format!("litefs_db_forwarded_tx_count{{db=\"{db}\"}}"));
            assert!(v >= 1000.0, "{who}: {v} forwarded transactions counted");
        }
        // Each commit returned only once the primary had it.
        assert_eq!(
            count(&p, db),
            1000,
            "{db}: rows missing on the primary right after the run"
        );
        wait_same_pos(&p, b, db);
        wait_same_pos(&p, a, db);
        assert_eq!(count(b, db), 1000);
        same_bytes(&p, b, db);
        same_bytes(&p, a, db);
    }

    // While held: the primary's writers are kept out (SQLITE_BUSY).
    for db in ["wal.db", "del.db"] {
        let marker = a.dir.path().join(format!("{db}.held"));
        let script = format!(
            "sqlite3 {} \"INSERT INTO t(v) VALUES ('from the replica')\" && touch {} && sleep 2",
            a.path(db).display(),
            marker.display()
        );
        let holder = {
            let mut c = Command::new(litefs_bin());
            c.arg("run")
                .args(["-url", &a.url])
                .args(["-with-halt-lock-on", a.path(db).to_str().unwrap()])
                .args(["--", "sh", "-c", &script])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !marker.exists() {
            assert!(
                Instant::now() < deadline,
                "{db}: the halted write never happened\n{}",
                a.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new("sqlite3")
            .arg(p.path(db))
            .arg("INSERT INTO t(v) VALUES ('primary while halted')")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{db}: the primary wrote while a replica held the halt lock"
        );
        assert!(
            err.contains("database is locked"),
            "{db}: not SQLITE_BUSY: {err}"
        );
        let out = litefs_fuse_tests::cluster::wait_bounded(
            holder,
            Duration::from_secs(30),
            "halt holder",
        );
        assert!(out.status.success());
        // Released: the primary writes again, and everyone converges.
        let out = sqlite3_output(
            &p.path(db),
            "INSERT INTO t(v) VALUES ('primary after release')",
        );
        assert!(
            out.status.success(),
            "{db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_same_pos(&p, a, db);
        wait_same_pos(&p, b, db);
        assert_eq!(count(&p, db), 1002, "{db}");
        same_bytes(&p, b, db);
        let check = sql(&p.path(db), "PRAGMA integrity_check;");
        assert_eq!(check.trim(), "ok");
    }
}

/// A replica killed while it holds the halt lock, in the middle of a
/// transaction: the primary gets its writers back when the lock expires,
/// and the unfinished transaction never appears anywhere.
#[test]
fn replica_dying_with_the_halt_lock() {
    if !require_fuse() {
        return;
    }
    let (p, mut rs) = cluster(2);
    sql(
        &p.path("db"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('before');",
    );
    wait_same_pos(&p, &rs[0], "db");
    let before = pos_of(&p, "db");
    let marker = rs[0].dir.path().join("begun");
    // A transaction begun and never committed, under the halt lock.
    let script = format!(
        "(echo \"BEGIN; INSERT INTO t(v) VALUES ('half done');\"; touch {}; sleep 120) | sqlite3 {}",
        marker.display(),
        rs[0].path("db").display()
    );
    // Its own process group: `sleep 120` must not outlive the test.
    let holder = litefs_fuse_tests::cluster::Reaped::group(
        Command::new(litefs_bin())
            .arg("run")
            .args(["-url", &rs[0].url])
            .args(["-with-halt-lock-on", rs[0].path("db").to_str().unwrap()])
            .args(["--", "sh", "-c", &script]),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the transaction never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    rs[0].kill();
    drop(holder);
    // The primary's writers wait for the lock's expiry, then write.
    let deadline = Instant::now() + HALT_TTL + Duration::from_secs(15);
    loop {
        let out = Command::new("sqlite3")
            .arg("-cmd")
            .arg(".timeout 1000")
            .arg(p.path("db"))
            .arg("INSERT INTO t(v) VALUES ('primary after the expiry')")
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary never got its writers back\n{}",
            p.log_text()
        );
    }
    eprintln!(
        "primary writable again {:?} after the replica died",
        t.elapsed()
    );
    assert_ne!(pos_of(&p, "db"), before);
    let rows = sql(&p.path("db"), "SELECT v FROM t ORDER BY id;");
    assert_eq!(rows, "before\nprimary after the expiry\n");
    wait_same_pos(&p, &rs[1], "db");
    assert_eq!(sql(&rs[1].path("db"), "SELECT v FROM t ORDER BY id;"), rows);
    // The dead replica comes back without the half-done row.
    rs[0].spawn();
    wait_same_pos(&p, &rs[0], "db");
    assert_eq!(sql(&rs[0].path("db"), "SELECT v FROM t ORDER BY id;"), rows);
    same_bytes(&p, &rs[0], "db");
}

/// Bad requests change nothing: `/tx` without the halt lock, `/halt` for
/// an unknown database, a malformed LTX body under a held lock, and a
/// node asking for its own lock.
#[test]
fn bad_halt_and_tx_requests_are_refused() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(1);
    sql(
        &p.path("db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    wait_same_pos(&p, &rs[0], "db");
    let before = pos_of(&p, "db");
    let call = |method: &str, path: &str, body: &[u8]| {
        litefs_fuse_tests::consul::http_request(&p.url, method, path, body, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{method} {path}: no answer"))
    };
    // Halt events reach /events subscribers.
    let events = {
        use std::io::{Read, Write};
        let addr = p.url.trim_start_matches("http://").to_owned();
        let mut sock = std::net::TcpStream::connect(&addr).unwrap();
        sock.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                if let Ok(n) = sock.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (code, msg) = call("POST", "/tx?name=db&lockID=7", b"");
    assert_eq!(code, 409, "{msg}");
    assert!(msg.contains("halt lock"), "{msg}");
    let (code, msg) = call("POST", "/halt?name=nosuch&id=7", b"");
    assert_eq!(code, 404, "{msg}");
    assert!(msg.contains("nosuch"), "{msg}");
    let (code, msg) = call("POST", "/halt?name=db&id=x", b"");
    assert_eq!(code, 400, "{msg}");
    // Held, then a body that is not an LTX file.
    let (code, msg) = call("POST", "/halt?name=db&id=7", b"");
    assert_eq!(code, 200, "{msg}");
    assert!(msg.contains("\"txid\""), "{msg}");
    let (code, msg) = call("POST", "/tx?name=db&lockID=7", b"not an LTX file");
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("rejected"), "{msg}");
    let (code, _) = call("DELETE", "/halt?name=db&id=7", b"");
    assert_eq!(code, 200);
    let text = events.join().unwrap();
    for state in ["acquired", "released"] {
        assert!(
            text.lines()
                .any(|l| l.contains("\"type\":\"halt\"") && l.contains(state)),
            "no halt {state} event:\n{text}"
        );
    }
    assert_eq!(
        pos_of(&p, "db"),
        before,
        "a refused request changed the database"
    );
    // The primary writes normally afterwards.
    sql(&p.path("db"), "INSERT INTO t VALUES (2);");
    wait_same_pos(&p, &rs[0], "db");
}
