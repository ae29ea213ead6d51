//! What the API needs to know about this node, shared by the server, the
//! stream and the follower.

use litefs_store::{Fence, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// The header carrying a node's ID (16 hex digits), as LiteFS sends it.
pub const HEADER_NODE_ID: &str = "litefs-id";
/// The header carrying the cluster ID (`LFSC` + 16 hex digits).
pub const HEADER_CLUSTER_ID: &str = "litefs-cluster-id";

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
    /// Largest LTX file or import body accepted, in bytes.
    pub max_body: u64,
    cluster: ClusterId,
    streams: AtomicUsize,
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
    /// Largest LTX file or import accepted (0: 1 GiB).
    pub max_body: u64,
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
            cluster: ClusterId::load(data_dir)?,
            streams: AtomicUsize::new(0),
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

    pub(crate) fn stream_started(self: &Arc<Self>) -> StreamCount {
        self.streams.fetch_add(1, Ordering::Relaxed);
        StreamCount(self.clone())
    }
}

/// Counts a stream while it lives.
pub(crate) struct StreamCount(Arc<Node>);

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
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
