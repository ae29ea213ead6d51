//! What the API needs to know about this node, shared by the server, the
//! stream and the follower.

use litefs_store::{Fence, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, Notify};

/// The header carrying a node's ID (16 hex digits), as LiteFS sends it.
pub const HEADER_NODE_ID: &str = "litefs-id";
/// The header carrying the cluster ID (`LFSC` + 16 hex digits).
pub const HEADER_CLUSTER_ID: &str = "litefs-cluster-id";
/// Our extension: a replica's `/stream` request says whether it may become
/// primary (`true`/`false`), so a primary that shuts down hands its lease
/// only to a node that can take it. LiteFS nodes do not send it; they are
/// never chosen for a shutdown hand-off.
pub const HEADER_CANDIDATE: &str = "litefs-candidate";

/// One node's API state.
pub struct Node {
    /// The node's databases.
    pub store: Arc<Store>,
    /// Keeps SQLite clients out while the store changes a database.
    pub fence: Arc<dyn Fence>,
    /// This node's ID (random per start, as in LiteFS).
    pub node_id: u64,
    /// The name other nodes show in `.primary` when this node is primary.
    pub hostname: String,
    /// Shared secret every request must carry as `Authorization: Bearer`;
    /// `None` leaves the API open (LiteFS nodes send no token).
    pub auth_token: Option<String>,
    /// Replicate only these databases (empty: all).
    pub databases: Vec<String>,
    /// Largest forwarded transaction (`POST /tx`) accepted, in bytes.
    pub max_body: u64,
    /// `lease.promote`: ask the primary for its lease once caught up.
    pub promote: bool,
    /// Where this node's HTTP proxy is reached (`/info` says it, so a
    /// replica's proxy can forward writes to the primary's).
    pub proxy_url: Option<String>,
    cluster: ClusterId,
    /// Where large LTX files from the primary collect as they arrive (the
    /// data directory: the database's disk, not memory).
    pub(crate) spill_dir: std::path::PathBuf,
    streams: AtomicUsize,
    /// Replicas streaming from this node now.
    peers: Mutex<Vec<Peer>>,
    next_peer: AtomicU64,
    /// Wakes every stream when this node stops being the primary.
    pub(crate) demoted: Notify,
    /// Set once a demotion finished capturing: streams send what is left
    /// and end.
    ending: AtomicBool,
    /// Where a hand-off goes: the replica's node ID and the lease ID its
    /// stream must carry in a Handoff frame.
    pub(crate) handoff: Mutex<Option<(u64, String)>>,
    /// Requests to the election loop (`POST /handoff`).
    control: Mutex<Option<mpsc::Sender<Control>>>,
    /// Halt locks this node (as primary) holds for replicas.
    pub(crate) halts: crate::halt::Halts,
    /// Events other than `tx` for `/events` subscribers (`primaryChange`,
    /// `halt`), as NDJSON lines.
    events: tokio::sync::broadcast::Sender<bytes::Bytes>,
    /// More Prometheus text for `/metrics` (the proxy's counters).
    extra_metrics: RwLock<Vec<ExtraMetrics>>,
    /// More members for `/info` (the backup's position).
    extra_info: RwLock<Vec<(String, ExtraInfo)>>,
}

/// Renders one more `/info` member.
pub type ExtraInfo = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Renders more Prometheus text for `/metrics`.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// A replica connected to this node's `/stream`.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    seq: u64,
    /// Its node ID (`Litefs-Id`).
    pub(crate) node_id: u64,
    /// Whether it said it may become primary.
    pub(crate) candidate: bool,
    /// Set once its stream sent Ready (it has everything this node had).
    pub(crate) ready: Arc<AtomicBool>,
}

/// A request from the API to the election loop.
#[derive(Debug)]
pub enum Control {
    /// `POST /handoff?nodeID=`: give the lease to this connected replica;
    /// the reply says whether the hand-off was sent.
    Handoff {
        /// The replica's node ID.
        node_id: u64,
        /// Where the outcome goes (an error message on failure).
        reply: oneshot::Sender<Result<(), String>>,
    },
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &format_args!("{:016x}", self.node_id))
            .field("hostname", &self.hostname)
            .finish()
    }
}

/// Errors about the cluster ID.
#[derive(Debug, thiserror::Error)]
pub enum ClusterIdError {
    /// Reading or writing `<data>/clusterid` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file or a header holds something that is not a cluster ID.
    #[error("invalid cluster ID {0:?}: expected LFSC followed by 16 hex digits")]
    Invalid(String),
    /// Another cluster's node.
    #[error("cluster ID mismatch: this node belongs to {ours}, the other node to {theirs}")]
    Mismatch {
        /// This node's ID.
        ours: String,
        /// The other's.
        theirs: String,
    },
}

/// The cluster ID, kept in `<data.dir>/clusterid` once known, so a node
/// never joins a different cluster by mistake.
#[derive(Debug)]
pub struct ClusterId {
    path: PathBuf,
    id: RwLock<Option<String>>,
}

