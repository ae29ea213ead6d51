//! Consul leases (issue 6) end to end: a real `consul agent -dev` per test,
//! three (or more) real `litefs mount` processes on 127.0.0.1 electing a
//! primary through it, and the `sqlite3` CLI and rusqlite as clients.
//!
//! Elections, fail-over after SIGKILL, hand-off on SIGTERM, `/promote`, a
//! primary cut off from Consul, a diverged old primary, and two clusters
//! on one agent. Every wait is bounded; measured durations are printed
//! (`cargo test -- --nocapture`).
//!
//! Without Consul (`$CONSUL_BIN` or `.deps/bin/consul`) or FUSE the tests
//! print SKIP and pass, unless `LITEFS_REQUIRE_DEPS=1` or `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    pos_of, require_fuse, same_bytes, sql, wait_same_pos, wait_same_pos_within,
};
use litefs_fuse_tests::consul::{
    info, json_str, logs, new_consul_node, promote, read_mount_file, signal_node,
    start_consul_node, tail, try_sql, utc_now, wait_one_primary, wait_primary_file, Agent,
    LOCK_DELAY, TTL,
};
use litefs_fuse_tests::{is_mounted, Node};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The longest a fail-over after SIGKILL may take: Consul invalidates an
/// unrenewed session at most two TTLs after its last renewal, the key then
/// stays locked for lock-delay, the new primary needs a moment; plus 5 s
/// for a loaded 2-CPU CI machine.
fn failover_limit() -> Duration {
    2 * TTL + LOCK_DELAY + Duration::from_secs(2) + Duration::from_secs(5)
}

/// The longest a first election on a fresh agent may take.
const ELECTION: Duration = Duration::from_secs(30);

/// An agent, or `None` when the test is skipped (no FUSE or no Consul).
fn setup() -> Option<Agent> {
    if !require_fuse() {
        return None;
    }
    Agent::start()
}

/// The hostname of node `i` (0-based) of [`candidates`].
fn host(i: usize) -> String {
    format!("node-{}", i + 1)
}

/// `n` candidates `node-1`... of the cluster under `key`.
fn candidates(agent: &Agent, key: &str, n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| start_consul_node(agent, key, &host(i), true, ""))
        .collect()
}

fn refs(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().collect()
}

/// The indexes of `0..n` other than `i`.
fn others(i: usize, n: usize) -> Vec<usize> {
    (0..n).filter(|&k| k != i).collect()
}

