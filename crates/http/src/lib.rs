//! The node HTTP API.
//!
//! Speaks LiteFS v0.5.14's protocol: `/stream` replication frames (see
//! [`wire`]), plus `/info`, `/export`, `/import`, `/events` and `/metrics`.
//! The library knows nothing of FUSE: it talks to the store.

pub mod wire;
