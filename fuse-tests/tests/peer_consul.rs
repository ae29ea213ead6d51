//! Mixed Consul clusters: our nodes and real LiteFS v0.5.14 nodes electing
//! through one real `consul agent -dev`, in both directions: an election,
//! SIGKILL fail-over, a diverged old primary resyncing, SIGTERM, and
//! `POST /promote` from one implementation to the other. Every node
//! converges on the primary (same `-pos`, same bytes) and every LTX file
//! our nodes wrote passes the Go `ltx verify`.
//!
//! Who may win is steered with `candidate: false` (and by starting the
//! intended first primary alone). Waits are bounded; a fail-over after a
//! SIGKILL takes up to 2 x TTL (TTL 10 s) + lock-delay, so its waits are
//! 60 s. Durations are printed (`-- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{
    pos_of, require_fuse, same_bytes, sql, wait_log_line, wait_same_pos_within,
};
use litefs_fuse_tests::consul::{
    consul_lease, info, json_str, logs, promote, signal_node, tail, try_sql, utc_now,
    wait_one_primary, wait_primary_file, Agent,
};
use litefs_fuse_tests::peer::{self, go_verify, new_node, Impl};
use litefs_fuse_tests::{free_port, Node};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A first election on a fresh agent.
const ELECTION: Duration = Duration::from_secs(30);
/// A fail-over after a SIGKILL (~2 x TTL + lock-delay), with room for a
/// loaded 2-CPU machine.
const FAILOVER: Duration = Duration::from_secs(60);
/// A replica catching up (a restarted one may need a snapshot).
const CONVERGE: Duration = Duration::from_secs(60);

/// What a test needs: the LiteFS binary, the Go `ltx` tool and an agent;
/// `None` (after SKIP lines) where they may be missing.
fn setup() -> Option<(PathBuf, PathBuf, Agent)> {
    if !require_fuse() {
        return None;
    }
    let litefs = peer::litefs_bin()?;
    let ltx = peer::ltx_bin()?;
    Some((litefs, ltx, Agent::start()?))
}

/// A node of `imp` in the cluster under `key` of `agent`, not started. Its
/// `advertise-url` is its own API; it logs with timestamps.
fn node(agent: &Agent, litefs: &Path, key: &str, imp: Impl, host: &str, candidate: bool) -> Node {
    let port = free_port();
    let lease = consul_lease(
        host,
        &format!("http://127.0.0.1:{port}"),
        &agent.url(),
        key,
        candidate,
        "",
    );
    new_node(imp, litefs, port, &lease, "log:\n  timestamp: true\n", "")
}

/// [`node`], started (its mount up).
fn start(agent: &Agent, litefs: &Path, key: &str, imp: Impl, host: &str, candidate: bool) -> Node {
    let mut n = node(agent, litefs, key, imp, host, candidate);
    n.spawn();
    n
}

/// Which implementation `n` runs.
fn imp_of(n: &Node) -> &'static str {
    if n.peer {
        Impl::LiteFs.name()
    } else {
        Impl::Ours.name()
    }
}

/// Checks every LTX file of our nodes among `nodes` with the Go tool.
fn verify_ours(ltx: &Path, nodes: &[&Node]) {
    for n in nodes.iter().filter(|n| !n.peer) {
        let k = go_verify(ltx, n);
        eprintln!("ltx verify: {k} files of {} ok", n.url);
    }
}

