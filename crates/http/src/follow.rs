//! The replica's side of `/stream`: connect to the primary with our
//! positions, apply every LTX file it sends, keep `.primary` and `.lag`
//! current, reconnect with backoff when the stream ends.

use crate::node::{Node, HEADER_CANDIDATE, HEADER_CLUSTER_ID, HEADER_NODE_ID};
use crate::wire::{encode_pos_map, Frame, FrameDecoder};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use litefs_store::{Applied, PrimaryInfo, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A stream that says nothing for this long is dead (the primary sends a
/// heartbeat every second).
const SILENCE: Duration = Duration::from_secs(30);
/// At most this many bytes already received are decoded into one batch of
/// applies.
const BATCH_BYTES: usize = 8 << 20;
/// Largest LTX file a stream may carry (1 TiB: a snapshot is as large as
/// its database).
const STREAM_MAX_LTX_BYTES: u64 = 1 << 40;

/// Time limit for connecting and for the primary's response headers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The primary's URL does not parse.
    #[error("invalid primary URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting or talking to the primary failed.
    #[error("primary {url}: {reason}")]
    Connection {
        /// The primary's URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The primary answered with an error.
    #[error("primary {url} refused the stream: {status} {body}")]
    Refused {
        /// The primary's URL.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// Its message.
        body: String,
    },
    /// The stream carried bytes that are not LiteFS frames.
    #[error("primary {url}: malformed stream: {source}")]
    Wire {
        /// The primary's URL.
        url: String,
        /// What was wrong.
        source: crate::wire::WireError,
    },
    /// The primary belongs to another cluster, or sent a bad cluster ID.
    #[error(transparent)]
    Cluster(#[from] crate::node::ClusterIdError),
    /// Applying a file failed (the database is unchanged or reset to ask
    /// for a snapshot).
    #[error("applying {db}: {source}")]
    Apply {
        /// The database.
        db: String,
        /// Why.
        source: StoreError,
    },
    /// A task running an apply died.
    #[error("apply task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How a stream from the primary ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEnd {
    /// The primary ended it (End, or the body closed); `ready` says
    /// whether it had caught this node up first.
    Ended {
        /// Whether Ready arrived before the end.
        ready: bool,
    },
    /// The primary handed its lease to this node: the lease ID to adopt.
    Handoff(String),
}

/// Follows one primary.
#[derive(Debug, Clone)]
pub struct Follower {
    node: Arc<Node>,
    primary: PrimaryInfo,
}

impl Follower {
    /// A follower of `primary` (its hostname for `.primary`, its API URL).
    pub fn new(node: Arc<Node>, primary: PrimaryInfo) -> Follower {
        Follower { node, primary }
    }

    /// Streams from the primary until the stream ends or fails. The
    /// caller decides whom to follow next and how long to wait.
    pub async fn follow(&self) -> Result<FollowEnd, FollowError> {
        self.follow_once().await
    }

    /// One connection.
    async fn follow_once(&self) -> Result<FollowEnd, FollowError> {
        let url = self.primary.advertise_url.clone();
        let conn_err = |reason: String| FollowError::Connection {
            url: url.clone(),
            reason,
        };
        let addr = authority(&url)?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| conn_err("connect timed out".into()))?
            .map_err(|e| conn_err(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .map_err(|e| conn_err(format!("HTTP/2 handshake: {e}")))?;
        let conn = tokio::spawn(conn);
        let _abort = AbortOnDrop(conn);

        let positions: BTreeMap<String, litefs_ltx::Pos> = self
            .node
            .store
            .dbs()
            .iter()
            .filter(|d| self.node.wants(d.name()))
            .map(|d| (d.name().to_owned(), d.pos()))
            .collect();
        let mut path = "/stream".to_owned();
        if !self.node.databases.is_empty() {
            path.push_str("?filter=");
            path.push_str(&self.node.databases.join(","));
        }
        let role = self.node.store.role();
        let mut req = Request::post(format!("{}{path}", url.trim_end_matches('/')))
            .header(HEADER_NODE_ID, format!("{:016x}", self.node.node_id))
            .header(
                HEADER_CANDIDATE,
                if role.is_candidate() { "true" } else { "false" },
            );
        if let Some(t) = &self.node.auth_token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(encode_pos_map(&positions))))
            .map_err(|e| conn_err(format!("request: {e}")))?;
        let resp = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| conn_err("no response".into()))?
            .map_err(|e| conn_err(format!("request: {e}")))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
                .unwrap_or_default();
            return Err(FollowError::Refused { url, status, body });
        }
        // Only a stream the primary accepted makes its cluster ours (as in
        // LiteFS): a refusal (a wrong token, a node that is not the
        // primary) must not bind this node to that node's cluster.
        if let Some(id) = resp
            .headers()
            .get(HEADER_CLUSTER_ID)
            .and_then(|v| v.to_str().ok())
        {
            self.node.cluster().adopt(id)?;
        }
        role.become_replica(Some(self.primary.clone()));
        tracing::info!(primary = %url, hostname = %self.primary.hostname, "connected to the primary");

        let mut body = resp.into_body();
        // LTX files past 64 MiB go to a temporary file, so a snapshot
        // of a database larger than memory still arrives.
        let mut dec = FrameDecoder::new(STREAM_MAX_LTX_BYTES)
            .with_spill(&self.node.spill_dir, litefs_store::SPILL_BYTES);
        let mut ready = false;
        loop {
            let frame = match tokio::time::timeout(SILENCE, body.frame()).await {
                Err(_) => return Err(conn_err(format!("silent for {}s", SILENCE.as_secs()))),
                Ok(None) => {
                    dec.finish().map_err(|source| FollowError::Wire {
                        url: url.clone(),
                        source,
                    })?;
                    return Ok(FollowEnd::Ended { ready });
                }
                Ok(Some(Err(e))) => return Err(conn_err(format!("stream: {e}"))),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            dec.push(&data);
            // Take whatever else has already arrived, so that a replica that
            // fell behind applies what is waiting in one batch.
            let mut taken = data.len();
            while taken < BATCH_BYTES {
                match body.frame().now_or_never() {
                    Some(Some(Ok(f))) => {
                        if let Ok(d) = f.into_data() {
                            taken += d.len();
                            dec.push(&d);
                        }
                    }
                    Some(Some(Err(e))) => return Err(conn_err(format!("stream: {e}"))),
                    Some(None) | None => break,
                }
            }
            let mut batch: Vec<(String, Bytes)> = Vec::new();
            loop {
                let f = dec.next_frame().map_err(|source| FollowError::Wire {
                    url: url.clone(),
                    source,
                })?;
                let f = match f {
                    Some(Frame::Ltx { name, data }) => {
                        batch.push((name, data));
                        continue;
                    }
                    other => other,
                };
                // Anything else is ordered after the files before it.
                if let Some(ts) = self.apply_batch(std::mem::take(&mut batch)).await? {
                    if ready {
                        role.heard(ts);
                    }
                }
                match f {
                    None => break,
                    Some(Frame::Ltx { .. }) => {}
                    Some(Frame::Ready) => {
                        ready = true;
                        tracing::info!(primary = %url, "caught up with the primary");
                        if self.node.promote && role.is_candidate() {
                            self.ask_for_lease();
                        }
                    }
                    Some(Frame::Heartbeat { timestamp_ms }) => {
                        if ready {
                            role.heard(timestamp_ms);
                        }
                    }
                    Some(Frame::End) => return Ok(FollowEnd::Ended { ready }),
                    Some(Frame::Handoff { lease_id }) => {
                        tracing::info!(primary = %url, "the primary handed its lease to this node");
                        return Ok(FollowEnd::Handoff(lease_id));
                    }
                    Some(Frame::DropDb { .. }) | Some(Frame::Hwm { .. }) => {}
                }
            }
        }
    }

    /// `lease.promote`: asks the primary to hand its lease to this node
    /// (in the background; the hand-off arrives on the stream).
    fn ask_for_lease(&self) {
        let (url, id, token) = (
            self.primary.advertise_url.clone(),
            self.node.node_id,
            self.node.auth_token.clone(),
        );
        tokio::spawn(async move {
            match request_handoff(&url, id, token.as_deref()).await {
                Ok(()) => tracing::info!(primary = %url, "lease.promote: hand-off requested"),
                Err(e) => {
                    tracing::warn!(primary = %url, error = %e, "lease.promote: hand-off refused")
                }
            }
        });
    }

    /// Applies received LTX files in order, consecutive files of one
    /// database under one fence; returns the newest timestamp applied.
    async fn apply_batch(&self, files: Vec<(String, Bytes)>) -> Result<Option<i64>, FollowError> {
        let mut newest = None;
        let mut i = 0;
        while i < files.len() {
            let name = files[i].0.clone();
            let mut j = i;
            while j < files.len() && files[j].0 == name {
                j += 1;
            }
            let group: Vec<Bytes> = files[i..j].iter().map(|(_, d)| d.clone()).collect();
            i = j;
            if let Some(ts) = self.apply(name, group).await? {
                newest = Some(ts);
            }
        }
        Ok(newest)
    }

    /// Applies consecutive LTX files of one database; returns the last
    /// one's timestamp.
    async fn apply(&self, name: String, files: Vec<Bytes>) -> Result<Option<i64>, FollowError> {
        if !self.node.wants(&name) || files.is_empty() {
            return Ok(None);
        }
        let node = self.node.clone();
        let n2 = name.clone();
        let r = tokio::task::spawn_blocking(move || {
            let db = match node.store.db(&n2) {
                Some(db) => db,
                None => {
                    make_parents(&node, &n2)?;
                    node.store.create_db(&n2)?
                }
            };
            let slices: Vec<&[u8]> = files.iter().map(|b| &b[..]).collect();
            db.apply_ltx_batch(&slices, node.fence.as_ref())
                .map(|a| (a, files.last().and_then(|b| timestamp(b))))
        })
        .await?;
        match r {
            Ok((Applied::At(pos), ts)) => {
                tracing::debug!(db = %name, pos = %pos, "applied");
                Ok(ts)
            }
            Ok((Applied::Own, _)) => Ok(None),
            Err(source) => Err(FollowError::Apply { db: name, source }),
        }
    }
}

/// Asks the primary at `url` to hand its lease to node `node_id`
/// (`POST /handoff?nodeID=`); the error carries the primary's message.
pub async fn request_handoff(url: &str, node_id: u64, token: Option<&str>) -> Result<(), String> {
    let r = crate::client::request(
        url,
        hyper::Method::POST,
        &format!("/handoff?nodeID={node_id:016x}"),
        Bytes::new(),
        token,
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| e.to_string())?;
    if r.status.is_success() {
        Ok(())
    } else {
        Err(format!("{}: {}", r.status, r.text()))
    }
}

/// Creates the mount directories a database name lives in.
fn make_parents(node: &Node, name: &str) -> Result<(), StoreError> {
    let mut at = 0;
    while let Some(i) = name[at..].find('/') {
        let dir = &name[..at + i];
        if !node.store.dir_exists(dir) {
            match node.store.mkdir(dir) {
                Ok(()) => {}
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        at += i + 1;
    }
    Ok(())
}

fn timestamp(ltx: &[u8]) -> Option<i64> {
    let b = ltx.get(..litefs_ltx::HEADER_SIZE)?.try_into().ok()?;
    litefs_ltx::Header::from_bytes(b).ok().map(|h| h.timestamp)
}

/// `host:port` of an `http://` URL (port 80 by default).
pub(crate) fn authority(url: &str) -> Result<String, FollowError> {
    let bad = |reason: &str| FollowError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(bad("only http:// is supported")),
        None => return Err(bad("missing http://")),
    }
    let host = uri.host().ok_or_else(|| bad("missing host"))?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_urls() {
        assert_eq!(
            authority("http://127.0.0.1:20202").ok().as_deref(),
            Some("127.0.0.1:20202")
        );
        assert_eq!(
            authority("http://node-a/").ok().as_deref(),
            Some("node-a:80")
        );
        assert!(authority("https://x:1").is_err());
        assert!(authority("x:1").is_err());
        assert!(authority("").is_err());
    }
}
