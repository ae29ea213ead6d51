//! A small HTTP/1.1 client for the command line (`litefs export`,
//! `litefs import`, `litefs run`) talking to a node's API.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// A finished request.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (error messages are plain text), trimmed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// Why a request failed before any reply.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct ClientError {
    /// The node's URL.
    pub url: String,
    /// What failed.
    pub reason: String,
}

/// Sends one request to the node API at `base` (`http://host:port`),
/// `path_and_query` beginning with `/`, with the bearer `token` if given.
/// `timeout` bounds the whole exchange.
pub async fn request(
    base: &str,
    method: Method,
    path_and_query: &str,
    body: Bytes,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let err = |reason: String| ClientError {
        url: base.to_owned(),
        reason,
    };
    let addr = crate::follow::authority(base).map_err(|e| err(e.to_string()))?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| err(format!("connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| err(format!("handshake: {e}")))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, addr.as_str());
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| err(format!("request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| err(format!("request: {e}")))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(format!("reading the reply: {e}")))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| err(format!("no reply within {}s", timeout.as_secs())))?
}
