//! Helpers for tests of a static-lease cluster: start one, wait for a
//! replica to reach the primary, compare databases, and run things with a
//! time limit so that a hung mount fails a test instead of hanging it.

use crate::{fuse_available, primary_lease, replica_lease, Node};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether FUSE tests can run: fails when they must (`CI=true`), else
/// prints SKIP.
pub fn require_fuse() -> bool {
    if fuse_available() {
        return true;
    }
    assert!(
        !crate::deps_required(),
        "FUSE is required (CI=true) but unavailable"
    );
    eprintln!("SKIP: FUSE unavailable");
    false
}

/// A primary (hostname `primary-1`) and `n` replicas following it.
pub fn cluster(n: usize) -> (Node, Vec<Node>) {
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    let rs = (0..n)
        .map(|_| Node::start_lease(&replica_lease("primary-1", &p.url), ""))
        .collect();
    (p, rs)
}

/// Runs `f` on its own thread and waits at most `limit` for it, so a read
/// through a hung mount fails the test instead of hanging it (the thread
/// stays blocked until the daemon is killed and its connection aborted).
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer in {limit:?} (a hung mount?)")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// A whole file of a mount, read within 30 s.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let p = path.to_path_buf();
    bounded(
        &format!("read {}", path.display()),
        Duration::from_secs(30),
        move || std::fs::read(p),
    )
}

/// The `-pos` of `db` on `n` (a barrier on the primary), or "" while it has
/// none; fails with the node's log if the mount does not answer in 30 s.
pub fn pos_of(n: &Node, db: &str) -> String {
    let p = n.path(&format!("{db}-pos"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(p).unwrap_or_default());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{db}-pos: no answer in 30 s; log:\n{}", n.log_text()))
}

/// Waits (`within` at most) until one line of `n`'s log contains every
/// one of `needles`; returns the whole log. Panics with the log after it.
pub fn wait_log_line(n: &Node, needles: &[&str], within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let log = n.log_text();
        if log.lines().any(|l| needles.iter().all(|x| l.contains(x))) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line said all of {needles:?} in {within:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (20 s at most) until `-pos` of `db` on `r` equals the primary's;
/// returns it.
pub fn wait_same_pos(p: &Node, r: &Node, db: &str) -> String {
    wait_same_pos_within(p, r, db, Duration::from_secs(20))
}

/// [`wait_same_pos`] with its own time limit.
pub fn wait_same_pos_within(p: &Node, r: &Node, db: &str, limit: Duration) -> String {
    let want = pos_of(p, db);
    assert!(!want.is_empty(), "{db}: no position on the primary");
    let deadline = Instant::now() + limit;
    loop {
        let got = pos_of(r, db);
        if got == want {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{db}: replica at {got:?}, primary at {want:?}\nreplica log:\n{}",
            r.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The database reads the same through both mounts, after folding the
/// primary's WAL in (a checkpoint is not a transaction: positions stay),
/// and the replica's copy passes `integrity_check`.
pub fn same_bytes(p: &Node, r: &Node, db: &str) {
    sql(&p.path(db), "PRAGMA wal_checkpoint(TRUNCATE);");
    let pb = read_file(&p.path(db)).unwrap_or_else(|e| panic!("{db} on the primary: {e}"));
    let rb = read_file(&r.path(db)).unwrap_or_else(|e| panic!("{db} on the replica: {e}"));
    assert!(
        pb == rb,
        "{db}: replica bytes differ from the primary's ({} vs {} bytes)",
        rb.len(),
        pb.len()
    );
    assert_eq!(sql(&r.path(db), "PRAGMA integrity_check;").trim(), "ok");
}

/// Runs `cmd` to completion within `limit` (killed and a failure after it).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    wait_bounded(child, limit, &format!("{cmd:?}"))
}

/// Waits for a child started with piped stdout and stderr, within `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

/// Runs SQL through the `sqlite3` CLI (busy timeout 10 s, at most 60 s in
/// all); panics with its stderr on failure.
pub fn sql(db: &Path, sql: &str) -> String {
    let bin = crate::tool("SQLITE3_BIN", "sqlite3").expect("sqlite3 is required");
    let out = run_bounded(
        Command::new(bin)
            .arg("-cmd")
            .arg(".timeout 10000")
            .arg(db)
            .arg(sql),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "sqlite3 {} failed: {}\nSQL: {sql}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The newest TXID a backup replica directory (`<backup.path>/<db>`, in
/// Litestream's layout) holds; 0 when empty.
pub fn backup_txid(root: &Path) -> u64 {
    let mut max = 0;
    for level in 0..=9 {
        let Ok(rd) = std::fs::read_dir(root.join("ltx").join(level.to_string())) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(m) = name
                .strip_suffix(".ltx")
                .and_then(|s| s.split_once('-'))
                .and_then(|(_, b)| u64::from_str_radix(b, 16).ok())
            {
                max = max.max(m);
            }
        }
    }
    max
}

/// `GET path` on the node's API: `(status, body)`; panics, with the
/// node's log, when it does not answer within 10 s.
pub fn get(n: &Node, path: &str) -> (u16, String) {
    crate::consul::http_request(&n.url, "GET", path, b"", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("GET {path}: no answer; log:\n{}", n.log_text()))
}

/// The value of the sample `series` (name and labels as written) in a
/// Prometheus text exposition; panics when there is none.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

/// A background process killed (SIGKILL) and reaped when dropped, so a test
/// that fails between starting it and stopping it leaves nothing running.
/// With [`Reaped::group`] the drop kills its whole process group: a shell
/// pipeline's `sleep` as well as the shell.
pub struct Reaped {
    child: Child,
    group: bool,
}

impl Reaped {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> Reaped {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Reaped {
            child,
            group: false,
        }
    }

    /// Spawns `cmd` as the leader of a new process group, every member of
    /// which the drop kills.
    pub fn group(cmd: &mut Command) -> Reaped {
        use std::os::unix::process::CommandExt;
        let mut r = Reaped::spawn(cmd.process_group(0));
        r.group = true;
        r
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.group {
            if let Ok(pgid) = i32::try_from(self.child.id()) {
                // SAFETY: kill(2) on the process group this value started.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        } else if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
