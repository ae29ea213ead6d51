//! The HTTP server: HTTP/1.1 and cleartext HTTP/2 (prior knowledge, as
//! LiteFS's client speaks for `/stream`) on one listener, routing, the
//! optional bearer token, and LiteFS's response headers.

use crate::node::{Node, HEADER_CLUSTER_ID, HEADER_NODE_ID};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A response body: whole or streamed.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole response body.
pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A plain-text response (LiteFS's errors are plain text).
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut s = msg.into();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let mut r = Response::new(full(s));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response.
pub(crate) fn json(v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(format!("{v}\n")));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The query parameter `key`, percent-decoded.
pub(crate) fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// Percent-encodes a query value (database names may hold `/`, spaces...).
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the API on `listener` until `shutdown` completes; open
/// connections (replica streams included) are then dropped.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let node = node.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(handle(node, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tcp), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    conns.shutdown().await;
    Ok(())
}

/// Routes one request and adds LiteFS's headers to the response.
async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let mut resp = if let Some(denied) = check_auth(&node, &req) {
        denied
    } else {
        route(&node, req).await
    };
    let h = resp.headers_mut();
    if let Ok(v) = format!("{:016x}", node.node_id).parse() {
        h.insert(HEADER_NODE_ID, v);
    }
    if let Some(id) = node.cluster().get().and_then(|c| c.parse().ok()) {
        h.insert(HEADER_CLUSTER_ID, id);
    }
    resp
}

/// With a token configured, every request must carry it.
fn check_auth(node: &Node, req: &Request<Incoming>) -> Option<Response<Body>> {
    let want = node.auth_token.as_deref()?;
    let got = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if got.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
        return None;
    }
    Some(text(
        StatusCode::UNAUTHORIZED,
        "authorization required: send the cluster's token as Authorization: Bearer <token>",
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/info") => crate::info::info(node),
        (Method::GET, "/metrics") => crate::info::metrics(node),
        (Method::GET, "/events") => crate::info::events(node),
        (Method::GET, "/export") => crate::transfer::export(node, &req).await,
        (Method::POST, "/import") => crate::transfer::import(node, req).await,
        (Method::POST, "/stream") => crate::stream::serve_stream(node, req).await,
        (Method::POST, "/handoff") => crate::handoff::handoff(node, &req).await,
        (Method::POST, "/promote") => crate::handoff::promote(node).await,
        (Method::POST | Method::DELETE, "/halt") => crate::halt::halt(node, req).await,
        (Method::POST, "/tx") => crate::halt::tx(node, req).await,
        (
            _,
            "/info" | "/metrics" | "/events" | "/export" | "/import" | "/stream" | "/handoff"
            | "/promote" | "/halt" | "/tx",
        ) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed on {path}", req.method()),
        ),
        (_, p) if p.starts_with("/debug/") => crate::debug::route(node, &req).await,
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb.db"), "a/b.db");
        assert_eq!(percent_decode("x+y"), "x y");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
