//! The Consul lease (`lease.type: consul`), compatible with LiteFS v0.5.14.
//!
//! * The lease is a Consul session: a TTL, `Behavior: delete`, the
//!   configured lock-delay and **no health checks** (`NodeChecks: []`), so
//!   only the TTL decides whether it lives and an agent without a healthy
//!   node check cannot invalidate it.
//! * Holding the lease is holding the lock on the KV key `<prefix>/<key>`
//!   (`?acquire=<session>`), whose value is the holder's [`PrimaryInfo`] as
//!   JSON. A key without a session, or with an empty value, names no
//!   primary.
//! * When the URL has a path (a key prefix), the sessions belong to the
//!   catalog node `<prefix>/litefs`, registered before each acquisition, as
//!   LiteFS does: a token scoped to the prefix can then create them.
//! * The cluster ID is the raw value of `<prefix>/<key>/clusterid`, written
//!   with check-and-set (LiteFS reads, then writes: two nodes can both
//!   "win").

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use crate::http::{join_key, Client, ConsulUrl};
use crate::{BoxFuture, Lease, LeaseError, Leaser, PrimaryInfo};

/// The session name LiteFS uses.
const SESSION_NAME: &str = "litefs";

/// Consul's bounds on a session TTL.
const MIN_TTL: Duration = Duration::from_secs(10);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Settings of a [`ConsulLeaser`] (`lease.consul.*` and the node's
/// `lease.hostname`, `lease.advertise-url`, `lease.candidate`).
#[derive(Clone, Debug)]
pub struct ConsulOptions {
    /// `lease.consul.url`: `http://[:token@]host:port[/prefix]`. The
    /// password (or, without one, the user name) is the ACL token, sent as
    /// `X-Consul-Token`; the path is a prefix for every key.
    pub url: String,
    /// `lease.consul.key`: the KV key whose lock is the lease.
    pub key: String,
    /// `lease.consul.ttl`: the session TTL, 10 s to 24 h (Consul's limits).
    pub ttl: Duration,
    /// `lease.consul.lock-delay`: how long Consul keeps the lock from being
    /// taken after a session holding it was invalidated (not after a
    /// release). Sent as is, so `0` means none (LiteFS omits a zero and
    /// Consul then applies its 15 s default).
    pub lock_delay: Duration,
    /// `lease.hostname`: this node's name as replicas show it.
    pub hostname: String,
    /// `lease.advertise-url`: where replicas reach this node's API.
    pub advertise_url: String,
    /// `lease.candidate`: whether this node may become primary.
    pub candidate: bool,
}

impl ConsulOptions {
    /// LiteFS's default TTL.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
    /// LiteFS's default lock-delay.
    pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(1);

    /// Options with LiteFS's defaults: TTL 10 s, lock-delay 1 s, candidate.
    pub fn new(
        url: impl Into<String>,
        key: impl Into<String>,
        hostname: impl Into<String>,
        advertise_url: impl Into<String>,
    ) -> ConsulOptions {
        ConsulOptions {
            url: url.into(),
            key: key.into(),
            ttl: Self::DEFAULT_TTL,
            lock_delay: Self::DEFAULT_LOCK_DELAY,
            hostname: hostname.into(),
            advertise_url: advertise_url.into(),
            candidate: true,
        }
    }
}

/// The Consul leaser. Cheap to clone; every clone shares the settings.
#[derive(Clone, Debug)]
pub struct ConsulLeaser {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    /// `<prefix>/<key>`.
    key: String,
    /// `<prefix>/<key>/clusterid`.
    cluster_id_key: String,
    /// `<prefix>/litefs` when the URL has a prefix.
    node_name: Option<String>,
    ttl: Duration,
    lock_delay: Duration,
    info: PrimaryInfo,
    /// `info` as JSON: the KV value while this node holds the lease.
    value: Vec<u8>,
    candidate: bool,
}

impl ConsulLeaser {
    /// Checks the options; makes no request.
    pub fn new(options: ConsulOptions) -> Result<ConsulLeaser, LeaseError> {
        let url = ConsulUrl::parse(&options.url)?;
        if join_key(&[&options.key]).is_empty() {
            return Err(LeaseError::InvalidConfig {
                key: "lease.consul.key",
                message: "required (the Consul KV key that holds the lease)".into(),
            });
        }
        if options.hostname.is_empty() {
            return Err(LeaseError::InvalidConfig {
                key: "lease.hostname",
                message: "required for a Consul lease".into(),
            });
        }
        if options.advertise_url.is_empty() {
            return Err(LeaseError::InvalidConfig {
                key: "lease.advertise-url",
                message: "required for a Consul lease".into(),
            });
        }
        if options.ttl < MIN_TTL || options.ttl > MAX_TTL {
            return Err(LeaseError::InvalidConfig {
                key: "lease.consul.ttl",
                message: format!(
                    "{:?} is outside Consul's session TTL range of 10s to 24h",
                    options.ttl
                ),
            });
        }
        let key = join_key(&[&url.prefix, &options.key]);
        let cluster_id_key = join_key(&[&key, "clusterid"]);
        let node_name = (!url.prefix.is_empty()).then(|| join_key(&[&url.prefix, "litefs"]));
        let info = PrimaryInfo {
            hostname: options.hostname,
            advertise_url: options.advertise_url,
        };
        let value =
            serde_json::to_vec(&info).map_err(|e| LeaseError::InvalidArgument(e.to_string()))?;
        Ok(ConsulLeaser {
            inner: Arc::new(Inner {
                client: Client::new(url),
                key,
                cluster_id_key,
                node_name,
                ttl: options.ttl,
                lock_delay: options.lock_delay,
                info,
                value,
                candidate: options.candidate,
            }),
        })
    }

    /// The full KV key of the lease, `<prefix>/<key>`.
    pub fn kv_key(&self) -> &str {
        &self.inner.key
    }

    /// The full KV key of the cluster ID, `<prefix>/<key>/clusterid`.
    pub fn cluster_id_key(&self) -> &str {
        &self.inner.cluster_id_key
    }

    /// The session TTL new leases get.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }
}

/// One entry of `GET /v1/kv/<key>`.
#[derive(Deserialize)]
struct KvEntry {
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "Session")]
    session: Option<String>,
    #[serde(rename = "ModifyIndex", default)]
    modify_index: u64,
}

