//! More replication between real `litefs mount` processes on 127.0.0.1:
//! replicas restarted (cleanly and by SIGKILL under load) catch up, a
//! replica behind the primary's retention gets a snapshot, `lease.databases`
//! filters, the bearer token guards the API and the stream, bad API input
//! is refused without effect, a replica refuses a primary of another
//! cluster, and three nodes converge after thousands of transactions.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    cluster, pos_of, require_fuse, same_bytes, sql, wait_bounded, wait_log_line, wait_same_pos,
};
use litefs_fuse_tests::{primary_lease, replica_lease, Node};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts a Python script in the background (stdout and stderr piped).
fn python_bg(script: &str) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// Waits for a background Python script and requires success; its stdout.
fn python_done(child: Child, limit: Duration) -> String {
    let out = wait_bounded(child, limit, "python3");
    assert!(
        out.status.success(),
        "python3 failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Python writer: `n` autocommit inserts into `t` of `db`, or as many as
/// fit in `secs` seconds when `n` is 0; prints how many it made.
fn writer_script(db: &Path, n: usize, secs: f64) -> String {
    format!(
        r#"
import sqlite3, time
c = sqlite3.connect('{db}', timeout=30, isolation_level=None)
n = 0
end = time.time() + {secs}
while ({n} and n < {n}) or (not {n} and time.time() < end):
    c.execute('INSERT INTO t(v) VALUES (hex(randomblob(40)))')
    n += 1
c.close()
print(n)
"#,
        db = db.display()
    )
}

/// Stops `n`, adds `keys` (indented lines) at the top of the `section:`
/// of its config, and starts it again (the harness writes `data:` and
/// `http:` itself, and YAML keys cannot repeat).
fn restart_with(n: &mut Node, section: &str, keys: &str) {
    assert!(n.stop().is_some_and(|s| s.success()), "{}", n.log_text());
    let cfg = std::fs::read_to_string(&n.config).unwrap();
    let head = format!("\n{section}:\n");
    let at = cfg
        .find(&head)
        .unwrap_or_else(|| panic!("no {section}: in\n{cfg}"))
        + head.len();
    let mut new = cfg.clone();
    new.insert_str(at, keys);
    std::fs::write(&n.config, new).unwrap();
    n.spawn();
}

/// One HTTP/1.1 request over a fresh connection to the node at `url`:
/// `(status, body)`. Every step is time-bounded.
fn http(
    url: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String) {
    let addr = url.strip_prefix("http://").expect("http:// URL");
    let sock: std::net::SocketAddr = addr.parse().expect("host:port");
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {resp:?}"));
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut payload = resp[split + 4..].to_vec();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line in {head:?}"));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    (status, String::from_utf8_lossy(&payload).into_owned())
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
    out
}

/// The names in `n`'s mount, sorted.
fn listing(n: &Node) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&n.mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A stopped replica catches up when it starts again; a replica SIGKILLed
/// while the primary writes catches up too, byte for byte, with an LTX
/// chain that replays to its database.
#[test]
fn replica_catches_up_after_stop_and_after_kill_under_load() {
    if !require_fuse() {
        return;
    }
    let (p, mut rs) = cluster(1);
    let mut r = rs.pop().unwrap();
    let db = "up.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('a'), ('b');",
    );
    let before = wait_same_pos(&p, &r, db);

    // A clean stop: 200 transactions while the replica is down.
    let st = r.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", r.log_text());
    let inserts: String = (0..200)
        .map(|i| format!("INSERT INTO t(v) VALUES (hex(randomblob(64)) || '{i}');\n"))
        .collect();
    sql(&p.path(db), &inserts);
    assert_ne!(pos_of(&p, db), before);
    r.spawn();
    wait_same_pos(&p, &r, db);
    same_bytes(&p, &r, db);
    assert_eq!(sql(&r.path(db), "SELECT count(*) FROM t;").trim(), "202");
    r.check_chain(db);

    // SIGKILL while a writer on the primary runs, then start again.
    let bg = python_bg(&writer_script(&p.path(db), 0, 3.0));
    std::thread::sleep(Duration::from_millis(700));
    let at_kill = pos_of(&r, db);
    r.kill();
    std::thread::sleep(Duration::from_millis(500));
    r.spawn();
    let n: usize = python_done(bg, Duration::from_secs(60))
        .trim()
        .parse()
        .unwrap();
    assert!(n > 50, "the writer made only {n} transactions");
    let end = wait_same_pos(&p, &r, db);
    assert_ne!(end, at_kill, "the primary wrote after the kill");
    same_bytes(&p, &r, db);
    assert_eq!(
        sql(&r.path(db), "SELECT count(*) FROM t;").trim(),
        (202 + n).to_string()
    );
    r.check_chain(db);
}

/// A replica that comes back after the primary's retention removed the LTX
/// files it needs gets a snapshot (its LTX directory then starts with one
/// file from TXID 1 past its old position) and converges byte for byte.
#[test]
fn replica_behind_retention_gets_a_snapshot() {
    if !require_fuse() {
        return;
    }
    let mut p = Node::start_lease(&primary_lease("primary-1"), "");
    restart_with(
        &mut p,
        "data",
        "  retention: 1s\n  retention-monitor-interval: 200ms\n",
    );
    let mut r = Node::start_lease(&replica_lease("primary-1", &p.url), "");
    let db = "ret.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    for i in 0..5 {
        sql(&p.path(db), &format!("INSERT INTO t(v) VALUES ('{i}');"));
    }
    wait_same_pos(&p, &r, db);
    let old_max = r.ltx_ranges(db).last().unwrap().1;
    assert!(r.stop().is_some_and(|s| s.success()), "{}", r.log_text());

    let inserts = |from: usize| -> String {
        (from..from + 25)
            .map(|i| format!("INSERT INTO t(v) VALUES (hex(randomblob(500)) || '{i}');\n"))
            .collect()
    };
    // Two batches far enough apart that the first one's files (however
    // capture grouped its commits) age out while the second's stay: the
    // replica's next TXID is then gone from the primary.
    sql(&p.path(db), &inserts(0));
    std::thread::sleep(Duration::from_millis(1200));
    sql(&p.path(db), &inserts(25));
    let p_pos = pos_of(&p, db);
    // Retention keeps only the newest file once the others are 1 s old.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ranges = p.ltx_ranges(db);
        if ranges.len() == 1 {
            assert!(ranges[0].0 > old_max + 1, "{ranges:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never ran: {ranges:?}\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pos_of(&p, db), p_pos);

    r.spawn();
    wait_same_pos(&p, &r, db);
    same_bytes(&p, &r, db);
    let ranges = r.ltx_ranges(db);
    assert_eq!(ranges[0].0, 1, "no snapshot on the replica: {ranges:?}");
    assert!(
        ranges[0].1 > old_max,
        "the replica's first LTX file is not a new snapshot: {ranges:?} (old max {old_max})"
    );
    assert_eq!(sql(&r.path(db), "SELECT count(*) FROM t;").trim(), "55");
    r.check_chain(db);
    // It keeps following after the snapshot.
    sql(&p.path(db), "INSERT INTO t(v) VALUES ('after');");
    wait_same_pos(&p, &r, db);
    same_bytes(&p, &r, db);
}

/// `lease.databases` on a replica: only the named database arrives.
#[test]
fn replica_with_lease_databases_receives_only_those() {
    if !require_fuse() {
        return;
    }
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    let r = Node::start_lease(
        &format!(
            "{}  databases: [a.db]\n",
            replica_lease("primary-1", &p.url)
        ),
        "",
    );
    for db in ["a.db", "b.db"] {
        sql(
            &p.path(db),
            "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1);",
        );
    }
    wait_same_pos(&p, &r, "a.db");
    for db in ["b.db", "a.db"] {
        sql(&p.path(db), "INSERT INTO t VALUES (2);");
    }
    wait_same_pos(&p, &r, "a.db");
    same_bytes(&p, &r, "a.db");
    // b.db was written before a.db's last transaction arrived; give a
    // stray b.db a little more time to show up anyway.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!r.path("b.db").exists(), "b.db reached the replica");
    assert_eq!(pos_of(&r, "b.db"), "");
    assert!(!r.data.join("dbs").join("b.db").exists());
    assert!(listing(&r).iter().all(|n| !n.starts_with("b.db")));
    assert_eq!(sql(&r.path("a.db"), "SELECT sum(v) FROM t;").trim(), "3");
}

/// With `http.auth-token`, replicas holding the token replicate; a request
/// without it gets 401, with it 200; a replica with the wrong token gets
/// nothing and logs the refusal.
#[test]
fn auth_token_guards_the_api_and_the_stream() {
    if !require_fuse() {
        return;
    }
    // The harness writes `http:` with `addr:` just before the lease
    // section, so token lines in front of it land in `http:`.
    let token = |t: &str, lease: String| format!("  auth-token: {t}\n{lease}");
    let p = Node::start_lease(&token("s3cret", primary_lease("primary-1")), "");
    let good = Node::start_lease(&token("s3cret", replica_lease("primary-1", &p.url)), "");
    let bad = Node::start_lease(&token("wrong", replica_lease("primary-1", &p.url)), "");
    let db = "auth.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES ('x');",
    );
    wait_same_pos(&p, &good, db);
    same_bytes(&p, &good, db);

    let (st, body) = http(&p.url, "GET", "/info", b"", &[]);
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (st, body) = http(
        &p.url,
        "GET",
        "/info",
        b"",
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(st, 401, "{body}");
    let (st, body) = http(
        &p.url,
        "GET",
        "/info",
        b"",
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.trim_start().starts_with('{'), "{body}");

    let log = wait_log_line(&bad, &["refused the stream: 401"], Duration::from_secs(10));
    assert!(log.contains(&p.url), "{log}");
    // More writes reach the good replica and never the bad one.
    sql(&p.path(db), "INSERT INTO t VALUES ('y');");
    wait_same_pos(&p, &good, db);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pos_of(&bad, db), "");
    assert!(!bad.path(db).exists());
    assert!(!bad.log_text().contains("connected to the primary"));
    // A refused stream is no reason to join the primary's cluster.
    assert!(
        !bad.data.join("clusterid").exists(),
        "the refused replica adopted the cluster ID:\n{}",
        bad.log_text()
    );
    assert!(good.data.join("clusterid").exists());
}

/// Bad requests to the API are refused with a 4xx (or 503 where only the
/// primary serves) and a message, and change nothing.
#[test]
fn api_refuses_bad_requests_and_changes_nothing() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(1);
    let r = &rs[0];
    let db = "keep.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1);",
    );
    wait_same_pos(&p, r, db);
    let pos = pos_of(&p, db);
    let names = listing(&p);

    // (node, method, path, body, status, what the message must say)
    type Case<'a> = (&'a Node, &'a str, &'a str, &'a [u8], u16, &'a str);
    let cases: [Case; 8] = [
        (
            &p,
            "POST",
            "/stream",
            &[0x9f, 0x01, 0xee],
            400,
            "position map",
        ),
        (
            &p,
            "POST",
            "/stream",
            &[0, 0, 0, 1, 0, 0],
            400,
            "position map",
        ),
        (
            &p,
            "POST",
            "/import?name=x.db",
            b"this is not an SQLite database, not even close",
            400,
            "x.db",
        ),
        (&p, "POST", "/import", b"whatever", 400, "name"),
        (&p, "POST", "/import?name=../x", b"whatever", 400, "../x"),
        (&p, "GET", "/export?name=missing.db", b"", 404, "missing.db"),
        (&p, "GET", "/nope", b"", 404, "/nope"),
        (r, "POST", "/stream", &[0, 0, 0, 0], 503, "primary"),
    ];
    for (node, method, path, body, want, says) in cases {
        let (st, msg) = http(&node.url, method, path, body, &[]);
        assert_eq!(st, want, "{method} {path}: {msg}");
        assert!(
            msg.contains(says),
            "{method} {path}: {st} {msg:?} does not say {says:?}"
        );
    }
    assert_eq!(pos_of(&p, db), pos);
    assert_eq!(listing(&p), names, "a refused request changed the mount");
    assert!(!p.data.join("dbs").join("x.db").exists());
    // The replica still follows.
    sql(&p.path(db), "INSERT INTO t VALUES (2);");
    wait_same_pos(&p, r, db);
    same_bytes(&p, r, db);
}

