//! Who is primary, over time: the loop that holds the lease or follows
//! whoever holds it (LiteFS's `monitorLease`, with a stricter fence).
//!
//! * No primary and this node a candidate: take the lease, become primary.
//! * Someone else primary: stream from them until the stream ends, then
//!   ask the lease again (it may have moved); a Handoff frame on the
//!   stream makes this node adopt the lease it carries.
//! * Primary: renew every TTL/2 (retrying every second on transient
//!   errors) and stop accepting writes at the lease's own deadline
//!   (`renewed_at + TTL - margin`) unless a renewal succeeded first, even
//!   when the renewal is still in flight. Another node can take the lease
//!   only after it expires on the server, which is later.
//! * Stepping down (deadline, hand-off, shutdown): wait for write
//!   transactions in progress to end, flip to replica while they are held
//!   off, capture every commit, let the streams send it, then end them.

use crate::follow::{FollowEnd, Follower};
use crate::node::{ClusterIdError, Control, Node};
use litefs_lease::{Lease, LeaseError, Leaser};
use litefs_store::{FenceGuard, PrimaryInfo, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a stepping-down primary waits for write transactions in
/// progress when no deadline presses (hand-off, shutdown).
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// Retry period for a failed renewal.
const RENEW_RETRY: Duration = Duration::from_secs(1);
/// A static lease's renewals: never needed; wake up now and then anyway.
const MAX_RENEW_PERIOD: Duration = Duration::from_secs(3600);

/// Runs (blocking) each time this node is about to become the primary,
/// before it accepts a write: restoring an empty cluster from its backup.
/// An error keeps the node from becoming primary this time.
pub type BeforePrimary = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Timing of the election loop (`lease.reconnect-delay`,
/// `lease.demote-delay`), and what runs before a term as primary.
#[derive(Clone)]
pub struct ElectionOptions {
    /// Wait after a failed stream or lease request before the lease is
    /// read again. Fixed, not a back-off: while a dead primary's session
    /// still holds the key, each failure must be followed by a fresh look
    /// at the lease, so that a candidate acquires within one delay of the
    /// key's release (LiteFS's cadence).
    pub reconnect_delay: Duration,
    /// After handing its lease off, how long a node waits before it tries
    /// to take the lease again.
    pub demote_delay: Duration,
    /// See [`BeforePrimary`].
    pub before_primary: Option<BeforePrimary>,
}

impl std::fmt::Debug for ElectionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionOptions")
            .field("reconnect_delay", &self.reconnect_delay)
            .field("demote_delay", &self.demote_delay)
            .field("before_primary", &self.before_primary.is_some())
            .finish()
    }
}

/// How often a candidate tries again to take a lease that is free but held
/// back by Consul's lock-delay (at most `reconnect-delay`).
const LOCK_DELAY_RETRY: Duration = Duration::from_millis(100);

/// Whether a failure is logged as a warning: a different error than the
/// last one always is, the same one again only at the 1st, 2nd, 4th, 8th...
/// failure in a row.
fn worth_logging(last: &mut String, failures: u64, e: &impl std::fmt::Display) -> bool {
    let text = e.to_string();
    let new = *last != text;
    *last = text;
    new || failures.is_power_of_two()
}

/// Why the election loop stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The lease's cluster ID is not this node's: it belongs to another
    /// cluster (or its data directory does).
    #[error("refusing to join: {0}")]
    Cluster(#[from] ClusterIdError),
}

/// The WAL write locks a node that stepped down holds (see
/// [`Election::parked_writers`]).
pub struct ParkedWriters(Arc<Mutex<Vec<Box<dyn FenceGuard>>>>);

impl std::fmt::Debug for ParkedWriters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|p| p.len()).unwrap_or(0);
        f.debug_struct("ParkedWriters").field("held", &n).finish()
    }
}

/// How a term as primary ended.
enum LeadEnd {
    Shutdown,
    /// Lost or handed off: not primary any more.
    SteppedDown {
        handed_off: bool,
    },
}

