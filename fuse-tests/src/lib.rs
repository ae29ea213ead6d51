//! Helpers for the integration tests in `tests/`: locating external tools,
//! deciding whether a missing one skips a test or fails it (under CI it
//! always fails), running `litefs mount` nodes as real processes, and
//! replaying a database's LTX chain to check it against the database.

// A test harness: a panic here is a test failure with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod consul;
pub mod peer;
pub mod replay;

/// Whether missing external dependencies must fail tests instead of
/// skipping them (set by `scripts/test.sh` when `CI=true`).
pub fn deps_required() -> bool {
    std::env::var_os("LITEFS_REQUIRE_DEPS").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// Finds an external tool from an environment variable or `PATH`. When it is
/// missing, panics under CI and returns `None` (after saying so) elsewhere.
pub fn tool(env_var: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env_var)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        let msg = format!("{name} not found (set {env_var} or run scripts/install-test-deps.sh)");
        assert!(!deps_required(), "{msg}");
        eprintln!("SKIP: {msg}");
    }
    found
}

/// Whether FUSE mounts can be made here (`/dev/fuse` and `fusermount3`).
/// Panics under CI when they cannot; elsewhere says why and returns false.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && tool("FUSERMOUNT_BIN", "fusermount3").is_some();
    if !ok {
        let msg = "FUSE unavailable: /dev/fuse or fusermount3 missing (apt-get install fuse3)";
        assert!(!deps_required(), "{msg}");
        eprintln!("SKIP: {msg}");
    }
    ok
}

/// Which FUSE I/O path nodes use, from `LITEFS_TEST_IO`: `passthrough`
/// (the default: WAL and WAL-index I/O handed to the kernel) or `classic`
/// (every read and write through the daemon). The suite runs the mount
/// tests once per path.
pub fn classic_io() -> bool {
    match std::env::var("LITEFS_TEST_IO").as_deref() {
        Ok("classic") => true,
        Ok("passthrough") | Err(_) => false,
        Ok(other) => panic!("LITEFS_TEST_IO={other}: expected passthrough or classic"),
    }
}

/// The `litefs` binary: `LITEFS_BIN`, or built once with cargo.
pub fn litefs_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if let Some(p) = std::env::var_os("LITEFS_BIN") {
            // Relative to the workspace root, not to this package.
            return root.join(PathBuf::from(p));
        }
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "litefs", "--bin", "litefs"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p litefs failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("litefs")
    })
    .clone()
}

