//! The static lease (`lease.type: static`): a fixed primary, no failover.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{BoxFuture, Lease, LeaseError, Leaser, PrimaryInfo, FAR_FUTURE};

/// A fixed primary. The candidate node is always the primary, with a lease
/// that never ends; every other node follows the configured primary.
///
/// As in LiteFS, `primary` is the configured `lease.hostname` and
/// `lease.advertise-url`: this node's own on the candidate, the primary's
/// on the others. [`Leaser::primary_info`] is `None` on the candidate (no
/// *other* primary: it acquires at once) and the configured primary
/// elsewhere. The cluster ID lives in memory only (LiteFS keeps none).
#[derive(Debug)]
pub struct StaticLeaser {
    primary: PrimaryInfo,
    candidate: bool,
    cluster_id: Mutex<Option<String>>,
}

impl StaticLeaser {
    /// A static leaser; `candidate` makes this node the primary.
    pub fn new(primary: PrimaryInfo, candidate: bool) -> StaticLeaser {
        StaticLeaser {
            primary,
            candidate,
            cluster_id: Mutex::new(None),
        }
    }

    /// The configured primary.
    pub fn primary(&self) -> &PrimaryInfo {
        &self.primary
    }

    fn lock_cluster_id(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A poisoned lock still holds a valid Option.
        self.cluster_id.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Leaser for StaticLeaser {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn hostname(&self) -> &str {
        &self.primary.hostname
    }

    fn advertise_url(&self) -> &str {
        if self.candidate {
            &self.primary.advertise_url
        } else {
            ""
        }
    }

    fn is_candidate(&self) -> bool {
        self.candidate
    }

    fn primary_info(&self) -> BoxFuture<'_, Result<Option<PrimaryInfo>, LeaseError>> {
        let info = (!self.candidate).then(|| self.primary.clone());
        Box::pin(async move { Ok(info) })
    }

    fn acquire(&self) -> BoxFuture<'_, Result<Box<dyn Lease>, LeaseError>> {
        let result = if self.candidate {
            Ok(Box::new(StaticLease {
                acquired_at: Instant::now(),
            }) as Box<dyn Lease>)
        } else {
            Err(LeaseError::NotCandidate)
        };
        Box::pin(async move { result })
    }

    fn acquire_existing<'a>(
        &'a self,
        _lease_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Lease>, LeaseError>> {
        Box::pin(async {
            Err(LeaseError::Unsupported(
                "a static lease cannot be handed off",
            ))
        })
    }

    fn cluster_id(&self) -> BoxFuture<'_, Result<Option<String>, LeaseError>> {
        let id = self.lock_cluster_id().clone();
        Box::pin(async move { Ok(id) })
    }

    fn set_cluster_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), LeaseError>> {
        let result = if id.is_empty() {
            Err(LeaseError::InvalidArgument("empty cluster ID".into()))
        } else {
            let mut current = self.lock_cluster_id();
            match current.as_deref() {
                None => {
                    *current = Some(id.to_owned());
                    Ok(())
                }
                Some(existing) if existing == id => Ok(()),
                Some(existing) => Err(LeaseError::ClusterIdConflict {
                    existing: existing.to_owned(),
                }),
            }
        };
        Box::pin(async move { result })
    }
}

/// The static primary's lease: never expires, renewing does nothing.
#[derive(Debug)]
pub struct StaticLease {
    acquired_at: Instant,
}

impl Lease for StaticLease {
    /// Always empty, as in LiteFS.
    fn id(&self) -> &str {
        ""
    }

    /// A century.
    fn ttl(&self) -> Duration {
        FAR_FUTURE
    }

    /// When the lease was acquired.
    fn renewed_at(&self) -> Instant {
        self.acquired_at
    }

    fn renew(&mut self) -> BoxFuture<'_, Result<(), LeaseError>> {
        Box::pin(async { Ok(()) })
    }

    fn handoff(&mut self) -> BoxFuture<'_, Result<String, LeaseError>> {
        Box::pin(async {
            Err(LeaseError::Unsupported(
                "a static lease cannot be handed off",
            ))
        })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), LeaseError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn primary() -> PrimaryInfo {
        PrimaryInfo {
            hostname: "primary".into(),
            advertise_url: "http://primary:20202".into(),
        }
    }

    #[tokio::test]
    async fn candidate_is_primary_forever() {
        let leaser: Arc<dyn Leaser> = Arc::new(StaticLeaser::new(primary(), true));
        assert_eq!(leaser.kind(), "static");
        assert!(leaser.is_candidate());
        assert_eq!(leaser.hostname(), "primary");
        assert_eq!(leaser.advertise_url(), "http://primary:20202");
        assert_eq!(leaser.primary_info().await.unwrap(), None);
        let before = Instant::now();
        let mut lease = leaser.acquire().await.unwrap();
        assert_eq!(lease.id(), "");
        assert!(lease.deadline() > before + Duration::from_secs(50 * 365 * 24 * 3600));
        lease.renew().await.unwrap();
        assert!(matches!(
            lease.handoff().await,
            Err(LeaseError::Unsupported(_))
        ));
        assert!(matches!(
            leaser.acquire_existing("x").await,
            Err(LeaseError::Unsupported(_))
        ));
        // Acquiring again (after a restart of the loop) works too.
        let again = leaser.acquire().await.unwrap();
        again.release().await.unwrap();
        lease.release().await.unwrap();
    }

    #[tokio::test]
    async fn replica_follows_the_configured_primary() {
        let leaser = StaticLeaser::new(primary(), false);
        assert!(!leaser.is_candidate());
        assert_eq!(leaser.hostname(), "primary");
        assert_eq!(leaser.advertise_url(), "");
        assert_eq!(leaser.primary_info().await.unwrap(), Some(primary()));
        assert!(matches!(
            leaser.acquire().await,
            Err(LeaseError::NotCandidate)
        ));
        assert_eq!(leaser.primary(), &primary());
    }

    #[tokio::test]
    async fn cluster_id_is_set_once() {
        let leaser = StaticLeaser::new(primary(), true);
        assert_eq!(leaser.cluster_id().await.unwrap(), None);
        assert!(matches!(
            leaser.set_cluster_id("").await,
            Err(LeaseError::InvalidArgument(_))
        ));
        leaser.set_cluster_id("LFSC0000000000000001").await.unwrap();
        leaser.set_cluster_id("LFSC0000000000000001").await.unwrap();
        match leaser.set_cluster_id("LFSC0000000000000002").await {
            Err(LeaseError::ClusterIdConflict { existing }) => {
                assert_eq!(existing, "LFSC0000000000000001")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            leaser.cluster_id().await.unwrap().as_deref(),
            Some("LFSC0000000000000001")
        );
    }
}
