//! This node's place in the cluster, as the mount and the API show it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The primary this node follows, as the lease names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrimaryInfo {
    /// Shown to applications in `.primary`.
    pub hostname: String,
    /// Where its API is reached (`/stream`).
    pub advertise_url: String,
}

/// Whether this node may write, whom it follows, and how far behind it is.
/// Set by the lease and replication code; read by the mount and the API.
#[derive(Debug)]
pub struct Role {
    primary: AtomicBool,
    candidate: AtomicBool,
    following: RwLock<Option<PrimaryInfo>>,
    /// Milliseconds since the epoch of the newest thing heard from the
    /// primary (an LTX file's timestamp or a heartbeat); 0 = never synced.
    heard_ms: AtomicI64,
}

impl Default for Role {
    /// A primary: a node without replication writes locally.
    fn default() -> Self {
        Role {
            primary: AtomicBool::new(true),
            candidate: AtomicBool::new(true),
            following: RwLock::new(None),
            heard_ms: AtomicI64::new(0),
        }
    }
}

/// `.lag` before the first sync: LiteFS's value.
pub const LAG_UNKNOWN_MS: i64 = 2_147_483_647;

impl Role {
    /// Whether this node is the primary: the only one whose databases
    /// SQLite clients may write.
    pub fn is_primary(&self) -> bool {
        self.primary.load(Ordering::Acquire)
    }

    /// Whether this node may become primary (`lease.candidate`).
    pub fn is_candidate(&self) -> bool {
        self.candidate.load(Ordering::Acquire)
    }

    /// Records whether this node may become primary.
    pub fn set_candidate(&self, candidate: bool) {
        self.candidate.store(candidate, Ordering::Release);
    }

    /// Makes this node the primary.
    pub fn become_primary(&self) {
        if let Ok(mut f) = self.following.write() {
            *f = None;
        }
        self.primary.store(true, Ordering::Release);
    }

    /// Makes this node a read-only replica following `primary` (`None`:
    /// no primary known or not connected).
    pub fn become_replica(&self, primary: Option<PrimaryInfo>) {
        self.primary.store(false, Ordering::Release);
        if let Ok(mut f) = self.following.write() {
            *f = primary;
        }
    }

    /// The primary this replica is connected to, if any.
    pub fn primary(&self) -> Option<PrimaryInfo> {
        self.following.read().ok().and_then(|f| f.clone())
    }

    /// Records a timestamp (ms since the epoch) heard from the primary.
    pub fn heard(&self, timestamp_ms: i64) {
        self.heard_ms.fetch_max(timestamp_ms, Ordering::AcqRel);
    }

    /// Milliseconds behind the primary: 0 on the primary,
    /// [`LAG_UNKNOWN_MS`] before a replica's first sync.
    pub fn lag_ms(&self) -> i64 {
        if self.is_primary() {
            return 0;
        }
        let heard = self.heard_ms.load(Ordering::Acquire);
        if heard == 0 {
            return LAG_UNKNOWN_MS;
        }
        (now_ms() - heard).clamp(0, LAG_UNKNOWN_MS)
    }

    /// The `.lag` file: milliseconds behind as `%+010d\n`.
    pub fn lag_file(&self) -> String {
        format!("{:+010}\n", self.lag_ms())
    }

    /// The `.primary` file: the primary's hostname and a newline; `None`
    /// (no such file) on the primary or while not connected to one.
    pub fn primary_file(&self) -> Option<String> {
        if self.is_primary() {
            return None;
        }
        self.primary().map(|p| format!("{}\n", p.hostname))
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_file_formats_like_litefs() {
        let r = Role::default();
        assert_eq!(r.lag_file(), "+000000000\n");
        r.become_replica(None);
        assert_eq!(r.lag_file(), "+2147483647\n");
        assert_eq!(r.primary_file(), None);
        r.become_replica(Some(PrimaryInfo {
            hostname: "p1".into(),
            advertise_url: "http://x".into(),
        }));
        assert_eq!(r.primary_file().as_deref(), Some("p1\n"));
        r.heard(now_ms() - 5);
        assert!(r.lag_ms() >= 5 && r.lag_ms() < 5_000, "{}", r.lag_ms());
    }
}