/// A `litefs mount` process with its own data and mount directories: ours,
/// or the real LiteFS v0.5.14 (see [`peer`]).
pub struct Node {
    child: Option<Child>,
    /// The binary this node runs.
    bin: PathBuf,
    /// Whether it is the real LiteFS (no `fuse.passthrough` key, no I/O
    /// path line in its log).
    pub peer: bool,
    /// Temporary directory holding everything of this node.
    pub dir: tempfile::TempDir,
    /// The mount point.
    pub mount: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// Where the daemon's stderr goes.
    pub log: PathBuf,
    /// The node's API URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The FUSE connection of the live mount (its device minor), so a
    /// daemon stuck in exit can be released (see [`Node::kill`]).
    fuse_conn: Option<u32>,
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range: a
/// port handed out by binding port 0 is an ephemeral one, and once
/// released an outgoing connection may take it, so a daemon restarted on
/// it would fail with "Address already in use".
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        let port = 20_000 + (x % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// The `lease:` section of a static primary named `hostname`.
pub fn primary_lease(hostname: &str) -> String {
    format!("lease:\n  type: static\n  candidate: true\n  hostname: {hostname}\n")
}

/// The `lease:` section of a static replica of the primary at `url`.
pub fn replica_lease(primary_hostname: &str, url: &str) -> String {
    format!(
        "lease:\n  type: static\n  candidate: false\n  hostname: {primary_hostname}\n  advertise-url: {url}\n  reconnect-delay: 100ms\n"
    )
}

impl Node {
    /// Writes a config (static lease, this node primary) plus `extra` YAML
    /// appended at top level, starts `litefs mount` and waits for the mount.
    pub fn start(extra: &str) -> Node {
        Node::start_config(extra, "", "")
    }

    /// Like [`Node::start`], with extra keys inside the `data:` section.
    pub fn start_with(data_keys: &str) -> Node {
        let keys: String = data_keys
            .lines()
            .filter(|l| l.trim() != "data:")
            .collect::<Vec<_>>()
            .join("\n");
        Node::start_config("", &indent_keys(&keys), "")
    }

    /// Like [`Node::start`], with extra keys inside the `fuse:` section
    /// (one `key: value` per line).
    pub fn start_with_fuse(fuse_keys: &str) -> Node {
        Node::start_config("", "", &indent_keys(fuse_keys))
    }

    /// A node with the given `lease:` section (see [`primary_lease`],
    /// [`replica_lease`]) and `extra` top-level YAML, its API on a free
    /// port.
    pub fn start_lease(lease: &str, extra: &str) -> Node {
        Node::start_full(lease, extra, "", "")
    }

    fn start_config(extra: &str, data_keys: &str, fuse_keys: &str) -> Node {
        Node::start_full(
            "lease:\n  type: static\n  candidate: true\n  hostname: localhost\n",
            extra,
            data_keys,
            fuse_keys,
        )
    }

    fn start_full(lease: &str, extra: &str, data_keys: &str, fuse_keys: &str) -> Node {
        let mut node = Node::configure(free_port(), lease, extra, data_keys, fuse_keys);
        node.spawn();
        node
    }

    /// A node configured as [`Node::start_lease`] would, but with its API
    /// on `port` (from [`free_port`], so that the lease section can name
    /// the node's own URL, as a Consul lease's `advertise-url` does), and
    /// not started: prepare its directories, then [`Node::spawn`] or
    /// [`Node::spawn_nowait`].
    pub fn new_lease_on(port: u16, lease: &str, extra: &str) -> Node {
        Node::configure(port, lease, extra, "", "")
    }

    /// [`Node::new_lease_on`] with `data_keys` (`key: value` lines) in the
    /// `data:` section.
    pub fn new_data_on(port: u16, lease: &str, extra: &str, data_keys: &str) -> Node {
        Node::configure_for(None, port, lease, extra, &indent_keys(data_keys), "")
    }

    /// [`Node::new_data_on`] for a node running the real LiteFS binary
    /// `bin` (from [`peer::litefs_bin`]).
    pub fn new_peer_on(bin: &Path, port: u16, lease: &str, extra: &str, data_keys: &str) -> Node {
        Node::configure_for(Some(bin), port, lease, extra, &indent_keys(data_keys), "")
    }

    fn configure(port: u16, lease: &str, extra: &str, data_keys: &str, fuse_keys: &str) -> Node {
        Node::configure_for(None, port, lease, extra, data_keys, fuse_keys)
    }

    fn configure_for(
        peer: Option<&Path>,
        port: u16,
        lease: &str,
        extra: &str,
        data_keys: &str,
        fuse_keys: &str,
    ) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(if peer.is_some() {
                "litefs-peer"
            } else {
                "litefs-node"
            })
            .tempdir()
            .expect("tempdir");
        let mount = dir.path().join("mnt");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&mount).expect("mkdir mnt");
        let config = dir.path().join("litefs.yml");
        // LiteFS's YAML is strict: it gets only keys it knows.
        let passthrough = match peer {
            Some(_) => String::new(),
            None => format!("  passthrough: {}\n", !classic_io()),
        };
        std::fs::write(
            &config,
            format!(
                "fuse:\n  dir: {}\n{passthrough}{fuse_keys}data:\n  dir: {}\n{data_keys}http:\n  addr: \"127.0.0.1:{port}\"\n{lease}{extra}",
                mount.display(),
                data.display()
            ),
        )
        .expect("write config");
        let log = dir.path().join("litefs.log");
        Node {
            child: None,
            bin: peer.map_or_else(litefs_bin, Path::to_path_buf),
            peer: peer.is_some(),
            dir,
            mount,
            data,
            config,
            log,
            url: format!("http://127.0.0.1:{port}"),
            fuse_conn: None,
        }
    }

