//! This node's place in the cluster, as the mount and the API show it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// The primary this node follows, as the lease names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrimaryInfo {
    /// Shown to applications in `.primary`.
    pub hostname: String,
    /// Where its API is reached (`/stream`).
    pub advertise_url: String,
}

/// How a replica takes and gives back the primary's halt lock (write
/// forwarding): implemented by the layer that talks to the primary, called
/// by the mount when a SQLite client of this node asks for the lock.
pub trait HaltRemote: Send + Sync + std::fmt::Debug {
    /// Takes the primary's halt lock on `db` and waits until this node has
    /// every transaction the primary had then; on success the database is
    /// writable here ([`crate::Db::set_halted`]) and its commits are sent
    /// to the primary. Blocks.
    fn acquire(&self, db: &str) -> Result<(), String>;

    /// Makes `db` read-only here again, sends the primary every commit not
    /// sent yet and releases its halt lock. Blocks.
    fn release(&self, db: &str);

    /// Returns once every commit of `db` captured so far has reached the
    /// primary (or a time limit passed, which is logged). Blocks.
    fn wait_sent(&self, db: &str);
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
    /// How this node takes the primary's halt lock, once wired.
    halt: RwLock<Option<Arc<dyn HaltRemote>>>,
}

impl Default for Role {
    /// A primary: a node without replication writes locally.
    fn default() -> Self {
        Role {
            primary: AtomicBool::new(true),
            candidate: AtomicBool::new(true),
            following: RwLock::new(None),
            heard_ms: AtomicI64::new(0),
            halt: RwLock::new(None),
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

    /// Wires how this node takes the primary's halt lock.
    pub fn set_halt_remote(&self, remote: Arc<dyn HaltRemote>) {
        if let Ok(mut h) = self.halt.write() {
            *h = Some(remote);
        }
    }

    /// How this node takes the primary's halt lock, if wired.
    pub fn halt_remote(&self) -> Option<Arc<dyn HaltRemote>> {
        self.halt.read().ok().and_then(|h| h.clone())
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

pub(crate) use litefs_ltx::now_ms;

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
