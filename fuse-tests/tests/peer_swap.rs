//! Migration, as docs/migrating.md tells an operator to do it: a running
//! three-node LiteFS v0.5.14 cluster on Consul has its nodes replaced by
//! litefs-rs one at a time, in place (same config file, same data
//! directory), replicas first and the primary last, while a client keeps
//! writing to whichever node is primary; then every node is swapped back
//! to LiteFS the same way. No acknowledged write may be lost, every node
//! ends with the same bytes, and every LTX file ours wrote passes the Go
//! `ltx verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{pos_of, require_fuse, same_bytes, sql, wait_same_pos_within};
use litefs_fuse_tests::consul::{consul_lease, info, logs, try_sql, wait_one_primary, Agent};
use litefs_fuse_tests::peer::{self, go_verify, Impl};
use litefs_fuse_tests::{free_port, Node};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the writer may write: each node's API URL and database path.
type Targets = Arc<Mutex<Vec<(String, PathBuf)>>>;

/// Writes rows 1, 2, 3... to whichever node says it is primary, every
/// 20 ms, until `stop`; returns the IDs whose INSERT succeeded (the
/// acknowledged ones) and how many attempts failed.
fn writer(
    targets: Targets,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(BTreeSet<i64>, u32)> {
    std::thread::spawn(move || {
        let mut acked = BTreeSet::new();
        let mut failed = 0;
        let mut next = 1i64;
        while !stop.load(Ordering::SeqCst) {
            let ts = targets.lock().unwrap().clone();
            let primary = ts
                .iter()
                .find(|(url, _)| info(url).is_some_and(|i| i.is_primary));
            if let Some((_, db)) = primary {
                let q = format!("INSERT INTO t(id, v) VALUES ({next}, hex(randomblob(64)));");
                match try_sql(db, &q, Duration::from_secs(10)) {
                    Ok(_) => {
                        acked.insert(next);
                        next += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (acked, failed)
    })
}

fn ids(n: &Node) -> BTreeSet<i64> {
    sql(&n.path("app.db"), "SELECT id FROM t;")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// The index of the one primary among `nodes`, within 60 s.
fn primary(nodes: &[Node]) -> usize {
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_one_primary(&refs, Duration::from_secs(60))
}

/// Waits (60 s at most) until node `i` has the `-pos` of primary `p`; the
/// failure names every node's view of the cluster and their logs.
fn wait_caught_up(nodes: &[Node], p: usize, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (want, got) = (pos_of(&nodes[p], "app.db"), pos_of(&nodes[i], "app.db"));
        if want == got {
            return;
        }
        if Instant::now() > deadline {
            let views: Vec<String> = nodes
                .iter()
                .map(|n| {
                    format!(
                        "{} ({}): pos {:?}, /info {:?}",
                        n.url,
                        n.implementation().name(),
                        pos_of(n, "app.db"),
                        info(&n.url).map(|i| i.body)
                    )
                })
                .collect();
            panic!(
                "node {} at {got:?}, primary node {} at {want:?} after 60 s\n{}\n{}",
                i + 1,
                p + 1,
                views.join("\n"),
                logs(&nodes.iter().collect::<Vec<_>>())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops node `i` (SIGTERM), restarts it in place as `imp`, and waits until
/// the cluster has one primary again and node `i` has caught up with it.
fn swap(nodes: &mut [Node], i: usize, imp: Impl, litefs: &std::path::Path) {
    let from = nodes[i].implementation();
    let t = Instant::now();
    let status = nodes[i].stop();
    // LiteFS exits 1 when it cannot unmount because a client still has a
    // file of the mount open (the writer's sqlite3, here), leaving the dead
    // mount behind. Ours detaches such a mount when it starts; LiteFS
    // would not, so an operator (or the container's end) clears it.
    let busy = from == Impl::LiteFs
        && status.is_some_and(|s| s.code() == Some(1))
        && nodes[i].log_text().contains("failed to unmount");
    if busy {
        eprintln!("LiteFS could not unmount a busy mount on SIGTERM");
        if imp == Impl::LiteFs {
            litefs_fuse_tests::unmount(&nodes[i].mount);
        }
    }
    assert!(
        busy || status.is_some_and(|s| s.success()),
        "{} ({}) did not exit cleanly on SIGTERM: {status:?}\n{}",
        nodes[i].url,
        from.name(),
        logs(&[&nodes[i]])
    );
    nodes[i].switch_impl(imp, litefs);
    nodes[i].spawn();
    let p = primary(nodes);
    if p != i {
        wait_caught_up(nodes, p, i);
    }
    eprintln!(
        "node {} swapped {} -> {} in {:?}; primary is node {} ({})",
        i + 1,
        from.name(),
        imp.name(),
        t.elapsed(),
        p + 1,
        nodes[p].implementation().name()
    );
}

#[test]
fn a_litefs_cluster_moves_to_litefs_rs_node_by_node_and_back() {
    if !require_fuse() {
        return;
    }
    let Some(litefs) = peer::litefs_bin() else {
        return;
    };
    let Some(agent) = Agent::start() else { return };
    let ltx = peer::ltx_bin();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let port = free_port();
            let lease = consul_lease(
                &format!("node-{}", i + 1),
                &format!("http://127.0.0.1:{port}"),
                &agent.url(),
                "litefs/migrate",
                true,
                "",
            );
            Node::new_peer_on(&litefs, port, &lease, "log:\n  timestamp: true\n", "")
        })
        .collect();
    for n in &mut nodes {
        n.spawn();
    }
    let p = primary(&nodes);
    sql(
        &nodes[p].path("app.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
    );
    let targets: Targets = Arc::new(Mutex::new(
        nodes
            .iter()
            .map(|n| (n.url.clone(), n.path("app.db")))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(targets, stop.clone());

    // There and back: replicas first, then the primary, each direction.
    for imp in [Impl::Ours, Impl::LiteFs] {
        std::thread::sleep(Duration::from_secs(1));
        let p = primary(&nodes);
        let mut order: Vec<usize> = (0..3).filter(|&k| k != p).collect();
        order.push(p);
        for i in order {
            swap(&mut nodes, i, imp, &litefs);
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(nodes.iter().all(|n| n.implementation() == imp));
        if let (Impl::Ours, Some(ltx)) = (imp, &ltx) {
            for n in &nodes {
                go_verify(ltx, n);
            }
        }
    }

    stop.store(true, Ordering::SeqCst);
    let (acked, failed) = w.join().unwrap();
    assert!(
        acked.len() > 20,
        "only {} writes succeeded during the migration",
        acked.len()
    );
    let p = primary(&nodes);
    let have = ids(&nodes[p]);
    let lost: Vec<&i64> = acked.difference(&have).collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {lost:?}\n{}",
        logs(&nodes.iter().collect::<Vec<_>>())
    );
    for (k, n) in nodes.iter().enumerate() {
        if k != p {
            wait_same_pos_within(&nodes[p], n, "app.db", Duration::from_secs(60));
            same_bytes(&nodes[p], n, "app.db");
        }
    }
    eprintln!(
        "{} writes acknowledged, {failed} attempts refused while nodes were swapped",
        acked.len()
    );
    // What the data directories hold now, files of both implementations.
    if let Some(ltx) = ltx {
        for n in &nodes {
            go_verify(&ltx, n);
        }
    }
}
