//! Helpers for tests of Consul-lease clusters: a real `consul agent -dev`
//! (one per test, on free ports, killed when dropped) that can be paused,
//! resumed and restarted; `litefs mount` nodes configured for it; the node
//! API's `/info` and `/promote`; and bounded waits for an election.
//!
//! The Consul binary is `$CONSUL_BIN`, else `.deps/bin/consul` of the
//! workspace (`scripts/install-test-deps.sh`). Without it [`Agent::start`]
//! prints SKIP and returns `None`, unless `LITEFS_REQUIRE_DEPS=1` or
//! `CI=true`, where it panics (the rules of `crates/lease/tests/consul.rs`).

use crate::{free_port, Node};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Consul binary, or `None` (after printing SKIP) when it is missing
/// and missing dependencies may skip tests; panics when they may not.
pub fn consul_bin() -> Option<PathBuf> {
    let candidate = match std::env::var_os("CONSUL_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/bin/consul"),
    };
    if candidate.is_file() {
        return Some(candidate);
    }
    assert!(
        !crate::deps_required(),
        "consul not found at {} (set CONSUL_BIN or run scripts/install-test-deps.sh); \
         required because LITEFS_REQUIRE_DEPS=1 or CI=true",
        candidate.display()
    );
    eprintln!(
        "SKIP: consul not found at {} (set CONSUL_BIN or run scripts/install-test-deps.sh)",
        candidate.display()
    );
    None
}

/// A `consul agent -dev` on 127.0.0.1 (DNS and gRPC off), killed on drop.
pub struct Agent {
    child: Option<Child>,
    bin: PathBuf,
    http: u16,
    paused: bool,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// `n` distinct ports from [`free_port`].
fn distinct_ports(n: usize) -> Vec<u16> {
    let mut v: Vec<u16> = Vec::with_capacity(n);
    while v.len() < n {
        let p = free_port();
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

impl Agent {
    /// Starts an agent on free ports and waits until it has elected itself
    /// leader and accepts KV writes and sessions; `None` when Consul is not
    /// installed (see [`consul_bin`]).
    pub fn start() -> Option<Agent> {
        let bin = consul_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("litefs-consul")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("consul.log");
        let mut agent = Agent {
            child: None,
            bin,
            http: 0,
            paused: false,
            log,
            _dir: dir,
        };
        agent.launch(None);
        Some(agent)
    }

    /// Starts the process, on `http` or a free port, retrying with other
    /// ports (all of them when `http` is `None`) when it does not come up
    /// (a port taken between choosing it and binding it).
    fn launch(&mut self, http: Option<u16>) {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let ports = distinct_ports(4);
            let http_port = http.unwrap_or(ports[0]);
            let others: Vec<u16> = ports.into_iter().filter(|&p| p != http_port).collect();
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("open consul log");
            let mut child = Command::new(&self.bin)
                .args([
                    "agent",
                    "-dev",
                    "-bind",
                    "127.0.0.1",
                    "-client",
                    "127.0.0.1",
                ])
                .args(["-http-port", &http_port.to_string()])
                .args(["-dns-port", "-1", "-grpc-port", "-1"])
                .args(["-serf-lan-port", &others[0].to_string()])
                .args(["-serf-wan-port", &others[1].to_string()])
                .args(["-server-port", &others[2].to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup consul log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
            let started = Instant::now();
            if wait_ready(&mut child, http_port) {
                eprintln!(
                    "consul agent ready on port {http_port} in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                self.child = Some(child);
                self.http = http_port;
                self.paused = false;
                return;
            }
            reap(child, "consul agent");
            assert!(
                attempt < ATTEMPTS,
                "consul agent did not start in {ATTEMPTS} attempts; its log:\n{}",
                tail(&self.log_text(), 60)
            );
            eprintln!("consul agent attempt {attempt} failed (port clash?), retrying");
        }
    }

    /// The agent's HTTP API, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// The agent's HTTP port.
    pub fn port(&self) -> u16 {
        self.http
    }

    /// The agent's output so far (every start of it).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        let c = self
            .child
            .as_ref()
            .expect("the consul agent is not running");
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", c.id());
    }

    /// Freezes the agent (SIGSTOP): connections to it are accepted by the
    /// kernel but never answered, as with a partitioned Consul.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
        // kill(2) returns before every thread has stopped: wait until they
        // all have (state `T` in /proc), at most 2 s.
        if let Some(c) = &self.child {
            let tasks = format!("/proc/{}/task", c.id());
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let all_stopped = std::fs::read_dir(&tasks).is_ok_and(|rd| {
                    rd.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
                            st.rsplit_once(')')
                                .and_then(|(_, rest)| rest.split_whitespace().next())
                                .is_some_and(|state| state == "T" || state == "t")
                        })
                    })
                });
                if all_stopped {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Lets a paused agent run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Kills the agent (its dev-mode state, sessions and keys included, is
    /// lost) and waits for it, at most 10 s.
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            reap(c, "consul agent");
        }
        self.paused = false;
    }

    /// Starts a stopped agent again on the same HTTP port (so the nodes'
    /// `lease.consul.url` still points at it), empty; kills it first if it
    /// still runs.
    pub fn restart(&mut self) {
        self.stop();
        self.launch(Some(self.http));
    }

    /// One request to the agent; `None` when it does not answer in 5 s.
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        http_request(&self.url(), method, path, body, Duration::from_secs(5))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too; no SIGCONT needed.
        self.stop();
    }
}

