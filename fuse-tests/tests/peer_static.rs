//! Mixed clusters with a static lease: the real LiteFS v0.5.14 next to our
//! nodes, in both directions (a LiteFS primary with our replica, our
//! primary with a LiteFS replica): every journal mode, a database over
//! 64 MiB, a replica behind retention, diverged replicas (ahead, at the
//! same TXID, behind, and ahead with its own forwarded writes in the
//! primary's history), `export`/`import` across the two binaries. Every
//! LTX file on the nodes must pass the Go `ltx verify` of v0.3.14.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    require_fuse, run_bounded, same_bytes, sql, wait_log_line, wait_same_pos, wait_same_pos_within,
};
use litefs_fuse_tests::peer::{self, go_verify, new_node, static_pair, wait_primary, Impl};
use litefs_fuse_tests::{free_port, is_mounted, primary_lease, replica_lease, Node};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The peers, or `None` (after SKIP lines) where they may be missing.
fn peers() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    if !require_fuse() {
        return None;
    }
    Some((peer::litefs_bin()?, peer::ltx_bin()?))
}

/// Checks every LTX file of `nodes` with the Go tool: our nodes' own, and
/// on a LiteFS replica of our primary the files our primary sent (LiteFS
/// stores a received file as it came).
fn verify_ours(ltx: &std::path::Path, nodes: &[&Node]) {
    for n in nodes {
        let k = go_verify(ltx, n);
        eprintln!("ltx verify: {k} files of {} ok", n.url);
    }
}

const MODES: [&str; 4] = ["DELETE", "TRUNCATE", "PERSIST", "WAL"];

fn write_some(p: &Node, db: &str, mode: &str) {
    sql(
        &p.path(db),
        &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"),
    );
    for i in 0..15 {
        sql(
            &p.path(db),
            &format!("INSERT INTO t(v) SELECT hex(randomblob(400)) FROM (SELECT 1 UNION ALL SELECT 2) -- {i}"),
        );
    }
    sql(&p.path(db), "DELETE FROM t WHERE id % 3 = 0; VACUUM;");
    sql(&p.path(db), "UPDATE t SET v = 'x' WHERE id % 5 = 0;");
}

/// Same `-pos`, same rows, same bytes on both sides, for every rollback
/// journal mode and WAL, in both directions.
#[test]
fn mixed_static_pairs_replicate_every_journal_mode() {
    let Some((litefs, ltx)) = peers() else { return };
    for (pi, ri) in DIRECTIONS {
        let (p, r) = static_pair(pi, ri, &litefs, "");
        for mode in MODES {
            let db = format!("{}.db", mode.to_lowercase());
            write_some(&p, &db, mode);
        }
        for mode in MODES {
            let db = format!("{}.db", mode.to_lowercase());
            let pos = wait_same_pos(&p, &r, &db);
            eprintln!("{} -> {}: {db} at {}", pi.name(), ri.name(), pos.trim());
            assert_eq!(
                sql(&r.path(&db), "SELECT count(*), sum(length(v)) FROM t;"),
                sql(&p.path(&db), "SELECT count(*), sum(length(v)) FROM t;"),
                "{db}: {} primary, {} replica",
                pi.name(),
                ri.name()
            );
            same_bytes(&p, &r, &db);
        }
        verify_ours(&ltx, &[&p, &r]);
    }
}

/// Both directions of a mixed pair: (primary, replica).
const DIRECTIONS: [(Impl, Impl); 2] = [(Impl::Ours, Impl::LiteFs), (Impl::LiteFs, Impl::Ours)];

/// `data:` keys that make retention remove an LTX file seconds after it
/// was written (the newest of each database is always kept); both
/// implementations accept them.
const SHORT_RETENTION: &str = "retention: 2s\nretention-monitor-interval: 1s";