/// One entry of `PUT /v1/session/renew/<id>`.
#[derive(Deserialize)]
struct SessionEntry {
    #[serde(rename = "TTL", default)]
    ttl: String,
}

/// `ID` of `PUT /v1/session/create`.
#[derive(Deserialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

/// A KV value: its decoded bytes, whether a session locks it, its index.
struct KvValue {
    bytes: Vec<u8>,
    locked: bool,
    modify_index: u64,
}

/// Escapes a path segment or query value (`/` included).
fn escape_component(s: &str) -> String {
    crate::http::escape_key(s).replace('/', "%2F")
}

/// Whether `s` has the shape of a Consul session ID (a UUID).
fn is_session_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Formats a duration as Consul parses it (Go syntax).
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses a Go duration string as Consul reports a session's TTL ("10s",
/// "1m30s", "10000ms", "1.5s").
fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

impl Inner {
    fn invalid(&self, method: &Method, path: &str, message: impl Into<String>) -> LeaseError {
        LeaseError::InvalidResponse {
            endpoint: self.client.endpoint(method, path),
            message: message.into(),
        }
    }

    fn kv_path(key: &str) -> String {
        format!("/v1/kv/{}", crate::http::escape_key(key))
    }

    /// `GET /v1/kv/<key>`: `None` when the key does not exist.
    async fn kv_get(&self, key: &str) -> Result<Option<KvValue>, LeaseError> {
        let path = Self::kv_path(key);
        let resp = self.client.send(Method::GET, &path, None).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status.is_success() {
            return Err(self.client.status_error(&Method::GET, &path, &resp));
        }
        let entries: Vec<KvEntry> = serde_json::from_slice(&resp.body)
            .map_err(|e| self.invalid(&Method::GET, &path, format!("not a KV entry list: {e}")))?;
        let Some(entry) = entries.into_iter().next() else {
            return Ok(None);
        };
        let bytes = match entry.value {
            None => Vec::new(),
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .map_err(|e| {
                    self.invalid(&Method::GET, &path, format!("Value is not base64: {e}"))
                })?,
        };
        Ok(Some(KvValue {
            bytes,
            locked: entry.session.is_some_and(|s| !s.is_empty()),
            modify_index: entry.modify_index,
        }))
    }

    /// A PUT answered by `true` or `false` (KV acquire, release, CAS).
    async fn put_bool(&self, path: &str, body: Option<Vec<u8>>) -> Result<bool, LeaseError> {
        let body = self.client.send_ok(Method::PUT, path, body).await?;
        match std::str::from_utf8(&body).map(str::trim) {
            Ok("true") => Ok(true),
            Ok("false") => Ok(false),
            _ => Err(self.invalid(
                &Method::PUT,
                path,
                format!(
                    "expected true or false, got {:?}",
                    String::from_utf8_lossy(&body)
                ),
            )),
        }
    }