/// SIGKILLs `child` and waits for it at most 10 s (never unbounded: a
/// process that does not go away is reported and left).
fn reap(mut child: Child, what: &str) {
    let _ = child.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{what} pid {} not gone 10 s after SIGKILL; leaving it",
        child.id()
    );
}

/// Waits (15 s at most) until the agent at `port` has a leader, takes a KV
/// write and creates a session on its own node (a fresh agent answers 500
/// "Missing node registration" until anti-entropy has registered it).
/// False if the process died or time ran out.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}");
    let t = Duration::from_secs(2);
    let ready = || -> Option<()> {
        let (status, leader) = http_request(&url, "GET", "/v1/status/leader", b"", t)?;
        (status == 200 && !matches!(leader.trim(), "" | "\"\"")).then_some(())?;
        let (status, ok) = http_request(&url, "PUT", "/v1/kv/litefs-test-ready", b"1", t)?;
        (status == 200 && ok.trim() == "true").then_some(())?;
        let (status, body) = http_request(
            &url,
            "PUT",
            "/v1/session/create",
            br#"{"Name":"litefs-test-ready","TTL":"10s"}"#,
            t,
        )?;
        (status == 200).then_some(())?;
        let id = json_str(&body, "ID")?;
        let (status, _) = http_request(&url, "PUT", &format!("/v1/session/destroy/{id}"), b"", t)?;
        (status == 200).then_some(())?;
        let (status, _) = http_request(&url, "DELETE", "/v1/kv/litefs-test-ready", b"", t)?;
        (status == 200).then_some(())
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if ready().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One HTTP/1.1 request (`Connection: close`) to `base` (`http://host:port`)
/// with every step bounded by `timeout`: `(status, body)`, or `None` when
/// the connection fails or no whole answer comes in time.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Option<(u16, String)> {
    let addr = base.strip_prefix("http://").unwrap_or(base);
    let addr = addr.split('/').next().unwrap_or(addr);
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    // The whole answer within `timeout`, however it trickles in.
    let deadline = Instant::now() + timeout;
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if Instant::now() > deadline {
            return None;
        }
    }
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut payload = resp[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload)?;
    }
    Some((status, String::from_utf8_lossy(&payload).into_owned()))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let start = eol + 2;
        out.extend_from_slice(b.get(start..start + size)?);
        b = b.get(start + size + 2..)?;
    }
}

