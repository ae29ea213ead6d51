//! The HTTP proxy and `exec` end to end: a real web application
//! (`fuse-tests/apps/webapp.py`: Python's HTTP server over SQLite in the
//! mount) run by `exec` on each of three `litefs mount` processes (a
//! static primary and two replicas) behind each node's proxy, and a client
//! speaking plain HTTP/1.1 with a cookie jar of one cookie (`__txid`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{get, require_fuse, sample, wait_same_pos};
use litefs_fuse_tests::{free_port, Node};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn webapp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/webapp.py")
}

/// An answer: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port`, every step bounded.
fn http(port: u16, method: &str, path: &str, cookie: Option<&str>, body: &str) -> Reply {
    let addr = format!("127.0.0.1:{port}");
    let mut s = std::net::TcpStream::connect(&addr).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// The `__txid=...` pair of a `Set-Cookie` answer.
fn txid_cookie(r: &Reply) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|kv| kv.starts_with("__txid="))
        .map(str::to_owned)
}

/// A node whose `exec` runs the web app on `app` behind its proxy on
/// `proxy`. Dropping it stops the node and makes sure its app is gone.
struct AppNode {
    node: Node,
    proxy: u16,
    marker: PathBuf,
    /// Holds the marker; its path, on the app's command line, tells this
    /// node's app from any other process.
    _side: tempfile::TempDir,
}

