//! The primary's side of `POST /stream`: bring each replica database from
//! the position it sent to ours (LTX files while the chain is on disk and
//! continues the replica's checksum, else a snapshot), then follow every
//! new commit. LiteFS v0.5.14's framing and rules.

use crate::node::Node;
use crate::server::{text, Body};
use crate::wire::{
    decode_pos_map, encode_chunks, encode_frame, encode_ltx_frame_header, Frame, CHUNK_END,
    MAX_CHUNK_LEN,
};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use litefs_ltx::{Header, Pos, Txid, HEADER_SIZE, TRAILER_SIZE};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Idle time after which a heartbeat is sent (LiteFS: 1 s).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Frames queued for one replica before the sender waits for it.
const QUEUE: usize = 32;
/// LTX files larger than this go out in pieces of this size (a whole
/// number of chunks).
const PIECE: usize = 16 * MAX_CHUNK_LEN;
/// Largest position map accepted.
const MAX_POS_MAP: usize = 16 << 20;

/// Handles `POST /stream?filter=a,b`.
pub(crate) async fn serve_stream(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    if !node.store.role().is_primary() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is not the primary; stream from the primary",
        );
    }
    let filter: Option<BTreeSet<String>> = crate::server::query(&req, "filter")
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(str::to_owned).collect());
    let peer = req
        .headers()
        .get(crate::node::HEADER_NODE_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let peer_id = u64::from_str_radix(&peer, 16).unwrap_or(0);
    let candidate = req
        .headers()
        .get(crate::node::HEADER_CANDIDATE)
        .is_some_and(|v| v.as_bytes() == b"true");
    let body = match Limited::new(req.into_body(), MAX_POS_MAP).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading position map: {e}"),
            )
        }
    };
    let client = match decode_pos_map(&body) {
        Ok(m) => m,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid position map: {e}"),
            )
        }
    };
    if let Some(bad) = client
        .keys()
        .find(|n| litefs_store::validate_db_name(n).is_err())
    {
        return text(
            StatusCode::BAD_REQUEST,
            format!("invalid database name in position map: {bad:?}"),
        );
    }
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let node2 = node.clone();
    tracing::info!(replica = %peer, dbs = client.len(), "replica connected");
    tokio::spawn(async move {
        let r = Streamer {
            count: node2.stream_started(peer_id, candidate),
            node: node2.clone(),
            peer_id,
            tx,
            filter,
            client,
        }
        .run()
        .await;
        match r {
            Ok(()) => tracing::info!(replica = %peer, "replica stream ended"),
            Err(e) => tracing::info!(replica = %peer, reason = %e, "replica stream ended"),
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(hyper::body::Frame::data(b)), rx))
    });
    Response::new(StreamBody::new(stream).boxed())
}