/// The raw text of the value of `"key"` in a flat JSON object (enough for
/// booleans and strings without escapes; no JSON crate in this package).
fn json_raw<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let at = body.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if let Some(s) = rest.strip_prefix('"') {
        s.find('"')? + 2
    } else {
        rest.find([',', '}', ']']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// A boolean member of a JSON object.
pub fn json_bool(body: &str, key: &str) -> Option<bool> {
    match json_raw(body, key)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A string member of a JSON object (no escapes).
pub fn json_str(body: &str, key: &str) -> Option<String> {
    let raw = json_raw(body, key)?;
    Some(raw.strip_prefix('"')?.strip_suffix('"')?.to_owned())
}

/// What `GET /info` says about a node.
#[derive(Debug, Clone)]
pub struct Info {
    /// `isPrimary`.
    pub is_primary: bool,
    /// `candidate`.
    pub candidate: bool,
    /// The whole JSON.
    pub body: String,
}

/// `GET <url>/info` within 2 s; `None` when the node does not answer 200
/// with `isPrimary` and `candidate` (not running, or not up yet).
pub fn info(url: &str) -> Option<Info> {
    let (status, body) = http_request(url, "GET", "/info", b"", Duration::from_secs(2))?;
    if status != 200 {
        return None;
    }
    Some(Info {
        is_primary: json_bool(&body, "isPrimary")?,
        candidate: json_bool(&body, "candidate")?,
        body,
    })
}

/// `POST <url>/promote`, waiting up to `timeout` for the answer;
/// panics when there is none.
pub fn promote(url: &str, timeout: Duration) -> (u16, String) {
    http_request(url, "POST", "/promote", b"", timeout)
        .unwrap_or_else(|| panic!("POST {url}/promote: no answer in {timeout:?}"))
}

/// The `lease:` section of a Consul lease (the keys of LiteFS), with
/// `reconnect-delay: 100ms`, `demote-delay: 2s`, `ttl: 10s` and
/// `lock-delay: 1s`. `extra_lease_keys` are more `key: value` lines of the
/// `lease:` section (indented by two spaces if they are not); a key given
/// there replaces the default of the same name.
pub fn consul_lease(
    hostname: &str,
    advertise_url: &str,
    consul_url: &str,
    key: &str,
    candidate: bool,
    extra_lease_keys: &str,
) -> String {
    let extra: Vec<String> = extra_lease_keys
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            if l.starts_with(' ') {
                l.to_owned()
            } else {
                format!("  {l}")
            }
        })
        .collect();
    let given = |k: &str| {
        extra
            .iter()
            .any(|l| l.trim_start().starts_with(&format!("{k}:")))
    };
    let mut s = String::from("lease:\n  type: consul\n");
    for (k, v) in [
        ("candidate", candidate.to_string()),
        ("hostname", hostname.to_owned()),
        ("advertise-url", advertise_url.to_owned()),
        ("reconnect-delay", "100ms".to_owned()),
        ("demote-delay", "2s".to_owned()),
    ] {
        if !given(k) {
            s.push_str(&format!("  {k}: {v}\n"));
        }
    }
    for l in &extra {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(&format!(
        "  consul:\n    url: {consul_url}\n    key: {key}\n    ttl: 10s\n    lock-delay: 1s\n"
    ));
    s
}

/// The Consul lease's TTL in [`consul_lease`].
pub const TTL: Duration = Duration::from_secs(10);
/// The Consul lease's lock-delay in [`consul_lease`].
pub const LOCK_DELAY: Duration = Duration::from_secs(1);

/// A node of the cluster under `key` of `agent`, not started: its API
/// port is chosen first so that `advertise-url` is its own `url`; it logs
/// with timestamps (see [`utc_now`]).
pub fn new_consul_node(
    agent: &Agent,
    key: &str,
    hostname: &str,
    candidate: bool,
    extra_lease_keys: &str,
) -> Node {
    let port = free_port();
    let lease = consul_lease(
        hostname,
        &format!("http://127.0.0.1:{port}"),
        &agent.url(),
        key,
        candidate,
        extra_lease_keys,
    );
    Node::new_lease_on(port, &lease, "log:\n  timestamp: true\n")
}

/// [`new_consul_node`], started (its mount up).
pub fn start_consul_node(
    agent: &Agent,
    key: &str,
    hostname: &str,
    candidate: bool,
    extra_lease_keys: &str,
) -> Node {
    let mut n = new_consul_node(agent, key, hostname, candidate, extra_lease_keys);
    n.spawn();
    n
}

/// The time of day in UTC, `HH:MM:SS.mmm`, as in the nodes' log lines
/// (they log with timestamps), to line test events up with them.
pub fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The tail of every node's log, for failure messages.
pub fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "--- {} ({}) ---\n{}\n",
                n.url,
                n.log.display(),
                tail(&n.log_text(), 40)
            )
        })
        .collect()
}

