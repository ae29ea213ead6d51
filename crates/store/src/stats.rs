//! What one database has done since the process started: the counters
//! behind `/metrics` (LiteFS's names) and `/debug/vars`.
//!
//! Every counter is a relaxed atomic bumped where the thing happens (a
//! FUSE write, a capture, an apply, a retention pass) and read at scrape
//! time: no lock and no allocation on any hot path. Readers get a
//! [`DbCounters`] copy; the counters are not read as one consistent
//! snapshot (a scrape may see a commit counted and its LTX file not yet).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The file of a database a write went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The database file.
    Database,
    /// The rollback journal.
    Journal,
    /// The write-ahead log.
    Wal,
    /// The WAL index.
    Shm,
}

/// No LTX file was committed or applied yet: the lag is unknown.
const LAG_NONE: i64 = i64::MIN;

/// One database's counters. Owned by its [`crate::Db`]
/// ([`crate::Db::stats`]).
#[derive(Debug)]
pub struct DbStats {
    database_writes: AtomicU64,
    journal_writes: AtomicU64,
    wal_writes: AtomicU64,
    shm_writes: AtomicU64,
    commits: AtomicU64,
    ltx_files: AtomicU64,
    ltx_bytes: AtomicU64,
    ltx_reaped: AtomicU64,
    applied_files: AtomicU64,
    apply_nanos: AtomicU64,
    apply_errors: AtomicU64,
    refused_writes: AtomicU64,
    halts: AtomicU64,
    forwarded: AtomicU64,
    lag_ms: AtomicI64,
    fences: AtomicU32,
    applying: AtomicBool,
}

impl Default for DbStats {
    fn default() -> Self {
        DbStats {
            database_writes: AtomicU64::new(0),
            journal_writes: AtomicU64::new(0),
            wal_writes: AtomicU64::new(0),
            shm_writes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            ltx_files: AtomicU64::new(0),
            ltx_bytes: AtomicU64::new(0),
            ltx_reaped: AtomicU64::new(0),
            applied_files: AtomicU64::new(0),
            apply_nanos: AtomicU64::new(0),
            apply_errors: AtomicU64::new(0),
            refused_writes: AtomicU64::new(0),
            halts: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            lag_ms: AtomicI64::new(LAG_NONE),
            fences: AtomicU32::new(0),
            applying: AtomicBool::new(false),
        }
    }
}

/// A copy of a database's counters, read at one moment (each field on
/// its own: see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DbCounters {
    /// Writes to the database file that reached the daemon.
    pub database_writes: u64,
    /// Writes to the rollback journal that reached the daemon (none under
    /// FUSE passthrough, where the kernel writes the journal itself).
    pub journal_writes: u64,
    /// Writes to the WAL that reached the daemon (none under passthrough).
    pub wal_writes: u64,
    /// Writes to the WAL index that reached the daemon (none under
    /// passthrough; SQLite mostly changes it through `mmap` anyway).
    pub shm_writes: u64,
    /// Transactions made on this node: SQLite commits captured into LTX
    /// files, and imports.
    pub commits: u64,
    /// LTX files on disk.
    pub ltx_files: u64,
    /// Bytes of the LTX files on disk.
    pub ltx_bytes: u64,
    /// LTX files removed by retention.
    pub ltx_reaped: u64,
    /// LTX files applied from outside SQLite (received from the primary,
    /// or an import).
    pub applied_files: u64,
    /// Time spent in applies, waiting for the fence included.
    pub apply_time: Duration,
    /// Applies that failed (not contiguous, checksum mismatch, I/O).
    pub apply_errors: u64,
    /// Writes refused because this node is a read-only replica.
    pub refused_writes: u64,
    /// Halt locks on the database: taken by this replica from the primary,
    /// or granted by this primary to a replica.
    pub halts: u64,
    /// Transactions forwarded under the halt lock: sent by this replica,
    /// or applied by this primary.
    pub forwarded: u64,
    /// Time from the newest LTX file's creation to its apply on this node
    /// (0 after a local commit); `None` before the first of either.
    pub lag: Option<Duration>,
    /// Fences the store holds on the database now (an apply keeping
    /// clients out, a snapshot or export holding writers off).
    pub fences: u32,
    /// Whether an apply is writing pages into the database file now.
    pub applying: bool,
}