/// The TXID of a `-pos` text (`hex16/hex16`).
fn txid(pos: &str) -> u64 {
    u64::from_str_radix(&pos.trim()[..16], 16).unwrap_or_else(|e| panic!("-pos {pos:?}: {e}"))
}

/// Waits (`within` at most) until `n` no longer holds an LTX file of `db`
/// that covers `txid`: a replica that needs it next cannot be served from
/// files any more.
fn wait_ltx_gone(n: &Node, db: &str, txid: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ranges = n.ltx_ranges(db);
        if !ranges.iter().any(|&(a, b)| a <= txid && txid <= b) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{db}: retention kept the file of TXID {txid} for {within:?}: {ranges:?}\n{}",
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The LTX file of `db` on replica `r` that starts at TXID 1 and was
/// written after `since`: the snapshot the replica applied since then
/// (both implementations store a received snapshot under its own range
/// and remove every other file). Panics, with the replica's files and
/// log, when there is none.
fn snapshot_since(r: &Node, db: &str, since: SystemTime) -> (u64, u64) {
    let dir = r.ltx_dir(db);
    let fresh = |&(a, b): &(u64, u64)| {
        let name = format!("{a:016x}-{b:016x}.ltx");
        a == 1
            && std::fs::metadata(dir.join(name))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
    };
    let ranges = r.ltx_ranges(db);
    ranges.iter().copied().find(fresh).unwrap_or_else(|| {
        panic!(
            "{db}: the replica applied no snapshot since it restarted; its LTX files: {ranges:?}\n{}",
            r.log_text()
        )
    })
}

/// Stops `n` (SIGTERM) and waits until its mount is gone; returns when.
fn stop(n: &mut Node) -> SystemTime {
    n.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while is_mounted(&n.mount) {
        assert!(
            Instant::now() < deadline,
            "{}: the mount outlived the daemon by 20 s\n{}",
            n.url,
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    SystemTime::now()
}

/// A digest of the rows of table `t` (`sha3_query` of the sqlite3 shell).
fn rows(db: &Path) -> String {
    sql(db, "SELECT hex(sha3_query('SELECT * FROM t ORDER BY 1'));")
        .trim()
        .to_owned()
}

/// A database of more than 64 MiB (WAL mode, one ~72 MB transaction), on
/// a primary whose retention already removed its first LTX files, is
/// bootstrapped on a new replica by one snapshot: same `-pos`, same bytes,
/// `integrity_check` ok, in both directions. Above 64 MiB our code takes
/// other paths: a mapped snapshot file, a spilled received frame, chunked
/// pieces.
#[test]
fn mixed_large_database_bootstraps_by_snapshot() {
    let Some((litefs, ltx)) = peers() else { return };
    for (pi, ri) in DIRECTIONS {
        let started = Instant::now();
        let mut p = new_node(
            pi,
            &litefs,
            free_port(),
            &primary_lease("primary-1"),
            "",
            SHORT_RETENTION,
        );
        p.spawn();
        wait_primary(&p);
        let db = "large.db";
        sql(
            &p.path(db),
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
        );
        sql(
            &p.path(db),
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<72)
             INSERT INTO t(v) SELECT randomblob(1000000) FROM s;",
        );
        sql(&p.path(db), "INSERT INTO t(v) VALUES ('last');");
        let n = txid(&p.sync_pos(db));
        // Our primary would serve a new replica its first file while it
        // has it (LiteFS always snapshots from TXID 1): let it go.
        wait_ltx_gone(&p, db, 1, Duration::from_secs(60));
        let since = SystemTime::now();
        let mut r = new_node(
            ri,
            &litefs,
            free_port(),
            &replica_lease("primary-1", &p.url),
            "",
            SHORT_RETENTION,
        );
        r.spawn();
        let pos = wait_same_pos_within(&p, &r, db, Duration::from_secs(180));
        assert_eq!(
            snapshot_since(&r, db, since),
            (1, n),
            "{db}: one snapshot to the primary's TXID"
        );
        same_bytes(&p, &r, db);
        let size = std::fs::metadata(r.path(db)).unwrap().len();
        assert!(size > 64 << 20, "{db}: {size} bytes, not above 64 MiB");
        eprintln!(
            "{} -> {}: {db} ({size} bytes) at {} by snapshot in {:?}",
            pi.name(),
            ri.name(),
            pos.trim(),
            started.elapsed()
        );
        // And a transaction of more than 64 MiB through the stream: one
        // LTX file read from disk on the primary, received whole on the
        // replica. It is the newest file, so retention keeps it for the
        // verification below.
        sql(
            &p.path(db),
            "UPDATE t SET v = randomblob(1000000) WHERE v != 'last';",
        );
        let pos = wait_same_pos_within(&p, &r, db, Duration::from_secs(180));
        assert_eq!(txid(&pos), n + 1, "{db}: one more transaction");
        let newest = p.ltx_dir(db).join(format!("{0:016x}-{0:016x}.ltx", n + 1));
        let len = std::fs::metadata(&newest).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 64 << 20,
            "{}: {len} bytes, not above 64 MiB",
            newest.display()
        );
        same_bytes(&p, &r, db);
        eprintln!(
            "{} -> {}: {db} at {} after a {len}-byte LTX file in {:?}",
            pi.name(),
            ri.name(),
            pos.trim(),
            started.elapsed()
        );
        verify_ours(&ltx, &[&p, &r]);
    }
}

/// A replica that was down while retention removed the LTX file it needs
/// next gets a snapshot when it comes back and converges: same `-pos`,
/// same bytes, for a WAL and a rollback-journal database, in both
/// directions.
#[test]
fn mixed_replica_behind_retention_gets_a_snapshot() {
    let Some((litefs, ltx)) = peers() else { return };
    let dbs = [("wal.db", "WAL"), ("delete.db", "DELETE")];
    for (pi, ri) in DIRECTIONS {
        let started = Instant::now();
        let (p, mut r) = static_pair(pi, ri, &litefs, SHORT_RETENTION);
        for (db, mode) in dbs {
            write_some(&p, db, mode);
        }
        let mut left_at = Vec::new();
        for (db, _) in dbs {
            left_at.push(txid(&wait_same_pos(&p, &r, db)));
        }
        let since = stop(&mut r);
        for i in 0..5 {
            for (db, _) in dbs {
                sql(
                    &p.path(db),
                    &format!("INSERT INTO t(v) VALUES ('while away {i}');"),
                );
            }
        }
        for ((db, _), &at) in dbs.iter().zip(&left_at) {
            wait_ltx_gone(&p, db, at + 1, Duration::from_secs(60));
        }
        eprintln!(
            "{} -> {}: retention removed the files the replica needs after {:?}",
            pi.name(),
            ri.name(),
            started.elapsed()
        );
        r.spawn();
        for ((db, _), &at) in dbs.iter().zip(&left_at) {
            let pos = wait_same_pos_within(&p, &r, db, Duration::from_secs(60));
            let n = txid(&pos);
            assert_eq!(
                n,
                at + 5,
                "{db}: five transactions while the replica was away"
            );
            assert_eq!(
                snapshot_since(&r, db, since),
                (1, n),
                "{db}: a snapshot to the primary's TXID"
            );
            same_bytes(&p, &r, db);
            assert_eq!(rows(&r.path(db)), rows(&p.path(db)), "{db}");
            if pi == Impl::LiteFs {
                wait_log_line(
                    &p,
                    &[&format!(
                        "transaction file for txid {:016x} no longer available, writing snapshot",
                        at + 1
                    )],
                    Duration::from_secs(10),
                );
            }
            eprintln!(
                "{} -> {}: {db} from {at:016x} to {}",
                pi.name(),
                ri.name(),
                pos.trim()
            );
        }
        verify_ours(&ltx, &[&p, &r]);
        eprintln!("{} -> {}: {:?}", pi.name(), ri.name(), started.elapsed());
    }
}

/// Diverged databases: `(name, journal mode, transactions the replica
/// writes as a primary of its own, transactions the real primary writes
/// meanwhile)`: the replica comes back ahead of the primary, at its TXID
/// with another checksum, and behind it on another history.
const DIVERGED: [(&str, &str, u64, u64); 3] = [
    ("ahead.db", "WAL", 3, 1),
    ("same.db", "DELETE", 2, 2),
    ("behind.db", "TRUNCATE", 1, 3),
];

/// A replica restarted as a static primary of its own writes rows the
/// primary never saw; started again as a replica, it gets a snapshot for
/// each database (whether its history ends ahead of the primary's, at the
/// same TXID, or behind it) and converges to the primary's bytes, keeping
/// none of its own rows or LTX files. Both directions.
#[test]
fn mixed_diverged_replica_gets_a_snapshot() {
    let Some((litefs, ltx)) = peers() else { return };
    for (pi, ri) in DIRECTIONS {
        let started = Instant::now();
        let (p, mut r) = static_pair(pi, ri, &litefs, "");
        for (db, mode, ..) in DIVERGED {
            sql(
                &p.path(db),
                &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, who TEXT);"),
            );
            for i in 0..3 {
                sql(
                    &p.path(db),
                    &format!("INSERT INTO t(v, who) VALUES (hex(randomblob(300)), 'primary {i}');"),
                );
            }
        }
        let mut base = Vec::new();
        for (db, ..) in DIVERGED {
            base.push(txid(&wait_same_pos(&p, &r, db)));
        }

        // The replica's data directory as a primary of its own.
        stop(&mut r);
        let as_replica = std::fs::read_to_string(&r.config).unwrap();
        let lease = replica_lease("primary-1", &p.url);
        assert!(as_replica.contains(&lease), "{as_replica}");
        std::fs::write(
            &r.config,
            as_replica.replace(&lease, &primary_lease("diverged-1")),
        )
        .unwrap();
        r.spawn();
        wait_primary(&r);
        let mut own = Vec::new();
        for (&(db, _, theirs, _), &b) in DIVERGED.iter().zip(&base) {
            for i in 0..theirs {
                sql(
                    &r.path(db),
                    &format!(
                        "INSERT INTO t(v, who) VALUES (hex(randomblob(200)), 'diverged {i}');"
                    ),
                );
            }
            assert_eq!(
                txid(&r.sync_pos(db)),
                b + theirs,
                "{db} on the diverged node"
            );
            own.push(own_files(&r, db, b));
        }
        let since = stop(&mut r);
        std::fs::write(&r.config, &as_replica).unwrap();

        for (&(db, _, theirs, ours), &b) in DIVERGED.iter().zip(&base) {
            for i in 0..ours {
                sql(&p.path(db), &format!("BEGIN; UPDATE t SET v = 'p{i}' WHERE id % 4 = {i}; INSERT INTO t(v, who) VALUES ('x', 'primary'); COMMIT;"));
            }
            let (want, got) = (b + ours, txid(&p.sync_pos(db)));
            assert_eq!(got, want, "{db} on the primary");
            eprintln!(
                "{db}: the replica comes back at TXID {}, the primary is at {got}",
                b + theirs
            );
        }
        r.spawn();
        for (&(db, ..), own) in DIVERGED.iter().zip(&own) {
            let pos = wait_same_pos_within(&p, &r, db, Duration::from_secs(60));
            let snap = snapshot_since(&r, db, since);
            same_bytes(&p, &r, db);
            assert_eq!(rows(&r.path(db)), rows(&p.path(db)), "{db}");
            assert_eq!(
                sql(
                    &r.path(db),
                    "SELECT count(*) FROM t WHERE who LIKE 'diverged%';"
                )
                .trim(),
                "0",
                "{db}: the replica kept rows of its own"
            );
            for (name, bytes) in own {
                let kept = std::fs::read(r.ltx_dir(db).join(name)).is_ok_and(|b| &b == bytes);
                assert!(!kept, "{db}: the replica kept its own LTX file {name}");
            }
            eprintln!(
                "{} -> {}: {db} at {} after snapshot {snap:?}",
                pi.name(),
                ri.name(),
                pos.trim()
            );
        }
        if pi == Impl::LiteFs {
            // Why LiteFS sent each snapshot.
            let [ahead, same, behind] = [0, 1, 2].map(|i| base[i] + DIVERGED[i].2);
            for line in [
                format!("client transaction id ({ahead:016x}) exceeds primary transaction id"),
                format!("client transaction id ({same:016x}) caught up but checksum is mismatched"),
                format!(
                    "client preapply checksum mismatch for txid {:016x}",
                    behind + 1
                ),
            ] {
                wait_log_line(&p, &[&line], Duration::from_secs(10));
            }
        }
        verify_ours(&ltx, &[&p, &r]);
        eprintln!("{} -> {}: {:?}", pi.name(), ri.name(), started.elapsed());
    }
}

