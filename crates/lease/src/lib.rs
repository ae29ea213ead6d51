//! Primary election for litefs-rs: who may write, and for how long.
//!
//! One node of a cluster is the primary; it holds a *lease* and must stop
//! writing when the lease runs out unless it renewed it. This crate gives
//! the election loop two traits and two implementations, with LiteFS
//! v0.5.14's semantics:
//!
//! * [`Leaser`]: a node's view of the election. Who holds the lease
//!   ([`Leaser::primary_info`]), taking it ([`Leaser::acquire`]), adopting a
//!   lease handed off by the old primary ([`Leaser::acquire_existing`]) and
//!   the cluster ID that keeps two clusters from mixing.
//! * [`Lease`]: a held lease. [`Lease::renew`] pushes the end out again;
//!   [`Lease::deadline`] is the instant the primary must stop writing unless
//!   a renewal succeeded first; [`Lease::release`] gives it up at once.
//! * [`StaticLeaser`]: `lease.type: static`. The candidate is always the
//!   primary, with a lease that never ends; the other nodes follow the
//!   configured primary. No failover.
//! * [`ConsulLeaser`]: `lease.type: consul`. A Consul session with a TTL and
//!   no health checks locks one KV key whose value names the primary, as
//!   LiteFS stores it (`{"hostname": .., "advertise-url": ..}`), so LiteFS
//!   and litefs-rs nodes see the same primary.
//!
//! The traits are object safe (`Arc<dyn Leaser>`, `Box<dyn Lease>`): the
//! async methods return a boxed [`BoxFuture`] instead of using `async fn`,
//! which trait objects cannot hold.
//!
//! # Why an own Consul client
//!
//! The lease needs eight Consul endpoints (session create, renew and
//! destroy; KV get, acquire, release and check-and-set put; catalog
//! register) over plain HTTP/1.1: a few hundred lines on hyper, already a
//! dependency of the workspace. The published clients do not fit:
//! `rs-consul` 0.14 (the maintained one) has no session renew or destroy
//! (its `Lock` only lives as long as the TTL it was created with), and it
//! cannot create a session without the default `serfHealth` node check
//! (it drops an empty `Checks` list and sends no `NodeChecks`); it also
//! pulls a second, blocking HTTP stack (`ureq`), `hyper-rustls` with `ring`
//! and `webpki-roots`, `bon`, `slog-scope` and tokio's `full` feature. The
//! older crates (`consul`, `consul-rs-plus`, `df-consul`) are blocking or
//! built on `reqwest`, and cover sessions thinly.
//!
//! Limitation: plain `http://` only, no TLS, so a Consul reached over
//! `https://` needs a local agent or proxy in between.
//!
//! # Timing rules the election loop can rely on
//!
//! * [`Lease::renewed_at`] is when the last successful renewal (or the
//!   session's creation) was *sent*, not when its answer arrived, so
//!   `renewed_at + ttl` is never later than the server's own expiry.
//! * [`Lease::deadline`] is `renewed_at + ttl - safety_margin(ttl)`: the
//!   margin ([`safety_margin`]) covers clock-rate differences and the time
//!   the primary needs to stop its writers.
//! * Consul itself invalidates a session that is not renewed between one and
//!   two TTLs after the last renewal (Consul 1.8.7 measured: 2×TTL), then
//!   the lock cannot be taken for `lock-delay`. A primary that crashed is
//!   therefore replaced after about `2×ttl + lock_delay`; one that releases
//!   its lease ([`Lease::release`]) is replaced at once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod consul;
mod http;
mod static_lease;

pub use consul::{ConsulLease, ConsulLeaser, ConsulOptions};
pub use static_lease::{StaticLease, StaticLeaser};

/// A boxed, sendable future: what the async methods of [`Leaser`] and
/// [`Lease`] return, so that both traits can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The primary's identity, as LiteFS stores it in the Consul KV value:
/// `{"hostname": "...", "advertise-url": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryInfo {
    /// The primary's `lease.hostname` (shown to applications in `.primary`).
    #[serde(default)]
    pub hostname: String,
    /// The primary's `lease.advertise-url`: where replicas stream from.
    #[serde(rename = "advertise-url", default)]
    pub advertise_url: String,
}