    async fn primary_info(&self) -> Result<Option<PrimaryInfo>, LeaseError> {
        let Some(kv) = self.kv_get(&self.key).await? else {
            return Ok(None);
        };
        if !kv.locked || kv.bytes.is_empty() {
            return Ok(None);
        }
        let info = serde_json::from_slice(&kv.bytes).map_err(|e| {
            self.invalid(
                &Method::GET,
                &Self::kv_path(&self.key),
                format!("the lease value is not primary info JSON: {e}"),
            )
        })?;
        Ok(Some(info))
    }

    /// Registers the shared catalog node `<prefix>/litefs` (idempotent).
    async fn register_node(&self) -> Result<(), LeaseError> {
        if let Some(node) = &self.node_name {
            let body = serde_json::json!({ "Node": node, "Address": "localhost" });
            self.client
                .send_ok(
                    Method::PUT,
                    "/v1/catalog/register",
                    Some(body.to_string().into_bytes()),
                )
                .await?;
        }
        Ok(())
    }

    async fn create_session(&self) -> Result<String, LeaseError> {
        let mut body = serde_json::json!({
            "Name": SESSION_NAME,
            "TTL": go_duration(self.ttl),
            "LockDelay": go_duration(self.lock_delay),
            "Behavior": "delete",
            "NodeChecks": [],
            "Checks": [],
        });
        if let (Some(node), Some(obj)) = (&self.node_name, body.as_object_mut()) {
            obj.insert("Node".into(), node.clone().into());
        }
        let path = "/v1/session/create";
        let resp = self
            .client
            .send_ok(Method::PUT, path, Some(body.to_string().into_bytes()))
            .await?;
        let created: Created = serde_json::from_slice(&resp)
            .map_err(|e| self.invalid(&Method::PUT, path, format!("no session ID: {e}")))?;
        Ok(created.id)
    }

    /// Renews a session; returns the TTL Consul reports for it.
    async fn renew_session(&self, id: &str) -> Result<Option<Duration>, LeaseError> {
        let path = format!("/v1/session/renew/{}", escape_component(id));
        let resp = self.client.send(Method::PUT, &path, None).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(LeaseError::Expired);
        }
        if !resp.status.is_success() {
            return Err(self.client.status_error(&Method::PUT, &path, &resp));
        }
        let entries: Option<Vec<SessionEntry>> = serde_json::from_slice(&resp.body)
            .map_err(|e| self.invalid(&Method::PUT, &path, format!("not a session list: {e}")))?;
        match entries.unwrap_or_default().first() {
            None => Err(LeaseError::Expired),
            Some(entry) => Ok(parse_go_duration(&entry.ttl)),
        }
    }

    async fn destroy_session(&self, id: &str) -> Result<(), LeaseError> {
        let path = format!("/v1/session/destroy/{}", escape_component(id));
        self.client
            .send_ok(Method::PUT, &path, None)
            .await
            .map(|_| ())
    }

    /// Locks the lease key with `session` and writes this node's info.
    async fn acquire_key(&self, session: &str) -> Result<bool, LeaseError> {
        let path = format!(
            "{}?acquire={}",
            Self::kv_path(&self.key),
            escape_component(session)
        );
        self.put_bool(&path, Some(self.value.clone())).await
    }

    /// The error for a refused lock: who holds it, if anyone.
    async fn refused(&self) -> LeaseError {
        match self.primary_info().await {
            Ok(Some(info)) => LeaseError::AlreadyHeld(info),
            Ok(None) => LeaseError::NotAcquired,
            Err(e) => e,
        }
    }

    async fn release(&self, id: &str) -> Result<(), LeaseError> {
        // Unlock first (an empty value: "no primary"), so that no lock-delay
        // applies, then destroy the session. Both are attempted.
        let path = format!(
            "{}?release={}",
            Self::kv_path(&self.key),
            escape_component(id)
        );
        let released = self.put_bool(&path, None).await;
        match &released {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(key = %self.key, session = %id, "consul key was not held by this session")
            }
            Err(e) => {
                tracing::warn!(key = %self.key, session = %id, error = %e, "consul key release failed")
            }
        }
        let destroyed = self.destroy_session(id).await;
        destroyed.and(released.map(|_| ()))
    }

    async fn cluster_id(&self) -> Result<Option<String>, LeaseError> {
        let Some(kv) = self.kv_get(&self.cluster_id_key).await? else {
            return Ok(None);
        };
        if kv.bytes.is_empty() {
            return Ok(None);
        }
        let id = String::from_utf8(kv.bytes).map_err(|_| {
            self.invalid(
                &Method::GET,
                &Self::kv_path(&self.cluster_id_key),
                "the cluster ID is not UTF-8",
            )
        })?;
        Ok(Some(id))
    }

    async fn set_cluster_id(&self, id: &str) -> Result<(), LeaseError> {
        if id.is_empty() {
            return Err(LeaseError::InvalidArgument("empty cluster ID".into()));
        }
        // Check-and-set: index 0 creates the key only if it is absent; an
        // existing empty value (unset, as LiteFS reads it) is replaced only
        // at the index we saw. A lost race shows the winner on the next read.
        for _ in 0..5 {
            let cas = match self.kv_get(&self.cluster_id_key).await? {
                None => 0,
                Some(kv) if kv.bytes.is_empty() => kv.modify_index,
                Some(kv) => {
                    let existing = String::from_utf8_lossy(&kv.bytes).into_owned();
                    return if existing == id {
                        Ok(())
                    } else {
                        Err(LeaseError::ClusterIdConflict { existing })
                    };
                }
            };
            let path = format!("{}?cas={cas}", Self::kv_path(&self.cluster_id_key));
            if self.put_bool(&path, Some(id.as_bytes().to_vec())).await? {
                return Ok(());
            }
        }
        Err(LeaseError::NotAcquired)
    }
}

