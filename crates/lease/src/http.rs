//! A minimal HTTP/1.1 client for a Consul agent: one connection per request
//! (the lease makes a request every few seconds, so pooling buys nothing and
//! a fresh connection can never be a stale one), a hard per-request
//! timeout, the ACL token in `X-Consul-Token`, and errors that name the
//! request.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::LeaseError;

/// How long one request may take, connection included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body accepted (a Consul KV value is at most 512 KiB,
/// base64 in JSON adds a third).
const MAX_BODY: usize = 4 << 20;

/// How much of an error body an error message quotes.
const BODY_SNIPPET: usize = 200;

/// A parsed `lease.consul.url`: `http://[user[:password]@]host[:port][/prefix]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ConsulUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub(crate) host: String,
    /// TCP port (80 when the URL has none, as for any `http://` URL).
    pub(crate) port: u16,
    /// `host[:port]` as written, for the `Host` header and messages.
    pub(crate) authority: String,
    /// The ACL token: the URL's password, or its user name when there is no
    /// password.
    pub(crate) token: Option<String>,
    /// The URL path without its leading slash: a prefix for every key.
    pub(crate) prefix: String,
}

impl std::fmt::Debug for ConsulUrl {
    // Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulUrl")
            .field("authority", &self.authority)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn invalid_url(message: impl Into<String>) -> LeaseError {
    LeaseError::InvalidConfig {
        key: "lease.consul.url",
        message: message.into(),
    }
}

impl ConsulUrl {
    /// Parses the URL. Only `http://` is supported (this client has no TLS).
    pub(crate) fn parse(url: &str) -> Result<ConsulUrl, LeaseError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            invalid_url(format!("{url:?} is not a URL (expected http://host:port)"))
        })?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(invalid_url(
                "https is not supported (this build has no TLS client); use http:// to a Consul agent",
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid_url(format!(
                "unsupported scheme {scheme:?}, expected http://"
            )));
        }
        // The query and fragment are ignored, as LiteFS does.
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let token = match userinfo {
            None => None,
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let token = match password {
                    Some(p) if !p.is_empty() => percent_decode(p),
                    _ => percent_decode(user),
                }
                .ok_or_else(|| invalid_url("bad percent-encoding in the user information"))?;
                (!token.is_empty()).then_some(token)
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid_url("unterminated [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid_url(format!("unexpected {p:?} after the host")))?,
                ),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(invalid_url(format!("{url:?} has no host")));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid_url(format!("bad port {p:?}")))?,
        };
        let path =
            percent_decode(path).ok_or_else(|| invalid_url("bad percent-encoding in the path"))?;
        Ok(ConsulUrl {
            host: host.to_owned(),
            port,
            authority: hostport.to_owned(),
            token,
            prefix: clean_key(&path),
        })
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes a key for a URL path: everything but unreserved characters and
/// `/` becomes `%XX`.
pub(crate) fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Normalises a slash-separated key as Go's `path.Join` does (empty and `.`
/// segments dropped, `..` removes the segment before it), without a leading
/// slash (the Consul client strips it before the request).
pub(crate) fn clean_key(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    segments.join("/")
}

/// Joins key parts as `path.Join` does, see [`clean_key`].
pub(crate) fn join_key(parts: &[&str]) -> String {
    clean_key(&parts.join("/"))
}

/// The client: where to connect and which token to send.
#[derive(Debug)]
pub(crate) struct Client {
    url: ConsulUrl,
}

/// A response: status and body.
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Response {
    /// The body as text, shortened for an error message.
    pub(crate) fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() <= BODY_SNIPPET {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(BODY_SNIPPET).collect();
        format!("{cut}...")
    }
}