/// Runs `sql` on `db` of `n` until it succeeds (a new primary may take a
/// moment to accept writes); how long it took. Panics after `within`.
fn write_until_ok(n: &Node, db: &str, sql: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match try_sql(&n.path(db), sql, Duration::from_secs(5)) {
            Ok(_) => return start.elapsed(),
            Err(e) => assert!(
                start.elapsed() < within,
                "{db} on {}: writes still fail after {within:?}: {e}\n{}",
                n.url,
                logs(&[n])
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `id`s of table `t` of `db` on `n`.
fn ids(n: &Node, db: &str) -> Vec<i64> {
    sql(&n.path(db), "SELECT id FROM t ORDER BY id;")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Opens `path` read-write without creating it (a vanished mount must not
/// turn into a fresh database in the empty directory under it).
fn open_rw(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(busy)?;
    Ok(c)
}

/// A node a writer may write to: its API and its database path.
#[derive(Clone)]
struct Target {
    url: String,
    mount: PathBuf,
    db: PathBuf,
}

fn target(n: &Node, db: &str) -> Target {
    Target {
        url: n.url.clone(),
        mount: n.mount.clone(),
        db: n.path(db),
    }
}

/// What a writer thread did.
struct WriterReport {
    /// `(id, target index, when)` of every insert whose commit succeeded.
    committed: Vec<(i64, usize, Instant)>,
    /// The id of the insert in progress when the writer stopped on an
    /// error, if it did.
    failed_id: Option<i64>,
    /// The longest time between two successful commits (or between the
    /// last one and the end).
    max_gap: Duration,
    /// When that longest gap ended.
    max_gap_end: Instant,
    /// The first errors seen, and how many there were.
    errors: Vec<String>,
    error_count: usize,
}

/// A thread inserting rows `first_id + 1`, `+ 2`... into `t` with
/// rusqlite, one transaction each, about one every millisecond.
struct Writer {
    stop: Arc<AtomicBool>,
    /// Commits so far, per target.
    commits: Arc<Vec<AtomicUsize>>,
    rx: mpsc::Receiver<WriterReport>,
}

impl Writer {
    /// With `follow`, the writer writes to whichever target says it is
    /// primary, moving on after each error, until stopped; without it, it
    /// writes to `targets[0]` and stops at the first error.
    fn spawn(targets: Vec<Target>, first_id: i64, follow: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let commits: Arc<Vec<AtomicUsize>> =
            Arc::new(targets.iter().map(|_| AtomicUsize::new(0)).collect());
        let (tx, rx) = mpsc::channel();
        let (stop2, commits2) = (stop.clone(), commits.clone());
        std::thread::spawn(move || {
            let _ = tx.send(write_loop(&targets, first_id, follow, &stop2, &commits2));
        });
        Writer { stop, commits, rx }
    }

    fn commits(&self, target: usize) -> usize {
        self.commits[target].load(Ordering::SeqCst)
    }

    fn total(&self) -> usize {
        self.commits.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    /// Waits until `target` has `n` commits from this writer.
    fn wait_commits(&self, target: usize, n: usize, within: Duration, nodes: &[&Node]) {
        let deadline = Instant::now() + within;
        while self.commits(target) < n {
            assert!(
                Instant::now() < deadline,
                "the writer made {} commits on target {target} in {within:?}, want {n}\n{}",
                self.commits(target),
                logs(nodes)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the writer and returns its report (it must end within `limit`).
    fn finish(self, limit: Duration) -> WriterReport {
        self.stop.store(true, Ordering::SeqCst);
        self.rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("the writer did not stop within {limit:?} (a hung write?)"))
    }
}

/// Counts an error and keeps the first 20.
fn note(r: &mut WriterReport, e: String) {
    r.error_count += 1;
    if r.errors.len() < 20 {
        r.errors.push(e);
    }
}

fn write_loop(
    targets: &[Target],
    first_id: i64,
    follow: bool,
    stop: &AtomicBool,
    commits: &[AtomicUsize],
) -> WriterReport {
    let mut r = WriterReport {
        committed: Vec::new(),
        failed_id: None,
        max_gap: Duration::ZERO,
        max_gap_end: Instant::now(),
        errors: Vec::new(),
        error_count: 0,
    };
    let mut id = first_id;
    let mut conn: Option<(usize, Connection)> = None;
    let mut last_ok = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            let pick = if follow {
                targets.iter().position(|t| {
                    is_mounted(&t.mount) && info(&t.url).is_some_and(|i| i.is_primary)
                })
            } else {
                Some(0)
            };
            match pick.map(|k| (k, open_rw(&targets[k].db, Duration::from_secs(1)))) {
                Some((k, Ok(c))) => conn = Some((k, c)),
                Some((k, Err(e))) => {
                    note(&mut r, format!("open on target {k}: {e}"));
                    if !follow {
                        r.failed_id = Some(id + 1);
                        break;
                    }
                }
                None => {}
            }
            if conn.is_none() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let Some((k, c)) = conn.as_ref() else {
            continue;
        };
        let k = *k;
        id += 1;
        match c.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![id, format!("w{id}")],
        ) {
            Ok(_) => {
                let now = Instant::now();
                if now - last_ok > r.max_gap {
                    r.max_gap = now - last_ok;
                    r.max_gap_end = now;
                }
                last_ok = now;
                r.committed.push((id, k, now));
                commits[k].fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                note(&mut r, format!("insert {id} on target {k}: {e}"));
                conn = None;
                if !follow {
                    r.failed_id = Some(id);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let now = Instant::now();
    if now - last_ok > r.max_gap {
        r.max_gap = now - last_ok;
        r.max_gap_end = now;
    }
    r
}

/// The harness itself: a paused agent does not answer, a resumed one
/// does, a restarted one answers on the same port with its state gone.
#[test]
fn agent_pause_resume_restart() {
    let Some(mut agent) = Agent::start() else {
        return;
    };
    let put = |a: &Agent| a.raw("PUT", "/v1/kv/harness", b"x");
    assert_eq!(put(&agent).map(|r| r.0), Some(200));
    agent.pause();
    let t = Instant::now();
    assert_eq!(put(&agent), None, "a paused agent answered");
    eprintln!(
        "paused agent: no answer, gave up after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    agent.resume();
    assert_eq!(
        agent.raw("GET", "/v1/kv/harness?raw", b""),
        Some((200, "x".into()))
    );
    let port = agent.port();
    let t = Instant::now();
    agent.restart();
    eprintln!("agent restarted in {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(agent.port(), port);
    assert_eq!(
        agent.raw("GET", "/v1/kv/harness?raw", b"").map(|r| r.0),
        Some(404)
    );
    agent.stop();
    assert_eq!(agent.raw("GET", "/v1/status/leader", b""), None);
}

/// Three candidates elect exactly one primary (by `/info` and `.primary`);
/// its writes (WAL and DELETE databases, through the sqlite3 CLI)
/// replicate byte for byte; the replicas refuse writes.
#[test]
fn three_candidates_elect_one_primary() {
    let Some(agent) = setup() else {
        return;
    };
    let started = Instant::now();
    let nodes = candidates(&agent, "litefs/three-candidates", 3);
    let all = refs(&nodes);
    let ip = wait_one_primary(&all, ELECTION);
    eprintln!(
        "election: {} primary {:.1} s after the first node started",
        host(ip),
        started.elapsed().as_secs_f64()
    );
    let p = &nodes[ip];
    for (i, n) in nodes.iter().enumerate() {
        let inf = info(&n.url).unwrap_or_else(|| panic!("no /info from {}", n.url));
        assert!(inf.candidate, "{}: {}", n.url, inf.body);
        assert_eq!(inf.is_primary, i == ip, "{}: {}", n.url, inf.body);
    }
    assert_eq!(
        read_mount_file(p, ".primary"),
        None,
        ".primary exists on the primary"
    );
    for &i in &others(ip, 3) {
        wait_primary_file(&nodes[i], &host(ip), Duration::from_secs(20));
    }

    let (wal, del) = ("elect-wal.db", "elect-del.db");
    sql(
        &p.path(wal),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('a'), ('b');",
    );
    sql(
        &p.path(del),
        "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('a');",
    );
    sql(&p.path(wal), "INSERT INTO t(v) VALUES ('c');");
    sql(&p.path(del), "INSERT INTO t(v) VALUES ('b');");
    for &i in &others(ip, 3) {
        for db in [wal, del] {
            wait_same_pos(p, &nodes[i], db);
            same_bytes(p, &nodes[i], db);
        }
    }

    // Replicas refuse writes and nothing changes anywhere.
    let p_pos = [pos_of(p, wal), pos_of(p, del)];
    for &i in &others(ip, 3) {
        let r = &nodes[i];
        let e = try_sql(
            &r.path(del),
            "INSERT INTO t(v) VALUES ('no');",
            Duration::from_secs(10),
        )
        .expect_err("a replica accepted a DELETE-mode write");
        assert!(
            e.contains("attempt to write a readonly database"),
            "{}: {e}",
            r.url
        );
        try_sql(
            &r.path(wal),
            "INSERT INTO t(v) VALUES ('no');",
            Duration::from_secs(10),
        )
        .expect_err("a replica accepted a WAL-mode write");
        assert_eq!(sql(&r.path(wal), "SELECT count(*) FROM t;").trim(), "3");
        assert_eq!(sql(&r.path(del), "SELECT count(*) FROM t;").trim(), "2");
        assert_eq!(pos_of(r, wal), p_pos[0]);
        assert_eq!(pos_of(r, del), p_pos[1]);
    }
    assert_eq!([pos_of(p, wal), pos_of(p, del)], p_pos);
    assert_eq!(wait_one_primary(&all, Duration::from_secs(5)), ip);
}

/// SIGKILL of the primary while a rusqlite writer commits on it: another
/// candidate accepts writes within 2 x TTL + lock-delay (+ slack); it holds
/// a prefix of the writer's rows; the killed node, started again, follows
/// it as a replica and converges byte for byte.
#[test]
fn sigkill_primary_fails_over_under_load() {
    let Some(agent) = setup() else {
        return;
    };
    let mut nodes = candidates(&agent, "litefs/sigkill", 3);
    let ip = wait_one_primary(&refs(&nodes), ELECTION);
    let db = "load.db";
    sql(
        &nodes[ip].path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(id, v) VALUES (0, 'setup');",
    );
    let rest = others(ip, 3);
    for &i in &rest {
        wait_same_pos(&nodes[ip], &nodes[i], db);
    }

    let w = Writer::spawn(vec![target(&nodes[ip], db)], 0, false);
    w.wait_commits(0, 50, Duration::from_secs(20), &refs(&nodes));
    eprintln!("SIGKILL {} at {}", host(ip), utc_now());
    let killed = Instant::now();
    nodes[ip].kill();
    let report = w.finish(Duration::from_secs(20));
    let committed: Vec<i64> = report.committed.iter().map(|c| c.0).collect();
    eprintln!(
        "writer: {} commits before the kill, then: {:?}",
        committed.len(),
        report.errors.first()
    );

    // Write to whichever node says it is primary until one accepts.
    let limit = failover_limit();
    let give_up = limit + Duration::from_secs(15);
    let mut last_err = String::from("no node said it is primary");
    let mut said_primary: Option<Duration> = None;
    let (iq, took) = loop {
        let elapsed = killed.elapsed();
        assert!(
            elapsed < give_up,
            "no write accepted {give_up:?} after the SIGKILL: {last_err}\n{}\n--- consul ---\n{}",
            logs(&refs(&nodes)),
            tail(&agent.log_text(), 30)
        );
        let found = rest.iter().copied().find(|&i| {
            if !info(&nodes[i].url).is_some_and(|inf| inf.is_primary) {
                return false;
            }
            said_primary.get_or_insert_with(|| killed.elapsed());
            let res = open_rw(&nodes[i].path(db), Duration::from_secs(1)).and_then(|c| {
                c.execute(
                    "INSERT INTO t(id, v) VALUES (1000000, 'after failover')",
                    [],
                )
            });
            match res {
                Ok(_) => true,
                Err(e) => {
                    last_err = format!("{}: {e}", host(i));
                    false
                }
            }
        });
        if let Some(i) = found {
            break (i, killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "failover took {:.1} s: {} accepted a write at {} (limit {:.0} s; /info said primary after {:.1} s)",
        took.as_secs_f64(),
        host(iq),
        utc_now(),
        limit.as_secs_f64(),
        said_primary.unwrap_or(took).as_secs_f64()
    );
    assert!(
        took <= limit,
        "failover took {took:?}, more than {limit:?}\n{}\n--- consul ---\n{}",
        logs(&refs(&nodes)),
        tail(&agent.log_text(), 30)
    );

    // The new primary holds rows 0..=k of the writer, with no hole, and
    // none it never tried.
    let got: Vec<i64> = ids(&nodes[iq], db)
        .into_iter()
        .filter(|&id| id < 1_000_000)
        .collect();
    let k = got.len() as i64 - 1;
    assert_eq!(got, (0..=k).collect::<Vec<_>>(), "rows with a hole");
    let tried = report
        .failed_id
        .unwrap_or(0)
        .max(*committed.last().unwrap());
    assert!(k <= tried, "row {k} was never written (last tried {tried})");
    eprintln!(
        "{} of {} rows committed on the old primary reached the new one",
        k,
        committed.len()
    );

    // The killed node comes back as a replica and converges.
    nodes[ip].spawn();
    let third = *rest.iter().find(|&&i| i != iq).unwrap();
    sql(
        &nodes[iq].path(db),
        "INSERT INTO t(id, v) VALUES (1000001, 'after restart');",
    );
    for i in [third, ip] {
        wait_same_pos_within(&nodes[iq], &nodes[i], db, Duration::from_secs(30));
        same_bytes(&nodes[iq], &nodes[i], db);
    }
    assert_eq!(wait_one_primary(&refs(&nodes), Duration::from_secs(10)), iq);
    wait_primary_file(&nodes[ip], &host(iq), Duration::from_secs(10));
    assert_eq!(ids(&nodes[ip], db), ids(&nodes[iq], db));
}

/// SIGTERM on the primary while a rusqlite writer commits: a caught-up
/// replica takes over, the writer (moving to it on its first error) never
/// goes more than ~1 s without a commit, every commit it saw is on the new
/// primary, and the old primary exits 0.
#[test]
fn sigterm_primary_hands_off() {
    let Some(agent) = setup() else {
        return;
    };
    let mut nodes = candidates(&agent, "litefs/sigterm", 3);
    let ip = wait_one_primary(&refs(&nodes), ELECTION);
    let db = "handoff.db";
    sql(
        &nodes[ip].path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    let rest = others(ip, 3);
    for &i in &rest {
        wait_same_pos(&nodes[ip], &nodes[i], db);
    }

    let w = Writer::spawn(nodes.iter().map(|n| target(n, db)).collect(), 0, true);
    w.wait_commits(ip, 50, Duration::from_secs(20), &refs(&nodes));
    eprintln!("SIGTERM {} at {}", host(ip), utc_now());
    let sent = Instant::now();
    signal_node(&nodes[ip], libc::SIGTERM);
    let (iq, handoff) = loop {
        if let Some(&i) = rest
            .iter()
            .find(|&&i| info(&nodes[i].url).is_some_and(|inf| inf.is_primary))
        {
            break (i, sent.elapsed());
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "no new primary 20 s after SIGTERM\n{}",
            logs(&refs(&nodes))
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!(
        "hand-off: {} primary {:.3} s after SIGTERM",
        host(iq),
        handoff.as_secs_f64()
    );
    let status = nodes[ip].wait_exit(Duration::from_secs(20));
    let exited = sent.elapsed();
    eprintln!(
        "old primary exited {:.1} s after SIGTERM: {status:?}",
        exited.as_secs_f64()
    );
    assert!(
        status.is_some_and(|s| s.success()) && exited < Duration::from_secs(10),
        "old primary: {status:?} {exited:?} after SIGTERM (SIGKILLed after 20 s)\n{}",
        logs(&refs(&nodes))
    );
    w.wait_commits(iq, 50, Duration::from_secs(20), &refs(&nodes));
    let total = w.total();
    let report = w.finish(Duration::from_secs(20));
    let gap_at = report
        .max_gap_end
        .checked_duration_since(sent)
        .map_or("before SIGTERM".into(), |d| {
            format!("ending {:.3} s after SIGTERM", d.as_secs_f64())
        });
    eprintln!(
        "longest time without a committed write: {:.3} s ({gap_at}); {total} commits, {} errors, first: {:?}",
        report.max_gap.as_secs_f64(),
        report.error_count,
        report.errors.first()
    );
    let slack = Duration::from_secs(2);
    assert!(
        report.max_gap <= slack,
        "writes stopped for {:?} across the hand-off (limit {slack:?}); errors: {:?}\n{}",
        report.max_gap,
        report.errors,
        logs(&refs(&nodes))
    );

    // Every commit the writer saw is on the new primary.
    let present: HashSet<i64> = ids(&nodes[iq], db).into_iter().collect();
    let missing: Vec<&(i64, usize, Instant)> = report
        .committed
        .iter()
        .filter(|c| !present.contains(&c.0))
        .collect();
    let since = |at: Instant| {
        at.checked_duration_since(sent).map_or_else(
            || "before SIGTERM".into(),
            |d| format!("{d:?} after SIGTERM"),
        )
    };
    assert!(
        missing.is_empty(),
        "{} rows the writer saw committed are not on the new primary {}: ids {}..={}, \
         committed on {} from {} to {}; the new primary took over {handoff:?} after SIGTERM\n{}",
        missing.len(),
        host(iq),
        missing[0].0,
        missing[missing.len() - 1].0,
        host(missing[0].1),
        since(missing[0].2),
        since(missing[missing.len() - 1].2),
        logs(&refs(&nodes))
    );
    let third = *rest.iter().find(|&&i| i != iq).unwrap();
    wait_same_pos(&nodes[iq], &nodes[third], db);
    same_bytes(&nodes[iq], &nodes[third], db);
    let live = [&nodes[rest[0]], &nodes[rest[1]]];
    assert_eq!(rest[wait_one_primary(&live, Duration::from_secs(5))], iq);
}

/// Whether a rusqlite error is the refusal of a replica.
fn is_refusal(e: &rusqlite::Error) -> bool {
    let m = e.to_string();
    m.contains("readonly") || m.contains("I/O")
}

/// Runs `sql` on `c`, retrying while the database is busy (5 s at most).
fn exec_retry_busy(c: &Connection, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.execute(sql, []) {
            Ok(_) => return,
            Err(e) if e.to_string().contains("locked") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

/// POST /promote on a candidate replica moves the primary there; the
/// connections it had open as a replica (WAL and DELETE mode, refused
/// then) write afterwards without being reopened; the old primary follows
/// it; a non-candidate answers 409 with a message.
#[test]
fn promote_moves_primary_and_old_connections_write() {
    let Some(agent) = setup() else {
        return;
    };
    let key = "litefs/promote";
    let nodes = vec![
        start_consul_node(&agent, key, &host(0), true, ""),
        start_consul_node(&agent, key, &host(1), true, ""),
        start_consul_node(&agent, key, &host(2), false, ""),
    ];
    let all = refs(&nodes);
    let ip = wait_one_primary(&all, ELECTION);
    assert_ne!(ip, 2, "the non-candidate became primary");
    let ir = 1 - ip;
    let (p, r, nc) = (&nodes[ip], &nodes[ir], &nodes[2]);
    assert!(info(&r.url).unwrap().candidate);
    assert!(!info(&nc.url).unwrap().candidate);

    let (wal, del) = ("promote-wal.db", "promote-del.db");
    sql(
        &p.path(wal),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('from the first primary');",
    );
    sql(
        &p.path(del),
        "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('from the first primary');",
    );
    for db in [wal, del] {
        wait_same_pos(p, r, db);
        wait_same_pos(p, nc, db);
    }

    // Connections opened on the replica, refused there.
    let cw = open_rw(&r.path(wal), Duration::from_secs(5)).unwrap();
    let cd = open_rw(&r.path(del), Duration::from_secs(5)).unwrap();
    let count = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!((count(&cw), count(&cd)), (1, 1));
    let insert = "INSERT INTO t(v) VALUES ('on the promoted node')";
    let e = cw.execute(insert, []).expect_err("WAL write on a replica");
    assert!(is_refusal(&e), "WAL write on a replica: {e}");
    let e = cd
        .execute(insert, [])
        .expect_err("DELETE write on a replica");
    assert!(e.to_string().contains("readonly"), "{e}");
    eprintln!("the replica refused: {e}");

    let asked = Instant::now();
    let (status, body) = promote(&r.url, Duration::from_secs(30));
    eprintln!(
        "POST /promote: {status} in {:.3} s: {}",
        asked.elapsed().as_secs_f64(),
        body.trim()
    );
    assert_eq!(status, 200, "{body}\n{}", logs(&all));
    assert!(
        info(&r.url).is_some_and(|i| i.is_primary),
        "/promote answered 200 but the node is not primary\n{}",
        logs(&all)
    );
    assert_eq!(wait_one_primary(&all, Duration::from_secs(10)), ir);

    // The same connections write now.
    exec_retry_busy(&cw, insert);
    exec_retry_busy(&cd, insert);
    assert_eq!((count(&cw), count(&cd)), (2, 2));

    // The old primary follows the new one and refuses writes.
    wait_primary_file(p, &host(ir), Duration::from_secs(20));
    for db in [wal, del] {
        wait_same_pos(r, p, db);
        wait_same_pos(r, nc, db);
        same_bytes(r, p, db);
    }
    let e = try_sql(
        &p.path(del),
        "INSERT INTO t(v) VALUES ('no');",
        Duration::from_secs(10),
    )
    .expect_err("the demoted primary accepted a write");
    assert!(e.contains("readonly"), "{e}");

    // A non-candidate cannot be promoted.
    let (status, body) = promote(&nc.url, Duration::from_secs(30));
    eprintln!("POST /promote on a non-candidate: {status} {}", body.trim());
    assert_eq!(status, 409, "{body}");
    assert!(!body.trim().is_empty(), "409 without a message");
    assert_eq!(wait_one_primary(&all, Duration::from_secs(5)), ir);
    drop((cw, cd));
}

/// A primary whose Consul stops answering (SIGSTOP of the agent) refuses
/// writes before its TTL has run out; once Consul answers again there is
/// one primary and every node converges.
#[test]
fn consul_cut_off_primary_stops_writes() {
    let Some(mut agent) = setup() else {
        return;
    };
    let nodes = candidates(&agent, "litefs/cut-off", 3);
    let all = refs(&nodes);
    let ip = wait_one_primary(&all, ELECTION);
    let p = &nodes[ip];
    let db = "cut.db";
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    let probe = |n: &Node| {
        try_sql(
            &n.path(db),
            "INSERT INTO t(v) VALUES ('probe');",
            Duration::from_secs(3),
        )
    };
    probe(p).expect("a write on the primary");
    for &i in &others(ip, 3) {
        wait_same_pos(p, &nodes[i], db);
    }

    eprintln!("Consul paused at {}", utc_now());
    agent.pause();
    let paused = Instant::now();
    let mut accepted = 0;
    let mut last_accepted = Duration::ZERO;
    let (refused_after, why) = loop {
        let start = paused.elapsed();
        match probe(p) {
            Ok(_) => {
                accepted += 1;
                last_accepted = start;
            }
            Err(e) => break (paused.elapsed(), e),
        }
        assert!(
            paused.elapsed() < 2 * TTL,
            "the primary still accepts writes {:?} after Consul froze\n{}",
            2 * TTL,
            logs(&all)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "the primary refused writes {:.1} s after Consul froze ({accepted} accepted, the last \
         one started {:.1} s after; the deadline is at most TTL - 1 s = 9 s after): {why}",
        refused_after.as_secs_f64(),
        last_accepted.as_secs_f64()
    );
    assert!(
        refused_after < TTL,
        "the primary accepted writes for {refused_after:?} without Consul (TTL {TTL:?})"
    );
    // And it keeps refusing while Consul is away.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        probe(p).expect_err("a write accepted again while Consul is frozen");
    }

    agent.resume();
    let resumed = Instant::now();
    let iq = wait_one_primary(&all, failover_limit() + Duration::from_secs(10));
    let q = &nodes[iq];
    let took = write_until_ok(
        q,
        db,
        "INSERT INTO t(v) VALUES ('after');",
        Duration::from_secs(20),
    );
    eprintln!(
        "after Consul came back: {} primary, writing {:.1} s after the resume (write retried for {:.1} s)",
        host(iq),
        resumed.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    for &i in &others(iq, 3) {
        wait_same_pos_within(q, &nodes[i], db, Duration::from_secs(30));
        same_bytes(q, &nodes[i], db);
    }
    assert_eq!(wait_one_primary(&all, Duration::from_secs(5)), iq);
}

/// An old primary with transactions nobody else has (its replicas were
/// down when it committed them, then it was SIGKILLed) comes back after
/// a new primary took other writes at the same TXIDs: it ends with the new
/// primary's database and position, its own extra rows gone.
#[test]
fn diverged_old_primary_resnapshots() {
    let Some(agent) = setup() else {
        return;
    };
    let mut nodes = candidates(&agent, "litefs/diverged", 3);
    let ip = wait_one_primary(&refs(&nodes), ELECTION);
    let rest = others(ip, 3);
    let dbs = ["div-wal.db", "div-del.db"];
    for (db, mode) in dbs.iter().zip(["WAL", "DELETE"]) {
        sql(
            &nodes[ip].path(db),
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                 INSERT INTO t(v) VALUES ('common');"
            ),
        );
        for &i in &rest {
            wait_same_pos(&nodes[ip], &nodes[i], db);
        }
    }

    // The replicas stop (cleanly: a frozen process would still receive
    // the primary's frames into its socket buffer and apply them when
    // resumed, so nothing would diverge), the primary commits alone.
    for &i in &rest {
        let st = nodes[i].stop();
        assert!(
            st.is_some_and(|s| s.success()),
            "{st:?}\n{}",
            nodes[i].log_text()
        );
    }
    let five = |tag: &str| -> String {
        (1..=5)
            .map(|k| format!("INSERT INTO t(v) VALUES ('{tag}-{k}');\n"))
            .collect()
    };
    let mut old_pos = Vec::new();
    for db in dbs {
        sql(&nodes[ip].path(db), &five("old-only"));
        old_pos.push(pos_of(&nodes[ip], db));
    }
    let killed = Instant::now();
    nodes[ip].kill();
    for &i in &rest {
        nodes[i].spawn();
    }
    let live = [&nodes[rest[0]], &nodes[rest[1]]];
    let iq = rest[wait_one_primary(&live, failover_limit() + Duration::from_secs(15))];
    eprintln!(
        "new primary {} {:.1} s after the old one was killed",
        host(iq),
        killed.elapsed().as_secs_f64()
    );
    let third = *rest.iter().find(|&&i| i != iq).unwrap();
    for (db, old) in dbs.iter().zip(&old_pos) {
        // One statement (one transaction) at a time, so a retry never
        // repeats a row.
        for k in 1..=5 {
            write_until_ok(
                &nodes[iq],
                db,
                &format!("INSERT INTO t(v) VALUES ('new-{k}');"),
                Duration::from_secs(20),
            );
        }
        let new = pos_of(&nodes[iq], db);
        eprintln!(
            "{db}: old primary at {}, new primary at {}",
            old.trim(),
            new.trim()
        );
        assert_ne!(&new, old);
        wait_same_pos(&nodes[iq], &nodes[third], db);
    }

    let restarted = Instant::now();
    nodes[ip].spawn();
    for db in dbs {
        wait_same_pos_within(&nodes[iq], &nodes[ip], db, Duration::from_secs(30));
        same_bytes(&nodes[iq], &nodes[ip], db);
        let rows = sql(&nodes[ip].path(db), "SELECT v FROM t ORDER BY id;");
        assert!(
            !rows.contains("old-only"),
            "{db}: diverged rows kept:\n{rows}"
        );
        assert_eq!(
            rows, "common\nnew-1\nnew-2\nnew-3\nnew-4\nnew-5\n",
            "{db} on the old primary"
        );
    }
    eprintln!(
        "the old primary converged {:.1} s after its restart",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(wait_one_primary(&refs(&nodes), Duration::from_secs(5)), iq);
    wait_primary_file(&nodes[ip], &host(iq), Duration::from_secs(10));
}

/// Waits until `<data>/clusterid` of `n` exists; its ID.
fn cluster_id(n: &Node) -> String {
    let path = n.data.join("clusterid");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(&path) {
            if !s.trim().is_empty() {
                return s.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {} after 20 s\n{}",
            path.display(),
            logs(&[n])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two clusters on one agent under different keys each elect their own
/// primary and never see each other's writes; a node whose data directory
/// belongs to one cluster, started under the other's key, refuses to join
/// and says why, naming the cluster ID.
#[test]
fn two_clusters_separate_keys() {
    let Some(agent) = setup() else {
        return;
    };
    let (key_a, key_b) = ("litefs/cluster-a", "litefs/cluster-b");
    let a: Vec<Node> = (1..=2)
        .map(|i| start_consul_node(&agent, key_a, &format!("a-{i}"), true, ""))
        .collect();
    let b: Vec<Node> = (1..=2)
        .map(|i| start_consul_node(&agent, key_b, &format!("b-{i}"), true, ""))
        .collect();
    let ia = wait_one_primary(&refs(&a), ELECTION);
    let ib = wait_one_primary(&refs(&b), ELECTION);
    let (pa, ra, pb, rb) = (&a[ia], &a[1 - ia], &b[ib], &b[1 - ib]);
    wait_primary_file(ra, &format!("a-{}", ia + 1), Duration::from_secs(20));
    wait_primary_file(rb, &format!("b-{}", ib + 1), Duration::from_secs(20));

    let db = "app.db";
    for (p, v) in [(pa, "from-a"), (pb, "from-b")] {
        sql(
            &p.path(db),
            &format!(
                "PRAGMA journal_mode=WAL; CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('{v}');"
            ),
        );
    }
    sql(
        &pa.path("only-a.db"),
        "CREATE TABLE t(v); INSERT INTO t VALUES (1);",
    );
    wait_same_pos(pa, ra, db);
    wait_same_pos(pa, ra, "only-a.db");
    wait_same_pos(pb, rb, db);
    same_bytes(pa, ra, db);
    same_bytes(pb, rb, db);
    assert_eq!(sql(&ra.path(db), "SELECT v FROM t;").trim(), "from-a");
    assert_eq!(sql(&rb.path(db), "SELECT v FROM t;").trim(), "from-b");
    std::thread::sleep(Duration::from_millis(500));
    for n in [pb, rb] {
        assert!(
            !n.data.join("dbs").join("only-a.db").exists(),
            "cluster A's database reached {}",
            n.url
        );
    }

    let (id_a, id_b) = (cluster_id(pa), cluster_id(pb));
    eprintln!("cluster IDs: A {id_a}, B {id_b}");
    assert_ne!(id_a, id_b);
    assert_eq!(cluster_id(ra), id_a);
    assert_eq!(cluster_id(rb), id_b);
    assert_eq!(
        json_str(&info(&ra.url).unwrap().body, "clusterID").as_deref(),
        Some(id_a.as_str())
    );

    // A node of cluster A pointed at cluster B's key.
    let mut x = new_consul_node(&agent, key_b, "x-1", true, "");
    std::fs::create_dir_all(&x.data).unwrap();
    std::fs::copy(pa.data.join("clusterid"), x.data.join("clusterid")).unwrap();
    x.spawn_nowait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let log = x.log_text();
        let hit = log.lines().find(|l| {
            l.to_ascii_lowercase().contains("cluster id")
                && (l.contains(&id_a) || l.contains(&id_b))
        });
        if let Some(l) = hit {
            break l.to_owned();
        }
        let exited = x.exit_status();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "the node of cluster A under cluster B's key never named the cluster ID \
             (exited: {exited:?}):\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("the node of another cluster said: {line}");
    // Whether it exited or keeps running, it took nothing from cluster B.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(inf) = info(&x.url) {
        assert!(!inf.is_primary, "it became B's primary: {}", inf.body);
    }
    assert!(
        !x.data.join("dbs").join(db).exists(),
        "it applied cluster B's database\n{}",
        x.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(x.data.join("clusterid"))
            .unwrap()
            .trim(),
        id_a,
        "its cluster ID was replaced"
    );

    // Both clusters go on as before.
    assert_eq!(wait_one_primary(&refs(&b), Duration::from_secs(5)), ib);
    assert_eq!(wait_one_primary(&refs(&a), Duration::from_secs(5)), ia);
    sql(&pb.path(db), "INSERT INTO t VALUES ('b again');");
    wait_same_pos(pb, rb, db);
    assert_eq!(
        sql(&ra.path(db), "SELECT v FROM t;").trim(),
        "from-a",
        "B's write reached A"
    );
    drop(x);
}

/// `litefs run`: `-promote` on a candidate replica moves the primary there
/// and then runs the command (its exit code is ours); on a non-candidate
/// it fails with the node's message and runs nothing; `-if-candidate`
/// runs nothing (exit 0) on a non-candidate and the command on a
/// candidate.
#[test]
fn litefs_run_promote_and_if_candidate() {
    let Some(agent) = setup() else { return };
    let key = "litefs/run-cli";
    let first = start_consul_node(&agent, key, "node-1", true, "");
    wait_one_primary(&[&first], ELECTION);
    let second = start_consul_node(&agent, key, "node-2", true, "");
    let watcher = start_consul_node(&agent, key, "node-3", false, "");
    let all = [&first, &second, &watcher];
    sql(
        &first.path("db"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    );
    wait_primary_file(&second, "node-1", Duration::from_secs(20));
    wait_same_pos(&first, &second, "db");
    let marker = second.dir.path().join("ran");
    let run = |url: &str, args: &[&str], cmd: &str| {
        litefs_fuse_tests::cluster::run_bounded(
            std::process::Command::new(litefs_fuse_tests::litefs_bin())
                .arg("run")
                .args(["-url", url])
                .args(args)
                .args(["--", "sh", "-c", cmd]),
            Duration::from_secs(30),
        )
    };

    // A non-candidate refuses to promote and runs nothing.
    let out = run(
        &watcher.url,
        &["-promote"],
        &format!("touch {}", marker.display()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "promotion of a non-candidate succeeded: {err}"
    );
    assert!(err.contains("not a candidate"), "unclear refusal: {err}");
    assert!(
        !marker.exists(),
        "the command ran although the promotion failed"
    );
    // -if-candidate on a non-candidate: nothing runs, exit 0.
    let out = run(
        &watcher.url,
        &["-if-candidate"],
        &format!("touch {}; exit 5", marker.display()),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !marker.exists(),
        "-if-candidate ran the command on a non-candidate"
    );

    // -promote on a candidate replica: it becomes primary, then the command
    // runs and its exit code comes back.
    let t = Instant::now();
    let out = run(
        &second.url,
        &["-promote"],
        &format!("touch {}; exit 7", marker.display()),
    );
    eprintln!("litefs run -promote took {:?}", t.elapsed());
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists(), "the command did not run");
    assert!(
        info(&second.url).is_some_and(|i| i.is_primary),
        "node-2 is not primary\n{}",
        logs(&all)
    );
    assert_eq!(wait_one_primary(&all, Duration::from_secs(10)), 1);
    write_until_ok(
        &second,
        "db",
        "INSERT INTO t VALUES (2, 'b');",
        Duration::from_secs(10),
    );
    wait_primary_file(&first, "node-2", Duration::from_secs(20));
    wait_same_pos(&second, &first, "db");
    wait_same_pos(&second, &watcher, "db");
    // -if-candidate on a candidate runs the command.
    let out = run(&first.url, &["-if-candidate"], "exit 4");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `lease.promote: true`: a candidate that joins a running cluster takes
/// the lease once it has caught up (no write lost, the old primary follows
/// it).
#[test]
fn lease_promote_takes_over_once_caught_up() {
    let Some(agent) = setup() else { return };
    let key = "litefs/auto-promote";
    let first = start_consul_node(&agent, key, "node-1", true, "");
    wait_one_primary(&[&first], ELECTION);
    sql(
        &first.path("db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    for i in 0..200 {
        sql(
            &first.path("db"),
            &format!("INSERT INTO t VALUES ({i}, 'x');"),
        );
    }
    let t = Instant::now();
    let second = start_consul_node(&agent, key, "node-2", true, "promote: true");
    let all = [&first, &second];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !info(&second.url).is_some_and(|i| i.is_primary) {
        assert!(
            Instant::now() < deadline,
            "node-2 (promote: true) never became primary\n{}",
            logs(&all)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "lease.promote: node-2 primary {:?} after it started",
        t.elapsed()
    );
    assert_eq!(wait_one_primary(&all, Duration::from_secs(10)), 1);
    assert_eq!(ids(&second, "db").len(), 200, "rows lost in the take-over");
    write_until_ok(
        &second,
        "db",
        "INSERT INTO t VALUES (1000, 'y');",
        Duration::from_secs(10),
    );
    wait_primary_file(&first, "node-2", Duration::from_secs(20));
    wait_same_pos(&second, &first, "db");
    same_bytes(&second, &first, "db");
}

/// The backup follows the primary: after a hand-off the new primary
/// continues it (no new snapshot, nothing moved aside); after a fail-over
/// to a node that never got the old primary's last transactions, those
/// never stay in the backup: the new primary moves the old files aside and
/// starts again from a snapshot of its own history. A restore at the end
/// equals the new primary's database.
#[test]
fn backup_follows_the_primary_across_handoff_and_failover() {
    let Some(agent) = setup() else { return };
    let key = "litefs/backup-follows";
    let bk = tempfile::tempdir().unwrap();
    let backup = format!(
        "backup:\n  type: file\n  path: {}\n  sync-interval: 100ms\n",
        bk.path().display()
    );
    let start = |host: &str| {
        let mut n = new_consul_node(&agent, key, host, true, "");
        let mut text = std::fs::read_to_string(&n.config).unwrap();
        text.push_str(&backup);
        std::fs::write(&n.config, text).unwrap();
        n.spawn();
        n
    };
    let mut nodes = vec![start("node-1")];
    wait_one_primary(&refs(&nodes), ELECTION);
    nodes.push(start("node-2"));
    let db = "app.db";
    let root = bk.path().join(db);
    let p = wait_one_primary(&refs(&nodes), ELECTION);
    sql(
        &nodes[p].path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    for i in 0..20 {
        sql(
            &nodes[p].path(db),
            &format!("INSERT INTO t(v) VALUES ('a{i}');"),
        );
    }
    let q = 1 - p;
    wait_same_pos(&nodes[p], &nodes[q], db);
    let wait_backup = |n: &Node| {
        let want = u64::from_str_radix(pos_of(n, db).split('/').next().unwrap(), 16).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while litefs_fuse_tests::cluster::backup_txid(&root) < want {
            assert!(
                Instant::now() < deadline,
                "backup stuck below {want:x}\n{}",
                n.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        want
    };
    wait_backup(&nodes[p]);

    // Hand-off: the new primary appends.
    signal_node(&nodes[p], libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !info(&nodes[q].url).is_some_and(|i| i.is_primary) {
        assert!(
            Instant::now() < deadline,
            "no hand-off\n{}",
            logs(&refs(&nodes))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nodes[p].wait_exit(Duration::from_secs(20));
    for i in 0..10 {
        write_until_ok(
            &nodes[q],
            db,
            &format!("INSERT INTO t(v) VALUES ('b{i}');"),
            Duration::from_secs(10),
        );
    }
    wait_backup(&nodes[q]);
    assert!(
        !root.join("retired").exists(),
        "a hand-off restarted the backup\n{}",
        nodes[q].log_text()
    );
    let snapshots = std::fs::read_dir(root.join("ltx/9")).unwrap().count();
    assert_eq!(snapshots, 1, "a hand-off took a new snapshot");

    // The old primary comes back as a replica, then misses the new
    // primary's last transactions (stopped), which the backup gets.
    nodes[p].spawn();
    wait_same_pos(&nodes[q], &nodes[p], db);
    signal_node(&nodes[p], libc::SIGSTOP);
    for i in 0..10 {
        sql(
            &nodes[q].path(db),
            &format!("INSERT INTO t(v) VALUES ('lost{i}');"),
        );
    }
    wait_backup(&nodes[q]);
    nodes[q].kill();
    signal_node(&nodes[p], libc::SIGCONT);
    let t = Instant::now();
    let took = write_until_ok(
        &nodes[p],
        db,
        "INSERT INTO t(v) VALUES ('c0');",
        failover_limit(),
    );
    eprintln!(
        "fail-over for the backup test: {:?} (first write after {took:?})",
        t.elapsed()
    );
    // The backup is ahead of this node (the lost transactions): it must be
    // moved aside and started again, not appended to.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !root.join("retired").exists() {
        assert!(
            Instant::now() < deadline,
            "the old primary's unreplicated files are still in the backup\n{}",
            nodes[p].log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let want_txid = wait_backup(&nodes[p]);
    let want = {
        sql(&nodes[p].path(db), "PRAGMA wal_checkpoint(TRUNCATE);");
        litefs_fuse_tests::cluster::read_file(&nodes[p].path(db)).unwrap()
    };
    let out = bk.path().join("restored.db");
    let o = litefs_fuse_tests::cluster::run_bounded(
        std::process::Command::new(litefs_fuse_tests::litefs_bin())
            .arg("restore")
            .arg("-o")
            .arg(&out)
            .arg(&root),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out).unwrap() == want,
        "the restore differs from the new primary at {want_txid:x}"
    );
    let rows = sql(&out, "SELECT count(*) FROM t WHERE v LIKE 'lost%';");
    assert_eq!(
        rows.trim(),
        "0",
        "unreplicated transactions of the killed primary are in the backup"
    );
}
