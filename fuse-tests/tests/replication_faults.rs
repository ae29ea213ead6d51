//! Replication under faults: bytes damaged or cut in flight, a replica that
//! diverged from the primary, and a long random workload with readers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{pos_of, require_fuse, same_bytes, wait_same_pos_within};
use litefs_fuse_tests::{primary_lease, replica_lease, sqlite3, Node};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the proxy does to the primary's bytes on each new connection.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Flip one byte this far into the response.
    Flip(usize),
    /// Close the connection after this many response bytes.
    Cut(usize),
    Pass,
}

/// A TCP proxy between a replica and the primary that damages the
/// primary's response stream as `faults` says, one fault per connection,
/// then passes everything through.
fn proxy(upstream: String, faults: Vec<Fault>) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = conns.clone();
    std::thread::spawn(move || {
        for (i, down) in l.incoming().enumerate() {
            let Ok(down) = down else { return };
            c2.fetch_add(1, Ordering::SeqCst);
            let fault = faults.get(i).copied().unwrap_or(Fault::Pass);
            let Ok(up) = TcpStream::connect(upstream.trim_start_matches("http://")) else {
                continue;
            };
            let (mut d_r, mut u_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut d_r, &mut u_w);
                let _ = u_w.shutdown(std::net::Shutdown::Write);
            });
            let (mut u_r, mut d_w) = (up, down);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0usize;
                loop {
                    let n = match u_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &mut buf[..n];
                    match fault {
                        Fault::Flip(at) if at >= sent && at < sent + n => chunk[at - sent] ^= 0x5a,
                        Fault::Cut(at) if sent + n >= at => {
                            let _ = d_w.write_all(&chunk[..at - sent]);
                            let _ = d_w.shutdown(std::net::Shutdown::Both);
                            let _ = u_r.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        _ => {}
                    }
                    if d_w.write_all(chunk).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = d_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (url, conns)
}

/// A byte flipped inside an LTX file in flight and a stream cut in the
/// middle of one: the replica rejects the file with a logged error, its
/// database stays as it was, and it recovers by reconnecting.
#[test]
fn damaged_and_cut_streams_are_rejected_and_recovered() {
    if !require_fuse() {
        return;
    }
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    // A database big enough that the first transfer is long (~2 MB).
    sqlite3(
        &p.path("big.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<2000)
         INSERT INTO t SELECT randomblob(1000) FROM s;",
    );
    let (url, conns) = proxy(
        p.url.clone(),
        vec![Fault::Flip(600_000), Fault::Cut(900_000), Fault::Pass],
    );
    let r = Node::start_lease(&replica_lease("primary-1", &url), "");
    wait_same_pos_within(&p, &r, "big.db", Duration::from_secs(30));
    same_bytes(&p, &r, "big.db");
    let log = r.log_text();
    assert!(
        conns.load(Ordering::SeqCst) >= 3,
        "reconnected after each fault:\n{log}"
    );
    assert!(
        log.contains("invalid LTX file") || log.contains("malformed stream"),
        "the flipped byte was reported:\n{log}"
    );
    assert!(
        log.contains("replication stream failed"),
        "the failures were logged:\n{log}"
    );
    // Nothing half-applied stayed: the chain of files on the replica
    // rebuilds the same database.
    r.check_chain("big.db");
}

/// A replica that took a write of its own (it ran as a primary on its own
/// data, as after a split brain) holds a different checksum at the same
/// TXID: it is detected and resnapshotted, never applied on top of.
#[test]
fn a_diverged_replica_is_resnapshotted() {
    if !require_fuse() {
        return;
    }
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    sqlite3(
        &p.path("d.db"),
        "CREATE TABLE t(v); INSERT INTO t VALUES ('common');",
    );
    let mut r = Node::start_lease(&replica_lease("primary-1", &p.url), "");
    wait_same_pos_within(&p, &r, "d.db", Duration::from_secs(20));
    r.stop();
    // The replica, alone, as a primary of its own data: one local write.
    let replica_config = std::fs::read_to_string(&r.config).unwrap();
    let solo = replica_config
        .replace("candidate: false", "candidate: true")
        .replace(&format!("  advertise-url: {}\n", p.url), "");
    std::fs::write(&r.config, &solo).unwrap();
    r.spawn();
    sqlite3(&r.path("d.db"), "INSERT INTO t VALUES ('diverged');");
    r.stop();
    // Meanwhile the primary took its own transaction at the same TXID.
    sqlite3(&p.path("d.db"), "INSERT INTO t VALUES ('primary');");
    let pp = p.sync_pos("d.db");
    let rp = std::fs::read_dir(r.data.join("dbs/d.db/ltx"))
        .unwrap()
        .count();
    assert!(rp > 0);
    std::fs::write(&r.config, &replica_config).unwrap();
    r.spawn();
    wait_same_pos_within(&p, &r, "d.db", Duration::from_secs(20));
    assert_eq!(pos_of(&r, "d.db"), pp);
    assert_eq!(
        sqlite3(&r.path("d.db"), "SELECT group_concat(v) FROM t;").trim(),
        "common,primary"
    );
    same_bytes(&p, &r, "d.db");
}

/// 3 nodes, 3 databases in different journal modes, 10,000 random
/// transactions on the primary while readers with a busy timeout check an
/// invariant on a replica: no error, no torn state; afterwards every node
/// has the same positions and byte-identical databases.
#[test]
fn ten_thousand_random_transactions_on_three_nodes() {
    if !require_fuse() {
        return;
    }
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    let rs: Vec<Node> = (0..2)
        .map(|_| Node::start_lease(&replica_lease("primary-1", &p.url), ""))
        .collect();
    let dbs = [("w.db", "WAL"), ("d.db", "DELETE"), ("t.db", "TRUNCATE")];
    for (db, mode) in dbs {
        sqlite3(
            &p.path(db),
            &format!(
                "PRAGMA journal_mode={mode}; CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER, pad BLOB);
                 WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<100)
                 INSERT INTO acct SELECT i, 1000, randomblob(100) FROM s;"
            ),
        );
        for r in &rs {
            wait_same_pos_within(&p, r, db, Duration::from_secs(20));
        }
    }
    let script = format!(
        r#"
import sqlite3, threading, random, time, sys
P = '{p}'; R = '{r}'
DBS = ['w.db', 'd.db', 't.db']
stop = False
errors = []
def writer(i):
    db = DBS[i]
    c = sqlite3.connect(P + '/' + db, timeout=30, isolation_level=None)
    c.execute('PRAGMA synchronous=NORMAL')
    rnd = random.Random(i)
    for n in range(3334 if i < 2 else 3332):
        a, b = rnd.sample(range(1, 101), 2)
        amt = rnd.randint(1, 20)
        c.execute('BEGIN IMMEDIATE')
        c.execute('UPDATE acct SET bal = bal - ?, pad = randomblob(?) WHERE id = ?', (amt, rnd.randint(10, 3000), a))
        c.execute('UPDATE acct SET bal = bal + ? WHERE id = ?', (amt, b))
        if rnd.random() < 0.05:
            c.execute('INSERT INTO acct(bal, pad) VALUES (0, randomblob(2000))')
        if rnd.random() < 0.03:
            c.execute('DELETE FROM acct WHERE id > 100 AND bal = 0 AND id % 2 = 0')
        c.execute('COMMIT')
reads = [0, 0, 0]
def reader(i):
    c = sqlite3.connect(R + '/' + DBS[i], timeout=30)
    while not stop:
        try:
            s, = c.execute('SELECT sum(bal) FROM acct').fetchone()
            if s != 100000:
                errors.append((DBS[i], 'torn', s))
            reads[i] += 1
        except sqlite3.Error as e:
            errors.append((DBS[i], str(e)))
ws = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
rs = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
for t in ws + rs: t.start()
for t in ws: t.join()
stop = True
for t in rs: t.join()
print('reads', reads, 'errors', errors[:10])
sys.exit(1 if errors or min(reads) < 20 else 0)
"#,
        p = p.mount.display(),
        r = rs[0].mount.display()
    );
    let out = Command::new("timeout")
        .args(["300", "python3", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        rs[0].log_text()
    );
    let total: u64 = dbs
        .iter()
        .map(|(db, _)| {
            p.sync_pos(db)[..16]
                .chars()
                .fold(0u64, |a, c| a * 16 + c.to_digit(16).unwrap() as u64)
        })
        .sum();
    assert!(total >= 10_000, "{total} TXIDs");
    for r in &rs {
        for (db, _) in dbs {
            wait_same_pos_within(&p, r, db, Duration::from_secs(60));
            same_bytes(&p, r, db);
        }
    }
}

/// Past 64 MiB the LTX files, exports and imports take the mapped-file
/// paths (a file read for the stream, sent in pieces, spilled to disk on
/// the replica; an export built in a temporary file; an import received
/// into one and encoded into another): a 70 MB transaction and a 70 MB
/// database replicate, export and import byte for byte.
#[test]
fn large_files_take_the_mapped_paths_and_arrive_whole() {
    if !require_fuse() {
        return;
    }
    let p = Node::start_lease(&primary_lease("primary-1"), "");
    sqlite3(
        &p.path("large.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<70)
         INSERT INTO t SELECT randomblob(1000000) FROM s;",
    );
    let r = Node::start_lease(&replica_lease("primary-1", &p.url), "");
    wait_same_pos_within(&p, &r, "large.db", Duration::from_secs(60));
    same_bytes(&p, &r, "large.db");

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("large-export.db");
    let o = Command::new(litefs_fuse_tests::litefs_bin())
        .args(["export", "-name", "large.db", "-url", &p.url])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&file).unwrap() == std::fs::read(p.path("large.db")).unwrap(),
        "the export differs from the database"
    );
    assert!(std::fs::metadata(&file).unwrap().len() > 64 << 20);

    // And back in, as a new database: received into a temporary file,
    // encoded into another, replicated.
    let o = Command::new(litefs_fuse_tests::litefs_bin())
        .args(["import", "-name", "copy.db", "-url", &p.url])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_same_pos_within(&p, &r, "copy.db", Duration::from_secs(60));
    same_bytes(&p, &r, "copy.db");
    assert!(
        std::fs::read(p.path("copy.db")).unwrap() == std::fs::read(&file).unwrap(),
        "the import differs from the file"
    );
}