impl Leaser for ConsulLeaser {
    fn kind(&self) -> &'static str {
        "consul"
    }

    fn hostname(&self) -> &str {
        &self.inner.info.hostname
    }

    fn advertise_url(&self) -> &str {
        &self.inner.info.advertise_url
    }

    fn is_candidate(&self) -> bool {
        self.inner.candidate
    }

    fn primary_info(&self) -> BoxFuture<'_, Result<Option<PrimaryInfo>, LeaseError>> {
        Box::pin(self.inner.primary_info())
    }

    fn acquire(&self) -> BoxFuture<'_, Result<Box<dyn Lease>, LeaseError>> {
        Box::pin(async move {
            let inner = &self.inner;
            if !inner.candidate {
                return Err(LeaseError::NotCandidate);
            }
            inner.register_node().await?;
            let sent = Instant::now();
            let id = inner.create_session().await?;
            let outcome = match inner.acquire_key(&id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(inner.refused().await),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                // The session would expire anyway; don't leave it around.
                if let Err(d) = inner.destroy_session(&id).await {
                    tracing::debug!(session = %id, error = %d, "destroying an unused consul session failed");
                }
                return Err(e);
            }
            tracing::info!(key = %inner.key, session = %id, "consul lease acquired");
            Ok(Box::new(ConsulLease {
                inner: Arc::clone(inner),
                id,
                ttl: inner.ttl,
                renewed_at: sent,
            }) as Box<dyn Lease>)
        })
    }

    fn acquire_existing<'a>(
        &'a self,
        lease_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Lease>, LeaseError>> {
        Box::pin(async move {
            let inner = &self.inner;
            if !inner.candidate {
                return Err(LeaseError::NotCandidate);
            }
            if !is_session_id(lease_id) {
                // Consul would answer 500, which looks transient.
                return Err(LeaseError::InvalidArgument(format!(
                    "{lease_id:?} is not a Consul session ID (a UUID)"
                )));
            }
            let sent = Instant::now();
            let reported = inner.renew_session(lease_id).await?;
            // The session was created by the old primary with its TTL: never
            // count on more than both.
            let ttl = reported.map_or(inner.ttl, |t| t.min(inner.ttl));
            if !inner.acquire_key(lease_id).await? {
                return Err(inner.refused().await);
            }
            tracing::info!(key = %inner.key, session = %lease_id, "consul lease taken over from the previous primary");
            Ok(Box::new(ConsulLease {
                inner: Arc::clone(inner),
                id: lease_id.to_owned(),
                ttl,
                renewed_at: sent,
            }) as Box<dyn Lease>)
        })
    }

    fn cluster_id(&self) -> BoxFuture<'_, Result<Option<String>, LeaseError>> {
        Box::pin(self.inner.cluster_id())
    }

    fn set_cluster_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), LeaseError>> {
        Box::pin(self.inner.set_cluster_id(id))
    }
}

/// A held Consul lease: a session that locks the lease key.
#[derive(Debug)]
pub struct ConsulLease {
    inner: Arc<Inner>,
    id: String,
    ttl: Duration,
    renewed_at: Instant,
}