/// The election loop of one node. See the module documentation.
pub struct Election {
    node: Arc<Node>,
    leaser: Arc<dyn Leaser>,
    opts: ElectionOptions,
    control: mpsc::Receiver<Control>,
    shutdown: watch::Receiver<bool>,
    /// No attempt to take the lease before this (after a hand-off).
    hold_off_until: Option<Instant>,
    /// WAL write locks held since this node stepped down (see
    /// [`litefs_store::Fence::park_writers`]); released at promotion.
    parked: Arc<Mutex<Vec<Box<dyn FenceGuard>>>>,
    /// Counts terms as primary: a step-down that finishes late (writers
    /// kept it waiting past its time limit) must not touch a later term.
    term: Arc<AtomicU64>,
}

impl Election {
    /// An election loop for `node`; `shutdown` turning true ends it (a
    /// primary then hands off to a caught-up candidate replica, or
    /// releases its lease).
    pub fn new(
        node: Arc<Node>,
        leaser: Arc<dyn Leaser>,
        opts: ElectionOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Election {
        let (tx, control) = mpsc::channel(8);
        node.set_control(tx);
        Election {
            node,
            leaser,
            opts,
            control,
            shutdown,
            hold_off_until: None,
            parked: Arc::default(),
            term: Arc::default(),
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `d` unless shutdown comes first (then returns false).
    async fn pause(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = stopped(&mut rx) => false,
            _ = tokio::time::sleep(d) => !self.stopping(),
        }
    }

    /// Runs until shutdown; an error means this node must not run (it
    /// belongs to another cluster).
    pub async fn run(mut self) -> Result<(), ElectionError> {
        let node = self.node.clone();
        let role = node.store.role();
        role.set_candidate(self.leaser.is_candidate());
        let base = self.opts.reconnect_delay.max(Duration::from_millis(10));
        // Failures in a row: a new error is always logged, the same one
        // again only at powers of two, so a long outage logs a few lines,
        // not one per second.
        let mut failures: u64 = 0;
        let mut last_error = String::new();
        let mut logged_wait = false;
        while !self.stopping() {
            self.refuse_pending("this node is not the primary");
            self.check_cluster().await?;
            let info = match self.leaser.primary_info().await {
                Ok(i) => i,
                Err(e) => {
                    failures += 1;
                    if worth_logging(&mut last_error, failures, &e) {
                        tracing::warn!(error = %e, failures, retry_in_ms = base.as_millis() as u64, "cannot read the lease");
                    }
                    if !self.pause(base).await {
                        break;
                    }
                    continue;
                }
            };
            let mine = info
                .as_ref()
                .is_some_and(|p| p.advertise_url == self.leaser.advertise_url());
            match info {
                Some(p) if !mine => {
                    let primary = PrimaryInfo {
                        hostname: p.hostname,
                        advertise_url: p.advertise_url,
                    };
                    logged_wait = false;
                    match self.follow(primary.clone()).await {
                        None => break,
                        Some(Ok(FollowEnd::Handoff(id))) => {
                            failures = 0;
                            match self.leaser.acquire_existing(&id).await {
                                Ok(lease) => {
                                    if self.lead_until_done(lease).await? {
                                        break;
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, primary = %primary.advertise_url, "could not adopt the handed-off lease")
                                }
                            }
                        }
                        Some(Ok(FollowEnd::Ended { ready })) => {
                            tracing::info!(primary = %primary.advertise_url, "stream ended; asking the lease who is primary");
                            role.become_replica(None);
                            if ready {
                                failures = 0;
                            }
                            if !self.pause(base).await {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            role.become_replica(None);
                            failures += 1;
                            if worth_logging(&mut last_error, failures, &e) {
                                tracing::warn!(primary = %primary.advertise_url, error = %e, failures, retry_in_ms = base.as_millis() as u64, "replication stream failed");
                            } else {
                                tracing::debug!(primary = %primary.advertise_url, error = %e, failures, "replication stream failed");
                            }
                            if !self.pause(base).await {
                                break;
                            }
                        }
                    }
                }
                _ => {
                    // Nobody holds the lease, or a lease of this node's
                    // previous run does (it expires on its own).
                    role.become_replica(None);
                    let held_off = self.hold_off_until.is_some_and(|t| Instant::now() < t);
                    if !self.leaser.is_candidate() || held_off {
                        if !logged_wait && !self.leaser.is_candidate() {
                            tracing::info!(
                                "no primary yet; waiting for one (this node is not a candidate)"
                            );
                            logged_wait = true;
                        }
                        if !self.pause(base).await {
                            break;
                        }
                        continue;
                    }
                    match self.leaser.acquire().await {
                        Ok(lease) => {
                            failures = 0;
                            logged_wait = false;
                            if self.lead_until_done(lease).await? {
                                break;
                            }
                        }
                        Err(LeaseError::AlreadyHeld(p)) => {
                            if mine && !logged_wait {
                                tracing::info!(holder = %p, "the lease is still held under this node's name by an earlier session (a previous run, or a lease this node gave up); waiting for it to expire");
                                logged_wait = true;
                            }
                            if !self.pause(base).await {
                                break;
                            }
                        }
                        Err(LeaseError::NotAcquired) => {
                            // The key is free but locked for a moment
                            // (Consul's lock-delay after the holder's
                            // session expired): it is ours to take as soon
                            // as that ends, so look again shortly, not a
                            // whole reconnect-delay later.
                            tracing::debug!(
                                "lease free but not yet takeable (lock-delay); retrying"
                            );
                            if !self.pause(base.min(LOCK_DELAY_RETRY)).await {
                                break;
                            }
                        }
                        Err(e) => {
                            if e.is_transient() {
                                tracing::debug!(error = %e, "lease not acquired; retrying");
                            } else {
                                tracing::warn!(error = %e, "cannot acquire the lease");
                            }
                            if !self.pause(base).await {
                                break;
                            }
                        }
                    }
                }
            }
        }
        // Parked writers stay parked: the holder of `parked_writers` drops
        // them once the mount is gone, so no connection can write on a
        // node that stepped down and is shutting down.
        Ok(())
    }

    /// The WAL write locks held while this node is a replica; dropping the
    /// last handle releases them. The caller keeps one until the mount is
    /// gone.
    pub fn parked_writers(&self) -> ParkedWriters {
        ParkedWriters(self.parked.clone())
    }

    /// Streams from `primary` once; `None` on shutdown.
    async fn follow(&self, primary: PrimaryInfo) -> Option<Result<FollowEnd, crate::FollowError>> {
        let f = Follower::new(self.node.clone(), primary);
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = stopped(&mut rx) => None,
            r = f.follow() => Some(r),
        }
    }

    /// The lease's cluster ID against this node's: adopt it if this node
    /// has none; refuse another one.
    async fn check_cluster(&self) -> Result<(), ElectionError> {
        match self.leaser.cluster_id().await {
            Ok(Some(id)) => self.node.cluster().adopt(&id)?,
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the cluster ID"),
        }
        Ok(())
    }

    /// Makes sure the lease carries this node's cluster ID (a new cluster
    /// gets one); refuses a lease with another.
    async fn claim_cluster(&self) -> Result<(), ElectionError> {
        let ours = self.node.cluster().ensure()?;
        match self.leaser.set_cluster_id(&ours).await {
            Ok(()) => Ok(()),
            Err(LeaseError::ClusterIdConflict { existing }) => Err(ClusterIdError::Mismatch {
                ours,
                theirs: existing,
            }
            .into()),
            Err(e) => {
                // The lease is ours; a failed write is retried next term.
                tracing::warn!(error = %e, "could not store the cluster ID with the lease");
                Ok(())
            }
        }
    }

    /// Holds the lease until it ends; true on shutdown.
    async fn lead_until_done(&mut self, lease: Box<dyn Lease>) -> Result<bool, ElectionError> {
        match self.lead(lease).await? {
            LeadEnd::Shutdown => Ok(true),
            LeadEnd::SteppedDown { handed_off } => {
                if handed_off {
                    self.hold_off_until = Some(Instant::now() + self.opts.demote_delay);
                }
                Ok(false)
            }
        }
    }

    /// One term as primary.
    async fn lead(&mut self, mut lease: Box<dyn Lease>) -> Result<LeadEnd, ElectionError> {
        if let Err(e) = self.claim_cluster().await {
            let _ = tokio::time::timeout(SETTLE_LIMIT, lease.release()).await;
            return Err(e);
        }
        if let Some(f) = self.opts.before_primary.clone() {
            let r = tokio::task::spawn_blocking(move || f())
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = r {
                tracing::error!(error = %e, "not becoming the primary: preparing failed; giving the lease up");
                let _ = tokio::time::timeout(SETTLE_LIMIT, lease.release()).await;
                self.hold_off_until = Some(Instant::now() + self.opts.demote_delay);
                return Ok(LeadEnd::SteppedDown { handed_off: false });
            }
        }
        let node = self.node.clone();
        let role = node.store.role();
        self.refuse_pending("this node only just became the primary");
        {
            // Under the lock a late step-down checks the term under, so it
            // either finished before or leaves this term alone.
            let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            self.term.fetch_add(1, Ordering::AcqRel);
            self.node.streams_promoted();
            role.become_primary();
            // Connections kept out since the last step-down may write again.
            p.clear();
        }
        self.node.emit(
            "primaryChange",
            None,
            serde_json::json!({ "isPrimary": true, "hostname": self.node.hostname }),
        );
        let ttl = lease.ttl();
        tracing::info!(lease = lease.id(), ttl_ms = ttl.as_millis() as u64, hostname = %self.node.hostname, "this node is the primary");
        let period = (ttl / 2).min(MAX_RENEW_PERIOD);
        let urgent = Some(litefs_lease::safety_margin(ttl) / 2);
        let mut next_renew = Instant::from_std(lease.renewed_at()) + period;
        loop {
            let deadline = Instant::from_std(lease.deadline());
            let mut rx = self.shutdown.clone();
            tokio::select! {
                _ = stopped(&mut rx) => {
                    self.shut_down_as_primary(lease).await;
                    return Ok(LeadEnd::Shutdown);
                }
                Some(c) = self.control.recv() => {
                    let Control::Handoff { node_id, reply } = c;
                    match self.hand_off(&mut lease, node_id).await {
                        Ok(()) => {
                            let _ = reply.send(Ok(()));
                            return Ok(LeadEnd::SteppedDown { handed_off: true });
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_renew.min(deadline)) => {}
            }
            if Instant::now() >= deadline {
                self.step_down(
                    None,
                    "the lease deadline passed without a successful renewal",
                    urgent,
                )
                .await;
                return Ok(LeadEnd::SteppedDown { handed_off: false });
            }
            if Instant::now() < next_renew {
                continue;
            }
            let r = tokio::select! {
                r = lease.renew() => Some(r),
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match r {
                Some(Ok(())) => {
                    next_renew = Instant::from_std(lease.renewed_at()) + period;
                }
                Some(Err(LeaseError::Expired)) => {
                    self.step_down(None, "the lease expired", urgent).await;
                    return Ok(LeadEnd::SteppedDown { handed_off: false });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, deadline_in_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64, "lease renewal failed; retrying");
                    next_renew = Instant::now() + RENEW_RETRY;
                }
                None => {
                    self.step_down(
                        None,
                        "no answer to the lease renewal before the lease deadline",
                        urgent,
                    )
                    .await;
                    return Ok(LeadEnd::SteppedDown { handed_off: false });
                }
            }
        }
    }

    /// Gives the lease to the connected replica `node_id`.
    async fn hand_off(&mut self, lease: &mut Box<dyn Lease>, node_id: u64) -> Result<(), String> {
        if !self.node.is_connected(node_id) {
            return Err(format!(
                "node {node_id:016x} is not connected to this primary"
            ));
        }
        let id = tokio::time::timeout(SETTLE_LIMIT, lease.handoff())
            .await
            .map_err(|_| "the lease did not answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        tracing::info!(to = format_args!("{node_id:016x}"), "handing the lease off");
        self.step_down(Some((node_id, id)), "handing the lease off", None)
            .await;
        Ok(())
    }

    /// Shutdown of a primary: hand the lease to a caught-up candidate
    /// replica so writes move at once, else release it.
    async fn shut_down_as_primary(&mut self, mut lease: Box<dyn Lease>) {
        if let Some(target) = self.node.handoff_candidate() {
            match self.hand_off(&mut lease, target).await {
                Ok(()) => {
                    // Let the stream carry the Handoff frame before the
                    // server goes away.
                    let until = Instant::now() + SETTLE_LIMIT;
                    while self.node.is_connected(target) && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hand-off at shutdown failed; releasing the lease")
                }
            }
        }
        self.step_down(None, "shutting down", None).await;
        match tokio::time::timeout(SETTLE_LIMIT, lease.release()).await {
            Ok(Ok(())) => tracing::info!("lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the lease failed; it expires on its own")
            }
            Err(_) => tracing::warn!("releasing the lease timed out; it expires on its own"),
        }
    }

    /// Stops being the primary: holds writers off on every database, flips
    /// to replica, captures every commit, and tells the streams to send it
    /// and end (one of them with the hand-off). `urgent`: the lease is
    /// running out, so writers still busy after that long (half the safety
    /// margin) do not delay the flip.
    async fn step_down(&self, handoff: Option<(u64, String)>, why: &str, urgent: Option<Duration>) {
        let role = self.node.store.role();
        if urgent.is_some() {
            tracing::warn!(
                reason = why,
                "stepping down: writes are refused from now on"
            );
        } else {
            tracing::info!(
                reason = why,
                "stepping down: writes are refused from now on"
            );
        }
        let limit = urgent.unwrap_or(SETTLE_LIMIT);
        let (node, parked, term) = (self.node.clone(), self.parked.clone(), self.term.clone());
        let ours = term.load(Ordering::Acquire);
        let task = tokio::task::spawn_blocking(move || settle(&node, &parked, &term, ours));
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %e, "capturing the last commits while stepping down failed")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "stepping down: task failed"),
            Err(_) => tracing::warn!(
                waited_ms = limit.as_millis() as u64,
                "write transactions still in progress; refusing writes without waiting for them"
            ),
        }
        role.become_replica(None);
        self.node.streams_demoted(handoff);
        self.node.emit(
            "primaryChange",
            None,
            serde_json::json!({ "isPrimary": false }),
        );
    }

    /// Answers queued hand-off requests that cannot be served now.
    fn refuse_pending(&mut self, why: &str) {
        while let Ok(Control::Handoff { reply, .. }) = self.control.try_recv() {
            let _ = reply.send(Err(why.to_owned()));
        }
    }
}

/// Holds writers off every database, flips the node to replica while they
/// are held, and captures every commit. WAL writers stay parked (in
/// `parked`) until the next promotion.
fn settle(
    node: &Node,
    parked: &Mutex<Vec<Box<dyn FenceGuard>>>,
    term: &AtomicU64,
    ours: u64,
) -> Result<(), StoreError> {
    let dbs = node.store.dbs();
    let mut guards = Vec::with_capacity(dbs.len());
    let mut parks = Vec::new();
    let mut failed = None;
    for db in &dbs {
        match db.park_writers(node.fence.as_ref()) {
            Ok(g) => parks.push(g),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
        match db.hold_writers(node.fence.as_ref()) {
            Ok(g) => guards.push(g),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    {
        // Promotion moves the term on under this lock: a later term keeps
        // its role and its writers.
        let mut p = parked.lock().unwrap_or_else(|e| e.into_inner());
        if term.load(Ordering::Acquire) != ours {
            return Ok(());
        }
        node.store.role().become_replica(None);
        p.extend(parks);
    }
    for db in &dbs {
        if let Err(e) = db.capture_committed() {
            failed.get_or_insert(e);
        }
    }
    drop(guards);
    failed.map_or(Ok(()), Err)
}

/// Resolves once `rx` says stop (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::worth_logging;

    #[test]
    fn repeated_failures_are_logged_sparsely_and_new_ones_always() {
        let mut last = String::new();
        let logged: Vec<u64> = (1..=20)
            .filter(|&n| worth_logging(&mut last, n, &"connection refused"))
            .collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
        assert!(worth_logging(&mut last, 21, &"malformed stream"));
        assert!(worth_logging(&mut last, 22, &"connection refused"));
        assert!(!worth_logging(&mut last, 23, &"connection refused"));
    }
}
