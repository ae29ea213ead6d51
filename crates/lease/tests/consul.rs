//! The Consul lease against a real Consul agent (`consul agent -dev`, one
//! per test, on free ports, killed when the test ends).
//!
//! The binary is `$CONSUL_BIN`, else `.deps/bin/consul` of the workspace
//! (`scripts/install-test-deps.sh`). Without it the tests print SKIP and
//! pass, unless `LITEFS_REQUIRE_DEPS=1` or `CI=true`, where they fail.
//!
//! Raw checks of what Consul holds go through a tiny HTTP/1.0 helper of
//! this file, not through the code under test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use litefs_lease::{ConsulLeaser, ConsulOptions, Lease, LeaseError, Leaser, PrimaryInfo};

const ROOT_TOKEN: &str = "root-token";

fn consul_bin() -> Option<PathBuf> {
    let required = std::env::var("LITEFS_REQUIRE_DEPS").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    let candidate = match std::env::var_os("CONSUL_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.deps/bin/consul"),
    };
    if candidate.is_file() {
        return Some(candidate);
    }
    if required {
        panic!(
            "consul not found at {} (set CONSUL_BIN or run scripts/install-test-deps.sh); \
             required because LITEFS_REQUIRE_DEPS=1 or CI=true",
            candidate.display()
        );
    }
    eprintln!(
        "SKIP: consul not found at {} (set CONSUL_BIN or run scripts/install-test-deps.sh)",
        candidate.display()
    );
    None
}

