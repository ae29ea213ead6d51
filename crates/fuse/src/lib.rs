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
//! The root also holds `.lag` (milliseconds behind the primary) and, on a
//! replica that knows its primary, `.primary` (its hostname); both are
//! generated on every read.
//!
//! On a read-only replica (`store.role().is_primary()` false) every write
//! is refused and nothing changes: writes, size changes and `fallocate` of
//! a database, journal or WAL answer `EROFS`, creating a rollback journal
//! `EACCES` (SQLite: "attempt to write a readonly database"), creating a
//! database or directory and removing anything `EROFS`, except the
//! `-shm` and an empty `-wal` (SQLite's last connection removes them; the
//! WAL index is rebuilt when missing). Opening a
//! database or WAL read-write still works, so a connection made on a
//! replica writes once the node is primary; the WAL index stays writable
//! (readers write to it). Databases show their mode without write bits
//! there, so the kernel lets only root open them read-write.
//!
//! Modes, owners and times are POSIX's, kept on real files of the data
//! directory so they survive restarts: a database's, journal's, WAL's and
//! WAL index's on its backing file, a directory's on its marker directory
//! in `dbs/`, the root's mode and owner on the mount point directory (its
//! times are those of `dbs/`). A file or directory is created with the mode
//! asked for less the caller's umask, owned by the caller (when the daemon
//! runs as root); `chmod`, `chown` and `utimens` change the backing file.
//! The kernel checks every access against them (`default_permissions`).
//!
//! [`MountFence`] (from [`Mounted::fence`]) lets the store change a
//! database under live clients by taking SQLite's own locks through the
//! mount.
//!
//! This is the only crate that imports `fuser`.

mod backing;
mod fence;
mod fs;
mod halt;
mod names;

pub use fence::{MountFence, LOCK_TIMEOUT};
pub use fs::{mount, MountOptions, Mounted};