/// A replica whose data directory belongs to another cluster refuses the
/// primary: nothing new is applied, and the log names the mismatch.
#[test]
fn replica_refuses_a_primary_of_another_cluster() {
    if !require_fuse() {
        return;
    }
    let (p, mut rs) = cluster(1);
    let mut r = rs.pop().unwrap();
    let db = "cid.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1);",
    );
    let old = wait_same_pos(&p, &r, db);
    assert!(r.stop().is_some_and(|s| s.success()), "{}", r.log_text());
    let path = r.data.join("clusterid");
    let ours = std::fs::read_to_string(&path).unwrap();
    assert!(
        ours.trim().starts_with("LFSC") && ours.trim().len() == 20,
        "{ours:?}"
    );
    let other = if ours.trim() == "LFSC0123456789ABCDEF" {
        "LFSCFEDCBA9876543210"
    } else {
        "LFSC0123456789ABCDEF"
    };
    std::fs::write(&path, format!("{other}\n")).unwrap();

    sql(
        &p.path(db),
        "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);",
    );
    assert_ne!(pos_of(&p, db), old);
    r.spawn();
    let log = wait_log_line(&r, &["cluster ID mismatch"], Duration::from_secs(10));
    assert!(log.contains(other) && log.contains(ours.trim()), "{log}");
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(pos_of(&r, db), old, "a replica of another cluster applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sql(&r.path(db), "SELECT count(*) FROM t;").trim(), "1");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        other,
        "the cluster ID was replaced"
    );
}

