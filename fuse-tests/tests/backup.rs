//! Backups in Litestream 0.5's layout: a node backs up to a directory
//! while it takes writes; the real `litestream restore` 0.5.17 and `litefs
//! restore` both rebuild the database byte for byte, at the newest
//! position, at an earlier TXID and at a time; `litefs restore` rebuilds a
//! replica written by the real `litestream replicate`; broken backups are
//! refused with the file named.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    backup_txid, get, pos_of, read_file, require_fuse, run_bounded, sql, wait_log_line,
};
use litefs_fuse_tests::consul::wait_one_primary;
use litefs_fuse_tests::{litefs_bin, tool, Node};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn litestream() -> Option<PathBuf> {
    tool("LITESTREAM_BIN", "litestream")
}

fn txid_of(pos: &str) -> u64 {
    u64::from_str_radix(pos.split('/').next().unwrap(), 16).unwrap()
}

/// Waits until the backup of `db` reaches the primary's position.
fn wait_backup(n: &Node, root: &Path, db: &str) -> u64 {
    let want = txid_of(&pos_of(n, db));
    let deadline = Instant::now() + Duration::from_secs(20);
    while backup_txid(root) < want {
        assert!(
            Instant::now() < deadline,
            "the backup stayed at {:x}, the primary is at {want:x}\n{}",
            backup_txid(root),
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    want
}

/// The database as a restore must produce it: WAL folded in.
fn image(n: &Node, db: &str) -> Vec<u8> {
    sql(&n.path(db), "PRAGMA wal_checkpoint(TRUNCATE);");
    read_file(&n.path(db)).unwrap()
}

fn litefs_restore(root: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    run_bounded(
        Command::new(litefs_bin())
            .arg("restore")
            .arg("-o")
            .arg(out)
            .args(args)
            .arg(root),
        Duration::from_secs(60),
    )
}

fn litestream_restore(ls: &Path, root: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    run_bounded(
        Command::new(ls)
            .arg("restore")
            .arg("-o")
            .arg(out)
            .args(["-integrity-check", "full"])
            .args(args)
            .arg(format!("file://{}", root.display())),
        Duration::from_secs(60),
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A primary backing up to a new directory every 100 ms (`extra`: more
/// `backup:` keys, indented), with `app.db` (WAL) created: the directory,
/// the node, the database, its replica.
fn backed_up_node(extra: &str) -> (tempfile::TempDir, Node, &'static str, PathBuf) {
    let bk = tempfile::tempdir().unwrap();
    let n = Node::start(&format!(
        "backup:\n  type: file\n  path: {}\n  sync-interval: 100ms\n{extra}",
        bk.path().display()
    ));
    // With a backup configured, the node is primary only once the
    // election has looked for something to restore.
    wait_one_primary(&[&n], Duration::from_secs(20));
    let db = "app.db";
    let root = bk.path().join(db);
    sql(
        &n.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);",
    );
    (bk, n, db, root)
}

/// Random-ish writes: inserts, updates, deletes, one transaction each.
fn workload(n: &Node, db: &str, batch: u32, txs: u32) {
    let mut s = String::new();
    for i in 0..txs {
        let k = batch * 1000 + i;
        s.push_str(&format!(
            "INSERT INTO t(k, v) VALUES ({k}, randomblob({}));\n",
            50 + (k * 37) % 3000
        ));
        if i % 3 == 0 {
            s.push_str(&format!(
                "UPDATE t SET v = randomblob(200) WHERE k % 7 = {};\n",
                i % 7
            ));
        }
        if i % 5 == 0 {
            s.push_str(&format!("DELETE FROM t WHERE k % 11 = {};\n", i % 11));
        }
    }
    sql(&n.path(db), &s);
}

#[test]
fn backups_restore_with_litestream_and_litefs_at_any_point() {
    if !require_fuse() {
        return;
    }
    let Some(ls) = litestream() else { return };
    let (_bk, n, db, root) = backed_up_node("");
    workload(&n, db, 1, 60);
    let t1 = wait_backup(&n, &root, db);
    let img1 = image(&n, db);
    let time1 = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    // Three syncs' worth (level-0 files to break below).
    for chunk in 0..3 {
        workload(&n, db, 2 + chunk, 20);
        std::thread::sleep(Duration::from_millis(300));
    }
    let t2 = wait_backup(&n, &root, db);
    let img2 = image(&n, db);
    assert!(t2 > t1);
    let m = get(&n, "/metrics").1;
    assert!(
        m.contains(&format!("litefs_backup_txid{{db=\"{db}\"}} {t2}\n")),
        "the backup position is not in /metrics:\n{m}"
    );
    let info = get(&n, "/info").1;
    assert!(
        info.contains(&format!("\"txid\":\"{t2:016x}\"")) && info.contains("\"backup\""),
        "the backup position is not in /info: {info}"
    );
    assert!(
        m.contains(&format!("litefs_backup_lag_txids{{db=\"{db}\"}} 0\n")),
        "{m}"
    );

    let out = tempfile::tempdir().unwrap();
    let check = |name: &str, o: std::process::Output, want: &[u8], what: &str| {
        assert!(
            o.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let got = std::fs::read(out.path().join(name)).unwrap();
        assert!(
            got == want,
            "{what}: {} bytes restored, not byte-identical to the {} expected",
            got.len(),
            want.len()
        );
    };
    let p = |name: &str| out.path().join(name);
    check(
        "ls-latest.db",
        litestream_restore(&ls, &root, &p("ls-latest.db"), &[]),
        &img2,
        "litestream restore (latest)",
    );
    check(
        "lf-latest.db",
        litefs_restore(&root, &p("lf-latest.db"), &[]),
        &img2,
        "litefs restore (latest)",
    );
    let t1hex = format!("{t1:016x}");
    check(
        "ls-txid.db",
        litestream_restore(&ls, &root, &p("ls-txid.db"), &["-txid", &t1hex]),
        &img1,
        "litestream restore -txid",
    );
    check(
        "lf-txid.db",
        litefs_restore(&root, &p("lf-txid.db"), &["-txid", &t1hex]),
        &img1,
        "litefs restore -txid",
    );
    let ts = rfc3339(time1);
    check(
        "ls-time.db",
        litestream_restore(&ls, &root, &p("ls-time.db"), &["-timestamp", &ts]),
        &img1,
        "litestream restore -timestamp",
    );
    check(
        "lf-time.db",
        litefs_restore(&root, &p("lf-time.db"), &["-timestamp", &ts]),
        &img1,
        "litefs restore -timestamp",
    );
    eprintln!("restored TXIDs {t1:x} and {t2:x} byte for byte with both tools");

    // Broken backups: a missing file, a flipped byte.
    let broken = tempfile::tempdir().unwrap();
    let copy = broken.path().join("db");
    Command::new("cp")
        .arg("-a")
        .arg(&root)
        .arg(&copy)
        .status()
        .unwrap();
    let mut l0: Vec<PathBuf> = std::fs::read_dir(copy.join("ltx/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    l0.sort();
    assert!(l0.len() >= 3, "want several level-0 files: {l0:?}");
    std::fs::remove_file(&l0[1]).unwrap();
    let o = litefs_restore(&copy, &p("gap.db"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "restored across a gap");
    let next = l0[2].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&next) && err.contains("missing"),
        "unclear gap error: {err}"
    );
    assert!(!p("gap.db").exists());
    std::fs::remove_dir_all(&copy).unwrap();
    Command::new("cp")
        .arg("-a")
        .arg(&root)
        .arg(&copy)
        .status()
        .unwrap();
    let victim = copy.join("ltx/0").join(l0[1].file_name().unwrap());
    let mut b = std::fs::read(&victim).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x40;
    std::fs::write(&victim, b).unwrap();
    let o = litefs_restore(&copy, &p("flip.db"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "restored from a corrupted file");
    assert!(
        err.contains(&*victim.to_string_lossy()),
        "the corrupted file is not named: {err}"
    );
    assert!(!p("flip.db").exists());
}

#[test]
fn litefs_restores_what_litestream_replicated() {
    let Some(ls) = litestream() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let replica = dir.path().join("replica");
    let sq = |sql: &str| {
        let o = Command::new("sqlite3").arg(&src).arg(sql).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    sq(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
        WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<500)
        INSERT INTO t SELECT i, randomblob(i % 700) FROM c;",
    );
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n      sync-interval: 200ms\n",
            src.display(),
            replica.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("litestream.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = litefs_fuse_tests::cluster::Reaped::spawn(
        Command::new(&ls)
            .args(["replicate", "-config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f),
    );
    std::thread::sleep(Duration::from_millis(1000));
    for b in 0..4 {
        sq(&format!(
            "BEGIN IMMEDIATE; INSERT INTO t(v) VALUES (randomblob(4000)); UPDATE t SET v = randomblob(10) WHERE id % 13 = {b}; DELETE FROM t WHERE id % 17 = {b}; COMMIT;"
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "litestream did not stop:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sq("PRAGMA wal_checkpoint(TRUNCATE);");
    let want = std::fs::read(&src).unwrap();
    let out = dir.path().join("restored.db");
    let o = litefs_restore(&replica, &out, &[]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let got = std::fs::read(&out).unwrap();
    assert!(
        got == want,
        "litefs restore of a litestream replica: {} bytes, source {} bytes, not identical",
        got.len(),
        want.len()
    );
}

#[test]
fn an_unwritable_backup_path_stops_the_mount_with_a_clear_error() {
    if !require_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let cfg = dir.path().join("litefs.yml");
    std::fs::create_dir_all(dir.path().join("mnt")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "fuse:\n  dir: {0}/mnt\ndata:\n  dir: {0}/data\nhttp:\n  addr: \"127.0.0.1:0\"\nlease:\n  type: static\n  candidate: true\nbackup:\n  type: file\n  path: {1}/sub\n",
            dir.path().display(),
            file.display()
        ),
    )
    .unwrap();
    let o = run_bounded(
        Command::new(litefs_bin())
            .arg("mount")
            .arg("-config")
            .arg(&cfg),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "mounted with an unusable backup path");
    assert!(
        err.contains("backup.path"),
        "the setting is not named: {err}"
    );
    assert!(
        !litefs_fuse_tests::is_mounted(&dir.path().join("mnt")),
        "left a mount behind"
    );
}

/// An empty node (data wiped) with a backup comes back from it before it
/// takes its first write, at the backup's TXID, and the backup then goes
/// on from there without a new snapshot.
#[test]
fn an_empty_node_restores_from_its_backup_on_start() {
    if !require_fuse() {
        return;
    }
    let (_bk, mut n, db, root) = backed_up_node("");
    workload(&n, db, 1, 40);
    let t = wait_backup(&n, &root, db);
    let want = image(&n, db);
    assert!(n.stop().is_some_and(|s| s.success()), "{}", n.log_text());
    std::fs::remove_dir_all(&n.data).unwrap();
    n.spawn();
    // The mount comes up before the election has restored and promoted
    // the node; the database exists once it is primary.
    wait_one_primary(&[&n], Duration::from_secs(20));
    assert_eq!(txid_of(&pos_of(&n, db)), t, "{}", n.log_text());
    assert!(
        read_file(&n.path(db)).unwrap() == want,
        "the restored database differs"
    );
    assert!(n.log_text().contains("restored from the backup on start"));
    sql(&n.path(db), "INSERT INTO t(k, v) VALUES (-1, 'after');");
    let t2 = wait_backup(&n, &root, db);
    assert_eq!(t2, t + 1);
    let next = root
        .join("ltx/0")
        .join(format!("{:016x}-{:016x}.ltx", t + 1, t + 1));
    assert!(
        next.exists(),
        "the backup did not continue with a level-0 file: {next:?}"
    );
}

/// A `moto_server` (a local S3-compatible server) on a free port, with a
/// bucket `litefs`; killed on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn moto(dir: &Path) -> Option<Moto> {
    moto_with(dir, &[])
}

/// [`moto`] with more environment for the server.
fn moto_with(dir: &Path, env: &[(&str, &str)]) -> Option<Moto> {
    let bin = tool("MOTO_SERVER_BIN", "moto_server")?;
    let port = litefs_fuse_tests::free_port();
    let log = std::fs::File::create(dir.join("moto.log")).unwrap();
    let child = Command::new(bin)
        .envs(env.iter().copied())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = litefs_fuse_tests::consul::http_request(
            &m.url,
            "PUT",
            "/litefs",
            b"",
            Duration::from_secs(5),
        );
        if r.as_ref().is_some_and(|(s, _)| *s == 200) {
            return Some(m);
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not start: {r:?}\n{}",
            std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same as the file backend, in an S3 bucket (moto_server): both
/// `litefs restore s3://...` and the real `litestream restore` (with an
/// S3 replica config) rebuild the database byte for byte.
#[test]
fn s3_backups_restore_with_litestream_and_litefs() {
    if !require_fuse() {
        return;
    }
    let Some(ls) = litestream() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = moto(dir.path()) else { return };
    let n = Node::start(&format!(
        "backup:\n  type: s3\n  bucket: litefs\n  path: backups\n  endpoint: {}\n  region: us-east-1\n  access-key-id: test\n  secret-access-key: test\n  sync-interval: 100ms\n",
        s3.url
    ));
    wait_one_primary(&[&n], Duration::from_secs(20));
    let db = "app.db";
    sql(
        &n.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);",
    );
    workload(&n, db, 1, 40);
    std::thread::sleep(Duration::from_millis(300));
    workload(&n, db, 2, 40);
    let want_txid = txid_of(&pos_of(&n, db));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(&n, "/metrics").1;
        if m.contains(&format!("litefs_backup_txid{{db=\"{db}\"}} {want_txid}\n")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the S3 backup did not reach {want_txid:x}:\n{m}\n{}",
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = image(&n, db);

    let out = dir.path().join("lf.db");
    let o = run_bounded(
        Command::new(litefs_bin())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .arg("restore")
            .arg("-o")
            .arg(&out)
            .arg(format!(
                "s3://litefs/backups/{db}?endpoint={}&region=us-east-1",
                s3.url
            )),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out).unwrap() == want,
        "litefs restore from S3 differs"
    );

    let cfg = dir.path().join("litestream.yml");
    let dbpath = dir.path().join("app.db");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: litefs\n      path: backups/{db}\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: test\n      secret-access-key: test\n",
            dbpath.display(),
            s3.url
        ),
    )
    .unwrap();
    let out2 = dir.path().join("ls.db");
    let o = run_bounded(
        Command::new(&ls)
            // Litestream's AWS SDK setup fails with a custom CA bundle
            // ("unable to add custom RootCAs"); plain HTTP needs none.
            .env_remove("AWS_CA_BUNDLE")
            .args(["restore", "-config"])
            .arg(&cfg)
            .arg("-o")
            .arg(&out2)
            .arg(&dbpath),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "litestream restore from S3: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(&out2).unwrap() == want,
        "litestream restore from S3 differs"
    );
    eprintln!("S3 backup at TXID {want_txid:x} restored byte for byte by both tools");

    // A bucket that does not exist: an empty node cannot check its backup
    // for a restore, so it does not become primary (it retries), and says
    // why, naming the bucket.
    let bad = Node::start(&format!(
        "backup:\n  type: s3\n  bucket: missing-bucket\n  endpoint: {}\n  access-key-id: test\n  secret-access-key: test\n  sync-interval: 100ms\n",
        s3.url
    ));
    wait_log_line(
        &bad,
        &["not becoming the primary", "missing-bucket"],
        Duration::from_secs(20),
    );
    let o = litefs_fuse_tests::sqlite3_output(&bad.path(db), "CREATE TABLE t(x);");
    assert!(
        !o.status.success(),
        "an empty node wrote without checking its backup"
    );
}

/// Credentials the bucket refuses (a moto_server that checks them once
/// the bucket exists): an empty node does not become primary and its log
/// names the settings to check; `litefs restore` fails the same way and
/// writes nothing.
#[test]
fn s3_credentials_the_bucket_refuses_are_named() {
    if !require_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = moto_with(dir.path(), &[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]) else {
        return;
    };
    let n = Node::start(&format!(
        "backup:\n  type: s3\n  bucket: litefs\n  endpoint: {}\n  access-key-id: wrong\n  secret-access-key: wrong\n  sync-interval: 100ms\n",
        s3.url
    ));
    wait_log_line(
        &n,
        &[
            "not becoming the primary",
            "InvalidAccessKeyId",
            "backup.access-key-id",
        ],
        Duration::from_secs(20),
    );
    let o = litefs_fuse_tests::sqlite3_output(&n.path("app.db"), "CREATE TABLE t(x);");
    assert!(
        !o.status.success(),
        "an empty node wrote without its backup"
    );

    let out = dir.path().join("out.db");
    let o = run_bounded(
        Command::new(litefs_bin())
            .env("AWS_ACCESS_KEY_ID", "wrong")
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .arg("restore")
            .arg("-o")
            .arg(&out)
            .arg(format!("s3://litefs/app.db?endpoint={}", s3.url)),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "restored with refused credentials");
    assert!(
        err.contains("InvalidAccessKeyId") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The files of `level` in the replica at `root`, as (min, max) TXIDs.
fn level_files(root: &Path, level: u32) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(root.join("ltx").join(level.to_string()))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let (a, b) = name.strip_suffix(".ltx")?.split_once('-')?;
                    Some((
                        u64::from_str_radix(a, 16).ok()?,
                        u64::from_str_radix(b, 16).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Both tools restore the newest state of the replica at `root` byte for
/// byte.
fn both_restore(ls: &Path, root: &Path, want: &[u8], when: &str) {
    let out = tempfile::tempdir().unwrap();
    let o = litefs_restore(root, &out.path().join("lf.db"), &[]);
    assert!(
        o.status.success(),
        "{when}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(out.path().join("lf.db")).unwrap() == want,
        "{when}: litefs restore differs"
    );
    let o = litestream_restore(ls, root, &out.path().join("ls.db"), &[]);
    assert!(
        o.status.success(),
        "{when}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(out.path().join("ls.db")).unwrap() == want,
        "{when}: litestream restore differs"
    );
}

/// Compaction through two levels, fresh snapshots and retention, as
/// Litestream does them: while writes go on, level 0 is merged into level
/// 1 and level 1 into level 2, new snapshots are written and old ones
/// deleted with every file only they needed; at every point both tools
/// restore the newest state byte for byte; once the writes stop, the
/// backup settles to one snapshot and the newest file of each level.
#[test]
fn compaction_levels_snapshots_and_retention() {
    if !require_fuse() {
        return;
    }
    let Some(ls) = litestream() else { return };
    let (_bk, n, db, root) = backed_up_node(
        "  levels:\n    - interval: 300ms\n    - interval: 900ms\n  snapshot:\n    interval: 1500ms\n    retention: 2500ms\n  l0-retention: 0s\n",
    );
    for chunk in 0..12 {
        workload(&n, db, 1 + chunk, 10);
        std::thread::sleep(Duration::from_millis(300));
    }
    let w = wait_backup(&n, &root, db);
    let want = image(&n, db);
    // Mid-way: whatever mix of snapshots and levels is there now.
    both_restore(&ls, &root, &want, "with writes just stopped");
    assert!(!level_files(&root, 2).is_empty(), "level 2 never written");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let levels: Vec<Vec<(u64, u64)>> = (0..=2).map(|l| level_files(&root, l)).collect();
        let snaps = level_files(&root, 9);
        let settled = snaps == [(1, w)] && levels.iter().all(|l| l.len() == 1 && l[0].1 == w);
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backup did not settle at {w:x}: L0-2 {levels:?}, L9 {snaps:?}\n{}",
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        n.log_text().contains("backup snapshot written"),
        "no periodic snapshot logged"
    );
    both_restore(&ls, &root, &want, "settled");
}