    /// Starts the daemon again on the same directories.
    pub fn spawn(&mut self) {
        self.spawn_nowait();
        self.wait_mounted();
    }

    /// Starts the daemon without waiting for its mount (for a daemon that
    /// may refuse to start); [`Node::wait_mounted`] waits for it.
    pub fn spawn_nowait(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = Command::new(&self.bin)
            .arg("mount")
            .arg("-config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn litefs");
        self.child = Some(child);
    }

    /// The daemon's process ID while it is this node's child (to send it
    /// signals such as SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's exit status if it has exited, `None` while it runs or
    /// when none was started.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until the mount is live, or panics with the daemon's log.
    pub fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if is_mounted(&self.mount) {
                use std::os::unix::fs::MetadataExt;
                self.fuse_conn = std::fs::metadata(&self.mount)
                    .ok()
                    .map(|m| libc::minor(m.dev()));
                if !self.peer {
                    self.check_io_path();
                }
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "litefs exited with {status} before mounting:\n{}",
                        self.log_text()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mount did not appear in 20 s:\n{}", self.log_text());
    }

    /// Checks that the daemon uses the I/O path under test: a suite meant to
    /// test passthrough must not quietly test the classic path instead.
    fn check_io_path(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = self.log_text();
            let on = log.contains("FUSE passthrough on");
            if on || log.contains("using classic FUSE I/O") {
                if classic_io() {
                    assert!(!on, "passthrough on although the config says off:\n{log}");
                } else if !on {
                    let msg = "kernel without FUSE passthrough: the passthrough path is not tested";
                    assert!(!deps_required(), "{msg}\n{log}");
                    eprintln!("SKIP: {msg}");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the daemon never said which FUSE I/O path it uses:\n{}",
            self.log_text()
        );
    }

    /// Reads `<db>-pos` on the mount and returns it. A barrier: the daemon
    /// captures every published commit and writes every pending LTX file
    /// first, so call it before reading the LTX directory.
    pub fn sync_pos(&self, db: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{db}-pos"))).expect("read -pos")
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The path of a file in the mount.
    pub fn path(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }

    /// SIGKILLs the daemon and clears the dead mount, as a crash would leave it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = self.reap(c);
        }
        unmount(&self.mount);
    }

    /// Waits for a killed daemon. A process killed while one of its own
    /// threads has a file of its mount open can hang in exit, flushing that
    /// file to a daemon that no longer runs: abort the FUSE connection then
    /// (as `echo 1 > /sys/fs/fuse/connections/N/abort` would), so a test
    /// never hangs on it.
    fn reap(&mut self, mut c: Child) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(n) = self.fuse_conn {
            eprintln!("daemon did not exit 5 s after SIGKILL; aborting FUSE connection {n}");
            abort_fuse_connection(n);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("daemon pid {} still not gone; leaving it", c.id());
        None
    }