/// Three nodes; 2,000 small transactions in one WAL database from a Python
/// writer on the primary: both replicas converge byte for byte and their
/// LTX chains replay to their databases.
#[test]
fn three_nodes_converge_after_2000_transactions() {
    if !require_fuse() {
        return;
    }
    let (p, rs) = cluster(2);
    let db = "many.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    let w = python_bg(&writer_script(&p.path(db), 2000, 0.0));
    let n = python_done(w, Duration::from_secs(60));
    assert_eq!(n.trim(), "2000");
    for r in &rs {
        wait_same_pos(&p, r, db);
        same_bytes(&p, r, db);
        assert_eq!(sql(&r.path(db), "SELECT count(*) FROM t;").trim(), "2000");
        r.check_chain(db);
    }
    p.check_chain(db);
}

/// SIGTERM the moment the mount is up (before the API has started) still
/// means a clean exit and no mount left behind: the catch-up tests above
/// stop nodes right after starting them.
#[test]
fn sigterm_right_after_the_mount_appears_exits_cleanly() {
    if !require_fuse() {
        return;
    }
    let mut p = Node::start_lease(&primary_lease("primary-1"), "");
    assert!(p.stop().is_some_and(|s| s.success()), "{}", p.log_text());
    for round in 0..5 {
        let log = p.dir.path().join(format!("round-{round}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(litefs_fuse_tests::litefs_bin())
            .arg("mount")
            .arg("-config")
            .arg(&p.config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let io_known =
                text.contains("FUSE passthrough on") || text.contains("using classic FUSE I/O");
            if io_known && litefs_fuse_tests::is_mounted(&p.mount) {
                break;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                litefs_fuse_tests::unmount(&p.mount);
                panic!("round {round}: the mount never appeared:\n{text}");
            }
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                litefs_fuse_tests::unmount(&p.mount);
                panic!("round {round}: no exit 20 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mounted = litefs_fuse_tests::is_mounted(&p.mount);
        litefs_fuse_tests::unmount(&p.mount);
        assert!(
            status.success() && !mounted,
            "round {round}: {status}, mount left: {mounted}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}
