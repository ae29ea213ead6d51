//! The HTTP proxy in front of the application (`proxy:` in `litefs.yml`),
//! with LiteFS v0.5.14's rules, so that an unmodified web application on
//! every node reads its own writes:
//!
//! 1. A path matching `passthrough` goes straight to the application.
//! 2. `GET /litefs/health`: 200 `OK`, or 503 when this node's replication
//!    lag exceeds `max-lag`.
//! 3. `GET`/`HEAD` (not `always-forward`): with a `__txid` cookie (16 hex
//!    digits), wait until the tracked database (`db`) reaches that TXID
//!    (polled every millisecond, at most 5 s, then 504), then go to the
//!    application.
//! 4. Anything else is a write, for the primary: on the primary it goes to
//!    the application and the response sets `__txid` to the position after
//!    it; on a replica the client gets LiteFS's `fly-replay:
//!    instance=<primary>` answer (Fly.io's router replays the request on
//!    the primary), or, with `forward` (ours), the request is streamed to
//!    the primary's proxy and its answer (with its `__txid`) streamed
//!    back, so the product works without Fly's router. No primary known
//!    within `primary-redirect-timeout`: 503.
//!
//! Bodies are streamed both ways, never buffered whole. The proxy knows the
//! store (positions, the role); it knows nothing of FUSE or the node API
//! beyond a function, given by the binary, that finds the primary's proxy.

mod conn;

pub use conn::{serve_connection, Timeouts};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, COOKIE, HOST, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use litefs_store::{PrimaryInfo, Store};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Response bodies: the application's, streamed, or our own short ones.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long a read waits for its `__txid`.
const TXID_WAIT: Duration = Duration::from_secs(5);
/// How long the proxy retries an application that refuses connections
/// (it may still be starting).
const CONNECT_RETRY: Duration = Duration::from_secs(30);
/// The cookie carrying the position a client's next read must see.
pub const TXID_COOKIE: &str = "__txid";

/// The `proxy:` settings.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `target`: the application, `host:port`.
    pub target: String,
    /// `db`: the database whose position the `__txid` cookie tracks.
    pub db: String,
    /// `max-lag`: above this, `/litefs/health` answers 503.
    pub max_lag: Duration,
    /// `debug`: log every request and what was done with it.
    pub debug: bool,
    /// `primary-redirect-timeout`: how long a write waits for a primary.
    pub primary_redirect_timeout: Duration,
    /// `passthrough`: path globs sent straight to the application.
    pub passthrough: Vec<String>,
    /// `always-forward`: path globs treated as writes whatever the method.
    pub always_forward: Vec<String>,
    /// `forward` (ours): stream writes on a replica to the primary's proxy
    /// instead of answering `fly-replay`.
    pub forward: bool,
    /// `read-timeout`, `read-header-timeout`, `write-timeout`,
    /// `idle-timeout`: Go's `http.Server` limits on each client
    /// connection.
    pub timeouts: Timeouts,
}

/// Finds the URL (`http://host:port`) of the primary's proxy, for
/// [`ProxyOptions::forward`].
pub type FindPrimaryProxy =
    Arc<dyn Fn(PrimaryInfo) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// What the proxy decided, request by request, since it started.
#[derive(Debug, Default)]
pub struct ProxyStats {
    counts: [std::sync::atomic::AtomicU64; DECISIONS.len()],
}

/// The decisions [`ProxyStats`] counts, as the `decision` label.
pub const DECISIONS: [&str; 8] = [
    "passthrough",
    "health",
    "read",
    "read_timeout",
    "write_primary",
    "write_forwarded",
    "write_replay",
    "write_unavailable",
];