/// Aborts the connection task when the request is done or abandoned.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    pub(crate) fn new(url: ConsulUrl) -> Client {
        Client { url }
    }

    /// `METHOD http://authority/path` for messages (never the token).
    pub(crate) fn endpoint(&self, method: &Method, path_and_query: &str) -> String {
        format!("{method} http://{}{path_and_query}", self.url.authority)
    }

    /// Sends one request and returns whatever status came back; transport
    /// failures and timeouts are [`LeaseError::Transport`].
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, LeaseError> {
        let endpoint = self.endpoint(&method, path_and_query);
        let transport = |message: String| LeaseError::Transport {
            endpoint: endpoint.clone(),
            message,
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(HOST, self.url.authority.as_str());
        if let Some(token) = &self.url.token {
            req = req.header("X-Consul-Token", token.as_str());
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(format!("cannot build the request: {e}")))?;

        let exchange = async {
            let stream = TcpStream::connect((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|e| transport(format!("cannot connect to the Consul agent: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| transport(format!("HTTP handshake failed: {e}")))?;
            let _conn = AbortOnDrop(
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::trace!(error = %e, "consul connection ended with an error");
                    }
                })
                .abort_handle(),
            );
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| transport(format!("request failed: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok(Response { status, body })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(transport(format!(
                "no response within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Sends a request and requires a 2xx status; 403 becomes
    /// [`LeaseError::PermissionDenied`], any other status
    /// [`LeaseError::Status`].
    pub(crate) async fn send_ok(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, LeaseError> {
        let resp = self.send(method.clone(), path_and_query, body).await?;
        if resp.status.is_success() {
            Ok(resp.body)
        } else {
            Err(self.status_error(&method, path_and_query, &resp))
        }
    }

    /// The error for an unexpected status.
    pub(crate) fn status_error(
        &self,
        method: &Method,
        path_and_query: &str,
        resp: &Response,
    ) -> LeaseError {
        let endpoint = self.endpoint(method, path_and_query);
        if resp.status == StatusCode::FORBIDDEN {
            LeaseError::PermissionDenied {
                endpoint,
                body: resp.snippet(),
            }
        } else {
            LeaseError::Status {
                endpoint,
                status: resp.status.as_u16(),
                body: resp.snippet(),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_plain_url() {
        let u = ConsulUrl::parse("http://127.0.0.1:8500").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8500);
        assert_eq!(u.authority, "127.0.0.1:8500");
        assert_eq!(u.token, None);
        assert_eq!(u.prefix, "");
        let u = ConsulUrl::parse("HTTP://consul.local/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("consul.local", 80, "")
        );
    }

    #[test]
    fn parse_token_and_prefix() {
        // LiteFS (and Fly's FLY_CONSUL_URL) put the token in the password.
        let u = ConsulUrl::parse("http://:s3cr%2Ft@consul:8500/app-1/db/?x=1#f").unwrap();
        assert_eq!(u.token.as_deref(), Some("s3cr/t"));
        assert_eq!(u.prefix, "app-1/db");
        assert_eq!(u.authority, "consul:8500");
        // A lone user name is taken as the token too (LiteFS ignores it).
        let u = ConsulUrl::parse("http://tok@consul:8500/p").unwrap();
        assert_eq!(u.token.as_deref(), Some("tok"));
        let u = ConsulUrl::parse("http://user:pw@consul:8500").unwrap();
        assert_eq!(u.token.as_deref(), Some("pw"));
        let u = ConsulUrl::parse("http://@consul:8500").unwrap();
        assert_eq!(u.token, None);
        assert!(!format!("{u:?}").contains("pw"));
        let u = ConsulUrl::parse("http://user:pw@consul:8500").unwrap();
        assert!(!format!("{u:?}").contains("pw"));
    }

    #[test]
    fn parse_ipv6() {
        let u = ConsulUrl::parse("http://[::1]:8500/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str()),
            ("::1", 8500, "[::1]:8500")
        );
        let u = ConsulUrl::parse("http://[::1]").unwrap();
        assert_eq!(u.port, 80);
    }

    #[test]
    fn parse_rejects() {
        for bad in [
            "https://consul:8501",
            "consul:8500",
            "ftp://x",
            "http://",
            "http://:8500",
            "http://h:port",
            "http://h:99999",
            "http://[::1",
            "http://h/%zz",
        ] {
            let err = ConsulUrl::parse(bad).unwrap_err();
            assert!(err.to_string().contains("lease.consul.url"), "{bad}: {err}");
        }
        let err = ConsulUrl::parse("https://consul").unwrap_err().to_string();
        assert!(err.contains("https is not supported"), "{err}");
    }

    #[test]
    fn keys_join_like_go_path_join() {
        assert_eq!(join_key(&["", "litefs"]), "litefs");
        assert_eq!(join_key(&["a/b/", "litefs"]), "a/b/litefs");
        assert_eq!(
            join_key(&["a", "/litefs/", "clusterid"]),
            "a/litefs/clusterid"
        );
        assert_eq!(join_key(&["a/./b", "../c"]), "a/c");
        assert_eq!(join_key(&["", "/"]), "");
        assert_eq!(escape_key("a b/é?&"), "a%20b/%C3%A9%3F%26");
    }

    #[test]
    fn snippets_are_short() {
        assert_eq!(snippet(b"  short \n"), "short");
        let long = "x".repeat(500);
        let s = snippet(long.as_bytes());
        assert_eq!(s.len(), BODY_SNIPPET + 3);
    }

    #[tokio::test]
    async fn unreachable_agent_is_a_transport_error() {
        // A port nobody listens on: bind, take the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            Client::new(ConsulUrl::parse(&format!("http://:s3cret@127.0.0.1:{port}")).unwrap());
        let err = client
            .send(Method::GET, "/v1/status/leader", None)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, LeaseError::Transport { .. }), "{err}");
        assert!(err.is_transient());
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("GET http://127.0.0.1:{port}/v1/status/leader")),
            "{msg}"
        );
        assert!(msg.contains("cannot connect"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Accepts the connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let client = Client::new(ConsulUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
        let started = std::time::Instant::now();
        let err = client
            .send(Method::GET, "/v1/kv/x", None)
            .await
            .err()
            .unwrap();
        let took = started.elapsed();
        assert!(matches!(err, LeaseError::Transport { .. }), "{err}");
        assert!(err.to_string().contains("no response within 5s"), "{err}");
        assert!(
            took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
        hold.abort();
    }
}
