//! Paths in the mount as long as Linux allows: components up to NAME_MAX
//! (255 bytes), paths up to PATH_MAX-1 (4095 bytes), nested as deep as
//! that allows; ENAMETOOLONG only beyond. Databases there are written by
//! real SQLite in DELETE and WAL mode, survive a restart, replicate (the
//! replica makes the same directories) and export and import by name.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    cluster, pos_of, read_file, require_fuse, run_bounded, sql, wait_same_pos,
};
use litefs_fuse_tests::{litefs_bin, Node};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Component `i` of a long path: `len` bytes.
fn comp(i: usize, len: usize) -> String {
    format!("{i:02}-")
        .chars()
        .chain(std::iter::repeat('x'))
        .take(len)
        .collect()
}

/// Runs `sql` with the sqlite3 shell on `file` in `dir` (a directory of a
/// mount), through a bind mount of `dir` at a short path in a private
/// mount namespace: SQLite's unix VFS refuses any path over 512 bytes, on
/// any filesystem, while the daemon still sees every name in full (the
/// bind mount is the same directory of the same FUSE mount). The
/// namespace, and the bind mount with it, ends with the process.
fn sql_at(dir: &Path, file: &str, sql: &str) -> String {
    let short = tempfile::tempdir().unwrap();
    let out = run_bounded(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && exec sqlite3 -bail -cmd ".timeout 10000" "$2/$3" "$4""#)
            .arg("sh")
            .arg(dir)
            .arg(short.path())
            .arg(file)
            .arg(sql),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "sqlite3 {file} in a {}-byte directory failed: {}\nSQL: {sql}",
        dir.as_os_str().len(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows written: in DELETE mode, then in WAL mode.
const WRITES: &str = "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); \
    INSERT INTO t SELECT value FROM generate_series(1, 300); \
    BEGIN; UPDATE t SET x = x * 2 WHERE x % 3 = 0; COMMIT; \
    PRAGMA journal_mode=WAL; INSERT INTO t SELECT value FROM generate_series(301, 600); \
    DELETE FROM t WHERE x % 7 = 0;";

const CHECK: &str = "SELECT count(*), sum(x) FROM t; PRAGMA integrity_check;";

/// `errno` of a failed `*at` system call, 0 on success.
fn errno_of(r: i32) -> i32 {
    if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        0
    }
}

/// The issue's `os.makedirs` of eight 32-byte directories (263 bytes) and
/// a database in it; fifteen 255-byte directories (3839 bytes) and a
/// database of 150 bytes in them (3990 bytes): both written in DELETE and
/// WAL mode, replicated (the replica makes the directories), kept across a
/// restart of the primary, exported and imported by name.
#[test]
fn long_paths_replicate_and_survive_a_restart() {
    if !require_fuse() {
        return;
    }
    let (mut p, rs) = cluster(1);
    let r = &rs[0];
    let deep_dir = (0..8).map(|i| comp(i, 32)).collect::<Vec<_>>().join("/");
    assert_eq!(deep_dir.len(), 263);
    let deep = format!("{deep_dir}/deep.db");
    let long_dir = (0..15).map(|i| comp(i, 255)).collect::<Vec<_>>().join("/");
    let long_file = comp(99, 150);
    let long = format!("{long_dir}/{long_file}");
    assert_eq!(long.len(), 3990);

    std::fs::create_dir_all(p.path(&deep_dir)).expect("makedirs, 263 bytes");
    std::fs::create_dir_all(p.path(&long_dir)).expect("makedirs, 3839 bytes");
    sql(&p.path(&deep), WRITES);
    sql_at(&p.path(&long_dir), &long_file, WRITES);
    let want = sql(&p.path(&deep), CHECK);
    assert!(want.ends_with("ok\n"), "{want}");
    assert_eq!(sql_at(&p.path(&long_dir), &long_file, CHECK), want);

    // Listed where they are, by their last component.
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert!(names(&p.path(&long_dir)).contains(&long_file));
    assert_eq!(names(&p.path(&comp(0, 255))), [comp(1, 255)]);
    // The data directory holds every name in one entry of at most 255
    // bytes.
    for e in names(&p.data.join("dbs")) {
        assert!(e.len() <= 255, "{e}");
    }

    // The replica gets both, in the same directories.
    for db in [&deep, &long] {
        wait_same_pos(&p, r, db);
    }
    assert!(r.path(&long_dir).is_dir() && r.path(&deep_dir).is_dir());
    assert_eq!(sql(&r.path(&deep), CHECK), want);
    assert_eq!(sql_at(&r.path(&long_dir), &long_file, CHECK), want);
    sql_at(
        &p.path(&long_dir),
        &long_file,
        "PRAGMA wal_checkpoint(TRUNCATE);",
    );
    assert!(
        read_file(&p.path(&long)).unwrap() == read_file(&r.path(&long)).unwrap(),
        "replica bytes differ"
    );

    // A restart keeps them; writes go on.
    let before = pos_of(&p, &long);
    assert!(p.stop().is_some_and(|s| s.success()), "{}", p.log_text());
    p.spawn();
    assert_eq!(pos_of(&p, &long), before);
    assert_eq!(sql(&p.path(&deep), CHECK), want);
    assert_eq!(sql_at(&p.path(&long_dir), &long_file, CHECK), want);
    sql_at(
        &p.path(&long_dir),
        &long_file,
        "INSERT INTO t VALUES (1000000);",
    );
    let want2 = sql_at(&p.path(&long_dir), &long_file, CHECK);
    assert_ne!(want2, want);
    wait_same_pos(&p, r, &long);
    assert_eq!(sql_at(&r.path(&long_dir), &long_file, CHECK), want2);

    // Export from the replica, import under another long name.
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy.db");
    let run = |args: &[&str], file: &Path| {
        let o = run_bounded(
            Command::new(litefs_bin()).args(args).arg(file),
            Duration::from_secs(60),
        );
        assert!(
            o.status.success(),
            "litefs {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["export", "-name", &long, "-url", &r.url], &copy);
    assert_eq!(sql(&copy, CHECK), want2);
    let imported = format!("{long_dir}/{}", comp(98, 150));
    run(&["import", "-name", &imported, "-url", &p.url], &copy);
    wait_same_pos(&p, r, &imported);
    assert_eq!(sql_at(&r.path(&long_dir), &comp(98, 150), CHECK), want2);
}

/// ENAMETOOLONG exactly where Linux puts it: a 256-byte component (file
/// or directory), a path in the mount of 4096 bytes or more; 255-byte
/// components and a 4095-byte path work, and the directories can be
/// listed and removed.
#[test]
fn enametoolong_only_beyond_linux_limits() {
    if !require_fuse() {
        return;
    }
    let n = Node::start("");
    let enametoolong = Some(libc::ENAMETOOLONG);
    let e = std::fs::File::create(n.path(&"a".repeat(256))).unwrap_err();
    assert_eq!(e.raw_os_error(), enametoolong, "create: {e}");
    let e = std::fs::create_dir(n.path(&"b".repeat(256))).unwrap_err();
    assert_eq!(e.raw_os_error(), enametoolong, "mkdir: {e}");
    let e = std::fs::metadata(n.path(&"c".repeat(256))).unwrap_err();
    assert_eq!(e.raw_os_error(), enametoolong, "stat: {e}");

    // 255 bytes: a database file and a directory.
    let flat = "d".repeat(255);
    std::fs::write(n.path(&flat), b"").unwrap();
    std::fs::remove_file(n.path(&flat)).unwrap();
    let dirs = (0..15).map(|i| comp(i, 255)).collect::<Vec<_>>().join("/");
    std::fs::create_dir_all(n.path(&dirs)).unwrap();
    let e = std::fs::create_dir(n.path(&format!("{dirs}/{}", "e".repeat(256)))).unwrap_err();
    assert_eq!(e.raw_os_error(), enametoolong, "nested mkdir: {e}");

    // Past 4095 bytes only with *at calls from a directory inside.
    let dir = std::fs::File::open(n.path(&dirs)).unwrap();
    let last = CString::new("f".repeat(255)).unwrap();
    // 3839 + 1 + 255 = 4095 bytes: allowed.
    // SAFETY: a valid directory descriptor and NUL-terminated names.
    assert_eq!(
        errno_of(unsafe { libc::mkdirat(dir.as_raw_fd(), last.as_ptr(), 0o755) }),
        0
    );
    // Its absolute path is over PATH_MAX: open it relative to its parent.
    // SAFETY: as above; the descriptor is owned by `sub` from here on.
    let sub = unsafe {
        let fd = libc::openat(
            dir.as_raw_fd(),
            last.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        );
        assert!(
            fd >= 0,
            "open the 4095-byte directory: {}",
            std::io::Error::last_os_error()
        );
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
    };
    let x = CString::new("x").unwrap();
    // 4097 bytes: refused.
    // SAFETY: as above.
    let fd = unsafe {
        libc::openat(
            sub.as_raw_fd(),
            x.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o644,
        )
    };
    assert_eq!(errno_of(fd), libc::ENAMETOOLONG, "create at 4097 bytes");
    // SAFETY: as above.
    assert_eq!(
        errno_of(unsafe { libc::mkdirat(sub.as_raw_fd(), x.as_ptr(), 0o755) }),
        libc::ENAMETOOLONG
    );
    drop(sub);
    // A 255-byte database name at 3839 + 1 + 150 bytes, then removed.
    let db = format!("{dirs}/{}", comp(7, 150));
    std::fs::write(n.path(&db), b"").unwrap();
    assert!(std::fs::read_dir(n.path(&dirs)).unwrap().count() == 2);
    let e = std::fs::remove_dir(n.path(&dirs)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    // SAFETY: as above.
    assert_eq!(
        errno_of(unsafe { libc::unlinkat(dir.as_raw_fd(), last.as_ptr(), libc::AT_REMOVEDIR) }),
        0
    );
    std::fs::remove_file(n.path(&db)).unwrap();
    drop(dir);
    let mut d = dirs.as_str();
    loop {
        std::fs::remove_dir(n.path(d)).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.len()));
        match d.rsplit_once('/') {
            Some((parent, _)) => d = parent,
            None => break,
        }
    }
    assert!(!n.path(&comp(0, 255)).exists());
}
