//! POSIX permissions in the mount, with real processes: a created file or
//! directory gets the mode asked for less the caller's umask and the
//! caller as owner; `chmod`, `chown` and `utimens` persist in the data
//! directory across a restart; SQLite's journal, WAL and WAL index get
//! their database's mode and owner; the kernel enforces modes for other
//! users (`default_permissions`), who may enter the mount at all only
//! with `fuse.allow-other`; a replica shows databases without write bits
//! and keeps modes local; SQLite's `journal3.test` passes on the mount.
//!
//! Needs root (to give files away and to run commands as `nobody` with
//! `setpriv`), `python3`, `sqlite3`, and for the TCL test `testfixture`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{require_fuse, run_bounded, wait_same_pos};
use litefs_fuse_tests::{
    deps_required, primary_lease, replica_lease, sqlite3, sqlite3_output, tool, Node,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `nobody`'s user and group IDs (Debian's `nobody`/`nogroup`).
const NOBODY: u32 = 65534;

/// Whether the test can run: FUSE, and root. Without root it says SKIP,
/// or fails when dependencies are required (the suite runs as root).
fn can_run() -> bool {
    if !require_fuse() {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let msg = "the permission tests need root (chown, setpriv)";
        assert!(!deps_required(), "{msg}");
        eprintln!("SKIP: {msg}");
        return false;
    }
    tool("SETPRIV_BIN", "setpriv").is_some() && tool("SQLITE3_BIN", "sqlite3").is_some()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let md = std::fs::metadata(p).unwrap();
    (md.uid(), md.gid())
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", m, p.display()));
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// Runs a Python script (as root) and returns its standard output.
fn py(script: &str) -> String {
    let out = run_bounded(
        Command::new("python3").arg("-c").arg(script),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "python failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` as `nobody` (no supplementary groups).
fn nobody(args: &[&str]) -> Output {
    let setpriv = tool("SETPRIV_BIN", "setpriv").unwrap();
    run_bounded(
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(args)
            .env("HOME", "/nonexistent"),
        Duration::from_secs(60),
    )
}

/// `nobody` runs `sqlite3 db sql`.
fn nobody_sql(db: &Path, sql: &str) -> Output {
    let bin = tool("SQLITE3_BIN", "sqlite3").unwrap();
    nobody(&[
        bin.to_str().unwrap(),
        "-cmd",
        ".timeout 10000",
        db.to_str().unwrap(),
        sql,
    ])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// Asserts that `o` failed with "Permission denied" (EACCES from the
/// kernel's check) or, given `eperm`, "Operation not permitted".
#[track_caller]
fn denied(o: &Output, what: &str, eperm: bool) {
    let want = if eperm {
        "Operation not permitted"
    } else {
        "Permission denied"
    };
    assert!(
        !o.status.success() && stderr(o).contains(want),
        "{what}: expected '{want}', got status {} stdout {:?} stderr {:?}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

#[track_caller]
fn succeeded(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: status {} stderr {:?}",
        o.status,
        stderr(o)
    );
    stdout(o)
}

/// Lets other users reach the node's mount point (its temporary directory
/// is 0700).
fn open_path(node: &Node) {
    set_mode(node.dir.path(), 0o755);
}

/// This process's umask, from /proc (reading it with umask(2) would change
/// it for every thread).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

/// A database's file in the data directory (LiteFS's layout).
fn backing(node: &Node, db: &str) -> PathBuf {
    node.data.join("dbs").join(db).join("database")
}

/// What a file shows: mode, owner, modification time.
type Shown = (u32, (u32, u32), SystemTime);

fn shown(p: &Path) -> Shown {
    let md = std::fs::metadata(p).unwrap();
    (
        md.mode() & 0o7777,
        (md.uid(), md.gid()),
        md.modified().unwrap(),
    )
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

#[test]
fn create_modes_and_chmod_chown_utimens_survive_a_restart() {
    if !can_run() {
        return;
    }
    let mut node = Node::start("");
    let m = node.mount.display().to_string();
    // The root: the mount point's mode and owner; its times are the data
    // directory's, not 1970.
    assert_eq!(mode(&node.mount), 0o777 & !umask(), "root mode");
    let root_mtime = std::fs::metadata(&node.mount).unwrap().modified().unwrap();
    assert!(
        root_mtime > at(1_600_000_000, 0),
        "root mtime {root_mtime:?}"
    );

    // Create under different umasks: databases, directories, a nested
    // database, and mknod of a regular file (a FIFO is refused).
    py(&format!(
        r#"
import os, stat
m = '{m}'
os.umask(0o022); os.close(os.open(m + '/a.db', os.O_CREAT | os.O_WRONLY, 0o600))
os.umask(0o027); os.close(os.open(m + '/b.db', os.O_CREAT | os.O_WRONLY, 0o666))
os.umask(0o000); os.mkdir(m + '/d', 0o750)
os.umask(0o077); os.mkdir(m + '/d/e', 0o777)
os.umask(0o002); os.close(os.open(m + '/d/c.db', os.O_CREAT | os.O_WRONLY, 0o666))
os.umask(0o022); os.mknod(m + '/n.db', stat.S_IFREG | 0o644)
try:
    os.mkfifo(m + '/fifo.db')
    raise SystemExit('mkfifo succeeded')
except PermissionError:
    pass
"#
    ));
    for (name, want) in [
        ("a.db", 0o600),
        ("b.db", 0o640),
        ("d", 0o750),
        ("d/e", 0o700),
        ("d/c.db", 0o664),
        ("n.db", 0o644),
    ] {
        assert_eq!(mode(&node.path(name)), want, "{name}");
    }
    // They live on the data directory's files.
    assert_eq!(mode(&backing(&node, "a.db")), 0o600);
    assert_eq!(mode(&backing(&node, "b.db")), 0o640);

    // chmod, chown, utimens: of files, directories and the root.
    set_mode(&node.path("a.db"), 0o604);
    chown(&node.path("b.db"), NOBODY, NOBODY);
    chown(&node.path("d/e"), NOBODY, 0);
    set_mode(&node.path("d"), 0o711);
    set_mode(&node.mount, 0o751);
    // A real database, written after its mode and owner changed.
    let w = node.path("w.db");
    sqlite3(&w, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    set_mode(&w, 0o640);
    chown(&w, 0, NOBODY);
    sqlite3(
        &w,
        "INSERT INTO t VALUES (1); PRAGMA wal_checkpoint(TRUNCATE);",
    );
    assert_eq!(shown(&w).0, 0o640);
    assert_eq!(shown(&w).1, (0, NOBODY));
    py(&format!(
        r#"
import os
m = '{m}'
os.utime(m + '/a.db', ns=(1_100_000_000_500_000_000, 1_000_000_000_123_456_789))
os.utime(m + '/d', ns=(1_200_000_000_000_000_000, 1_200_000_000_000_000_001))
os.utime(m, ns=(1_300_000_000_000_000_000, 1_300_000_000_000_000_000))
"#
    ));
    let a = std::fs::metadata(node.path("a.db")).unwrap();
    assert_eq!(a.modified().unwrap(), at(1_000_000_000, 123_456_789));
    assert_eq!(a.accessed().unwrap(), at(1_100_000_000, 500_000_000));
    assert_eq!(
        std::fs::metadata(backing(&node, "a.db"))
            .unwrap()
            .modified()
            .unwrap(),
        at(1_000_000_000, 123_456_789)
    );
    assert_eq!(
        std::fs::metadata(node.path("d"))
            .unwrap()
            .modified()
            .unwrap(),
        at(1_200_000_000, 1)
    );
    assert_eq!(
        std::fs::metadata(&node.mount).unwrap().modified().unwrap(),
        at(1_300_000_000, 0)
    );

    let names = ["", "a.db", "b.db", "d", "d/e", "d/c.db", "n.db", "w.db"];
    let before: Vec<Shown> = names.iter().map(|n| shown(&node.path(n))).collect();
    let expect = [
        (0o751, (0, 0)),
        (0o604, (0, 0)),
        (0o640, (NOBODY, NOBODY)),
        (0o711, (0, 0)),
        (0o700, (NOBODY, 0)),
        (0o664, (0, 0)),
        (0o644, (0, 0)),
        (0o640, (0, NOBODY)),
    ];
    for ((n, s), (m, o)) in names.iter().zip(&before).zip(expect) {
        assert_eq!((s.0, s.1), (m, o), "{n:?}: mode and owner");
    }

    // A restart keeps them all: they are the data directory's files' own
    // (and the root's mode is the mount point's).
    assert!(node.stop().unwrap().success(), "{}", node.log_text());
    assert_eq!(mode(&node.mount), 0o751, "the mount point itself");
    node.spawn();
    let after: Vec<Shown> = names.iter().map(|n| shown(&node.path(n))).collect();
    for ((n, b), a) in names.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "{n:?} after a restart\n{}", node.log_text());
    }
    assert_eq!(sqlite3(&w, "SELECT count(*) FROM t").trim(), "1");
}

/// The mode, owner and size of each of `db`'s side files that exists while
/// a Python connection holds a write transaction open on it.
fn side_files_during_a_transaction(db: &Path) -> Vec<(String, u32, (u32, u32))> {
    let out = py(&format!(
        r#"
import os, sqlite3
db = '{db}'
c = sqlite3.connect(db, isolation_level=None, timeout=10)
c.execute('BEGIN IMMEDIATE')
c.execute('INSERT INTO t VALUES (randomblob(5000))')
for s in ('-journal', '-wal', '-shm'):
    try:
        st = os.stat(db + s)
        print(s, oct(st.st_mode & 0o7777), st.st_uid, st.st_gid)
    except FileNotFoundError:
        pass
c.execute('COMMIT')
c.close()
"#,
        db = db.display()
    ));
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                u32::from_str_radix(f[1].trim_start_matches("0o"), 8).unwrap(),
                (f[2].parse().unwrap(), f[3].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn journal_and_wal_take_the_database_mode_and_owner() {
    if !can_run() {
        return;
    }
    let node = Node::start("");
    let del = node.path("del.db");
    let wal = node.path("wal.db");
    sqlite3(&del, "PRAGMA journal_mode=DELETE; CREATE TABLE t(x);");
    sqlite3(&wal, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    for (perm, own) in [(0o640, (0, NOBODY)), (0o600, (NOBODY, NOBODY))] {
        set_mode(&del, perm);
        chown(&del, own.0, own.1);
        let side = side_files_during_a_transaction(&del);
        assert_eq!(
            side,
            vec![("-journal".to_owned(), perm, own)],
            "DELETE mode, database {perm:o}"
        );
        assert!(!node.path("del.db-journal").exists());
    }
    for (perm, own) in [(0o604, (NOBODY, 0)), (0o660, (0, 0))] {
        set_mode(&wal, perm);
        chown(&wal, own.0, own.1);
        let side = side_files_during_a_transaction(&wal);
        assert_eq!(
            side,
            vec![
                ("-wal".to_owned(), perm, own),
                ("-shm".to_owned(), perm, own)
            ],
            "WAL mode, database {perm:o}"
        );
        assert!(
            !node.data.join("dbs/wal.db/wal").exists(),
            "the last connection removed the WAL"
        );
    }
    // A WAL left open shows its mode in the data directory too.
    set_mode(&wal, 0o620);
    let out = py(&format!(
        r#"
import os, sqlite3
c = sqlite3.connect('{wal}', isolation_level=None)
c.execute('INSERT INTO t VALUES (1)')
print(oct(os.stat('{data}').st_mode & 0o7777))
c.close()
"#,
        wal = wal.display(),
        data = node.data.join("dbs/wal.db/wal").display()
    ));
    assert_eq!(out.trim(), "0o620");
    node.check_chain("del.db");
    node.check_chain("wal.db");
}

/// A node whose mount other users may enter, holding `pub.db` (0644),
/// `priv.db` (0600), `grp.db` (0640, group nogroup), all DELETE mode, and
/// `shared/` (0777).
fn shared_node(allow_other: bool) -> Node {
    let node = if allow_other {
        Node::start_with_fuse("allow-other: true")
    } else {
        Node::start("")
    };
    open_path(&node);
    for (db, perm, gid) in [
        ("pub.db", 0o644, 0),
        ("priv.db", 0o600, 0),
        ("grp.db", 0o640, NOBODY),
    ] {
        sqlite3(
            &node.path(db),
            "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
        );
        set_mode(&node.path(db), perm);
        chown(&node.path(db), 0, gid);
    }
    std::fs::create_dir(node.path("shared")).unwrap();
    set_mode(&node.path("shared"), 0o777);
    set_mode(&node.mount, 0o755);
    node
}

#[test]
fn other_users_get_what_the_modes_allow_with_allow_other() {
    if !can_run() {
        return;
    }
    let node = shared_node(true);
    let p = |n: &str| node.path(n).display().to_string();
    // Reads where the mode allows.
    let o = nobody(&["head", "-c", "15", &p("pub.db")]);
    assert_eq!(succeeded(&o, "nobody reads pub.db"), "SQLite format 3");
    let o = nobody_sql(&node.path("pub.db"), "SELECT count(*) FROM t");
    assert_eq!(succeeded(&o, "nobody queries pub.db"), "1");
    let o = nobody(&["head", "-c", "15", &p("grp.db")]);
    assert_eq!(
        succeeded(&o, "nobody reads grp.db (group)"),
        "SQLite format 3"
    );
    // Refused where it does not.
    denied(
        &nobody(&["head", "-c", "15", &p("priv.db")]),
        "nobody reads priv.db",
        false,
    );
    denied(
        &nobody(&["sh", "-c", &format!("echo x >> {}", p("pub.db"))]),
        "nobody appends to pub.db",
        false,
    );
    denied(
        &nobody(&["sh", "-c", &format!("echo x >> {}", p("grp.db"))]),
        "nobody appends to grp.db",
        false,
    );
    let o = nobody_sql(&node.path("pub.db"), "INSERT INTO t VALUES (2)");
    assert!(
        !o.status.success() && stderr(&o).contains("readonly database"),
        "nobody inserts into pub.db: {o:?}"
    );
    denied(
        &nobody(&["chmod", "0666", &p("pub.db")]),
        "nobody chmods pub.db",
        true,
    );
    denied(
        &nobody(&["touch", &p("new.db")]),
        "nobody creates in the root (0755 root)",
        false,
    );
    assert!(!node.path("new.db").exists());
    denied(
        &nobody(&["rm", "-f", &p("pub.db")]),
        "nobody removes pub.db",
        false,
    );
    // In a directory open to all, nobody's database is nobody's, with the
    // mode its umask leaves, and nobody may change it.
    let mine = node.path("shared/mine.db");
    let sql = tool("SQLITE3_BIN", "sqlite3").unwrap();
    let o = nobody(&[
        "sh",
        "-c",
        &format!(
            "umask 027 && {} {} 'CREATE TABLE t(x); INSERT INTO t VALUES (7);'",
            sql.display(),
            mine.display()
        ),
    ]);
    succeeded(&o, "nobody creates shared/mine.db");
    assert_eq!(owner(&mine), (NOBODY, NOBODY));
    assert_eq!(mode(&mine), 0o640);
    succeeded(
        &nobody(&["chmod", "0600", mine.to_str().unwrap()]),
        "nobody chmods its own database",
    );
    assert_eq!(mode(&mine), 0o600);
    // Root's access is the kernel's too (root may do anything but run).
    assert_eq!(
        sqlite3(&node.path("priv.db"), "SELECT count(*) FROM t").trim(),
        "1"
    );
    assert_eq!(sqlite3(&mine, "SELECT x FROM t").trim(), "7");
    node.check_chain("shared/mine.db");
}

#[test]
fn without_allow_other_no_other_user_enters() {
    if !can_run() {
        return;
    }
    let node = shared_node(false);
    let p = |n: &str| node.path(n).display().to_string();
    // Even a file every mode lets read: the mount itself is closed.
    set_mode(&node.path("pub.db"), 0o666);
    denied(&nobody(&["ls", &p("")]), "nobody lists the mount", false);
    denied(
        &nobody(&["head", "-c", "15", &p("pub.db")]),
        "nobody reads pub.db",
        false,
    );
    denied(
        &nobody(&["touch", &p("shared/x.db")]),
        "nobody creates in shared/",
        false,
    );
    // The same test with allow-other passes these: see above; and root
    // is unaffected.
    assert_eq!(
        std::fs::read(node.path("pub.db")).unwrap()[..15],
        *b"SQLite format 3"
    );
}

#[test]
fn a_replica_shows_databases_read_only_and_keeps_modes_local() {
    if !can_run() {
        return;
    }
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    let r =
        Node::start_lease_with_fuse(&replica_lease("primary-1", &p.url), "", "allow-other: true");
    open_path(&r);
    for (db, jm) in [("w.db", "WAL"), ("d.db", "DELETE"), ("pub.db", "WAL")] {
        sqlite3(
            &p.path(db),
            &format!("PRAGMA journal_mode={jm}; CREATE TABLE t(x); INSERT INTO t VALUES (1);"),
        );
    }
    set_mode(&p.path("w.db"), 0o600);
    chown(&p.path("w.db"), NOBODY, NOBODY);
    for db in ["w.db", "d.db", "pub.db"] {
        wait_same_pos(&p, &r, db);
    }
    // LTX carries no modes: the replica made the file as the daemon makes
    // any (0666 less its umask, its owner), and shows it without write bits.
    let made = 0o666 & !umask();
    assert_eq!(mode(&backing(&r, "w.db")), made);
    assert_eq!(mode(&r.path("w.db")), made & !0o222);
    assert_eq!(owner(&r.path("w.db")), (0, 0));
    assert_eq!(mode(&r.path("d.db")), made & !0o222);
    // chmod and chown on a replica are local: they change its file, the
    // replica still shows no write bits, applying keeps them.
    set_mode(&r.path("w.db"), 0o640);
    chown(&r.path("d.db"), 0, NOBODY);
    assert_eq!(mode(&r.path("w.db")), 0o440);
    assert_eq!(mode(&backing(&r, "w.db")), 0o640);
    for db in ["w.db", "d.db", "pub.db"] {
        sqlite3(&p.path(db), "INSERT INTO t VALUES (2);");
        wait_same_pos(&p, &r, db);
    }
    assert_eq!(mode(&backing(&r, "w.db")), 0o640);
    assert_eq!(owner(&r.path("d.db")), (0, NOBODY));
    assert_eq!(
        mode(&p.path("w.db")),
        0o600,
        "the primary's mode is its own"
    );
    // Writes are still refused whatever the mode says.
    let o = sqlite3_output(&r.path("d.db"), "INSERT INTO t VALUES (3)");
    assert!(!o.status.success(), "insert on a replica");
    // Another user reads a WAL database on the replica, again after more
    // commits arrive: SQLite makes its -wal/-shm as nobody's, without
    // write bits (the database shows none), and reads through them.
    set_mode(&r.mount, 0o1777);
    for want in ["2", "2"] {
        let o = nobody_sql(&r.path("pub.db"), "SELECT count(*) FROM t");
        assert_eq!(succeeded(&o, "nobody reads pub.db on the replica"), want);
    }
    assert_eq!(owner(&r.path("pub.db-shm")), (NOBODY, NOBODY));
    assert_eq!(mode(&r.path("pub.db-shm")), made & !0o222);
    sqlite3(&p.path("pub.db"), "INSERT INTO t VALUES (3);");
    wait_same_pos(&p, &r, "pub.db");
    let o = nobody_sql(&r.path("pub.db"), "SELECT count(*) FROM t");
    assert_eq!(succeeded(&o, "nobody reads pub.db after a commit"), "3");
    denied(
        &nobody(&["head", "-c", "15", r.path("w.db").to_str().unwrap()]),
        "nobody reads w.db (0640 root) on the replica",
        false,
    );
}

/// Runs SQLite's `test/<file>.test` with `--testdir=dir`; returns
/// (errors, tests) or the output's tail when it did not finish.
fn tcl(testfixture: &Path, file: &str, dir: &Path) -> Result<(u32, u32), String> {
    let src = testfixture.parent().unwrap().join("src");
    let out = run_bounded(
        Command::new(testfixture)
            .arg(format!("test/{file}.test"))
            .arg(format!("--testdir={}", dir.display()))
            .current_dir(src),
        Duration::from_secs(600),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        // "N errors out of M tests on ..."
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 6 && w[1] == "errors" && w[2] == "out" && w[3] == "of" {
            if let (Ok(e), Ok(t)) = (w[0].parse(), w[4].parse()) {
                return Ok((e, t));
            }
        }
    }
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

#[test]
fn sqlite_journal3_test_passes_on_the_mount() {
    if !can_run() {
        return;
    }
    let Some(tf) = tool("TESTFIXTURE_BIN", "testfixture") else {
        return;
    };
    let plain = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let p = tcl(&tf, "journal3", &plain.path().join("j3")).expect("journal3 in a plain directory");
    let m = tcl(&tf, "journal3", &node.path("tcl_journal3"));
    eprintln!("journal3: plain {p:?}, mount {m:?}");
    let (me, mt) = m.unwrap_or_else(|tail| panic!("journal3 did not finish on the mount:\n{tail}"));
    assert_eq!(p.0, 0, "journal3 fails in a plain directory");
    assert_eq!(
        (me, mt),
        (0, p.1),
        "journal3 on the mount: {me} errors out of {mt}\n{}",
        node.log_text()
    );
}
