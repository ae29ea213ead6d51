//! A node's durable state.
//!
//! The store owns the data directory: `dbs/<name>/{database, journal, wal,
//! shm, ltx/}`. For each database it keeps the replication position, the
//! page count and a checksum per page, so that committing a transaction
//! moves the database checksum one page at a time instead of rescanning.
//!
//! Capture reads what SQLite itself wrote, at SQLite's own commit points:
//! the pages of a WAL transaction come from the WAL once its commit frame
//! is valid, and the pages of a rollback-journal transaction come from the
//! database file when the journal is finalised (its page list says which
//! pages changed). Nothing needs every data write to pass through here,
//! which is what lets the FUSE layer hand data I/O to the kernel.
//!
//! The store knows nothing of FUSE or HTTP.

mod db;
mod error;
mod fence;
mod names;
mod role;
mod saved;
mod spill;
mod stats;
mod store;
mod writer;

pub use db::{Applied, Committed, Db, DbPaths, DbStatus};
pub use error::StoreError;
pub use fence::{Fence, FenceGuard, NoClients};
pub use names::{parent_of, validate_db_name, MAX_COMPONENT_LEN, MAX_NAME_LEN};
pub use role::{HaltRemote, PrimaryInfo, Role, LAG_UNKNOWN_MS};
pub use spill::{SpillBuf, SPILL_BYTES};
pub use stats::{DbCounters, DbStats, FileKind};
pub use store::{Listener, Listening, Listing, Store, StoreOptions};