/// Waits until `nodes[want]` says it is primary and is the only one;
/// returns how long that took. Panics with every log after `within`.
fn wait_primary(nodes: &[&Node], want: usize, within: Duration, agent: &Agent) -> Duration {
    let start = Instant::now();
    while !info(&nodes[want].url).is_some_and(|i| i.is_primary) {
        assert!(
            start.elapsed() < within,
            "{} ({}) is not primary after {within:?}\n{}\n--- consul ---\n{}",
            nodes[want].url,
            imp_of(nodes[want]),
            logs(nodes),
            tail(&agent.log_text(), 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    assert_eq!(
        wait_one_primary(nodes, Duration::from_secs(10)),
        want,
        "another node says it is primary too"
    );
    took
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
                "{db} on {} ({}): writes still fail after {within:?}: {e}\n{}",
                n.url,
                imp_of(n),
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

/// Inserts rows `ids` (explicit, so a retried statement cannot add a row
/// twice) one transaction each on `n`, retrying each until it commits.
fn insert_rows(n: &Node, db: &str, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        write_until_ok(
            n,
            db,
            &format!("INSERT OR IGNORE INTO t(id, v) VALUES ({id}, hex(randomblob(300)));"),
            Duration::from_secs(20),
        );
    }
}

/// Every one of `replicas` reaches the `-pos` of `db` on `p` and reads the
/// same bytes; `.primary` on each names `p_host`.
fn converge(p: &Node, p_host: &str, replicas: &[&Node], db: &str) {
    for r in replicas {
        let t = Instant::now();
        let pos = wait_same_pos_within(p, r, db, CONVERGE);
        eprintln!(
            "{db}: {} ({}) at {}, as the primary {} ({}), after {:.1} s",
            r.url,
            imp_of(r),
            pos.trim(),
            p.url,
            imp_of(p),
            t.elapsed().as_secs_f64()
        );
        same_bytes(p, r, db);
        wait_primary_file(r, p_host, Duration::from_secs(20));
    }
}

/// The cluster ID `n` reports in `/info`.
fn cluster_id(n: &Node) -> String {
    let i = info(&n.url).unwrap_or_else(|| panic!("no /info from {}", n.url));
    json_str(&i.body, "clusterID").unwrap_or_default()
}

/// Creates table `t` in journal mode `mode` in `db` on `p`, with rows
/// 1..=20.
fn create_table(p: &Node, db: &str, mode: &str) {
    sql(
        &p.path(db),
        &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"),
    );
    insert_rows(p, db, 1..=20);
}

/// Three candidates of mixed implementations elect exactly one primary,
/// whose WAL and DELETE-mode writes reach every replica (same `-pos`, same
/// bytes); every node names it in `.primary`, reports the cluster ID
/// Consul holds, and the replicas refuse writes. Two mixes: two of ours
/// with one LiteFS, started at once, and one of ours with two LiteFS,
/// started just after them. Who wins is up to the race.
#[test]
fn mixed_three_candidates_elect_one_primary() {
    let Some((litefs, ltx, agent)) = setup() else {
        return;
    };
    let mixes: [[Impl; 3]; 2] = [
        [Impl::Ours, Impl::Ours, Impl::LiteFs],
        [Impl::LiteFs, Impl::Ours, Impl::LiteFs],
    ];
    for (m, mix) in mixes.iter().enumerate() {
        let key = format!("litefs/peer-elect-{m}");
        let hosts: Vec<String> = (0..3).map(|i| format!("node-{}", i + 1)).collect();
        let started = Instant::now();
        // Started together, so that they race for the lease. Ours takes
        // it sooner after its start than LiteFS does, so in the second mix
        // the LiteFS nodes get a head start (their mounts up first): each
        // implementation then usually wins one of the two races.
        let mut nodes: Vec<Node> = mix
            .iter()
            .zip(&hosts)
            .map(|(&imp, h)| node(&agent, &litefs, &key, imp, h, true))
            .collect();
        let peers_first = m == 1;
        for n in nodes.iter_mut().filter(|n| n.peer || !peers_first) {
            n.spawn_nowait();
        }
        for n in nodes.iter_mut().filter(|n| n.peer || !peers_first) {
            n.wait_mounted();
        }
        for n in nodes.iter_mut().filter(|n| !n.peer && peers_first) {
            n.spawn();
        }
        let all: Vec<&Node> = nodes.iter().collect();
        let ip = wait_one_primary(&all, ELECTION);
        let p = &nodes[ip];
        eprintln!(
            "mix {:?}: {} ({}) primary {:.1} s after the first node started",
            mix.map(Impl::name),
            hosts[ip],
            imp_of(p),
            started.elapsed().as_secs_f64()
        );
        for n in &nodes {
            let i = info(&n.url).unwrap();
            assert!(i.candidate, "{} ({}): {}", n.url, imp_of(n), i.body);
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
        let replicas: Vec<&Node> = (0..3).filter(|&i| i != ip).map(|i| &nodes[i]).collect();
        for db in [wal, del] {
            converge(p, &hosts[ip], &replicas, db);
        }

        // One cluster ID everywhere, the one Consul holds.
        let (status, consul_id) = agent
            .raw("GET", &format!("/v1/kv/{key}/clusterid?raw"), b"")
            .expect("consul answers");
        assert_eq!(status, 200, "no cluster ID in Consul: {consul_id}");
        assert!(consul_id.starts_with("LFSC"), "{consul_id}");
        for n in &nodes {
            assert_eq!(cluster_id(n), consul_id, "{} ({})", n.url, imp_of(n));
        }

        // Replicas refuse writes; nothing changes anywhere.
        let before = [pos_of(p, wal), pos_of(p, del)];
        for r in &replicas {
            for db in [wal, del] {
                let e = try_sql(
                    &r.path(db),
                    "INSERT INTO t(v) VALUES ('no');",
                    Duration::from_secs(10),
                )
                .expect_err("a replica accepted a write");
                eprintln!("{} ({}) refused a write to {db}: {e}", r.url, imp_of(r));
            }
        }
        for r in &replicas {
            assert_eq!([pos_of(r, wal), pos_of(r, del)], before, "{}", r.url);
        }
        assert_eq!([pos_of(p, wal), pos_of(p, del)], before);
        assert_eq!(wait_one_primary(&all, Duration::from_secs(5)), ip);
        verify_ours(&ltx, &all);
    }
}

/// SIGKILL of the primary, both ways, in one cluster: ours (`ours-1`,
/// candidate), LiteFS (`litefs-1`, candidate) and ours (`ours-2`, not a
/// candidate). Each time the primary is killed right after a few writes
/// nobody waited for: the other implementation's candidate, streaming from
/// it until then, takes over once the dead primary's session expires
/// (~2 x TTL); it holds a prefix of the rows (no hole) including all that
/// had replicated; writes retried on it succeed and nothing it had is
/// lost; the killed node, started again, follows it and ends with its
/// `-pos`, bytes and rows. (A killed primary with rows the new one lacks:
/// `mixed_diverged_old_primary_resyncs_both_ways`.)
#[test]
fn mixed_sigkill_fails_over_both_ways() {
    let Some((litefs, ltx, agent)) = setup() else {
        return;
    };
    let key = "litefs/peer-sigkill";
    let db = "fo.db";
    let mut a = start(&agent, &litefs, key, Impl::Ours, "ours-1", true);
    wait_one_primary(&[&a], ELECTION);
    let mut b = start(&agent, &litefs, key, Impl::LiteFs, "litefs-1", true);
    let c = start(&agent, &litefs, key, Impl::Ours, "ours-2", false);
    create_table(&a, db, "WAL");
    converge(&a, "ours-1", &[&b, &c], db);

    // Phase 1: ours killed, LiteFS takes over.
    let before = ids(&b, db);
    for id in 21..=25 {
        sql(
            &a.path(db),
            &format!("INSERT INTO t(id, v) VALUES ({id}, 'unwaited');"),
        );
    }
    eprintln!("SIGKILL ours-1 (ours, primary) at {}", utc_now());
    a.kill();
    let took = wait_primary(&[&a, &b, &c], 1, FAILOVER, &agent);
    let first_write = write_until_ok(
        &b,
        db,
        "INSERT INTO t(id, v) VALUES (101, 'after failover');",
        Duration::from_secs(20),
    );
    eprintln!(
        "fail-over ours -> LiteFS: litefs-1 primary {:.1} s after the kill, writing {:.1} s later",
        took.as_secs_f64(),
        first_write.as_secs_f64()
    );
    let had = ids(&b, db);
    let old: Vec<i64> = had.iter().copied().filter(|&i| i < 100).collect();
    let k = old.len() as i64;
    assert_eq!(old, (1..=k).collect::<Vec<_>>(), "rows with a hole");
    assert!((20..=25).contains(&k), "{k} rows");
    assert!(before.iter().all(|i| had.contains(i)));
    eprintln!("litefs-1 got {} of the 5 unwaited rows", k - 20);
    insert_rows(&b, db, 102..=110);
    converge(&b, "litefs-1", &[&c], db);
    a.spawn();
    converge(&b, "litefs-1", &[&a, &c], db);
    let after = ids(&b, db);
    assert!(
        had.iter().all(|i| after.contains(i)),
        "rows lost on litefs-1"
    );
    assert_eq!(ids(&a, db), after, "ours-1 after its restart");
    assert_eq!(wait_one_primary(&[&a, &b, &c], Duration::from_secs(5)), 1);

    // Phase 2: LiteFS killed, ours takes over.
    for id in 111..=115 {
        sql(
            &b.path(db),
            &format!("INSERT INTO t(id, v) VALUES ({id}, 'unwaited');"),
        );
    }
    eprintln!("SIGKILL litefs-1 (LiteFS, primary) at {}", utc_now());
    b.kill();
    let took = wait_primary(&[&a, &b, &c], 0, FAILOVER, &agent);
    let first_write = write_until_ok(
        &a,
        db,
        "INSERT INTO t(id, v) VALUES (201, 'after failover');",
        Duration::from_secs(20),
    );
    eprintln!(
        "fail-over LiteFS -> ours: ours-1 primary {:.1} s after the kill, writing {:.1} s later",
        took.as_secs_f64(),
        first_write.as_secs_f64()
    );
    let had = ids(&a, db);
    assert!(after.iter().all(|i| had.contains(i)), "rows lost on ours-1");
    let mid: Vec<i64> = had
        .iter()
        .copied()
        .filter(|&i| (111..=115).contains(&i))
        .collect();
    assert_eq!(
        mid,
        (111..111 + mid.len() as i64).collect::<Vec<_>>(),
        "rows with a hole"
    );
    eprintln!("ours-1 got {} of the 5 unwaited rows", mid.len());
    insert_rows(&a, db, 202..=210);
    converge(&a, "ours-1", &[&c], db);
    b.spawn();
    converge(&a, "ours-1", &[&b, &c], db);
    let end = ids(&a, db);
    assert!(had.iter().all(|i| end.contains(i)), "rows lost on ours-1");
    assert_eq!(ids(&b, db), end, "litefs-1 after its restart");
    assert_eq!(wait_one_primary(&[&a, &b, &c], Duration::from_secs(5)), 0);
    verify_ours(&ltx, &[&a, &b, &c]);
}

/// A diverged old primary of one implementation resyncs from a new primary
/// of the other, both ways. The candidate of the other implementation is
/// stopped (cleanly) while the primary commits rows 21..=25 that a
/// non-candidate of the primary's implementation receives; the primary is
/// SIGKILLed and the candidate, started again, takes over without those
/// rows and commits others at the same TXIDs: in the WAL database fewer
/// (the old nodes are ahead of the new primary), in the DELETE one as many
/// (same TXID, other checksum). Both old nodes, the non-candidate at once
/// and the killed primary once restarted, must end with the new primary's
/// `-pos`, bytes and rows, theirs gone: the new primary's stream has to
/// send them a snapshot and they have to apply it.
#[test]
fn mixed_diverged_old_primary_resyncs_both_ways() {
    let Some((litefs, ltx, agent)) = setup() else {
        return;
    };
    let dbs = [("div-wal.db", "WAL", 3), ("div-del.db", "DELETE", 5)];
    for (x, y) in [(Impl::Ours, Impl::LiteFs), (Impl::LiteFs, Impl::Ours)] {
        let key = format!("litefs/peer-diverged-{}", x.name());
        let (p_host, q_host) = ("old-primary", "new-primary");
        let mut p = start(&agent, &litefs, &key, x, p_host, true);
        wait_one_primary(&[&p], ELECTION);
        let mut q = start(&agent, &litefs, &key, y, q_host, true);
        let w = start(&agent, &litefs, &key, x, "watcher", false);
        for (db, mode, _) in dbs {
            create_table(&p, db, mode);
            converge(&p, p_host, &[&q, &w], db);
        }

        let st = q.stop();
        assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", q.log_text());
        let mut old_pos = Vec::new();
        for (db, _, _) in dbs {
            insert_rows(&p, db, 21..=25);
            converge(&p, p_host, &[&w], db);
            old_pos.push(pos_of(&p, db));
        }
        eprintln!(
            "SIGKILL {p_host} ({}) at {}, positions {:?}",
            x.name(),
            utc_now(),
            old_pos
        );
        p.kill();
        q.spawn();
        let took = wait_primary(&[&p, &q, &w], 1, FAILOVER, &agent);
        eprintln!(
            "{} -> {}: {q_host} primary {:.1} s after the kill",
            x.name(),
            y.name(),
            took.as_secs_f64()
        );
        for ((db, _, n), old) in dbs.iter().zip(&old_pos) {
            assert_eq!(ids(&q, db), (1..=20).collect::<Vec<_>>(), "{db}");
            insert_rows(&q, db, 101..=100 + n);
            let new = pos_of(&q, db);
            eprintln!(
                "{db}: old nodes at {}, new primary at {}",
                old.trim(),
                new.trim()
            );
            assert_ne!(&new, old);
            converge(&q, q_host, &[&w], db);
        }
        p.spawn();
        for (db, _, n) in dbs {
            insert_rows(&q, db, 201..=205);
            converge(&q, q_host, &[&p, &w], db);
            let want: Vec<i64> = (1..=20).chain(101..=100 + n).chain(201..=205).collect();
            for r in [&p, &q, &w] {
                assert_eq!(ids(r, db), want, "{db} on {} ({})", r.url, imp_of(r));
            }
        }
        assert_eq!(wait_one_primary(&[&p, &q, &w], Duration::from_secs(5)), 1);
        verify_ours(&ltx, &[&p, &q, &w]);
    }
}

/// Waits for `n` to exit after a SIGTERM (20 s at most); its status.
fn wait_exit(n: &mut Node, what: &str) -> std::process::ExitStatus {
    let t = Instant::now();
    let st = n
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{what}: no exit status\n{}", n.log_text()));
    eprintln!(
        "{what} exited {:.1} s after SIGTERM: {st}",
        t.elapsed().as_secs_f64()
    );
    st
}

/// The Consul session that holds the lease key `key`, if one does.
fn lease_session(agent: &Agent, key: &str) -> Option<String> {
    let (status, body) = agent.raw("GET", &format!("/v1/kv/{key}"), b"")?;
    (status == 200).then_some(())?;
    json_str(&body, "Session").filter(|s| !s.is_empty())
}

/// How the lease held by session `old` got to `new_host`: "handed off"
/// (the new primary holds the key with that same session) or "released"
/// (the session is gone: destroyed by its node, since Consul expires an
/// unrenewed session only 2 x TTL after its last renewal, well after a
/// stop that takes a few seconds). Panics if `new_host` does not hold it.
fn lease_moved(agent: &Agent, key: &str, old: &str, new_host: &str) -> &'static str {
    let (_, value) = agent
        .raw("GET", &format!("/v1/kv/{key}?raw"), b"")
        .expect("consul answers");
    assert!(
        value.contains(&format!("\"hostname\":\"{new_host}\"")),
        "{new_host} does not hold the lease key: {value:?}"
    );
    if lease_session(agent, key).as_deref() == Some(old) {
        return "handed off";
    }
    let (_, s) = agent
        .raw("GET", &format!("/v1/session/info/{old}"), b"")
        .expect("consul answers");
    assert!(
        !s.contains(old),
        "the old session {old} still lives but no longer holds the key: {s}"
    );
    "released"
}

/// SIGTERM of the primary, both ways: ours (`ours-1`, candidate), LiteFS
/// (`litefs-1`, candidate), LiteFS (`litefs-2`, not a candidate). The
/// other implementation's candidate becomes primary, writes go on, the old
/// primary started again follows it and converges.
///
/// What each side does: our primary hands its lease off only to a replica
/// that says it is a candidate (the `litefs-candidate` header our nodes
/// send); LiteFS replicas do not say it, so ours releases the lease (key
/// unlocked, value emptied, session destroyed: no lock-delay) and LiteFS's
/// candidate acquires it on its next look. (Handing it to a LiteFS replica
/// blindly would be wrong: LiteFS's `AcquireExisting` does not check
/// `candidate`, so a non-candidate would become primary.) LiteFS v0.5.14 never hands off
/// at shutdown: `monitorLeaseAsPrimary` returns on the cancelled context
/// and its deferred `lease.Close()` releases the key and destroys the
/// session ("exiting primary, destroying lease"); our candidate then
/// acquires. Neither waits for the TTL.
#[test]
fn mixed_sigterm_moves_primary_both_ways() {
    let Some((litefs, ltx, agent)) = setup() else {
        return;
    };
    let key = "litefs/peer-sigterm";
    let db = "term.db";
    let mut a = start(&agent, &litefs, key, Impl::Ours, "ours-1", true);
    wait_one_primary(&[&a], ELECTION);
    let mut b = start(&agent, &litefs, key, Impl::LiteFs, "litefs-1", true);
    let c = start(&agent, &litefs, key, Impl::LiteFs, "litefs-2", false);
    create_table(&a, db, "WAL");
    converge(&a, "ours-1", &[&b, &c], db);

    // Ours stops: LiteFS takes over.
    let sid = lease_session(&agent, key).expect("ours-1 holds the lease");
    eprintln!("SIGTERM ours-1 (ours, primary) at {}", utc_now());
    signal_node(&a, libc::SIGTERM);
    let took = wait_primary(&[&b, &c], 0, FAILOVER, &agent);
    eprintln!(
        "SIGTERM ours -> LiteFS: litefs-1 primary {:.1} s after SIGTERM",
        took.as_secs_f64()
    );
    let st = wait_exit(&mut a, "ours-1");
    assert!(st.success(), "ours-1: {st}\n{}", a.log_text());
    let how = lease_moved(&agent, key, &sid, "litefs-1");
    eprintln!("ours-1 at shutdown: {how}");
    assert_eq!(
        how, "released",
        "ours-1 handed its lease to a LiteFS replica, which may not be a candidate"
    );
    wait_log_line(&a, &["consul lease released"], Duration::from_secs(1));
    let have = ids(&b, db);
    assert_eq!(have, (1..=20).collect::<Vec<_>>());
    insert_rows(&b, db, 101..=110);
    converge(&b, "litefs-1", &[&c], db);
    a.spawn();
    converge(&b, "litefs-1", &[&a, &c], db);
    assert_eq!(wait_one_primary(&[&a, &b, &c], Duration::from_secs(5)), 1);

    // LiteFS stops: ours takes over.
    let sid = lease_session(&agent, key).expect("litefs-1 holds the lease");
    eprintln!("SIGTERM litefs-1 (LiteFS, primary) at {}", utc_now());
    signal_node(&b, libc::SIGTERM);
    let took = wait_primary(&[&a, &b, &c], 0, FAILOVER, &agent);
    eprintln!(
        "SIGTERM LiteFS -> ours: ours-1 primary {:.1} s after SIGTERM",
        took.as_secs_f64()
    );
    let st = wait_exit(&mut b, "litefs-1");
    let how = lease_moved(&agent, key, &sid, "ours-1");
    eprintln!("litefs-1 ({st}) at shutdown: {how}");
    assert_eq!(how, "released", "{}", logs(&[&a, &b, &c]));
    wait_log_line(
        &b,
        &["exiting primary, destroying lease"],
        Duration::from_secs(1),
    );
    assert!(
        !b.log_text().contains("cannot remove lease"),
        "{}",
        b.log_text()
    );
    let have = ids(&a, db);
    assert_eq!(have.len(), 30, "{have:?}");
    insert_rows(&a, db, 201..=210);
    converge(&a, "ours-1", &[&c], db);
    b.spawn();
    converge(&a, "ours-1", &[&b, &c], db);
    assert_eq!(ids(&b, db), ids(&a, db));
    assert_eq!(wait_one_primary(&[&a, &b, &c], Duration::from_secs(5)), 0);
    verify_ours(&ltx, &[&a, &b, &c]);
}

/// `POST /promote` both ways: ours (`ours-1`, candidate, first primary),
/// LiteFS (`litefs-1`, candidate), ours (`ours-2`, not a candidate). The
/// LiteFS replica promoted asks our primary's `/handoff` with its node ID
/// and gets the lease in a Handoff frame; then our replica promoted gets it
/// back from LiteFS the same way. Each time the promoted node becomes the
/// only primary, the old one a replica, writes go on and all converge.
#[test]
fn mixed_promote_both_ways() {
    let Some((litefs, ltx, agent)) = setup() else {
        return;
    };
    let key = "litefs/peer-promote";
    let db = "promote.db";
    let a = start(&agent, &litefs, key, Impl::Ours, "ours-1", true);
    wait_one_primary(&[&a], ELECTION);
    let b = start(&agent, &litefs, key, Impl::LiteFs, "litefs-1", true);
    let c = start(&agent, &litefs, key, Impl::Ours, "ours-2", false);
    let all = [&a, &b, &c];
    create_table(&a, db, "WAL");
    converge(&a, "ours-1", &[&b, &c], db);

    // A LiteFS replica promoted while ours is primary. LiteFS answers once
    // the primary agreed; it becomes primary when the frame arrives.
    let sid = lease_session(&agent, key).expect("ours-1 holds the lease");
    let t = Instant::now();
    let (status, body) = promote(&b.url, Duration::from_secs(30));
    eprintln!(
        "POST /promote on litefs-1: {status} in {:.3} s: {}",
        t.elapsed().as_secs_f64(),
        body.trim()
    );
    assert_eq!(status, 200, "{body}\n{}", logs(&all));
    let took = wait_primary(&all, 1, Duration::from_secs(20), &agent);
    eprintln!(
        "litefs-1 primary {:.3} s after /promote answered",
        took.as_secs_f64()
    );
    assert_eq!(lease_moved(&agent, key, &sid, "litefs-1"), "handed off");
    insert_rows(&b, db, 101..=110);
    converge(&b, "litefs-1", &[&a, &c], db);
    let e = try_sql(
        &a.path(db),
        "INSERT INTO t(v) VALUES ('no');",
        Duration::from_secs(10),
    )
    .expect_err("the demoted primary accepted a write");
    eprintln!("ours-1, demoted, refuses writes: {e}");

    // Our replica promoted while LiteFS is primary. Ours answers once it is
    // primary.
    let sid = lease_session(&agent, key).expect("litefs-1 holds the lease");
    let t = Instant::now();
    let (status, body) = promote(&a.url, Duration::from_secs(30));
    eprintln!(
        "POST /promote on ours-1: {status} in {:.3} s: {}",
        t.elapsed().as_secs_f64(),
        body.trim()
    );
    assert_eq!(status, 200, "{body}\n{}", logs(&all));
    assert!(
        info(&a.url).is_some_and(|i| i.is_primary),
        "/promote answered 200 but ours-1 is not primary\n{}",
        logs(&all)
    );
    wait_primary(&all, 0, Duration::from_secs(20), &agent);
    assert_eq!(lease_moved(&agent, key, &sid, "ours-1"), "handed off");
    insert_rows(&a, db, 201..=210);
    converge(&a, "ours-1", &[&b, &c], db);
    let rows = ids(&a, db);
    assert_eq!(rows.len(), 40, "{rows:?}");
    assert_eq!(ids(&b, db), rows);

    // A non-candidate of either kind refuses to be promoted.
    let (status, body) = promote(&c.url, Duration::from_secs(30));
    assert_eq!(status, 409, "{body}");
    assert_eq!(wait_one_primary(&all, Duration::from_secs(5)), 0);
    verify_ours(&ltx, &all);
}
