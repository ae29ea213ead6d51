//! The node HTTP API.
//!
//! Speaks LiteFS v0.5.14's protocol: `/stream` replication frames (see
//! [`wire`]), plus `/info`, `/export`, `/import`, `/events`, `/metrics`
//! and (when enabled) `/debug/vars`.
//! The server runs HTTP/1.1 and cleartext HTTP/2 on one listener it is
//! handed (tests bind port 0). The library knows nothing of FUSE: it talks
//! to the store, and keeps SQLite clients out through the store's
//! [`litefs_store::Fence`].

pub mod client;
mod debug;
mod election;
mod follow;
mod halt;
mod handoff;
mod info;
mod metrics;
mod node;
mod server;
mod stream;
mod transfer;
pub mod wire;

pub use debug::set_debug_endpoints;
pub use election::{BeforePrimary, Election, ElectionError, ElectionOptions, ParkedWriters};
pub use follow::{request_handoff, FollowEnd, FollowError, Follower};
pub use halt::{HaltClient, HALT_TTL};
pub use node::{
    valid_cluster_id, ClusterId, ClusterIdError, Control, ExtraInfo, ExtraMetrics, Node,
    NodeOptions, HEADER_CANDIDATE, HEADER_CLUSTER_ID, HEADER_NODE_ID,
};
pub use server::{serve, Body};