/// Waits until exactly one of `nodes` says it is primary in `/info` and
/// every other one that answers says it is not, twice in a row 100 ms
/// apart; returns its index. Panics after `within` with every log.
pub fn wait_one_primary(nodes: &[&Node], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut last: Option<usize> = None;
    loop {
        let infos: Vec<Option<Info>> = nodes.iter().map(|n| info(&n.url)).collect();
        let primaries: Vec<usize> = infos
            .iter()
            .enumerate()
            .filter(|(_, i)| i.as_ref().is_some_and(|i| i.is_primary))
            .map(|(k, _)| k)
            .collect();
        let one = (primaries.len() == 1).then(|| primaries[0]);
        if one.is_some() && one == last {
            return primaries[0];
        }
        last = one;
        if Instant::now() > deadline {
            let said: Vec<String> = infos
                .iter()
                .zip(nodes)
                .map(|(i, n)| {
                    format!(
                        "{}: {}",
                        n.url,
                        i.as_ref().map_or("no answer", |i| i.body.as_str())
                    )
                })
                .collect();
            panic!(
                "no single primary within {within:?}: {primaries:?} say primary\n{}\n{}",
                said.join("\n"),
                logs(nodes)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The content of `name` in the mount of `n`, read within 10 s (`None`
/// when it does not exist).
pub fn read_mount_file(n: &Node, name: &str) -> Option<String> {
    let p = n.path(name);
    crate::cluster::bounded(
        &format!("read {}", p.display()),
        Duration::from_secs(10),
        move || std::fs::read_to_string(p).ok(),
    )
}

/// Waits until `.primary` in the mount of `n` holds `hostname` and a
/// newline.
pub fn wait_primary_file(n: &Node, hostname: &str, within: Duration) {
    let want = format!("{hostname}\n");
    let deadline = Instant::now() + within;
    loop {
        let got = read_mount_file(n, ".primary");
        if got.as_deref() == Some(want.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: .primary is {got:?} after {within:?}, want {want:?}\n{}",
            n.url,
            logs(&[n])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `sql` on `db` with the `sqlite3` CLI (no busy timeout) within
/// `limit`: its stdout, or its stderr (or "no answer") as the error.
pub fn try_sql(db: &Path, sql: &str, limit: Duration) -> Result<String, String> {
    let bin = crate::tool("SQLITE3_BIN", "sqlite3").expect("sqlite3 is required");
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(bin)
        .arg(db)
        .arg(sql)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create out"))
        .stderr(std::fs::File::create(&err_path).expect("create err"))
        .spawn()
        .expect("spawn sqlite3");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if Instant::now() > deadline {
            reap(child, "sqlite3");
            return Err(format!("sqlite3: no answer in {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{status}: {}", err.trim()))
    }
}

/// Sends `sig` to the daemon of `n` (SIGSTOP, SIGCONT, SIGTERM...).
pub fn signal_node(n: &Node, sig: libc::c_int) {
    let pid = n.pid().expect("the node is not running");
    // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_members() {
        let b = r#"{"clusterID":"LFSC0000000000000001","isPrimary":true, "candidate" : false,"primary":{"hostname":"n-1"}}"#;
        assert_eq!(json_bool(b, "isPrimary"), Some(true));
        assert_eq!(json_bool(b, "candidate"), Some(false));
        assert_eq!(json_str(b, "hostname").as_deref(), Some("n-1"));
        assert_eq!(
            json_str(b, "clusterID").as_deref(),
            Some("LFSC0000000000000001")
        );
        assert_eq!(json_bool(b, "missing"), None);
    }

    #[test]
    fn lease_section() {
        let s = consul_lease(
            "node-1",
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "litefs/x",
            false,
            "promote: true\n  demote-delay: 5s\n",
        );
        assert_eq!(
            s,
            "lease:\n  type: consul\n  candidate: false\n  hostname: node-1\n  \
             advertise-url: http://127.0.0.1:1\n  reconnect-delay: 100ms\n  promote: true\n  \
             demote-delay: 5s\n  consul:\n    url: http://127.0.0.1:2\n    key: litefs/x\n    \
             ttl: 10s\n    lock-delay: 1s\n"
        );
    }
}