    /// SIGTERMs the daemon and waits for it to exit; returns its status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let c = self.child.as_ref()?;
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(20))
    }

    /// Waits up to `timeout` for the daemon to exit on its own; kills it
    /// after that. `None` if it was not running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return self.reap(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks `db` on the mount against its LTX chain: `integrity_check` is
    /// ok, replaying every LTX file from nothing rebuilds the database byte
    /// for byte (after a checkpoint folds the WAL in) with the position's
    /// checksum, and `-pos` names that position. Returns the replay.
    pub fn check_chain(&self, db: &str) -> replay::Replayed {
        let path = self.path(db);
        assert_eq!(sqlite3(&path, "PRAGMA integrity_check;").trim(), "ok");
        // Fold the WAL into the database so the file alone is the state.
        let _ = sqlite3(&path, "PRAGMA wal_checkpoint(TRUNCATE);");
        let bytes = std::fs::read(&path).expect("read db through the mount");
        let pos = self.sync_pos(db);
        let r = replay::replay_dir(&self.ltx_dir(&db.replace('/', "%2F")));
        assert_eq!(r.bytes.len(), bytes.len(), "{db}: replayed size");
        if r.bytes != bytes {
            let ps = r.page_size as usize;
            let first = r
                .bytes
                .chunks(ps)
                .zip(bytes.chunks(ps))
                .position(|(a, b)| a != b);
            panic!(
                "{db}: replayed database differs from the mount, first at page {:?}",
                first.map(|i| i + 1)
            );
        }
        assert_eq!(
            replay::checksum(&bytes, r.page_size),
            r.pos.post_apply_checksum
        );
        assert_eq!(pos, format!("{}\n", r.pos), "{db}-pos");
        r
    }

    /// The (min, max) TXIDs of `db`'s LTX files, in order.
    pub fn ltx_ranges(&self, db: &str) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = std::fs::read_dir(self.ltx_dir(db))
            .expect("ltx dir")
            .filter_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                let (min, max) = litefs_ltx::parse_file_name(&n)?;
                Some((min.0, max.0))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// The LTX directory of a database in the data directory.
    pub fn ltx_dir(&self, db: &str) -> PathBuf {
        self.data.join("dbs").join(db).join("ltx")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key: value` lines indented into a section, blank lines dropped.
fn indent_keys(keys: &str) -> String {
    keys.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {}\n", l.trim()))
        .collect()
}

/// Aborts FUSE connection `n` (what `echo 1 > .../abort` does), mounting
/// the FUSE control filesystem first if nothing has: every request waiting
/// on the connection then fails, so a process stuck on it can exit.
pub fn abort_fuse_connection(n: u32) {
    let ctl = Path::new("/sys/fs/fuse/connections");
    if !ctl.join(n.to_string()).exists() {
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "fusectl"])
            .arg(ctl)
            .stderr(Stdio::null())
            .status();
    }
    if let Err(e) = std::fs::write(ctl.join(n.to_string()).join("abort"), "1") {
        eprintln!("aborting FUSE connection {n}: {e}");
    }
}

/// Whether `dir` is a mount point of a FUSE filesystem right now.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() > 4 && Path::new(f[4]) == canon && l.contains("fuse")
            })
        })
        .unwrap_or(false)
}

/// Lazily unmounts `dir` if something is mounted there.
pub fn unmount(dir: &Path) {
    if is_mounted(dir) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(dir)
            .status();
    }
}

/// Runs SQL through the `sqlite3` CLI with a busy timeout; panics with its
/// stderr on failure.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let out = sqlite3_output(db, sql);
    assert!(
        out.status.success(),
        "sqlite3 {} failed: {}\nSQL: {sql}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs SQL through the `sqlite3` CLI and returns its output whatever happened.
pub fn sqlite3_output(db: &Path, sql: &str) -> Output {
    let bin = tool("SQLITE3_BIN", "sqlite3").expect("sqlite3 is required");
    Command::new(bin)
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(db)
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .expect("run sqlite3")
}

impl Node {
    /// [`Node::start_lease`] with `fuse_keys` (`key: value` lines, such as
    /// `allow-other: true`) in the `fuse:` section.
    pub fn start_lease_with_fuse(lease: &str, extra: &str, fuse_keys: &str) -> Node {
        Node::start_full(lease, extra, "", &indent_keys(fuse_keys))
    }
}

/// Runs a Python sqlite3 script with the database path as `sys.argv[1]`.
pub fn python(script: &str, db: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