impl Lease for ConsulLease {
    fn id(&self) -> &str {
        &self.id
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn renewed_at(&self) -> Instant {
        self.renewed_at
    }

    fn renew(&mut self) -> BoxFuture<'_, Result<(), LeaseError>> {
        Box::pin(async move {
            let sent = Instant::now();
            self.inner.renew_session(&self.id).await?;
            self.renewed_at = sent;
            Ok(())
        })
    }

    fn handoff(&mut self) -> BoxFuture<'_, Result<String, LeaseError>> {
        Box::pin(async move {
            self.renew().await?;
            Ok(self.id.clone())
        })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), LeaseError>> {
        Box::pin(async move {
            let result = self.inner.release(&self.id).await;
            if result.is_ok() {
                tracing::info!(key = %self.inner.key, session = %self.id, "consul lease released");
            }
            result
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn options() -> ConsulOptions {
        ConsulOptions::new(
            "http://127.0.0.1:8500",
            "litefs",
            "node-a",
            "http://node-a:20202",
        )
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        let p = |s| parse_go_duration(s);
        assert_eq!(p("10s"), Some(Duration::from_secs(10)));
        assert_eq!(p("10000ms"), Some(Duration::from_secs(10)));
        assert_eq!(p("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(p("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(p("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(p("0"), Some(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "1..0s"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_from_url_prefix() {
        let l = ConsulLeaser::new(options()).unwrap();
        assert_eq!(l.kv_key(), "litefs");
        assert_eq!(l.cluster_id_key(), "litefs/clusterid");
        assert!(l.inner.node_name.is_none());
        let mut o = options();
        o.url = "http://:s3cret@127.0.0.1:8500/team/app/".into();
        o.key = "/db-lease".into();
        let l = ConsulLeaser::new(o).unwrap();
        assert_eq!(l.kv_key(), "team/app/db-lease");
        assert_eq!(l.cluster_id_key(), "team/app/db-lease/clusterid");
        assert_eq!(l.inner.node_name.as_deref(), Some("team/app/litefs"));
        assert_eq!(l.kind(), "consul");
        assert_eq!(l.hostname(), "node-a");
        assert_eq!(l.advertise_url(), "http://node-a:20202");
        assert!(l.is_candidate());
        assert!(!format!("{l:?}").contains("s3cret"));
        assert_eq!(escape_component("a/b"), "a%2Fb");
        assert!(is_session_id("28b4d89a-bc9e-9da7-d0ab-7ab44d26bb26"));
        assert!(!is_session_id("28b4d89a-bc9e-9da7-d0ab-7ab44d26bb2"));
        assert!(!is_session_id("28b4d89a-bc9e-9da7-d0ab+7ab44d26bb26"));
        assert!(!is_session_id("28b4d89a-bc9e-9da7-d0ab-7ab44d26bb2g"));
    }

    #[test]
    fn options_are_validated() {
        let err = |o: ConsulOptions| ConsulLeaser::new(o).unwrap_err().to_string();
        let mut o = options();
        o.ttl = Duration::from_secs(5);
        let e = err(o);
        assert!(
            e.contains("lease.consul.ttl") && e.contains("10s to 24h"),
            "{e}"
        );
        let mut o = options();
        o.ttl = Duration::from_secs(25 * 3600);
        assert!(err(o).contains("lease.consul.ttl"));
        let mut o = options();
        o.key = "/".into();
        assert!(err(o).contains("lease.consul.key"));
        let mut o = options();
        o.hostname.clear();
        assert!(err(o).contains("lease.hostname"));
        let mut o = options();
        o.advertise_url.clear();
        assert!(err(o).contains("lease.advertise-url"));
        let mut o = options();
        o.url = "https://consul:8501".into();
        assert!(err(o).contains("lease.consul.url"));
        // The minimum itself is fine.
        let mut o = options();
        o.ttl = Duration::from_secs(10);
        o.lock_delay = Duration::ZERO;
        assert!(ConsulLeaser::new(o).is_ok());
    }

    #[tokio::test]
    async fn non_candidate_never_asks_consul_to_acquire() {
        // Nothing listens on port 9 of localhost in a test: a request would
        // fail with a transport error, not NotCandidate.
        let mut o = options();
        o.url = "http://127.0.0.1:9".into();
        o.candidate = false;
        let l = ConsulLeaser::new(o).unwrap();
        assert!(matches!(l.acquire().await, Err(LeaseError::NotCandidate)));
        assert!(matches!(
            l.acquire_existing("28b4d89a-bc9e-9da7-d0ab-7ab44d26bb26")
                .await,
            Err(LeaseError::NotCandidate)
        ));
    }
}
