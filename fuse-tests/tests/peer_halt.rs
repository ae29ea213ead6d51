//! The halt lock (write forwarding) across implementations, with static
//! mixed pairs: a LiteFS v0.5.14 replica writing through our primary, and
//! our replica writing through a LiteFS primary. Each replica writes two
//! ways: a client that takes the lock itself (`F_OFD_SETLKW` on byte 72 of
//! `<db>-lock`, then SQLite in the same process), and the replica's own
//! `litefs run -with-halt-lock-on` around the `sqlite3` CLI. In WAL and in
//! DELETE mode the rows reach the primary before each commit returns, come
//! back to the replica (same `-pos`, same bytes), the primary's own writers
//! are held off while the lock is held and write after its release, and
//! the Go `ltx verify` accepts every LTX file our node wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{require_fuse, same_bytes, sql, wait_bounded, wait_same_pos};
use litefs_fuse_tests::peer::{self, go_verify, static_pair, Impl};
use litefs_fuse_tests::Node;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The peers, or `None` (after SKIP lines) where they may be missing.
fn peers() -> Option<(PathBuf, PathBuf)> {
    if !require_fuse() {
        return None;
    }
    Some((peer::litefs_bin()?, peer::ltx_bin()?))
}

/// A client holding the halt lock in its own process, as an application
/// using LiteFS's Go library does: `F_OFD_SETLKW` write lock on byte 72 of
/// `<db>-lock` (retried on EINTR), then `n` autocommit inserts and one
/// 50-row transaction through SQLite, with a busy timeout of `busy`
/// seconds and `pause` seconds before each autocommit. With marker paths `held` and
/// `release` (else "-"), it then creates `held` and keeps the lock until
/// `release` exists (60 s at most). It unlocks explicitly, then closes.
const HOLDER: &str = r#"
import fcntl, os, sqlite3, struct, sys, time
db, n, busy, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
held, release = sys.argv[5], sys.argv[6]
fd = os.open(db + "-lock", os.O_RDWR)
def lk(cmd, kind):
    fl = struct.pack("hhqqi", kind, os.SEEK_SET, 72, 1, 0)
    while True:
        try:
            return fcntl.fcntl(fd, cmd, fl)
        except InterruptedError:
            pass
lk(fcntl.F_OFD_SETLKW, fcntl.F_WRLCK)
c = sqlite3.connect(db, isolation_level=None, timeout=busy)
for i in range(n):
    time.sleep(pause)
    c.execute("INSERT INTO t(v) VALUES (?)", ("in-process %d" % i,))
c.execute("BEGIN")
c.executemany("INSERT INTO t(v) VALUES (?)", [("batch %d" % i,) for i in range(50)])
c.execute("COMMIT")
c.close()
if held != "-":
    open(held, "w").close()
    until = time.time() + 60
    while not os.path.exists(release):
        if time.time() > until:
            sys.exit("no release in 60 s")
        time.sleep(0.02)
lk(fcntl.F_OFD_SETLK, fcntl.F_UNLCK)
os.close(fd)
print("ok")
"#;

/// Kills a background child on every exit path (a panic included).
struct Reap(Option<Child>);

impl Reap {
    fn spawn(cmd: &mut Command) -> Reap {
        let c = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Reap(Some(c))
    }

    fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn wait(mut self, limit: Duration, what: &str) -> std::process::Output {
        wait_bounded(self.0.take().unwrap(), limit, what)
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn holder(db: &Path, n: usize, busy: u32, pause: f64, markers: Option<(&Path, &Path)>) -> Command {
    let (held, release) = markers.map_or(("-".into(), "-".into()), |(h, r)| {
        (h.display().to_string(), r.display().to_string())
    });
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(HOLDER)
        .arg(db)
        .arg(n.to_string())
        .arg(busy.to_string())
        .arg(pause.to_string())
        .arg(held)
        .arg(release);
    c
}

fn count(n: &Node, db: &str) -> i64 {
    sql(&n.path(db), "SELECT count(*) FROM t;")
        .trim()
        .parse()
        .unwrap()
}

/// Waits (60 s at most) for `path` to exist; fails with the logs.
fn wait_file(path: &Path, p: &Node, r: &Node, h: &mut Reap) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if !h.running() {
            let out = h.0.take().unwrap().wait_with_output().unwrap();
            panic!(
                "the lock holder ended early: {}{}\nprimary:\n{}\nreplica:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                p.log_text(),
                r.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared\nprimary:\n{}\nreplica:\n{}",
            path.display(),
            p.log_text(),
            r.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion (120 s at most); on a hang, fails with both
/// nodes' logs (a replica that cannot take the primary's lock leaves its
/// client waiting for the lock).
fn run_logged(cmd: &mut Command, what: &str, p: &Node, r: &Node) -> std::process::Output {
    let mut c = Reap::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.running() {
        assert!(
            Instant::now() < deadline,
            "{what}: still running after 120 s\nprimary log:\n{}\nreplica log:\n{}",
            p.log_text(),
            r.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.wait(Duration::from_secs(10), what)
}

fn check_ok(out: &std::process::Output, what: &str, p: &Node, r: &Node) {
    assert!(
        out.status.success(),
        "{what}: {}{}\nprimary log:\n{}\nreplica log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        p.log_text(),
        r.log_text()
    );
}

/// The node ID a node's API answers with (`Litefs-Id`, both
/// implementations send it on every response).
fn node_id(n: &Node) -> u64 {
    use std::io::{Read, Write};
    let addr = n.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET /info HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let k = s.read(&mut buf).unwrap();
        assert!(k > 0, "{}: no /info headers", n.url);
        head.extend_from_slice(&buf[..k]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("litefs-id")
                .then(|| u64::from_str_radix(v.trim(), 16).ok())?
        })
        .unwrap_or_else(|| panic!("{}: no Litefs-Id header in:\n{head}", n.url))
}

/// How many of `db`'s LTX files on `n` name `id` as the node that wrote
/// the transaction.
fn files_of(n: &Node, db: &str, id: u64) -> usize {
    let dir = n.ltx_dir(db);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ltx"))
        .filter(|e| {
            let b = std::fs::read(e.path()).unwrap();
            let h: &[u8; litefs_ltx::HEADER_SIZE] =
                b[..litefs_ltx::HEADER_SIZE].try_into().unwrap();
            litefs_ltx::Header::from_bytes(h).unwrap().node_id == id
        })
        .count()
}

/// Transactions the replica writes per database: 20 autocommits and one
/// batch, 200 under `run`, one batch while the primary is held off.
const FORWARDED: usize = 21 + 200 + 1;

/// The replica `ri` writes through the primary `pi`, both ways, in WAL and
/// DELETE mode; the primary is held off while the lock is held.
fn forwarding(pi: Impl, ri: Impl) {
    let Some((litefs, ltx)) = peers() else { return };
    let (p, r) = static_pair(pi, ri, &litefs, "");
    let who = format!("{} primary, {} replica", pi.name(), ri.name());
    // The replica's own `run`: LiteFS's for a LiteFS replica, ours for ours.
    let run_bin = match ri {
        Impl::Ours => litefs_fuse_tests::litefs_bin(),
        Impl::LiteFs => litefs.clone(),
    };
    sql(
        &p.path("wal.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    sql(
        &p.path("del.db"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    // LiteFS's limit: a LiteFS replica takes its internal write lock (in
    // DELETE mode RESERVED, PENDING and SHARED) for every file the primary
    // streams, its own forwarded commits included, before it sees that the
    // file is its own and skips it; a writer on it then gets SQLITE_BUSY
    // now and then (two LiteFS v0.5.14 nodes do the same), so it needs a
    // busy timeout. Ours skips its own files without locking anything:
    // its writers run without one, as in halt.rs.
    let busy: u32 = match ri {
        Impl::Ours => 0,
        Impl::LiteFs => 10,
    };
    let inserts = r.dir.path().join("inserts.sql");
    // The busy timeout first: `-init` runs before any `-cmd`.
    let text: String = std::iter::once(format!(".timeout {}\n", busy * 1000))
        .chain((1..=200).map(|i| format!("INSERT INTO t(v) VALUES ('run {i}');\n")))
        .collect();
    std::fs::write(&inserts, text).unwrap();

    for db in ["wal.db", "del.db"] {
        wait_same_pos(&p, &r, db);
        let mut want = 0;

        // 1. A client holding the lock itself: 20 autocommits + 50 rows.
        let t = Instant::now();
        let what = format!("{who}, {db}: in-process lock");
        let out = run_logged(&mut holder(&r.path(db), 20, busy, 0.0, None), &what, &p, &r);
        check_ok(&out, &what, &p, &r);
        want += 70;
        eprintln!(
            "{who}, {db}: 21 transactions in-process in {:?}",
            t.elapsed()
        );
        // A commit returns only once the primary has it.
        assert_eq!(
            count(&p, db),
            want,
            "{who}, {db}: rows missing on the primary"
        );
        wait_same_pos(&p, &r, db);
        assert_eq!(count(&r, db), want, "{who}, {db}");
        same_bytes(&p, &r, db);

        // 2. The replica's `run -with-halt-lock-on` around `sqlite3`.
        let t = Instant::now();
        let what = format!("{who}, {db}: run -with-halt-lock-on");
        let out = run_logged(
            Command::new(&run_bin)
                .arg("run")
                .args(["-url", &r.url])
                .args(["-with-halt-lock-on", r.path(db).to_str().unwrap()])
                .args(["--", "sh", "-c"])
                .arg(format!(
                    "sqlite3 -bail -init {} {} .quit",
                    inserts.display(),
                    r.path(db).display()
                )),
            &what,
            &p,
            &r,
        );
        check_ok(&out, &what, &p, &r);
        want += 200;
        eprintln!(
            "{who}, {db}: 200 transactions under run in {:?}",
            t.elapsed()
        );
        assert_eq!(
            count(&p, db),
            want,
            "{who}, {db}: rows missing on the primary"
        );
        wait_same_pos(&p, &r, db);
        assert_eq!(count(&r, db), want, "{who}, {db}");
        same_bytes(&p, &r, db);

        // 3. While the replica holds the lock, the primary's writers are
        // kept out: SQLITE_BUSY at once without a busy timeout, and a
        // writer with one waits and writes after the release.
        let held = r.dir.path().join(format!("{db}.held"));
        let release = r.dir.path().join(format!("{db}.release"));
        let mut h = Reap::spawn(&mut holder(
            &r.path(db),
            0,
            busy,
            0.0,
            Some((&held, &release)),
        ));
        wait_file(&held, &p, &r, &mut h);
        // LiteFS's limits, for a WAL database of a LiteFS primary: its halt
        // takes the read locks too (READ0-4), so SQLite there cannot even
        // begin a read; it fails with SQLITE_PROTOCOL ("locking protocol"),
        // not SQLITE_BUSY, and only after some 10 s of its own retries,
        // which no busy timeout shortens or extends (SQLite calls no busy
        // handler for WAL read locks). And LiteFS's lock ends 30 s after it
        // was taken, whatever the holder does, so that slow probe would race
        // the expiry on a loaded machine: there the waiting writer alone,
        // retrying, shows the primary held off.
        let litefs_wal = pi == Impl::LiteFs && db == "wal.db";
        if !litefs_wal {
            let out = Command::new("sqlite3")
                .arg(p.path(db))
                .arg("INSERT INTO t(v) VALUES ('primary while halted')")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{who}, {db}: the primary wrote while the replica held the halt lock"
            );
            assert!(
                err.contains("database is locked"),
                "{who}, {db}: not SQLITE_BUSY: {err}"
            );
        }
        let insert = format!(
            "sqlite3 -cmd '.timeout 60000' {} \"INSERT INTO t(v) VALUES ('primary after release')\"",
            p.path(db).display()
        );
        let script = if litefs_wal {
            format!("until {insert}; do sleep 0.05; done")
        } else {
            insert
        };
        let mut waiter = Reap::spawn(Command::new("sh").arg("-c").arg(script));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            waiter.running(),
            "{who}, {db}: the primary's writer finished while the replica held the halt lock"
        );
        std::fs::write(&release, b"").unwrap();
        let out = h.wait(Duration::from_secs(90), "lock holder");
        check_ok(&out, &format!("{who}, {db}: holder"), &p, &r);
        let out = waiter.wait(Duration::from_secs(90), "primary writer");
        check_ok(
            &out,
            &format!("{who}, {db}: the primary's waiting writer"),
            &p,
            &r,
        );
        want += 51;
        assert_eq!(count(&p, db), want, "{who}, {db}");
        let last = sql(&p.path(db), "SELECT v FROM t ORDER BY id DESC LIMIT 1;");
        assert_eq!(last.trim(), "primary after release", "{who}, {db}");
        let pos = wait_same_pos(&p, &r, db);
        assert_eq!(count(&r, db), want, "{who}, {db}");
        same_bytes(&p, &r, db);
        assert_eq!(sql(&p.path(db), "PRAGMA integrity_check;").trim(), "ok");
        eprintln!("{who}, {db}: {want} rows, both at {}", pos.trim());
    }
    // Every forwarded transaction is, on both nodes, a file naming the
    // replica as its writer: the replica knew its own files when they came
    // back from the primary and skipped them, so it never fell out of step
    // with the primary (which would show as a warning of ours, or as a
    // second snapshot LiteFS received).
    let rid = node_id(&r);
    for db in ["wal.db", "del.db"] {
        for (n, side) in [(&p, "primary"), (&r, "replica")] {
            assert_eq!(
                files_of(n, db, rid),
                FORWARDED,
                "{who}, {db}: LTX files on the {side} written by the replica {rid:016x}"
            );
        }
    }
    for n in [&p, &r] {
        let log = n.log_text();
        if n.peer {
            for db in ["wal.db", "del.db"] {
                let snaps = log
                    .lines()
                    .filter(|l| l.contains(&format!("snapshot received for \\\"{db}\\\"")))
                    .count();
                assert!(snaps <= 1, "{who}: {db} resynchronised by snapshot:\n{log}");
            }
        } else {
            let bad: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains("ERROR "))
                .collect();
            assert!(bad.is_empty(), "{who}: warnings of {}:\n{log}", n.url);
        }
    }
    for n in [&p, &r].into_iter().filter(|n| !n.peer) {
        let k = go_verify(&ltx, n);
        eprintln!("{who}: ltx verify: {k} files of our node ok");
    }
}

/// A LiteFS replica writes through our primary.
#[test]
fn litefs_replica_forwards_writes_to_our_primary() {
    forwarding(Impl::Ours, Impl::LiteFs);
}

/// Our replica writes through a LiteFS primary.
#[test]
fn our_replica_forwards_writes_to_a_litefs_primary() {
    forwarding(Impl::LiteFs, Impl::Ours);
}

/// A LiteFS replica keeps our primary's halt lock as long as it writes:
/// LiteFS's replicas never extend the lock they hold (LiteFS's primary
/// expires it 30 s after it was taken, whatever happens, and applies `/tx`
/// regardless), so ours counts each forwarded transaction as an extension;
/// otherwise a session longer than 30 s would have its next commit
/// refused, which LiteFS treats as fatal.
#[test]
fn a_litefs_replica_keeps_our_halt_lock_while_it_writes() {
    let Some((litefs, ltx)) = peers() else { return };
    let (p, r) = static_pair(Impl::Ours, Impl::LiteFs, &litefs, "");
    let db = "long.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    wait_same_pos(&p, &r, db);
    // One commit every 1.5 s for 39 s, past the 30 s expiry
    // (`litefs_http::HALT_TTL`); a busy timeout for the LiteFS replica
    // (see `forwarding`).
    let t = Instant::now();
    let what = "a 39 s halt-lock session of a LiteFS replica";
    let out = run_logged(&mut holder(&r.path(db), 26, 10, 1.5, None), what, &p, &r);
    check_ok(&out, what, &p, &r);
    eprintln!("{what}: {:?}", t.elapsed());
    assert!(
        !p.log_text().contains("expired"),
        "the lock expired while the replica wrote:\n{}",
        p.log_text()
    );
    assert_eq!(count(&p, db), 26 + 50);
    wait_same_pos(&p, &r, db);
    assert_eq!(count(&r, db), 26 + 50);
    same_bytes(&p, &r, db);
    assert_eq!(files_of(&p, db, node_id(&r)), 27);
    go_verify(&ltx, &p);
}