impl ProxyStats {
    fn count(&self, decision: &str) {
        if let Some(i) = DECISIONS.iter().position(|d| *d == decision) {
            self.counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every decision with its count.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        DECISIONS
            .iter()
            .zip(&self.counts)
            .map(|(d, c)| (*d, c.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    /// The counts in Prometheus text format
    /// (`litefs_proxy_request_count{decision}`).
    pub fn exposition(&self) -> String {
        let mut s = String::from(
            "# HELP litefs_proxy_request_count Requests the HTTP proxy handled, by what it did with them.\n# TYPE litefs_proxy_request_count counter\n",
        );
        for (d, n) in self.read() {
            s.push_str(&format!(
                "litefs_proxy_request_count{{decision=\"{d}\"}} {n}\n"
            ));
        }
        s
    }
}

/// The proxy of one node.
pub struct Proxy {
    store: Arc<Store>,
    opts: ProxyOptions,
    find_primary: Option<FindPrimaryProxy>,
    stats: Arc<ProxyStats>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("opts", &self.opts).finish()
    }
}

/// Whether `path` matches the glob `pattern`: `*` matches any run of
/// characters (including `/`), everything else itself; anchored at both
/// ends (LiteFS's rule).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The TXID in a request's `__txid` cookie, if it carries a valid one.
pub fn cookie_txid<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TXID_COOKIE)
        .and_then(|(_, v)| {
            (v.len() == 16)
                .then(|| u64::from_str_radix(v, 16).ok())
                .flatten()
        })
}

fn full(status: StatusCode, msg: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(msg.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Where a write goes.
enum Writer {
    Here,
    Primary(PrimaryInfo),
}

impl Proxy {
    /// A proxy for `store`'s node. `find_primary` is needed only with
    /// [`ProxyOptions::forward`].
    pub fn new(
        store: Arc<Store>,
        opts: ProxyOptions,
        find_primary: Option<FindPrimaryProxy>,
    ) -> Proxy {
        Proxy {
            store,
            opts,
            find_primary,
            stats: Arc::default(),
        }
    }

    /// What the proxy decided so far.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// Serves one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let (resp, what) = self.route(req).await;
        self.stats.count(what);
        if self.opts.debug {
            tracing::info!(%method, %path, status = resp.status().as_u16(), decision = what, elapsed_ms = started.elapsed().as_millis() as u64, "proxy");
        }
        resp
    }

    /// Serves `req`; also returns the decision taken, one of [`DECISIONS`].
    async fn route(&self, req: Request<Incoming>) -> (Response<Body>, &'static str) {
        let path = req.uri().path().to_owned();
        if self.opts.passthrough.iter().any(|g| glob_match(g, &path)) {
            return (self.to_target(&self.opts.target, req).await, "passthrough");
        }
        if path == "/litefs/health" && req.method() == Method::GET {
            return (self.health(), "health");
        }
        let read = matches!(*req.method(), Method::GET | Method::HEAD)
            && !self
                .opts
                .always_forward
                .iter()
                .any(|g| glob_match(g, &path));
        if read {
            if let Some(txid) = cookie_txid(&req) {
                if !self.wait_txid(txid).await {
                    return (
                        full(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!(
                                "this node did not reach TXID {txid:016x} of {} within {}s",
                                self.opts.db,
                                TXID_WAIT.as_secs()
                            ),
                        ),
                        "read_timeout",
                    );
                }
            }
            return (self.to_target(&self.opts.target, req).await, "read");
        }
        let write_method = !matches!(*req.method(), Method::GET | Method::HEAD);
        match self.writer().await {
            None => (
                full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no primary is known: cannot serve a write",
                ),
                "write_unavailable",
            ),
            Some(Writer::Here) => {
                let mut resp = self.to_target(&self.opts.target, req).await;
                if write_method {
                    if let Some(txid) = self.txid_now().await {
                        let cookie =
                            format!("{TXID_COOKIE}={txid:016x}; Path=/; Max-Age=300; HttpOnly");
                        if let Ok(v) = HeaderValue::from_str(&cookie) {
                            resp.headers_mut().append(SET_COOKIE, v);
                        }
                    }
                }
                (resp, "write_primary")
            }
            Some(Writer::Primary(p)) if self.opts.forward => {
                let url = match &self.find_primary {
                    Some(f) => f(p.clone()).await,
                    None => None,
                };
                match url.as_deref().and_then(authority) {
                    Some(addr) => (self.to_target(&addr, req).await, "write_forwarded"),
                    None => (
                        full(
                            StatusCode::BAD_GATEWAY,
                            format!("cannot find the proxy of the primary {}", p.hostname),
                        ),
                        "write_unavailable",
                    ),
                }
            }
            Some(Writer::Primary(p)) => {
                let mut r = full(StatusCode::OK, "");
                if let Ok(v) = HeaderValue::from_str(&format!("instance={}", p.hostname)) {
                    r.headers_mut().insert("fly-replay", v);
                }
                (r, "write_replay")
            }
        }
    }

    fn health(&self) -> Response<Body> {
        let lag = self.store.role().lag_ms();
        let max = i64::try_from(self.opts.max_lag.as_millis()).unwrap_or(i64::MAX);
        if lag > max {
            full(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("replication lag {lag} ms exceeds proxy.max-lag {max} ms\n"),
            )
        } else {
            full(StatusCode::OK, "OK\n")
        }
    }

    /// Waits for a primary to be known (this node, or the one it follows).
    async fn writer(&self) -> Option<Writer> {
        let role = self.store.role();
        let until = Instant::now() + self.opts.primary_redirect_timeout;
        loop {
            if role.is_primary() {
                return Some(Writer::Here);
            }
            if let Some(p) = role.primary() {
                return Some(Writer::Primary(p));
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The tracked database's TXID now, every commit captured.
    async fn txid_now(&self) -> Option<u64> {
        let db = self.store.db(&self.opts.db)?;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = db.capture_wal() {
                tracing::warn!(db = db.name(), error = %e, "proxy: capture before setting __txid failed");
            }
            db.pos().txid.0
        })
        .await
        .ok()
    }

    /// Waits until the tracked database reaches `txid`; false on timeout.
    async fn wait_txid(&self, txid: u64) -> bool {
        let until = Instant::now() + TXID_WAIT;
        loop {
            if self
                .store
                .db(&self.opts.db)
                .is_some_and(|d| d.pos().txid.0 >= txid)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Streams `req` to the HTTP/1.1 server at `addr` (`host:port`) and
    /// its answer back; 502 if it cannot be reached.
    async fn to_target(&self, addr: &str, req: Request<Incoming>) -> Response<Body> {
        let until = Instant::now() + CONNECT_RETRY;
        let tcp = loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(t) => break t,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < until =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return full(StatusCode::BAD_GATEWAY, format!("cannot reach {addr}: {e}"))
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
                Ok(x) => x,
                Err(e) => return full(StatusCode::BAD_GATEWAY, format!("{addr}: {e}")),
            };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "proxy: upstream connection ended");
            }
        });
        let (mut parts, body) = req.into_parts();
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) => match pq.as_str().parse() {
                Ok(u) => u,
                Err(_) => return full(StatusCode::BAD_REQUEST, "invalid request target"),
            },
            None => hyper::Uri::from_static("/"),
        };
        if !parts.headers.contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(addr) {
                parts.headers.insert(HOST, v);
            }
        }
        match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(|b| b.boxed()),
            Err(e) => full(StatusCode::BAD_GATEWAY, format!("{addr}: {e}")),
        }
    }
}