/// Whether `s` is a cluster ID: `LFSC` and 16 hex digits.
pub fn valid_cluster_id(s: &str) -> bool {
    s.len() == 20 && s.starts_with("LFSC") && s[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl ClusterId {
    /// Loads `<data_dir>/clusterid` if it exists.
    pub fn load(data_dir: &Path) -> Result<ClusterId, ClusterIdError> {
        let path = data_dir.join("clusterid");
        let id = match std::fs::read_to_string(&path) {
            Ok(s) => {
                let s = s.trim().to_owned();
                if !valid_cluster_id(&s) {
                    return Err(ClusterIdError::Invalid(s));
                }
                Some(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ClusterIdError::Io { path, source }),
        };
        Ok(ClusterId {
            path,
            id: RwLock::new(id),
        })
    }

    /// The cluster ID, if known.
    pub fn get(&self) -> Option<String> {
        self.id.read().ok().and_then(|g| g.clone())
    }

    /// Adopts `theirs` if this node has none (written to disk first);
    /// refuses a different one.
    pub fn adopt(&self, theirs: &str) -> Result<(), ClusterIdError> {
        if !valid_cluster_id(theirs) {
            return Err(ClusterIdError::Invalid(theirs.to_owned()));
        }
        let mut g = self
            .id
            .write()
            .map_err(|_| ClusterIdError::Invalid("poisoned".into()))?;
        match g.as_deref() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(ClusterIdError::Mismatch {
                ours: ours.to_owned(),
                theirs: theirs.to_owned(),
            }),
            None => {
                let tmp = self.path.with_extension("tmp");
                std::fs::write(&tmp, format!("{theirs}\n"))
                    .and_then(|()| std::fs::rename(&tmp, &self.path))
                    .map_err(|source| ClusterIdError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
                tracing::info!(cluster_id = theirs, "cluster ID set");
                *g = Some(theirs.to_owned());
                Ok(())
            }
        }
    }

    /// Makes sure a cluster ID exists (a primary starting a new cluster).
    pub fn ensure(&self) -> Result<String, ClusterIdError> {
        if let Some(id) = self.get() {
            return Ok(id);
        }
        let mut b = [0u8; 8];
        let n = getrandom::fill(&mut b)
            .map(|()| u64::from_ne_bytes(b))
            .unwrap_or_else(|_| u64::from(std::process::id()) << 32 ^ now_nanos());
        let id = format!("LFSC{n:016X}");
        self.adopt(&id)?;
        Ok(id)
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What a [`Node`] is built from.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// This node's ID.
    pub node_id: u64,
    /// `lease.hostname`.
    pub hostname: String,
    /// API bearer token, if any.
    pub auth_token: Option<String>,
    /// `lease.databases`.
    pub databases: Vec<String>,
    /// Largest forwarded transaction (`POST /tx`) accepted (0: 1 GiB).
    pub max_body: u64,
    /// `lease.promote`.
    pub promote: bool,
    /// This node's proxy URL, if it runs one.
    pub proxy_url: Option<String>,
}

impl Node {
    /// A node serving `store`, with its cluster ID from `data_dir`.
    pub fn new(
        store: Arc<Store>,
        fence: Arc<dyn Fence>,
        data_dir: &Path,
        opts: NodeOptions,
    ) -> Result<Node, ClusterIdError> {
        Ok(Node {
            store,
            fence,
            node_id: opts.node_id,
            hostname: opts.hostname,
            auth_token: opts.auth_token.filter(|t| !t.is_empty()),
            databases: opts.databases,
            max_body: if opts.max_body == 0 {
                1 << 30
            } else {
                opts.max_body
            },
            promote: opts.promote,
            proxy_url: opts.proxy_url,
            cluster: ClusterId::load(data_dir)?,
            spill_dir: data_dir.to_path_buf(),
            streams: AtomicUsize::new(0),
            peers: Mutex::new(Vec::new()),
            next_peer: AtomicU64::new(0),
            demoted: Notify::new(),
            ending: AtomicBool::new(false),
            handoff: Mutex::new(None),
            control: Mutex::new(None),
            halts: Default::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            extra_metrics: RwLock::new(Vec::new()),
            extra_info: RwLock::new(Vec::new()),
        })
    }

    /// The cluster ID.
    pub fn cluster(&self) -> &ClusterId {
        &self.cluster
    }

    /// Whether database `name` is replicated to this node.
    pub fn wants(&self, name: &str) -> bool {
        self.databases.is_empty() || self.databases.iter().any(|d| d == name)
    }

    /// Replica streams being served now.
    pub fn stream_count(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Registers a replica's stream for as long as the returned value
    /// lives.
    pub(crate) fn stream_started(self: &Arc<Self>, node_id: u64, candidate: bool) -> StreamCount {
        self.streams.fetch_add(1, Ordering::Relaxed);
        let peer = Peer {
            seq: self.next_peer.fetch_add(1, Ordering::Relaxed),
            node_id,
            candidate,
            ready: Arc::new(AtomicBool::new(false)),
        };
        if let Ok(mut p) = self.peers.lock() {
            p.push(peer.clone());
        }
        StreamCount(self.clone(), peer)
    }

    /// The replicas streaming from this node now.
    pub(crate) fn peers(&self) -> Vec<Peer> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// A connected replica that may become primary and has caught up: the
    /// one a primary that shuts down hands its lease to.
    pub fn handoff_candidate(&self) -> Option<u64> {
        self.peers()
            .into_iter()
            .find(|p| p.candidate && p.ready.load(Ordering::Acquire))
            .map(|p| p.node_id)
    }

    /// Whether the replica `node_id` is streaming from this node.
    pub fn is_connected(&self, node_id: u64) -> bool {
        self.peers().iter().any(|p| p.node_id == node_id)
    }

    /// Tells every stream that this node is no longer the primary, and the
    /// stream of `handoff`'s replica (if any) to pass it the lease ID.
    /// Streams send what is still unsent, then (for the hand-off target)
    /// a Handoff frame, then End.
    pub fn streams_demoted(&self, handoff: Option<(u64, String)>) {
        if let Ok(mut h) = self.handoff.lock() {
            *h = handoff;
        }
        self.ending.store(true, Ordering::Release);
        self.demoted.notify_waiters();
    }

    /// This node became the primary: streams may be served again.
    pub fn streams_promoted(&self) {
        if let Ok(mut h) = self.handoff.lock() {
            *h = None;
        }
        self.ending.store(false, Ordering::Release);
    }

    /// Whether streams must finish and end (see [`Node::streams_demoted`]).
    pub(crate) fn streams_ending(&self) -> bool {
        self.ending.load(Ordering::Acquire)
    }

    /// Sends an event to `/events` subscribers: `{"type": kind, "db": db,
    /// "data": data}` (`db` left out when `None`).
    pub fn emit(&self, kind: &str, db: Option<&str>, data: serde_json::Value) {
        let mut ev = serde_json::json!({ "type": kind, "data": data });
        if let (Some(db), Some(o)) = (db, ev.as_object_mut()) {
            o.insert("db".into(), db.into());
        }
        let _ = self.events.send(bytes::Bytes::from(format!("{ev}\n")));
    }

    /// Adds `f`'s Prometheus text to every `/metrics` answer.
    pub fn add_extra_metrics(&self, f: ExtraMetrics) {
        if let Ok(mut m) = self.extra_metrics.write() {
            m.push(f);
        }
    }

    /// Adds member `key` (rendered by `f` at each request) to `/info`.
    pub fn add_extra_info(&self, key: &str, f: ExtraInfo) {
        if let Ok(mut m) = self.extra_info.write() {
            m.push((key.to_owned(), f));
        }
    }

    /// The extra `/info` members.
    pub(crate) fn extra_info(&self) -> Vec<(String, serde_json::Value)> {
        self.extra_info
            .read()
            .map(|m| m.iter().map(|(k, f)| (k.clone(), f())).collect())
            .unwrap_or_default()
    }

    /// The extra Prometheus text, if any.
    pub(crate) fn extra_metrics(&self) -> Option<String> {
        let m = self.extra_metrics.read().ok()?;
        (!m.is_empty()).then(|| m.iter().map(|f| f()).collect())
    }

    /// A receiver of [`Node::emit`]'s events.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<bytes::Bytes> {
        self.events.subscribe()
    }

    /// Connects the API to the election loop that serves [`Control`]
    /// requests.
    pub fn set_control(&self, tx: mpsc::Sender<Control>) {
        if let Ok(mut c) = self.control.lock() {
            *c = Some(tx);
        }
    }

    /// The election loop's request channel, if one runs.
    pub(crate) fn control(&self) -> Option<mpsc::Sender<Control>> {
        self.control.lock().ok().and_then(|c| c.clone())
    }
}

/// Counts a stream, and lists its replica, while it lives.
pub(crate) struct StreamCount(Arc<Node>, Peer);

impl StreamCount {
    /// Marks the replica as caught up.
    pub(crate) fn ready(&self) {
        self.1.ready.store(true, Ordering::Release);
    }
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut p) = self.0.peers.lock() {
            p.retain(|x| x.seq != self.1.seq);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_checked_kept_and_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let c = ClusterId::load(d.path()).unwrap();
        assert_eq!(c.get(), None);
        assert!(c.adopt("nonsense").is_err());
        let id = c.ensure().unwrap();
        assert!(valid_cluster_id(&id), "{id}");
        assert!(matches!(
            c.adopt("LFSC0000000000000001"),
            Err(ClusterIdError::Mismatch { .. })
        ));
        let again = ClusterId::load(d.path()).unwrap();
        assert_eq!(again.get(), Some(id));
        std::fs::write(d.path().join("clusterid"), "LFSCxyz\n").unwrap();
        assert!(ClusterId::load(d.path()).is_err());
    }
}
