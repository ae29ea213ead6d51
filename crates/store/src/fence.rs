//! How the store changes a database under live SQLite clients.
//!
//! SQLite's locks live in the kernel (the FUSE layer never sees them), so
//! only the layer that serves the mount can take them the way SQLite does.
//! Applying a replicated transaction, or importing a database, needs every
//! reader and writer of the database out of the way for the few
//! milliseconds it takes; a snapshot or an export needs only writers held
//! off. The store asks through [`Fence`]; the FUSE layer implements it.

use crate::error::StoreError;
use crate::Db;

/// Keeps SQLite clients of a database out of the way while the store
/// changes it. Implemented by whoever serves the mount.
///
/// Lock order: a fence is always taken *before* the store's per-database
/// mutex, never while holding it, because SQLite clients waiting on the
/// fence's locks may be inside a FUSE request that needs that mutex.
pub trait Fence: Send + Sync {
    /// Waits until no SQLite connection is inside a read or write
    /// transaction on `db`, then keeps new ones out (they see `SQLITE_BUSY`
    /// and retry) until the guard is dropped. `wal` says which locks
    /// SQLite's clients use: the WAL-index lock bytes (`true`) or the
    /// database file's (`false`).
    fn exclude(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError>;

    /// Waits for any write transaction on `db` to end and holds off new
    /// ones until the guard is dropped; readers go on.
    fn hold_writers(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError>;

    /// Like [`Fence::hold_writers`], for as long as this node is a replica.
    /// In WAL mode, connections that opened the WAL while this node was
    /// primary may write it without a request reaching the mount (FUSE
    /// passthrough), so only SQLite's own write lock keeps them out: the
    /// guard holds it (they see `SQLITE_BUSY`) until it is dropped at
    /// promotion. While it is held, this fence's `exclude` and
    /// `hold_writers` of the database count on it instead of taking the
    /// write lock again.
    fn park_writers(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        self.hold_writers(db, wal)
    }

    /// Holds this node's own writers off (in both journal modes) while
    /// another node writes the database through the primary: the halt
    /// lock. Like [`Fence::park_writers`], the fence's own `exclude` (the
    /// forwarded transactions' applies) and `hold_writers` count on the
    /// held lock instead of taking it again.
    fn halt_writers(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        self.hold_writers(db, wal)
    }
}

/// A held fence. Dropping it lets SQLite clients in again.
pub trait FenceGuard: Send {
    /// Reads the WAL index (`-shm`) as SQLite's clients see it (it may live
    /// only in the kernel's page cache). Returns the bytes read; 0 when
    /// there is no WAL index.
    fn read_shm(&mut self, buf: &mut [u8], offset: u64) -> Result<usize, StoreError>;

    /// Writes the WAL index as SQLite's clients will see it. A no-op when
    /// there is no WAL index.
    fn write_shm(&mut self, buf: &[u8], offset: u64) -> Result<(), StoreError>;

    /// The database file was rewritten behind the kernel: drop its cached
    /// pages and attributes so clients read the new bytes and size.
    fn invalidate_database(&mut self);
}

/// A fence for a store no SQLite client can reach (no mount, as in tests
/// and tools): nothing to wait for, nothing cached.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoClients;

struct NoGuard;

impl FenceGuard for NoGuard {
    fn read_shm(&mut self, _buf: &mut [u8], _offset: u64) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn write_shm(&mut self, _buf: &[u8], _offset: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn invalidate_database(&mut self) {}
}

impl Fence for NoClients {
    fn exclude(&self, _db: &Db, _wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        Ok(Box::new(NoGuard))
    }
    fn hold_writers(&self, _db: &Db, _wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        Ok(Box::new(NoGuard))
    }
}