impl fmt::Display for PrimaryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hostname, self.advertise_url)
    }
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another node holds the lease.
    #[error("the lease is held by another node: {0}")]
    AlreadyHeld(PrimaryInfo),
    /// Consul refused the lock although no node holds it now: the previous
    /// holder's session was invalidated less than `lock-delay` ago, or the
    /// holder released the key between our attempt and our look. Transient;
    /// try again after a short wait.
    #[error("the lease is free but could not be taken yet (lock-delay after an expired session, or a race); retry shortly")]
    NotAcquired,
    /// The lease no longer exists on the server (Consul: the session is
    /// gone). The holder must stop writing now.
    #[error("the lease has expired (the session no longer exists)")]
    Expired,
    /// This node is not a candidate (`lease.candidate: false`).
    #[error("this node is not a candidate for primary (lease.candidate is false)")]
    NotCandidate,
    /// The cluster ID is already set to a different value.
    #[error("the cluster ID is already set to {existing:?}")]
    ClusterIdConflict {
        /// The cluster ID the leaser holds.
        existing: String,
    },
    /// The operation does not exist for this kind of lease (a static lease
    /// cannot be handed off).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A configuration value is invalid.
    #[error("invalid {key}: {message}")]
    InvalidConfig {
        /// The configuration key, as in `litefs.yml` (`lease.consul.ttl`).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An argument is invalid (an empty cluster ID).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server refused the credentials (HTTP 403; Consul: a missing,
    /// unknown or insufficient ACL token).
    #[error(
        "{endpoint}: permission denied (HTTP 403: {body}); check the ACL token in lease.consul.url"
    )]
    PermissionDenied {
        /// Method and URL of the request (without the token).
        endpoint: String,
        /// The start of the response body.
        body: String,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{endpoint}: HTTP {status}: {body}")]
    Status {
        /// Method and URL of the request (without the token).
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The request did not complete: connection refused, reset, or no
    /// answer within the request timeout.
    #[error("{endpoint}: {message}")]
    Transport {
        /// Method and URL of the request (without the token).
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered 2xx with a body that is not what the API
    /// describes.
    #[error("{endpoint}: unexpected response: {message}")]
    InvalidResponse {
        /// Method and URL of the request (without the token).
        endpoint: String,
        /// What is wrong with the response.
        message: String,
    },
}

impl LeaseError {
    /// Whether retrying the same operation may succeed without anything
    /// changing on this node: transport failures, HTTP 5xx and 429 (a
    /// Consul leader election in progress, an overloaded agent) and
    /// [`LeaseError::NotAcquired`]. A primary keeps retrying a transient
    /// renewal failure until its [`Lease::deadline`].
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::Transport { .. } | LeaseError::NotAcquired => true,
            LeaseError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A node's view of primary election. See the crate documentation.
pub trait Leaser: Send + Sync + fmt::Debug {
    /// `"static"` or `"consul"`, as `lease.type`.
    fn kind(&self) -> &'static str;

    /// This node's `lease.hostname`. On a static replica this is the
    /// configured primary's hostname, as in LiteFS (the static config names
    /// the primary, not the node).
    fn hostname(&self) -> &str;

    /// The URL this node advertises to replicas when it is primary
    /// (`lease.advertise-url`); empty on a static replica, as in LiteFS.
    fn advertise_url(&self) -> &str;

    /// Whether this node may become primary (`lease.candidate`).
    fn is_candidate(&self) -> bool;

    /// Who holds the lease now, or `None` if nobody does.
    fn primary_info(&self) -> BoxFuture<'_, Result<Option<PrimaryInfo>, LeaseError>>;

    /// Takes the lease. [`LeaseError::AlreadyHeld`] names the holder when
    /// another node has it; [`LeaseError::NotAcquired`] is transient;
    /// [`LeaseError::NotCandidate`] on a node that may not be primary.
    fn acquire(&self) -> BoxFuture<'_, Result<Box<dyn Lease>, LeaseError>>;

    /// Adopts a lease handed off by the old primary, whose ID arrived in a
    /// Handoff frame: renews it (so a lease that expired in transit gives
    /// [`LeaseError::Expired`]) and rewrites the lease value with this
    /// node's [`PrimaryInfo`].
    fn acquire_existing<'a>(
        &'a self,
        lease_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Lease>, LeaseError>>;

    /// The cluster ID stored with the lease, or `None` if none is set.
    fn cluster_id(&self) -> BoxFuture<'_, Result<Option<String>, LeaseError>>;

    /// Sets the cluster ID if none is set. Atomic: of two nodes racing with
    /// different IDs exactly one succeeds and the other gets
    /// [`LeaseError::ClusterIdConflict`] carrying the winner. Setting the ID
    /// that is already stored succeeds. [`LeaseError::NotAcquired`] (transient)
    /// if the stored value kept changing under it.
    fn set_cluster_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), LeaseError>>;
}

/// A held lease. See the crate documentation for the timing rules.
///
/// Dropping a lease without [`Lease::release`] leaves it on the server
/// until it expires (Consul: up to two TTLs, then lock-delay); that is what
/// a hand-off does on purpose.
pub trait Lease: Send + Sync + fmt::Debug {
    /// The lease ID (Consul: the session ID; empty for a static lease). This
    /// is what a Handoff frame carries.
    fn id(&self) -> &str;

    /// How long the lease lasts after a renewal.
    fn ttl(&self) -> Duration;

    /// When the last successful renewal (or the creation) was sent.
    fn renewed_at(&self) -> Instant;

    /// The instant the holder must stop writing unless a renewal succeeds
    /// before it: `renewed_at + ttl - safety_margin(ttl)`.
    fn deadline(&self) -> Instant {
        deadline_after(self.renewed_at(), self.ttl())
    }

    /// Extends the lease by its TTL, counted from the moment the request is
    /// sent. [`LeaseError::Expired`] when the lease is gone; other errors
    /// leave the lease as it was (retry while [`Lease::deadline`] allows).
    fn renew(&mut self) -> BoxFuture<'_, Result<(), LeaseError>>;

    /// Prepares a hand-off: renews once (so the new primary has a whole TTL
    /// to adopt it) and returns the ID to send in the Handoff frame. After
    /// success the caller stops writing and drops the lease without
    /// releasing it; the new primary calls [`Leaser::acquire_existing`].
    fn handoff(&mut self) -> BoxFuture<'_, Result<String, LeaseError>>;

    /// Gives the lease up now (Consul: releases the key, then destroys the
    /// session), so another node can take it without waiting for the TTL or
    /// lock-delay.
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), LeaseError>>;
}

/// The time a primary keeps in hand before its lease's end: a tenth of the
/// TTL, at least 500 ms, but never more than half the TTL.
pub fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(500)).min(ttl / 2)
}