/// A `consul agent -dev` on free ports, killed on drop.
struct Agent {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_ports<const N: usize>() -> [u16; N] {
    // Held together so that they differ; released just before use.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

impl Agent {
    /// Starts an agent (with ACLs, default deny, master token
    /// [`ROOT_TOKEN`], when `acl`); `None` when Consul is not installed.
    fn start(acl: bool) -> Option<Agent> {
        let bin = consul_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("consul.log");
        for attempt in 1..=5 {
            let [http, serf_lan, serf_wan, server] = free_ports::<4>();
            let mut cmd = Command::new(&bin);
            cmd.args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
            ])
            .args(["-http-port", &http.to_string()])
            .args(["-dns-port", "-1", "-grpc-port", "-1"])
            .args(["-serf-lan-port", &serf_lan.to_string()])
            .args(["-serf-wan-port", &serf_wan.to_string()])
            .args(["-server-port", &server.to_string()]);
            if acl {
                cmd.args([
                    "-hcl",
                    &format!(r#"acl {{ enabled = true default_policy = "deny" tokens {{ master = "{ROOT_TOKEN}" }} }}"#),
                ]);
            }
            let out = std::fs::File::create(&log).unwrap();
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            if wait_ready(&mut child, http, acl) {
                return Some(Agent {
                    child,
                    port: http,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                attempt < 5,
                "consul agent did not start; its log:\n{log_text}"
            );
            eprintln!("consul agent attempt {attempt} failed (port clash?), retrying");
        }
        unreachable!()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A raw request to the agent (as root when ACLs are on).
    fn raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        raw_opt(self.port, method, path, Some(ROOT_TOKEN), body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer from consul"))
    }
}

/// Waits for a leader, a working KV store (with ACLs: until the master
/// token is accepted) and the agent's own node in the catalog (until
/// anti-entropy has registered it, creating a session on it fails with
/// "Missing node registration"). False if the agent died or 15 s passed.
fn wait_ready(child: &mut Child, port: u16, acl: bool) -> bool {
    let until = Instant::now() + Duration::from_secs(15);
    let token = acl.then_some(ROOT_TOKEN);
    let ready = || -> Option<()> {
        let (status, leader) = raw_opt(port, "GET", "/v1/status/leader", None, b"")?;
        (status == 200 && !matches!(leader.trim(), "" | "\"\"")).then_some(())?;
        let (status, _) = raw_opt(port, "GET", "/v1/kv/litefs-test-ready", token, b"")?;
        (status == 404).then_some(())?;
        let (status, nodes) = raw_opt(port, "GET", "/v1/catalog/nodes", token, b"")?;
        (status == 200 && nodes.contains("\"Node\"")).then_some(())
    };
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One HTTP/1.0 request; `None` if the connection failed.
fn raw_opt(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("X-Consul-Token: {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn info(host: &str) -> PrimaryInfo {
    PrimaryInfo {
        hostname: host.into(),
        advertise_url: format!("http://{host}:20202"),
    }
}

fn options(url: &str, key: &str, host: &str) -> ConsulOptions {
    ConsulOptions::new(url, key, host, format!("http://{host}:20202"))
}

fn leaser(url: &str, key: &str, host: &str) -> ConsulLeaser {
    ConsulLeaser::new(options(url, key, host)).unwrap()
}

/// The raw KV entry: (Session, decoded value).
fn raw_kv(agent: &Agent, key: &str) -> Option<(Option<String>, Vec<u8>)> {
    let (status, body) = agent.raw("GET", &format!("/v1/kv/{key}"), b"");
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = &v[0];
    let session = entry["Session"].as_str().map(str::to_owned);
    let value = match entry["Value"].as_str() {
        Some(b64) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        }
        None => Vec::new(),
    };
    Some((session, value))
}

/// Retries `acquire` while Consul answers NotAcquired (lock-delay).
async fn acquire_retrying(l: &ConsulLeaser, limit: Duration) -> Box<dyn Lease> {
    let until = Instant::now() + limit;
    loop {
        match l.acquire().await {
            Ok(lease) => return lease,
            Err(LeaseError::NotAcquired) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("acquire: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_one_winner_renew_release_then_other_acquires() {
    let Some(agent) = Agent::start(false) else {
        return;
    };
    let a = leaser(&agent.url(), "litefs", "node-a");
    let b = leaser(&agent.url(), "litefs", "node-b");
    let mut observer_opts = options(&agent.url(), "litefs", "node-c");
    observer_opts.candidate = false;
    let observer = ConsulLeaser::new(observer_opts).unwrap();
    assert_eq!(observer.primary_info().await.unwrap(), None);

    let (ra, rb) = tokio::join!(a.acquire(), b.acquire());
    let (mut lease, winner, loser, loser_err) = match (ra, rb) {
        (Ok(l), Err(e)) => (l, &a, &b, e),
        (Err(e), Ok(l)) => (l, &b, &a, e),
        (ra, rb) => panic!("exactly one must win: {ra:?} / {rb:?}"),
    };
    let winner_info = info(winner.hostname());
    match loser_err {
        LeaseError::AlreadyHeld(held) => assert_eq!(held, winner_info),
        e => panic!("the loser should see the holder, got {e}"),
    }
    for l in [&a, &b, &observer] {
        assert_eq!(l.primary_info().await.unwrap(), Some(winner_info.clone()));
    }
    let (session, value) = raw_kv(&agent, "litefs").unwrap();
    assert_eq!(session.as_deref(), Some(lease.id()));
    assert_eq!(
        serde_json::from_slice::<PrimaryInfo>(&value).unwrap(),
        winner_info
    );

    // Renewing moves renewed_at (the send time) and the deadline with it.
    assert_eq!(lease.ttl(), Duration::from_secs(10));
    let first = lease.renewed_at();
    assert_eq!(lease.deadline(), first + Duration::from_secs(9));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = Instant::now();
    lease.renew().await.unwrap();
    assert!(lease.renewed_at() >= before && lease.renewed_at() > first);
    assert_eq!(
        lease.deadline(),
        lease.renewed_at() + Duration::from_secs(9)
    );
    assert!(matches!(
        observer.acquire().await,
        Err(LeaseError::NotCandidate)
    ));

    // Release: the key names nobody, the session is gone, and the other
    // node takes the lease at once (no lock-delay after a release).
    let id = lease.id().to_owned();
    lease.release().await.unwrap();
    assert_eq!(observer.primary_info().await.unwrap(), None);
    let (status, _) = agent.raw("GET", &format!("/v1/session/info/{id}"), b"");
    let (_, sessions) = agent.raw("GET", &format!("/v1/session/info/{id}"), b"");
    assert!(
        status == 404 || sessions.trim() == "[]" || sessions.trim() == "null",
        "{sessions}"
    );
    let started = Instant::now();
    let lease2 = loser.acquire().await.unwrap();
    eprintln!("acquired right after a release in {:?}", started.elapsed());
    assert_eq!(
        observer.primary_info().await.unwrap(),
        Some(info(loser.hostname()))
    );
    lease2.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_session_renew_expired_and_lock_delay_holds_the_key() {
    let Some(agent) = Agent::start(false) else {
        return;
    };
    let mut opts = options(&agent.url(), "litefs", "node-a");
    opts.lock_delay = Duration::from_secs(2);
    let a = ConsulLeaser::new(opts).unwrap();
    let b = leaser(&agent.url(), "litefs", "node-b");
    let mut lease = a.acquire().await.unwrap();

    // Invalidate the session behind the holder's back (what Consul does
    // when the TTL runs out, or an operator does by hand).
    let (status, body) = agent.raw("PUT", &format!("/v1/session/destroy/{}", lease.id()), b"");
    assert_eq!(status, 200, "{body}");
    let invalidated = Instant::now();
    match lease.renew().await {
        Err(LeaseError::Expired) => {}
        other => panic!("renew of a destroyed session: {other:?}"),
    }
    // Behavior "delete": the key is gone, so nobody is primary...
    assert_eq!(raw_kv(&agent, "litefs"), None);
    assert_eq!(b.primary_info().await.unwrap(), None);
    // ...but for lock-delay nobody can take it either.
    match b.acquire().await {
        Err(LeaseError::NotAcquired) => {}
        other => panic!("acquire during lock-delay: {other:?}"),
    }
    let lease_b = acquire_retrying(&b, Duration::from_secs(5)).await;
    let waited = invalidated.elapsed();
    eprintln!("lock-delay 2s: the key was taken {waited:?} after the session was destroyed");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(a.primary_info().await.unwrap(), Some(info("node-b")));
    // Releasing an expired lease's leftovers is harmless.
    lease.release().await.unwrap();
    assert_eq!(a.primary_info().await.unwrap(), Some(info("node-b")));
    lease_b.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_transfers_the_session_and_rewrites_the_value() {
    let Some(agent) = Agent::start(false) else {
        return;
    };
    let a = leaser(&agent.url(), "litefs", "node-a");
    let b = leaser(&agent.url(), "litefs", "node-b");
    let mut old = a.acquire().await.unwrap();
    let id = old.handoff().await.unwrap();
    assert_eq!(id, old.id());
    drop(old); // the old primary steps down without releasing

    let mut new = b.acquire_existing(&id).await.unwrap();
    assert_eq!(new.id(), id);
    assert_eq!(new.ttl(), Duration::from_secs(10));
    assert_eq!(a.primary_info().await.unwrap(), Some(info("node-b")));
    let (session, value) = raw_kv(&agent, "litefs").unwrap();
    assert_eq!(session.as_deref(), Some(id.as_str()));
    assert_eq!(
        serde_json::from_slice::<PrimaryInfo>(&value).unwrap(),
        info("node-b")
    );
    new.renew().await.unwrap();
    // The old primary cannot take it back with a fresh session.
    match a.acquire().await {
        Err(LeaseError::AlreadyHeld(held)) => assert_eq!(held, info("node-b")),
        other => panic!("{other:?}"),
    }
    new.release().await.unwrap();

    // A hand-off whose session is gone fails cleanly.
    match b.acquire_existing(&id).await {
        Err(LeaseError::Expired) => {}
        other => panic!("adopting a destroyed session: {other:?}"),
    }
    // Consul answers 500 to a malformed ID; it is refused before asking.
    let (status, body) = agent.raw("PUT", "/v1/session/renew/not-a-session-id", b"");
    eprintln!("consul on renewing a malformed session ID: {status} {body}");
    for bad in ["not-a-session-id", ""] {
        let err = b.acquire_existing(bad).await.unwrap_err();
        assert!(matches!(err, LeaseError::InvalidArgument(_)), "{err}");
        assert!(!err.is_transient());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_id_cas_race_agrees_on_one() {
    let Some(agent) = Agent::start(false) else {
        return;
    };
    for round in 0..5 {
        let key = format!("litefs-{round}");
        let leasers: Vec<ConsulLeaser> = (0..4)
            .map(|i| leaser(&agent.url(), &key, &format!("node-{i}")))
            .collect();
        assert_eq!(leasers[0].cluster_id().await.unwrap(), None);
        let tasks: Vec<_> = leasers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let l = l.clone();
                tokio::spawn(async move {
                    let id = format!("LFSC{round:08}{i:08}");
                    (id.clone(), l.set_cluster_id(&id).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut conflicts = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (id, Ok(())) => winners.push(id),
                (_, Err(LeaseError::ClusterIdConflict { existing })) => conflicts.push(existing),
                (_, Err(e)) => panic!("set_cluster_id: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let winner = &winners[0];
        assert!(
            conflicts.iter().all(|c| c == winner),
            "{conflicts:?} vs {winner}"
        );
        for l in &leasers {
            assert_eq!(
                l.cluster_id().await.unwrap().as_deref(),
                Some(winner.as_str())
            );
        }
        leasers[3].set_cluster_id(winner).await.unwrap();
        let (status, raw) = agent.raw("GET", &format!("/v1/kv/{key}/clusterid?raw"), b"");
        assert_eq!((status, raw.as_str()), (200, winner.as_str()));
    }
    // An empty value (unset, as LiteFS reads it) is replaced.
    let (status, _) = agent.raw("PUT", "/v1/kv/empty/clusterid", b"");
    assert_eq!(status, 200);
    let l = leaser(&agent.url(), "empty", "node-a");
    assert_eq!(l.cluster_id().await.unwrap(), None);
    l.set_cluster_id("LFSC00000000000000ff").await.unwrap();
    assert_eq!(
        l.cluster_id().await.unwrap().as_deref(),
        Some("LFSC00000000000000ff")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_token_from_the_url() {
    let Some(agent) = Agent::start(true) else {
        return;
    };
    let port = agent.port;
    for (url, what) in [
        (
            format!("http://:wrong@127.0.0.1:{port}/app"),
            "ACL not found",
        ),
        (format!("http://127.0.0.1:{port}/app"), "Permission denied"),
    ] {
        let l = leaser(&url, "litefs", "node-a");
        let err = l.primary_info().await.unwrap_err();
        eprintln!("primary_info with a bad token: {err}");
        assert!(matches!(err, LeaseError::PermissionDenied { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("permission denied") && msg.contains("lease.consul.url"),
            "{msg}"
        );
        assert!(
            msg.contains(what) && msg.contains("GET http://127.0.0.1:"),
            "{msg}"
        );
        assert!(
            !msg.contains("wrong"),
            "the token must not be in messages: {msg}"
        );
        let err = l.acquire().await.unwrap_err();
        assert!(matches!(err, LeaseError::PermissionDenied { .. }), "{err}");
        let err = l.set_cluster_id("LFSC0000000000000001").await.unwrap_err();
        assert!(matches!(err, LeaseError::PermissionDenied { .. }), "{err}");
    }
    // The token as the password (LiteFS's form) works, prefix and catalog
    // registration included; a lone user name works too.
    let good = leaser(
        &format!("http://:{ROOT_TOKEN}@127.0.0.1:{port}/app"),
        "litefs",
        "node-a",
    );
    let mut lease = good.acquire().await.unwrap();
    lease.renew().await.unwrap();
    let user_form = leaser(
        &format!("http://{ROOT_TOKEN}@127.0.0.1:{port}/app"),
        "litefs",
        "node-b",
    );
    assert_eq!(
        user_form.primary_info().await.unwrap(),
        Some(info("node-a"))
    );
    good.set_cluster_id("LFSC0000000000000001").await.unwrap();
    assert_eq!(
        user_form.cluster_id().await.unwrap().as_deref(),
        Some("LFSC0000000000000001")
    );
    lease.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_from_the_url_path() {
    let Some(agent) = Agent::start(false) else {
        return;
    };
    let prefixed = leaser(&format!("{}/team/app-1/", agent.url()), "litefs", "node-a");
    assert_eq!(prefixed.kv_key(), "team/app-1/litefs");
    let plain = leaser(&agent.url(), "litefs", "node-b");
    let lease = prefixed.acquire().await.unwrap();

    let (session, value) = raw_kv(&agent, "team/app-1/litefs").unwrap();
    assert_eq!(session.as_deref(), Some(lease.id()));
    assert_eq!(
        serde_json::from_slice::<PrimaryInfo>(&value).unwrap(),
        info("node-a")
    );
    assert_eq!(raw_kv(&agent, "litefs"), None);
    assert_eq!(plain.primary_info().await.unwrap(), None);

    // The session belongs to the shared catalog node <prefix>/litefs, with
    // no health checks, as LiteFS creates it.
    let (status, body) = agent.raw("GET", &format!("/v1/session/info/{}", lease.id()), b"");
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s[0]["Node"], "team/app-1/litefs");
    assert_eq!(s[0]["Behavior"], "delete");
    assert_eq!(s[0]["TTL"], "10s");
    assert_eq!(s[0]["LockDelay"], 1_000_000_000u64);
    assert_eq!(s[0]["NodeChecks"], serde_json::json!([]));

    prefixed
        .set_cluster_id("LFSC00000000000000aa")
        .await
        .unwrap();
    let (status, raw) = agent.raw("GET", "/v1/kv/team/app-1/litefs/clusterid?raw", b"");
    assert_eq!((status, raw.as_str()), (200, "LFSC00000000000000aa"));
    assert_eq!(plain.cluster_id().await.unwrap(), None);
    lease.release().await.unwrap();
    // Release leaves the key with no session and no value: no primary.
    let (session, value) = raw_kv(&agent, "team/app-1/litefs").unwrap();
    assert_eq!((session, value), (None, Vec::new()));
    assert_eq!(prefixed.primary_info().await.unwrap(), None);
}

/// The one slow test (~20 s): a lease nobody renews. Consul 1.8.7
/// invalidates it two TTLs after the last renewal, long after the holder's
/// own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrenewed_session_expires_after_two_ttls() {
    let Some(agent) = Agent::start(false) else {
        return;
    };
    let mut opts = options(&agent.url(), "litefs", "node-a");
    opts.lock_delay = Duration::ZERO;
    let a = ConsulLeaser::new(opts).unwrap();
    let b = leaser(&agent.url(), "litefs", "node-b");
    let mut lease = a.acquire().await.unwrap();
    let renewed_at = lease.renewed_at();
    let deadline = lease.deadline();
    let limit = renewed_at + Duration::from_secs(25);
    let gone_at = loop {
        if b.primary_info().await.unwrap().is_none() {
            break Instant::now();
        }
        assert!(Instant::now() < limit, "the session outlived 2.5 TTLs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lived = gone_at - renewed_at;
    eprintln!(
        "TTL 10s: session invalidated {lived:?} after creation (holder's deadline: {:?})",
        deadline - renewed_at
    );
    assert!(lived >= Duration::from_secs(10), "{lived:?}");
    assert!(deadline < gone_at);
    // Lock-delay 0: the other node takes it at once.
    let lease_b = b.acquire().await.unwrap();
    assert!(matches!(lease.renew().await, Err(LeaseError::Expired)));
    lease_b.release().await.unwrap();
}
