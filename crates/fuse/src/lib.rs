//! The FUSE filesystem applications open databases in.
//!
//! The root directory holds, per database `<db>`: the database file, its
//! `-journal`, `-wal` and `-shm` side files (present when SQLite made them),
//! `<db>-pos` (the replication position) and the hidden `<db>-lock`. Data
//! reads and writes go straight to the backing files in the data directory;
//! the filesystem only tells the store when SQLite reaches a commit point:
//! a WAL write that completes a commit frame, or a rollback journal being
//! deleted, truncated to zero or having its header zeroed. POSIX locks are
//! left to the kernel, so lock traffic never reaches this process.
//!
//! This is the only crate that imports `fuser`.

mod fs;
mod names;

pub use fs::{mount, MountOptions, Mounted};