/// `renewed_at + ttl - safety_margin(ttl)`, saturating far in the future
/// when the sum does not fit in an [`Instant`].
pub(crate) fn deadline_after(renewed_at: Instant, ttl: Duration) -> Instant {
    let usable = ttl - safety_margin(ttl);
    renewed_at
        .checked_add(usable)
        .or_else(|| renewed_at.checked_add(FAR_FUTURE))
        .unwrap_or(renewed_at)
}

/// A century: the static lease's TTL, "never" for any practical purpose.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn safety_margin_is_a_tenth_at_least_500ms_at_most_half() {
        let ms = Duration::from_millis;
        assert_eq!(safety_margin(Duration::from_secs(10)), ms(1000));
        assert_eq!(safety_margin(Duration::from_secs(30)), ms(3000));
        assert_eq!(safety_margin(Duration::from_secs(3)), ms(500));
        assert_eq!(safety_margin(Duration::from_secs(5)), ms(500));
        assert_eq!(safety_margin(ms(1000)), ms(500));
        assert_eq!(safety_margin(ms(600)), ms(300));
        assert_eq!(safety_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn deadline_is_ttl_minus_margin_after_renewal() {
        let t = Instant::now();
        assert_eq!(
            deadline_after(t, Duration::from_secs(10)),
            t + Duration::from_secs(9)
        );
        assert_eq!(
            deadline_after(t, Duration::from_secs(2)),
            t + Duration::from_millis(1500)
        );
        // An unrepresentable end saturates instead of panicking.
        let far = deadline_after(t, Duration::MAX);
        assert!(far >= t + Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn primary_info_json_matches_litefs() {
        let info = PrimaryInfo {
            hostname: "node-a".into(),
            advertise_url: "http://node-a:20202".into(),
        };
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(
            json,
            r#"{"hostname":"node-a","advertise-url":"http://node-a:20202"}"#
        );
        let back: PrimaryInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
        // Go's decoder leaves missing fields empty; so does ours.
        let partial: PrimaryInfo = serde_json::from_str(r#"{"hostname":"x"}"#).unwrap();
        assert_eq!(partial.hostname, "x");
        assert_eq!(partial.advertise_url, "");
        assert_eq!(info.to_string(), "node-a (http://node-a:20202)");
    }

    #[test]
    fn transient_errors() {
        let status = |status| LeaseError::Status {
            endpoint: "PUT x".into(),
            status,
            body: String::new(),
        };
        assert!(status(500).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(400).is_transient());
        assert!(LeaseError::NotAcquired.is_transient());
        assert!(!LeaseError::Expired.is_transient());
        assert!(!LeaseError::AlreadyHeld(PrimaryInfo::default()).is_transient());
    }
}