/// Why a stream stopped.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("replica disconnected")]
    Gone,
    #[error("this node is no longer the primary")]
    Demoted,
    #[error("{0}")]
    Store(#[from] litefs_store::StoreError),
    #[error("task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

struct Streamer {
    /// Lists this replica among the node's peers while the stream lives.
    count: crate::node::StreamCount,
    node: Arc<Node>,
    /// The replica's node ID (0 if it sent none).
    peer_id: u64,
    tx: mpsc::Sender<Bytes>,
    filter: Option<BTreeSet<String>>,
    /// What the replica has, as far as we know.
    client: BTreeMap<String, Pos>,
}

impl Streamer {
    async fn run(mut self) -> Result<(), StreamError> {
        let dirty = Arc::new(Mutex::new(BTreeSet::<String>::new()));
        let wake = Arc::new(Notify::new());
        let (d2, w2) = (dirty.clone(), wake.clone());
        let _listening = self.node.store.listen(Arc::new(move |name: &str| {
            if let Ok(mut d) = d2.lock() {
                d.insert(name.to_owned());
            }
            w2.notify_one();
        }));
        // First pass: everything the replica named and everything we have.
        let mut first: BTreeSet<String> = self.client.keys().cloned().collect();
        first.extend(self.node.store.dbs().iter().map(|d| d.name().to_owned()));
        for name in first {
            self.sync(&name).await?;
        }
        self.send(Frame::Ready).await?;
        self.count.ready();
        self.send(Frame::Heartbeat {
            timestamp_ms: litefs_ltx::now_ms(),
        })
        .await?;
        let take = || -> Result<Vec<String>, StreamError> {
            let mut d = dirty.lock().map_err(|_| StreamError::Gone)?;
            Ok(std::mem::take(&mut *d).into_iter().collect())
        };
        let node = self.node.clone();
        loop {
            let demoted = node.demoted.notified();
            tokio::pin!(demoted);
            demoted.as_mut().enable();
            let next = take()?;
            for name in &next {
                self.sync(name).await?;
            }
            if !next.is_empty() {
                continue;
            }
            if self.node.streams_ending() {
                // The demotion captured its last commits before it set
                // the flag: send them, then hand off if this replica is
                // the one chosen.
                for name in &take()? {
                    self.sync(name).await?;
                }
                let handoff = self.node.handoff.lock().ok().and_then(|h| h.clone());
                if let Some((target, lease_id)) = handoff {
                    if target == self.peer_id {
                        tracing::info!(
                            replica = format_args!("{:016x}", self.peer_id),
                            "handing the lease off"
                        );
                        self.send(Frame::Handoff { lease_id }).await?;
                    }
                }
                let _ = self.send(Frame::End).await;
                return Err(StreamError::Demoted);
            }
            tokio::select! {
                _ = &mut demoted => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(HEARTBEAT) => {
                    self.send(Frame::Heartbeat { timestamp_ms: litefs_ltx::now_ms() }).await?;
                }
                _ = self.tx.closed() => return Err(StreamError::Gone),
            }
        }
    }

    async fn send(&self, f: Frame) -> Result<(), StreamError> {
        self.tx
            .send(encode_frame(&f))
            .await
            .map_err(|_| StreamError::Gone)
    }

    /// Sends an LTX frame; a large one in pieces of [`PIECE`] bytes, so
    /// the queue holds a few pieces of a snapshot, never a second copy of
    /// all of it.
    async fn send_ltx(&self, name: &str, data: Bytes) -> Result<(), StreamError> {
        if data.len() <= PIECE {
            return self
                .send(Frame::Ltx {
                    name: name.to_owned(),
                    data,
                })
                .await;
        }
        let put = |b: Bytes| async { self.tx.send(b).await.map_err(|_| StreamError::Gone) };
        put(encode_ltx_frame_header(name)).await?;
        for piece in data.chunks(PIECE) {
            let mut out = BytesMut::new();
            encode_chunks(piece, &mut out);
            put(out.freeze()).await?;
        }
        put(Bytes::from_static(&CHUNK_END)).await
    }

    /// Brings the replica's copy of `name` to our position.
    async fn sync(&mut self, name: &str) -> Result<(), StreamError> {
        if self.filter.as_ref().is_some_and(|f| !f.contains(name)) {
            return Ok(());
        }
        let Some(db) = self.node.store.db(name) else {
            if self.client.remove(name).is_some() {
                // LiteFS still sends this (replicas ignore it).
                self.send(Frame::DropDb {
                    name: name.to_owned(),
                })
                .await?;
            }
            return Ok(());
        };
        loop {
            let ours = db.pos();
            let mut theirs = self.client.get(name).copied().unwrap_or(Pos::ZERO);
            if theirs == ours || ours.txid.0 == 0 {
                return Ok(());
            }
            let diverged = theirs.txid > ours.txid
                || (theirs.txid == ours.txid
                    && theirs.post_apply_checksum != ours.post_apply_checksum);
            if diverged {
                theirs = Pos::ZERO;
            }
            let next = Txid(theirs.txid.0 + 1);
            let d = db.clone();
            // From zero, the first LTX file (a snapshot itself) serves if
            // retention kept it: no need to hold writers for a new one. Not
            // for a diverged replica (LiteFS never replays to one): our
            // history may hold files it forwarded under the halt lock,
            // which it discards as its own, so a replay would leave it
            // short of us for good.
            let file = if diverged {
                None
            } else {
                tokio::task::spawn_blocking(move || d.read_ltx_from(next)).await??
            };
            let (data, pos) = match file.and_then(|b| continues(&b, theirs).map(|p| (b, p))) {
                Some((b, p)) => (b, p),
                None => {
                    let (d, fence) = (db.clone(), self.node.fence.clone());
                    let snap = tokio::task::spawn_blocking(move || d.snapshot_ltx(fence.as_ref()))
                        .await??;
                    let Some((h, bytes)) = snap else {
                        return Ok(());
                    };
                    let post = trailer_post(&bytes).unwrap_or_default();
                    tracing::debug!(db = name, txid = %h.max_txid, bytes = bytes.len(), "sending snapshot");
                    (
                        bytes,
                        Pos {
                            txid: h.max_txid,
                            post_apply_checksum: post,
                        },
                    )
                }
            };
            self.send_ltx(name, data).await?;
            self.client.insert(name.to_owned(), pos);
        }
    }
}

/// If the LTX file `b` continues from `theirs`, the position after it.
fn continues(b: &[u8], theirs: Pos) -> Option<Pos> {
    let hb: &[u8; HEADER_SIZE] = b.get(..HEADER_SIZE)?.try_into().ok()?;
    let h = Header::from_bytes(hb).ok()?;
    let from_zero = theirs.txid.0 == 0 && h.is_snapshot();
    if !from_zero
        && (h.is_snapshot()
            || h.min_txid.0 != theirs.txid.0 + 1
            || h.pre_apply_checksum != theirs.post_apply_checksum)
    {
        return None;
    }
    Some(Pos {
        txid: h.max_txid,
        post_apply_checksum: trailer_post(b)?,
    })
}

/// The post-apply checksum in an LTX file's trailer.
fn trailer_post(b: &[u8]) -> Option<litefs_ltx::Checksum> {
    let t = b.get(b.len().checked_sub(TRAILER_SIZE)?..)?;
    let v = u64::from_be_bytes(t[..8].try_into().ok()?);
    Some(litefs_ltx::Checksum(v))
}
