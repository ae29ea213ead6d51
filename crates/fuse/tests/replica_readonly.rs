//! A mount whose node is a read-only replica, and the mount's fence,
//! checked with real SQLite clients (the `sqlite3` CLI and Python's
//! `sqlite3` module) through a mount made in-process.
//!
//! Needs `/dev/fuse`, `fusermount3`, `sqlite3` and `python3`: without them
//! the tests say so and pass, except under `CI=true` (or
//! `LITEFS_REQUIRE_DEPS=1`), where they fail.

// A test: a panic is a failure with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use litefs_fuse::{mount, MountOptions, Mounted};
use litefs_store::{Db, Fence, PrimaryInfo, Store, StoreOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn deps_required() -> bool {
    std::env::var_os("LITEFS_REQUIRE_DEPS").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether the test can run here; fails under CI when it cannot.
fn deps_present() -> bool {
    let mut missing = Vec::new();
    if !Path::new("/dev/fuse").exists() {
        missing.push("/dev/fuse");
    }
    for tool in ["fusermount3", "sqlite3", "python3"] {
        if which(tool).is_none() {
            missing.push(tool);
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "missing {} (run scripts/install-test-deps.sh)",
        missing.join(", ")
    );
    assert!(!deps_required(), "{msg}");
    eprintln!("SKIP: {msg}");
    false
}

/// A store mounted in a temporary directory; unmounts when dropped (after
/// the clients a test started, which are declared after it).
struct Node {
    mounted: Option<Mounted>,
    store: Arc<Store>,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(passthrough: bool) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("litefs-replica")
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        // The root shows the mount point's mode.
        std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store =
            Arc::new(Store::open(&dir.path().join("data"), StoreOptions::default()).unwrap());
        let opts = MountOptions {
            passthrough,
            ..MountOptions::default()
        };
        let mounted = mount(store.clone(), &mnt, &opts).unwrap();
        Node {
            mounted: Some(mounted),
            store,
            mnt,
            _dir: dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    fn db(&self, name: &str) -> Arc<Db> {
        self.store.db(name).unwrap()
    }

    fn fence(&self) -> Arc<dyn Fence> {
        self.mounted.as_ref().unwrap().fence()
    }

    fn become_replica(&self) {
        self.store.role().become_replica(Some(PrimaryInfo {
            hostname: "primary-host".into(),
            advertise_url: "http://127.0.0.1:1".into(),
        }));
    }

    /// The bytes of every backing file of `db` and the names in its LTX
    /// directory: what must not change on a replica.
    fn state(&self, db: &str) -> Vec<(String, Option<Vec<u8>>)> {
        let d = self.db(db);
        let p = d.paths();
        let mut out = vec![
            ("database".to_owned(), std::fs::read(&p.database).ok()),
            ("journal".to_owned(), std::fs::read(&p.journal).ok()),
            ("wal".to_owned(), std::fs::read(&p.wal).ok()),
        ];
        let mut ltx: Vec<String> = std::fs::read_dir(&p.ltx)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ltx.sort();
        out.push((format!("ltx: {ltx:?}"), None));
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            if let Err(e) = m.unmount() {
                eprintln!("unmount: {e}");
            }
        }
    }
}

/// The `sqlite3` CLI on `db` running `sql` (no busy timeout), killed after
/// 20 s.
fn sqlite3(db: &Path, sql: &str) -> Output {
    sqlite3_timeout(db, sql, 0)
}

/// The `sqlite3` CLI with a busy timeout of `ms`.
fn sqlite3_timeout(db: &Path, sql: &str, ms: u32) -> Output {
    let child = Command::new("sqlite3")
        .arg("-cmd")
        .arg(format!(".timeout {ms}"))
        .arg(db)
        .arg(sql)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(20))
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "client still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "sqlite3 succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// A Python `sqlite3` session reading commands from stdin, one per line,
/// and answering each with a line; killed when dropped.
struct Py {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

const PY: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
print("open", flush=True)
for line in sys.stdin:
    try:
        rows = c.execute(line.strip()).fetchall()
        print("ok", rows, flush=True)
    except Exception as e:
        print("error", e, flush=True)
"#;

impl Py {
    fn open(db: &Path) -> Py {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(PY)
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut py = Py {
            child,
            stdin,
            lines,
        };
        assert_eq!(py.line(), "open");
        py
    }

    fn line(&mut self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("python client silent for 20 s"),
            Err(RecvTimeoutError::Disconnected) => panic!("python client exited"),
        }
    }

    fn send(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql}").unwrap();
    }

    fn run(&mut self, sql: &str) -> String {
        self.send(sql);
        self.line()
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Waits (up to 2 s) for `p`'s mode to become `want`: the mount tells the
/// kernel within a capture interval of a role change.
fn wait_mode(p: &Path, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while mode(p) != want {
        assert!(
            Instant::now() < deadline,
            "{}: mode {:o}, want {want:o}",
            p.display(),
            mode(p)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sets up `del.db` (DELETE mode) and `wal.db` (WAL mode) on a primary.
fn two_databases(node: &Node) {
    ok(&sqlite3(
        &node.path("del.db"),
        "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    ));
    ok(&sqlite3(
        &node.path("wal.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    ));
}

fn replica_refuses_writes(passthrough: bool) {
    if !deps_present() {
        return;
    }
    let node = Node::start(passthrough);
    two_databases(&node);
    assert!(!node.path(".primary").exists());
    // Modes are the files' own; a replica clears a database's write bits.
    std::fs::set_permissions(node.path("del.db"), std::fs::Permissions::from_mode(0o664)).unwrap();
    std::fs::set_permissions(node.path("wal.db"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(mode(&node.path("del.db")), 0o664);
    assert_eq!(mode(&node.mnt), 0o755);

    node.become_replica();
    let del = node.state("del.db");
    let wal = node.state("wal.db");

    // Reads work, in both modes.
    assert_eq!(
        ok(&sqlite3(&node.path("del.db"), "SELECT count(*) FROM t")),
        "2"
    );
    assert_eq!(
        ok(&sqlite3(&node.path("wal.db"), "SELECT count(*) FROM t")),
        "2"
    );
    // The last connection's clean-up (an empty WAL, the WAL index) is let
    // through.
    assert!(!node.path("wal.db-wal").exists());
    assert!(!node.path("wal.db-shm").exists());

    let e = failed(&sqlite3(&node.path("del.db"), "INSERT INTO t VALUES (3)"));
    eprintln!("DELETE-mode insert on a replica: {e}");
    assert!(e.contains("attempt to write a readonly database"), "{e}");
    let e = failed(&sqlite3(
        &node.path("del.db"),
        "PRAGMA journal_mode=TRUNCATE; INSERT INTO t VALUES (3)",
    ));
    assert!(e.contains("attempt to write a readonly database"), "{e}");
    let e = failed(&sqlite3(&node.path("wal.db"), "INSERT INTO t VALUES (3)"));
    eprintln!("WAL-mode insert on a replica: {e}");
    assert!(!e.is_empty());
    // A read-write connection opened on the replica: refused now, and
    // writing once this node is primary.
    let mut during = Py::open(&node.path("wal.db"));
    let e = during.run("INSERT INTO t VALUES (4)");
    eprintln!("WAL-mode insert on a replica (Python): {e}");
    assert!(e.starts_with("error"), "{e}");
    let mut during_del = Py::open(&node.path("del.db"));
    let e = during_del.run("INSERT INTO t VALUES (4)");
    assert!(e.starts_with("error"), "{e}");

    // New databases, directories, removals: refused.
    let e = failed(&sqlite3(&node.path("new.db"), "CREATE TABLE t(x)"));
    eprintln!("new database on a replica: {e}");
    assert!(!node.path("new.db").exists());
    let err = std::fs::create_dir(node.path("sub")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(node.path("del.db")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(node.path("del.db"))
        .unwrap()
        .set_len(0)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // A journal cannot be created: EACCES, which SQLite reports as a
    // read-only database.
    let err = std::fs::write(node.path("del.db-journal"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert!(!node.path("del.db-journal").exists());

    // Nothing changed, and reads still see the original rows.
    assert_eq!(node.state("del.db"), del);
    assert_eq!(node.state("wal.db").first(), wal.first());
    assert_eq!(node.state("wal.db").last(), wal.last());
    assert_eq!(
        ok(&sqlite3(&node.path("del.db"), "SELECT sum(x) FROM t")),
        "3"
    );
    assert_eq!(
        ok(&sqlite3(&node.path("wal.db"), "SELECT sum(x) FROM t")),
        "3"
    );

    // What applications see of the role.
    assert_eq!(
        std::fs::read_to_string(node.path(".primary")).unwrap(),
        "primary-host\n"
    );
    let names: Vec<String> = std::fs::read_dir(&node.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&".primary".to_owned()), "{names:?}");
    wait_mode(&node.path("del.db"), 0o444);
    assert_eq!(mode(&node.path("wal.db")), 0o440);
    // Directories keep their mode (readers create `-shm` in them).
    assert_eq!(mode(&node.mnt), 0o755);
    // SQLite made the WAL index with the mode the database showed.
    assert_eq!(mode(&node.path("wal.db-shm")), 0o440);
    assert_eq!(
        std::fs::read_to_string(node.path(".lag")).unwrap(),
        "+2147483647\n"
    );

    // Promoted: `.primary` is gone at once and the connections write.
    node.store.role().become_primary();
    assert!(!node.path(".primary").exists());
    wait_mode(&node.path("del.db"), 0o664);
    assert_eq!(mode(&node.path("wal.db")), 0o640);
    assert_eq!(mode(&node.mnt), 0o755);
    let e = during.run("INSERT INTO t VALUES (6)");
    assert!(e.starts_with("ok"), "{e}");
    let e = during_del.run("INSERT INTO t VALUES (6)");
    assert!(e.starts_with("ok"), "{e}");
    ok(&sqlite3(&node.path("wal.db"), "INSERT INTO t VALUES (7)"));
    assert_eq!(
        ok(&sqlite3(&node.path("wal.db"), "SELECT sum(x) FROM t")),
        "16"
    );
    let e = during.run("SELECT sum(x) FROM t");
    assert_eq!(e, "ok [(16,)]");
    ok(&sqlite3(&node.path("del.db"), "INSERT INTO t VALUES (3)"));
    assert_eq!(
        ok(&sqlite3(&node.path("del.db"), "SELECT sum(x) FROM t")),
        "12"
    );
    drop(during);
    drop(during_del);
}

#[test]
fn replica_refuses_writes_passthrough() {
    replica_refuses_writes(true);
}

#[test]
fn replica_refuses_writes_classic() {
    replica_refuses_writes(false);
}

/// A node demoted while a connection it served as primary still has the
/// WAL open: new connections read, and cannot write.
fn demoted_with_open_connection(passthrough: bool) {
    if !deps_present() {
        return;
    }
    let node = Node::start(passthrough);
    two_databases(&node);
    let mut before = Py::open(&node.path("wal.db"));
    assert!(before.run("SELECT count(*) FROM t").starts_with("ok"));
    node.become_replica();
    let state = node.state("wal.db");
    assert_eq!(
        ok(&sqlite3(&node.path("wal.db"), "SELECT count(*) FROM t")),
        "2"
    );
    let e = failed(&sqlite3(&node.path("wal.db"), "INSERT INTO t VALUES (3)"));
    eprintln!("WAL-mode insert on a demoted node: {e}");
    // With passthrough, a WAL handle opened while this node was primary
    // keeps writing straight to the backing file (the kernel cannot take a
    // passthrough back): demotion has to deal with such connections. On the
    // classic path every write reaches the mount and is refused.
    let e = before.run("INSERT INTO t VALUES (5)");
    eprintln!("insert by a connection opened before the demotion: {e}");
    if !passthrough {
        assert!(e.starts_with("error"), "{e}");
        assert_eq!(node.state("wal.db").first(), state.first());
    }
    drop(before);
}

#[test]
fn demoted_with_open_connection_passthrough() {
    demoted_with_open_connection(true);
}

#[test]
fn demoted_with_open_connection_classic() {
    demoted_with_open_connection(false);
}

/// Runs `f` on another thread; the receiver gets its result and the
/// instant it returned.
fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Receiver<(T, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = f();
        let _ = tx.send((r, Instant::now()));
    });
    rx
}

fn exclude_waits_for_readers(wal: bool) {
    if !deps_present() {
        return;
    }
    let node = Node::start(true);
    two_databases(&node);
    let name = if wal { "wal.db" } else { "del.db" };
    let db = node.db(name);
    let fence = node.fence();

    // A reader inside a read transaction keeps the fence waiting.
    let mut reader = Py::open(&node.path(name));
    assert!(reader.run("BEGIN").starts_with("ok"));
    assert!(reader.run("SELECT count(*) FROM t").starts_with("ok"));
    let (f, d) = (fence.clone(), db.clone());
    let got = in_background(move || f.exclude(&d, wal).map(|_| ()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        got.try_recv().is_err(),
        "exclude did not wait for the reader"
    );
    let commit = Instant::now();
    assert!(reader.run("COMMIT").starts_with("ok"));
    let (r, done) = got.recv_timeout(Duration::from_secs(10)).unwrap();
    r.unwrap();
    assert!(
        done >= commit,
        "exclude returned before the reader's commit"
    );

    // While held, a new reader waits (busy handler) until the guard drops.
    let mut guard = fence.exclude(&db, wal).unwrap();
    let mut buf = [0u8; 136];
    let n = guard.read_shm(&mut buf, 0).unwrap();
    if wal {
        assert_eq!(n, 136);
        assert_eq!(u32::from_ne_bytes(buf[0..4].try_into().unwrap()), 3_007_000);
        // A write is seen by the guard at once (and by clients once it
        // drops): the same bytes back, so the index stays valid.
        guard.write_shm(&buf[40..48], 40).unwrap();
        let mut again = [0u8; 136];
        assert_eq!(guard.read_shm(&mut again, 0).unwrap(), 136);
        assert_eq!(again, buf);
    } else {
        assert_eq!(n, 0);
        guard.write_shm(b"x", 0).unwrap();
        assert_eq!(guard.read_shm(&mut buf, 0).unwrap(), 0);
    }
    let path = node.path(name);
    let read = in_background(move || sqlite3_timeout(&path, "SELECT count(*) FROM t", 15000));
    std::thread::sleep(Duration::from_millis(500));
    assert!(read.try_recv().is_err(), "a reader got in while fenced");
    guard.invalidate_database();
    let released = Instant::now();
    drop(guard);
    let (out, done) = read.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(ok(&out), "2");
    assert!(
        done >= released,
        "the reader finished before the fence was released"
    );

    // hold_writers lets readers in but waits for a writer.
    let mut writer = Py::open(&node.path(name));
    assert!(writer.run("BEGIN IMMEDIATE").starts_with("ok"));
    let (f, d) = (fence.clone(), db.clone());
    let held = in_background(move || f.hold_writers(&d, wal).map(|_| ()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        held.try_recv().is_err(),
        "hold_writers did not wait for the writer"
    );
    assert!(writer.run("COMMIT").starts_with("ok"));
    held.recv_timeout(Duration::from_secs(10))
        .unwrap()
        .0
        .unwrap();
    let guard = fence.hold_writers(&db, wal).unwrap();
    assert_eq!(
        ok(&sqlite3(&node.path(name), "SELECT count(*) FROM t")),
        "2"
    );
    let e = failed(&sqlite3(&node.path(name), "INSERT INTO t VALUES (9)"));
    assert!(e.contains("locked"), "{e}");
    drop(guard);
    ok(&sqlite3(&node.path(name), "INSERT INTO t VALUES (9)"));
    drop(writer);
    drop(reader);
}

#[test]
fn exclude_waits_for_readers_rollback() {
    exclude_waits_for_readers(false);
}

#[test]
fn exclude_waits_for_readers_wal() {
    exclude_waits_for_readers(true);
}

/// A WAL database nobody has open has no `-shm`; the fence locks the
/// database file instead (and never creates the `-shm`).
#[test]
fn exclude_without_wal_index() {
    if !deps_present() {
        return;
    }
    let node = Node::start(true);
    two_databases(&node);
    assert!(!node.path("wal.db-shm").exists());
    let db = node.db("wal.db");
    let guard = node.fence().exclude(&db, true).unwrap();
    assert!(!node.path("wal.db-shm").exists());
    let path = node.path("wal.db");
    let read = in_background(move || sqlite3_timeout(&path, "SELECT count(*) FROM t", 15000));
    std::thread::sleep(Duration::from_millis(300));
    assert!(read.try_recv().is_err(), "a reader got in while fenced");
    drop(guard);
    let (out, _) = read.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(ok(&out), "2");
}