/// `host:port` of an `http://` URL.
fn authority(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    Some(format!("{}:{}", uri.host()?, uri.port_u16().unwrap_or(80)))
}

/// Serves the proxy on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let timeouts = proxy.opts.timeouts;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let p = proxy.clone();
        tokio::spawn(async move {
            let handler = move |req| {
                let p = p.clone();
                async move { p.handle(req).await }
            };
            if let Err(e) = conn::serve_connection(tcp, timeouts, handler).await {
                tracing::debug!(%peer, error = %e, "proxy: connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_anchored_and_star_matches_anything() {
        assert!(glob_match("/static/*", "/static/a/b.css"));
        assert!(glob_match("*.css", "/x/y.css"));
        assert!(glob_match("/a", "/a"));
        assert!(!glob_match("/a", "/ab"));
        assert!(!glob_match("/static/*", "/api/static/x"));
        assert!(glob_match("*", ""));
        assert!(glob_match("/a*b*c", "/aXbYc"));
        assert!(!glob_match("/a*b*c", "/aXbY"));
    }

    #[test]
    fn txid_cookie_is_16_hex_digits() {
        let req = |c: &str| {
            Request::get("/")
                .header(COOKIE, c)
                .body(())
                .unwrap_or_default()
        };
        assert_eq!(cookie_txid(&req("a=1; __txid=00000000000000ff")), Some(255));
        assert_eq!(cookie_txid(&req("__txid=ff")), None);
        assert_eq!(cookie_txid(&req("__txid=zzzzzzzzzzzzzzzz")), None);
        assert_eq!(cookie_txid(&req("other=0000000000000001")), None);
        assert_eq!(
            cookie_txid(&Request::get("/").body(()).unwrap_or_default()),
            None
        );
    }

    #[test]
    fn primary_proxy_urls() {
        assert_eq!(
            authority("http://127.0.0.1:8080").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(authority("http://h/").as_deref(), Some("h:80"));
        assert_eq!(authority("https://h:1"), None);
    }
}