impl Drop for AppNode {
    fn drop(&mut self) {
        // SIGKILL: the app must go with its node (the death signal `exec`
        // arms); whatever the binary does, no app outlives the test.
        self.node.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !app_pids(&self.marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in app_pids(&self.marker) {
            eprintln!("app {pid} outlived its node by 20 s; killing it");
            // SAFETY: kill(2) on a process whose command line names this
            // node's own marker: the app this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Live processes (zombies excluded) whose command line contains `marker`.
fn app_pids(marker: &std::path::Path) -> Vec<i32> {
    let needle = marker.as_os_str().as_encoded_bytes();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie && cmd.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

fn app_node(lease: &str, name: &str, proxy_keys: &str) -> AppNode {
    let (port, app, proxy) = (free_port(), free_port(), free_port());
    let lease = lease.replace("PORT", &port.to_string());
    // The marker lives beside the node, outside the mount.
    let side = tempfile::tempdir().unwrap();
    let marker = side.path().join("stopped");
    let mut node = Node::new_lease_on(port, &lease, "");
    let mount = node.mount.clone();
    let extra = format!(
        "exec: \"python3 {} --db {}/app.db --port {app} --name {name} --marker {}\"\nproxy:\n  addr: \"127.0.0.1:{proxy}\"\n  target: \"127.0.0.1:{app}\"\n  db: app.db\n  max-lag: 1s\n  passthrough: [\"/static/*\"]\n{proxy_keys}",
        webapp().display(),
        mount.display(),
        marker.display(),
    );
    let mut text = std::fs::read_to_string(&node.config).unwrap();
    text.push_str(&extra);
    std::fs::write(&node.config, text).unwrap();
    node.spawn();
    AppNode {
        node,
        proxy,
        marker,
        _side: side,
    }
}

/// Waits until the app answers `GET /rows` through the proxy.
fn wait_app(n: &AppNode) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = std::panic::catch_unwind(|| http(n.proxy, "GET", "/rows", None, "").status == 200)
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the app behind {} never answered\n{}",
            n.proxy,
            n.node.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster() -> (AppNode, AppNode, AppNode) {
    let primary = app_node(
        "lease:\n  type: static\n  candidate: true\n  hostname: node-1\n  advertise-url: http://127.0.0.1:PORT\n",
        "node-1",
        "",
    );
    let url = primary.node.url.clone();
    let replica = |name: &str, keys: &str| {
        app_node(
            &format!("lease:\n  type: static\n  candidate: false\n  hostname: node-1\n  advertise-url: {url}\n  reconnect-delay: 100ms\n"),
            name,
            keys,
        )
    };
    let forwarding = replica("node-2", "  forward: true\n");
    let replaying = replica("node-3", "");
    wait_app(&primary);
    // The database exists once the app wrote to it; replicas' apps can
    // only read it once it has arrived.
    let r = http(primary.proxy, "POST", "/rows", None, "init");
    assert_eq!(r.status, 200, "{}", r.body);
    for n in [&forwarding, &replaying] {
        wait_app(n);
    }
    (primary, forwarding, replaying)
}

/// Reads its own writes through a replica's proxy: with `proxy.forward`
/// the POST reaches the primary's app; without it the client follows
/// `fly-replay` to the primary as Fly's router would; either way the next
/// GET on the replica, carrying `__txid`, sees the row. Passthrough paths
/// skip the proxy's wait; a read whose TXID never arrives gets 504.
#[test]
fn replicas_read_their_own_writes_through_the_proxy() {
    if !require_fuse() {
        return;
    }
    let (primary, forwarding, replaying) = cluster();
    // The primary's own proxy sets the cookie on writes.
    let r = http(primary.proxy, "POST", "/rows", None, "first");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.ends_with("node-1"), "{}", r.body);
    let mut cookie = txid_cookie(&r).expect("the primary's proxy sets __txid on a write");

    for i in 1..=40 {
        // Forwarded: the replica's proxy streams the POST to the primary.
        let r = http(
            forwarding.proxy,
            "POST",
            "/rows",
            Some(&cookie),
            &format!("f{i}"),
        );
        assert_eq!(r.status, 200, "forwarded POST {i}: {}", r.body);
        assert!(
            r.body.ends_with("node-1"),
            "POST {i} was not served by the primary's app: {}",
            r.body
        );
        let id: i64 = r.body.split(' ').next().unwrap().parse().unwrap();
        cookie = txid_cookie(&r).expect("a forwarded write carries the primary's __txid");
        let g = http(forwarding.proxy, "GET", "/rows", Some(&cookie), "");
        assert_eq!(g.status, 200, "{}", g.body);
        let max: i64 = g.body.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            g.body.ends_with("node-2"),
            "the read did not stay local: {}",
            g.body
        );
        assert!(
            max >= id,
            "GET {i} on the replica missed its own write {id}: {}",
            g.body
        );
    }

    for i in 1..=20 {
        let r = http(
            replaying.proxy,
            "POST",
            "/rows",
            Some(&cookie),
            &format!("r{i}"),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("fly-replay"),
            Some("instance=node-1"),
            "no fly-replay on a replica write"
        );
        assert!(
            r.body.is_empty(),
            "the replica's app served a write: {}",
            r.body
        );
        // What Fly's router does: replay on the instance named.
        let r = http(
            primary.proxy,
            "POST",
            "/rows",
            Some(&cookie),
            &format!("r{i}"),
        );
        let id: i64 = r.body.split(' ').next().unwrap().parse().unwrap();
        cookie = txid_cookie(&r).unwrap();
        let g = http(replaying.proxy, "GET", "/rows", Some(&cookie), "");
        let max: i64 = g.body.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(max >= id, "GET {i} on node-3 missed write {id}: {}", g.body);
    }
    wait_same_pos(&primary.node, &forwarding.node, "app.db");
    wait_same_pos(&primary.node, &replaying.node, "app.db");
    // The proxies count what they did.
    let m = get(&forwarding.node, "/metrics").1;
    let forwarded = sample(
        &m,
        "litefs_proxy_request_count{decision=\"write_forwarded\"}",
    );
    assert_eq!(forwarded, 40.0, "forwarded writes not counted:\n{m}");

    // A TXID far ahead: passthrough paths do not wait for it, others give
    // 504 after the proxy's 5 s wait.
    let far = "__txid=00ffffffffffffff";
    let t = Instant::now();
    let r = http(forwarding.proxy, "GET", "/static/app.css", Some(far), "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "static node-2");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a passthrough path waited {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let r = http(forwarding.proxy, "GET", "/rows", Some(far), "");
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "504 came after only {:?}",
        t.elapsed()
    );
}

/// `/litefs/health` answers 503 on a replica held behind for longer than
/// `max-lag` (its primary stopped), and 200 again once it catches up.
#[test]
fn health_reports_a_replica_held_behind() {
    if !require_fuse() {
        return;
    }
    let (primary, forwarding, _replaying) = cluster();
    let health = |n: &AppNode| http(n.proxy, "GET", "/litefs/health", None, "").status;
    assert_eq!(health(&primary), 200);
    assert_eq!(health(&forwarding), 200);
    let pid = primary.node.pid().unwrap() as i32;
    // SAFETY: signals to our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t = Instant::now();
    let mut saw_503 = false;
    while t.elapsed() < Duration::from_secs(10) {
        if health(&forwarding) == 503 {
            saw_503 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        saw_503,
        "health never said 503 with the primary stopped\n{}",
        forwarding.node.log_text()
    );
    eprintln!("health: 503 after {:?} without the primary", t.elapsed());
    let t = Instant::now();
    while health(&forwarding) != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "health stayed 503 after the primary came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `exec`: stopping the node stops the application cleanly (it got
/// SIGTERM and wrote its marker), the node exits 0; an application that
/// exits 3 makes `litefs mount` exit 3 (and unmount).
#[test]
fn exec_passes_signals_and_the_exit_code() {
    if !require_fuse() {
        return;
    }
    let mut n = app_node(
        "lease:\n  type: static\n  candidate: true\n  hostname: solo\n  advertise-url: http://127.0.0.1:PORT\n",
        "solo",
        "",
    );
    wait_app(&n);
    let status = n.node.stop().expect("the node ran");
    assert!(
        status.success(),
        "node exit {status:?}\n{}",
        n.node.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !n.marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&n.marker).ok().as_deref(),
        Some("stopped"),
        "the app did not get SIGTERM\n{}",
        n.node.log_text()
    );

    // An application that exits on its own with code 3.
    let port = free_port();
    let mut node = Node::new_lease_on(
        port,
        "lease:\n  type: static\n  candidate: true\n  hostname: solo\n",
        "exec:\n  - cmd: \"sh -c 'test -d .'\"\n  - cmd: \"sh -c 'sleep 0.5; exit 3'\"\n",
    );
    node.spawn();
    let status = node.wait_exit(Duration::from_secs(20)).expect("ran");
    assert_eq!(status.code(), Some(3), "{}", node.log_text());
    assert!(
        !litefs_fuse_tests::is_mounted(&node.mount),
        "still mounted after the app exited"
    );
}

/// `exec`: a node killed with SIGKILL (or crashing) takes its application
/// with it: the app gets SIGTERM (its marker says so) and exits instead of
/// running on, orphaned, over a dead mount.
#[test]
fn exec_app_dies_with_a_killed_node() {
    if !require_fuse() {
        return;
    }
    let mut n = app_node(
        "lease:\n  type: static\n  candidate: true\n  hostname: solo\n  advertise-url: http://127.0.0.1:PORT\n",
        "solo",
        "",
    );
    wait_app(&n);
    let before = app_pids(&n.marker);
    assert_eq!(before.len(), 1, "one app process: {before:?}");
    n.node.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !app_pids(&n.marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        app_pids(&n.marker),
        Vec::<i32>::new(),
        "the app outlived its SIGKILLed node by 30 s\n{}",
        n.node.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(&n.marker).ok().as_deref(),
        Some("stopped"),
        "the app did not get SIGTERM when its node died"
    );
}
