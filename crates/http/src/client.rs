//! A small HTTP/1.1 client for the command line (`litefs export`,
//! `litefs import`, `litefs run`) talking to a node's API.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// Told how a request's bodies move, for a progress display. Called on the
/// client's runtime thread: must be quick.
pub trait Progress: Send + Sync {
    /// `done` of the request body's `total` bytes were handed to the
    /// connection.
    fn sent(&self, done: u64, total: u64);
    /// The reply's body begins; `total` is its length if the node said.
    fn receiving(&self, total: Option<u64>);
    /// `done` bytes of the reply's body have arrived.
    fn received(&self, done: u64);
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
    request_with_progress(base, method, path_and_query, body, token, timeout, None).await
}

/// [`request`], telling `progress` (if any) how the bodies move.
pub async fn request_with_progress(
    base: &str,
    method: Method,
    path_and_query: &str,
    body: Bytes,
    token: Option<&str>,
    timeout: Duration,
    progress: Option<Arc<dyn Progress>>,
) -> Result<Reply, ClientError> {
    send(
        base,
        method,
        path_and_query,
        body,
        token,
        None,
        timeout,
        progress,
    )
    .await
}

/// [`request`] from node `node_id` (sent as `Litefs-Id`, as nodes do).
pub(crate) async fn request_as(
    base: &str,
    method: Method,
    path_and_query: &str,
    body: Bytes,
    token: Option<&str>,
    node_id: Option<u64>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    send(
        base,
        method,
        path_and_query,
        body,
        token,
        node_id,
        timeout,
        None,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn send(
    base: &str,
    method: Method,
    path_and_query: &str,
    body: Bytes,
    token: Option<&str>,
    node_id: Option<u64>,
    timeout: Duration,
    progress: Option<Arc<dyn Progress>>,
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
        if let Some(id) = node_id {
            req = req.header(crate::node::HEADER_NODE_ID, format!("{id:016x}"));
        }
        let upload = Upload {
            data: body,
            sent: 0,
            progress: progress.clone(),
        };
        let req = req.body(upload).map_err(|e| err(format!("request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| err(format!("request: {e}")))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let total = headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(p) = &progress {
            p.receiving(total);
        }
        let mut body = BytesMut::with_capacity(total.map_or(0, |t| t.min(64 << 20) as usize));
        let mut incoming = resp.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| err(format!("reading the reply: {e}")))?;
            if let Ok(data) = frame.into_data() {
                body.extend_from_slice(&data);
                if let Some(p) = &progress {
                    p.received(body.len() as u64);
                }
            }
        }
        Ok(Reply {
            status,
            headers,
            body: body.freeze(),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| err(format!("no reply within {}s", timeout.as_secs())))?
}

/// Bytes handed to the connection at a time, each a step of progress.
const UPLOAD_CHUNK: usize = 64 << 10;

/// A request body sent in [`UPLOAD_CHUNK`]s, reporting each to the
/// [`Progress`]. Its exact length is known, so it goes with a
/// `Content-Length`.
struct Upload {
    data: Bytes,
    sent: usize,
    progress: Option<Arc<dyn Progress>>,
}

impl hyper::body::Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let (start, len) = (self.sent, self.data.len());
        if start >= len {
            return Poll::Ready(None);
        }
        let end = (start + UPLOAD_CHUNK).min(len);
        let chunk = self.data.slice(start..end);
        self.sent = end;
        if let Some(p) = &self.progress {
            p.sent(end as u64, len as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::{Node, NodeOptions};
    use litefs_store::{NoClients, Store, StoreOptions};
    use std::sync::Mutex;

    /// Every progress call, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Progress for Recorder {
        fn sent(&self, done: u64, total: u64) {
            self.0.lock().unwrap().push(format!("sent {done}/{total}"));
        }
        fn receiving(&self, total: Option<u64>) {
            self.0.lock().unwrap().push(format!("receiving {total:?}"));
        }
        fn received(&self, done: u64) {
            self.0.lock().unwrap().push(format!("received {done}"));
        }
    }

    #[tokio::test]
    async fn progress_follows_both_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let node = Node::new(
            store,
            Arc::new(NoClients),
            dir.path(),
            NodeOptions::default(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(listener, Arc::new(node), async {
            let _ = stopped.await;
        }));
        let t = Duration::from_secs(10);

        // Upload: every chunk is reported, up to the whole body; the node
        // refuses it (not a database), which is still a reply.
        let rec = Arc::new(Recorder::default());
        let body = Bytes::from(vec![7u8; 150_000]);
        let r = request_with_progress(
            &base,
            Method::POST,
            "/import?name=x.db",
            body,
            None,
            t,
            Some(rec.clone()),
        )
        .await
        .unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let calls = rec.0.lock().unwrap().clone();
        let sent: Vec<&String> = calls.iter().filter(|c| c.starts_with("sent")).collect();
        assert_eq!(
            sent,
            [
                "sent 65536/150000",
                "sent 131072/150000",
                "sent 150000/150000"
            ]
        );

        // Download: the length the node announced, then growing counts up
        // to the whole body.
        let rec = Arc::new(Recorder::default());
        let r = request_with_progress(
            &base,
            Method::GET,
            "/metrics",
            Bytes::new(),
            None,
            t,
            Some(rec.clone()),
        )
        .await
        .unwrap();
        let calls = rec.0.lock().unwrap().clone();
        let n = r.body.len();
        assert!(n > 0);
        assert_eq!(calls.first().unwrap(), &format!("receiving Some({n})"));
        assert_eq!(calls.last().unwrap(), &format!("received {n}"));
        assert!(!calls.iter().any(|c| c.starts_with("sent")), "{calls:?}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