impl DbStats {
    /// Counts one write that reached the daemon.
    #[inline]
    pub fn count_write(&self, kind: FileKind) {
        let c = match kind {
            FileKind::Database => &self.database_writes,
            FileKind::Journal => &self.journal_writes,
            FileKind::Wal => &self.wal_writes,
            FileKind::Shm => &self.shm_writes,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Counts one halt lock taken (replica) or granted (primary).
    pub fn count_halt(&self) {
        self.halts.fetch_add(1, Relaxed);
    }

    /// Counts one transaction forwarded under the halt lock (sent by a
    /// replica, applied by the primary).
    pub fn count_forwarded(&self) {
        self.forwarded.fetch_add(1, Relaxed);
    }

    /// Counts one write refused because this node is a replica.
    pub fn count_refused_write(&self) {
        self.refused_writes.fetch_add(1, Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> DbCounters {
        let lag = self.lag_ms.load(Relaxed);
        DbCounters {
            database_writes: self.database_writes.load(Relaxed),
            journal_writes: self.journal_writes.load(Relaxed),
            wal_writes: self.wal_writes.load(Relaxed),
            shm_writes: self.shm_writes.load(Relaxed),
            commits: self.commits.load(Relaxed),
            ltx_files: self.ltx_files.load(Relaxed),
            ltx_bytes: self.ltx_bytes.load(Relaxed),
            ltx_reaped: self.ltx_reaped.load(Relaxed),
            applied_files: self.applied_files.load(Relaxed),
            apply_time: Duration::from_nanos(self.apply_nanos.load(Relaxed)),
            apply_errors: self.apply_errors.load(Relaxed),
            refused_writes: self.refused_writes.load(Relaxed),
            halts: self.halts.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            lag: (lag != LAG_NONE).then(|| Duration::from_millis(lag.max(0).unsigned_abs())),
            fences: self.fences.load(Relaxed),
            applying: self.applying.load(Relaxed),
        }
    }

    /// `txns` transactions were made on this node (captured into an LTX
    /// file, or imported).
    pub(crate) fn committed(&self, txns: u64) {
        self.commits.fetch_add(txns, Relaxed);
        self.lag_ms.store(0, Relaxed);
    }

    /// An LTX file of `bytes` bytes is now on disk.
    pub(crate) fn ltx_added(&self, bytes: u64) {
        self.ltx_files.fetch_add(1, Relaxed);
        self.ltx_bytes.fetch_add(bytes, Relaxed);
    }

    /// An LTX file of `bytes` bytes was removed.
    pub(crate) fn ltx_removed(&self, bytes: u64) {
        let sub = |n: u64| move |v: u64| Some(v.saturating_sub(n));
        let _ = self.ltx_files.fetch_update(Relaxed, Relaxed, sub(1));
        let _ = self.ltx_bytes.fetch_update(Relaxed, Relaxed, sub(bytes));
    }

    /// Retention removed an LTX file of `bytes` bytes.
    pub(crate) fn ltx_reaped(&self, bytes: u64) {
        self.ltx_reaped.fetch_add(1, Relaxed);
        self.ltx_removed(bytes);
    }

    /// Sets the LTX gauges from a count of the directory.
    pub(crate) fn set_ltx_on_disk(&self, files: u64, bytes: u64) {
        self.ltx_files.store(files, Relaxed);
        self.ltx_bytes.store(bytes, Relaxed);
    }

    /// An apply of `files` LTX files ended after `took`; `newest_ms` is
    /// the newest applied file's timestamp (`None`: nothing was applied).
    pub(crate) fn applied(&self, files: u64, took: Duration, newest_ms: Option<i64>, ok: bool) {
        self.applied_files.fetch_add(files, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.apply_nanos.fetch_add(nanos, Relaxed);
        if !ok {
            self.apply_errors.fetch_add(1, Relaxed);
        }
        if let Some(ts) = newest_ms {
            let lag = crate::role::now_ms().saturating_sub(ts).max(0);
            self.lag_ms.store(lag, Relaxed);
        }
    }

    /// Marks a fence held by the store until the guard is dropped.
    pub(crate) fn fenced(&self) -> Marked<'_> {
        self.fences.fetch_add(1, Relaxed);
        Marked {
            stats: self,
            what: Mark::Fence,
        }
    }

    /// Marks pages being applied until the guard is dropped.
    pub(crate) fn applying(&self) -> Marked<'_> {
        self.applying.store(true, Relaxed);
        Marked {
            stats: self,
            what: Mark::Applying,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Fence,
    Applying,
}

/// Keeps a [`DbCounters::fences`] or [`DbCounters::applying`] mark while
/// it lives.
#[derive(Debug)]
pub(crate) struct Marked<'a> {
    stats: &'a DbStats,
    what: Mark,
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        match self.what {
            Mark::Fence => {
                self.stats.fences.fetch_sub(1, Relaxed);
            }
            Mark::Applying => self.stats.applying.store(false, Relaxed),
        }
    }
}

/// LTX files in `dir` and their total size (files that vanish meanwhile
/// are not counted).
pub(crate) fn ltx_on_disk(dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let is_ltx = e
            .file_name()
            .to_str()
            .and_then(litefs_ltx::parse_file_name)
            .is_some();
        if !is_ltx {
            continue;
        }
        match e.metadata() {
            Ok(m) => {
                files += 1;
                bytes += m.len();
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_and_gauges_never_go_below_zero() {
        let s = DbStats::default();
        assert_eq!(s.read(), DbCounters::default());
        s.count_write(FileKind::Database);
        s.count_write(FileKind::Wal);
        s.count_write(FileKind::Wal);
        s.count_refused_write();
        s.committed(3);
        s.ltx_added(100);
        s.ltx_added(50);
        s.ltx_reaped(100);
        s.ltx_removed(500);
        let c = s.read();
        assert_eq!(
            (c.database_writes, c.wal_writes, c.journal_writes),
            (1, 2, 0)
        );
        assert_eq!((c.refused_writes, c.commits), (1, 3));
        assert_eq!((c.ltx_files, c.ltx_bytes, c.ltx_reaped), (0, 0, 1));
        assert_eq!(c.lag, Some(Duration::ZERO));
        s.applied(
            2,
            Duration::from_millis(3),
            Some(crate::role::now_ms() - 1500),
            false,
        );
        let c = s.read();
        assert_eq!((c.applied_files, c.apply_errors), (2, 1));
        assert_eq!(c.apply_time, Duration::from_millis(3));
        let lag = c.lag.unwrap();
        assert!(
            lag >= Duration::from_millis(1500) && lag < Duration::from_secs(60),
            "{lag:?}"
        );
        {
            let _f = s.fenced();
            let _a = s.applying();
            let c = s.read();
            assert_eq!((c.fences, c.applying), (1, true));
        }
        let c = s.read();
        assert_eq!((c.fences, c.applying), (0, false));
    }

    #[test]
    fn ltx_on_disk_counts_only_ltx_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("0000000000000001-0000000000000001.ltx"),
            [0u8; 10],
        )
        .unwrap();
        std::fs::write(
            d.path().join("0000000000000002-0000000000000003.ltx"),
            [0u8; 5],
        )
        .unwrap();
        std::fs::write(
            d.path().join("0000000000000004-0000000000000004.ltx.tmp"),
            [0u8; 7],
        )
        .unwrap();
        std::fs::write(d.path().join("snapshot"), [0u8; 7]).unwrap();
        assert_eq!(ltx_on_disk(d.path()).unwrap(), (2, 15));
    }
}