/// The LTX files (name, bytes) of `db` on `n` past TXID `after`.
fn own_files(n: &Node, db: &str, after: u64) -> Vec<(String, Vec<u8>)> {
    n.ltx_ranges(db)
        .into_iter()
        .filter(|&(a, _)| a > after)
        .map(|(a, b)| {
            let name = format!("{a:016x}-{b:016x}.ltx");
            let bytes = std::fs::read(n.ltx_dir(db).join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Runs `bin` (`litefs export|import ...`) and panics with its output
/// unless it succeeds.
fn transfer(bin: &Path, args: &[&str], file: &Path) {
    let out = run_bounded(
        Command::new(bin).args(args).arg(file),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{} {args:?} {}: {}{}",
        bin.display(),
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `litefs export` of each implementation reads a database from the other
/// implementation's primary while its last transactions are still in the
/// WAL; `litefs import` of each implementation writes that file into the
/// other implementation's primary, as a new database and over an existing
/// one whose WAL is not checkpointed. The imported database holds the
/// file's rows and its replica converges to the same bytes.
#[test]
fn mixed_export_and_import_across_implementations() {
    let Some((litefs, ltx)) = peers() else { return };
    let ours = litefs_fuse_tests::litefs_bin();
    let bin = |i: Impl| match i {
        Impl::Ours => ours.clone(),
        Impl::LiteFs => litefs.clone(),
    };
    let pairs: Vec<(Node, Node)> = DIRECTIONS
        .iter()
        .map(|&(pi, ri)| static_pair(pi, ri, &litefs, ""))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    // src.db on each primary: WAL mode, the newest pages left in the WAL
    // (no checkpoint when the shell closes).
    let mut exports = Vec::new();
    for (k, (p, r)) in pairs.iter().enumerate() {
        let keep_wal = |q: &str| {
            let out = run_bounded(
                Command::new(litefs_fuse_tests::tool("SQLITE3_BIN", "sqlite3").unwrap())
                    .args([
                        "-cmd",
                        ".timeout 10000",
                        "-cmd",
                        ".dbconfig no_ckpt_on_close on",
                    ])
                    .arg(p.path("src.db"))
                    .arg(q),
                Duration::from_secs(60),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        keep_wal(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<2000)
             INSERT INTO t(v, origin) SELECT hex(randomblob(100)), '{}' FROM s;",
            DIRECTIONS[k].0.name()
        ));
        keep_wal("PRAGMA wal_autocheckpoint=0; DELETE FROM t WHERE id % 7 = 0; UPDATE t SET v = 'updated' WHERE id % 11 = 0;");
        let wal = std::fs::metadata(p.path("src.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            wal > 0,
            "src.db on the {} primary: nothing left in the WAL",
            DIRECTIONS[k].0.name()
        );
        wait_same_pos(p, r, "src.db");
        // The replica's copy: the database with the WAL folded in.
        let expected = std::fs::read(r.path("src.db")).unwrap();
        // Exported by the other implementation's binary.
        let other = bin(DIRECTIONS[k].1);
        let file = tmp.path().join(format!("export-{k}.db"));
        transfer(
            &other,
            &["export", "-url", &p.url, "-name", "src.db"],
            &file,
        );
        assert_eq!(sql(&file, "PRAGMA integrity_check;").trim(), "ok");
        // (Read on the replica: a reader closing on the primary would
        // checkpoint its WAL.)
        assert_eq!(
            rows(&file),
            rows(&r.path("src.db")),
            "export of the {} primary",
            DIRECTIONS[k].0.name()
        );
        assert!(
            std::fs::read(&file).unwrap() == expected,
            "the export by {} of the {} primary's src.db differs from the database",
            DIRECTIONS[k].1.name(),
            DIRECTIONS[k].0.name()
        );
        exports.push(file);
    }
    // Each export into the other implementation's primary: by the other
    // implementation's binary as a new database and over src.db (its WAL
    // not checkpointed), by the primary's own binary as a new database.
    for (k, (p, r)) in pairs.iter().enumerate() {
        let file = &exports[1 - k];
        let (p_impl, r_impl) = DIRECTIONS[k];
        let foreign = if p_impl == Impl::Ours {
            Impl::LiteFs
        } else {
            Impl::Ours
        };
        let names = ["imported.db", "src.db", "own.db"];
        let wal = std::fs::metadata(p.path("src.db-wal")).map_or(0, |m| m.len());
        assert!(
            wal > 0,
            "src.db on the {} primary: its WAL was checkpointed",
            p_impl.name()
        );
        for (imp, name) in [foreign, foreign, p_impl].into_iter().zip(names) {
            transfer(&bin(imp), &["import", "-url", &p.url, "-name", name], file);
            assert_eq!(
                rows(&p.path(name)),
                rows(file),
                "{name} imported by {} into the {} primary",
                imp.name(),
                p_impl.name()
            );
        }
        for name in names {
            let pos = wait_same_pos(p, r, name);
            same_bytes(p, r, name);
            assert_eq!(
                rows(&r.path(name)),
                rows(file),
                "{name} on the {} replica",
                r_impl.name()
            );
            eprintln!(
                "{} -> {}: {name} at {}",
                p_impl.name(),
                r_impl.name(),
                pos.trim()
            );
        }
    }
    for (p, r) in &pairs {
        verify_ours(&ltx, &[p, r]);
    }
}

/// Runs `sql` on replica `r` under the halt lock (`<bin> run
/// -with-halt-lock-on`, `bin` being the replica's own implementation), so
/// the transaction is forwarded to the primary and its LTX file there
/// names `r`'s node ID.
fn forwarded(bin: &Path, p: &Node, r: &Node, db: &str, q: &str) {
    let sqlite = litefs_fuse_tests::tool("SQLITE3_BIN", "sqlite3").unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "-url", &r.url, "-with-halt-lock-on"])
        .arg(r.path(db))
        .arg("--")
        .arg(sqlite)
        .args(["-bail", "-cmd", ".timeout 10000"])
        .arg(r.path(db))
        .arg(q);
    // A hang fails with both nodes' logs too.
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_bounded(&mut cmd, Duration::from_secs(60))
    }));
    let (ok, text) = match &out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(_) => (false, "no exit in 60 s".to_owned()),
    };
    if !ok {
        // LiteFS shows its lock states under /debug/vars.
        let locks = if p.peer {
            litefs_fuse_tests::consul::http_request(
                &p.url,
                "GET",
                "/debug/vars",
                b"",
                Duration::from_secs(5),
            )
            .map(|(_, body)| body)
            .unwrap_or_default()
        } else {
            String::new()
        };
        panic!(
            "forwarded write on {}: {text}\nreplica log:\n{}\nprimary log:\n{}\n{locks}",
            r.url,
            r.log_text(),
            p.log_text()
        );
    }
}

/// How many replica streams `p`'s log says it has accepted (ours: "replica
/// connected", LiteFS: "stream connected").
fn connections(p: &Node) -> usize {
    p.log_text()
        .lines()
        .filter(|l| l.contains("replica connected") || l.contains("stream connected"))
        .count()
}

/// Waits (30 s at most) until `p` has accepted `n` replica streams.
fn wait_connections(p: &Node, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections(p) < n {
        assert!(
            Instant::now() < deadline,
            "no replica connected to {} in 30 s:\n{}",
            p.url,
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies directory `from` to `to` (`cp -a`), `to` removed first.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let out = run_bounded(
        Command::new("cp").arg("-a").arg(from).arg(to),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A replica that wrote through the primary (halt lock) and is then ahead
/// of it, while still running (the primary came back from a copy of its
/// data directory taken before the replica's last forwarded write): the
/// primary's history holds an LTX file with the replica's node ID, which
/// the replica discards as its own. Replaying that history from TXID 1
/// would leave the replica short of the primary for good; it must get a
/// snapshot and converge, its newer row gone. Both directions.
#[test]
fn mixed_replica_ahead_with_its_own_forwarded_writes_gets_a_snapshot() {
    let Some((litefs, ltx)) = peers() else { return };
    let db = "fwd.db";
    for (pi, ri) in DIRECTIONS {
        let started = Instant::now();
        let run_bin = match ri {
            Impl::Ours => litefs_fuse_tests::litefs_bin(),
            Impl::LiteFs => litefs.clone(),
        };
        let (mut p, r) = static_pair(pi, ri, &litefs, "");
        sql(
            &p.path(db),
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t(v) VALUES ('primary');",
        );
        wait_same_pos(&p, &r, db);
        forwarded(
            &run_bin,
            &p,
            &r,
            db,
            "INSERT INTO t(v) VALUES ('forwarded 1');",
        );
        let kept = txid(&wait_same_pos(&p, &r, db));
        // The primary's data directory as it is now, the replica's
        // transaction its newest.
        stop(&mut p);
        let copy = r.dir.path().join("primary-data-copy");
        copy_dir(&p.data, &copy);
        let before = connections(&p);
        p.spawn();
        // A replica takes the halt lock only while it follows a primary.
        wait_connections(&p, before + 1);
        forwarded(
            &run_bin,
            &p,
            &r,
            db,
            "INSERT INTO t(v) VALUES ('forwarded 2');",
        );
        let ahead = txid(&wait_same_pos(&p, &r, db));
        assert_eq!(ahead, kept + 1, "{db}: one more forwarded transaction");

        // The primary comes back from the copy: one transaction behind
        // the replica, which kept running.
        stop(&mut p);
        copy_dir(&copy, &p.data);
        let since = SystemTime::now();
        p.spawn();
        assert_eq!(txid(&p.sync_pos(db)), kept, "{db} on the restored primary");
        let pos = wait_same_pos_within(&p, &r, db, Duration::from_secs(60));
        let snap = snapshot_since(&r, db, since);
        same_bytes(&p, &r, db);
        assert_eq!(
            sql(&r.path(db), "SELECT group_concat(v, ',') FROM t;").trim(),
            "primary,forwarded 1",
            "{db} on the replica"
        );
        eprintln!(
            "{} -> {}: {db} at {} after snapshot {snap:?} in {:?}",
            pi.name(),
            ri.name(),
            pos.trim(),
            started.elapsed()
        );
        verify_ours(&ltx, &[&p, &r]);
    }
}
