//! [`MountFence`]: the store's [`Fence`], implemented by taking SQLite's
//! own locks on files opened through the mount.
//!
//! This filesystem leaves POSIX locks to the kernel, so the only way to keep
//! SQLite clients out is to lock what they lock, where they lock it: the
//! database file's lock bytes (rollback-journal modes) or the WAL index's
//! (`-shm`, WAL mode), on files opened through the mount. The locks are
//! open file description locks (`F_OFD_SETLK`): they belong to the file
//! the fence opened, not to this process, so they conflict with SQLite's
//! process-owned locks and are released when the guard closes its files.
//! Locks are polled, never waited for in the kernel, so a client that
//! holds one forever (stopped, or hung) costs [`LOCK_TIMEOUT`] and an
//! error, not a stuck daemon.

use crate::fs::Ids;
use crate::names::Kind;
use fuser::{INodeNo, Notifier};
use litefs_store::{Db, Fence, FenceGuard, StoreError};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a fence waits for SQLite clients to release their locks
/// before it gives up with an error (`ErrorKind::TimedOut`).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The first pause between two attempts at a busy lock; pauses double up
/// to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_micros(100);
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// A byte range of a file: (offset, length).
type Range = (u64, u64);

/// Rollback-journal locks (SQLite's `os.h`), on the database file.
const PENDING: Range = (0x4000_0000, 1);
const RESERVED: Range = (0x4000_0001, 1);
const SHARED: Range = (0x4000_0002, 510);

/// WAL-index locks (SQLite's `wal.c`: the lock bytes start at 120), on
/// `-shm`. `RECOVER` (122) is never taken by a fence; `DMS` (128) only
/// shared, by a parked fence (see [`Fence::park_writers`]).
const WAL_WRITE: Range = (120, 1);
const WAL_DMS: Range = (128, 1);
const WAL_CKPT: Range = (121, 1);
const WAL_READ: [Range; 5] = [(123, 1), (124, 1), (125, 1), (126, 1), (127, 1)];

/// What a fence needs from the mount: where it is, and a way to tell the
/// kernel about changed files. Shared between [`crate::Mounted`] (which
/// detaches it at unmount) and every fence.
pub(crate) struct MountLink {
    dir: PathBuf,
    /// The mount's device number: files opened through a path in `dir`
    /// must be on it (after an unmount the same path reaches the directory
    /// underneath).
    dev: Option<u64>,
    ids: Arc<RwLock<Ids>>,
    /// `None` once unmounted.
    notifier: Mutex<Option<Notifier>>,
    /// To the releaser thread, which finishes dropped guards.
    releaser: Option<Sender<Release>>,
    /// Databases whose write lock a parked guard holds: `true` the WAL
    /// index's WRITE byte, `false` the database file's RESERVED byte.
    parked: Mutex<HashMap<String, bool>>,
}

impl MountLink {
    /// Call after the mount is made; learns its device number (one
    /// `stat` through the mount, served by the session's threads).
    pub(crate) fn new(dir: &Path, ids: Arc<RwLock<Ids>>, notifier: Notifier) -> MountLink {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let dev = match std::fs::metadata(&dir) {
            Ok(md) => Some(md.dev()),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot stat the mount; fences will not check that files are on it");
                None
            }
        };
        MountLink {
            dir,
            dev,
            ids,
            notifier: Mutex::new(Some(notifier)),
            releaser: spawn_releaser(),
            parked: Mutex::new(HashMap::new()),
        }
    }

    /// Finishes a dropped guard on the releaser thread (or here, if that
    /// thread could not be started).
    fn release(&self, r: Release) {
        match &self.releaser {
            Some(tx) => {
                if let Err(std::sync::mpsc::SendError(r)) = tx.send(r) {
                    r.run();
                }
            }
            None => r.run(),
        }
    }

    /// The mount is going away: fences no longer have clients to fence.
    pub(crate) fn detach(&self) {
        if let Ok(mut n) = self.notifier.lock() {
            *n = None;
        }
    }

    /// The node's role changed, and with it the modes of databases and
    /// directories (read-only on a replica): drops the attributes the
    /// kernel cached of them, and of the `extra` inodes.
    pub(crate) fn role_changed(&self, extra: &[u64]) {
        let Some(notifier) = self.notifier() else {
            return;
        };
        let inos: Vec<u64> = match self.ids.read() {
            Ok(ids) => ids
                .names()
                .flat_map(|name| [Kind::Database, Kind::Dir].map(|k| ids.ino(name, k)))
                .flatten()
                .chain(extra.iter().copied())
                .collect(),
            Err(_) => return,
        };
        for ino in inos {
            // Offset -1: attributes only, cached pages stay.
            if let Err(e) = notifier.inval_inode(INodeNo(ino), -1, 0) {
                tracing::debug!(ino, error = %e, "attribute invalidation failed");
            }
        }
    }

    fn notifier(&self) -> Option<Notifier> {
        self.notifier.lock().ok().and_then(|n| n.clone())
    }

    /// Whether a parked guard holds `db`'s write lock of that mode.
    fn is_parked(&self, db: &str, wal: bool) -> bool {
        self.parked
            .lock()
            .is_ok_and(|p| p.get(db).is_some_and(|&w| w == wal))
    }

    fn attached(&self) -> bool {
        self.notifier.lock().is_ok_and(|n| n.is_some())
    }

    /// The path of `db`'s `kind` file in the mount.
    pub(crate) fn path(&self, db: &str, kind: Kind) -> PathBuf {
        self.dir.join(format!("{db}{}", kind.suffix()))
    }

    /// Opens `path` through the mount, read-write (write locks need a
    /// writable file), never creating it. `None` when it does not exist.
    pub(crate) fn open(&self, path: &Path) -> Result<Option<File>, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let dev = f.metadata().map_err(io)?.dev();
        if self.dev.is_some_and(|d| d != dev) {
            return Err(io(std::io::Error::other(
                "not on the litefs mount (unmounted?)",
            )));
        }
        Ok(Some(f))
    }
}

/// The thread that finishes dropped guards; it ends when its mount's link
/// is gone.
fn spawn_releaser() -> Option<Sender<Release>> {
    let (tx, rx) = std::sync::mpsc::channel::<Release>();
    match std::thread::Builder::new()
        .name("litefs-fence".into())
        .spawn(move || rx.into_iter().for_each(Release::run))
    {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the fence releaser thread; guards release inline");
            None
        }
    }
}

/// Keeps the SQLite clients of a database in the mount out of the way by
/// taking, on files opened through the mount, the locks SQLite takes:
///
/// * rollback-journal modes (`wal == false`), on the database file:
///   [`Fence::exclude`] write-locks PENDING (new readers are turned away
///   with `SQLITE_BUSY`), then RESERVED (no new writer), then the SHARED
///   range (waits for current readers to finish); [`Fence::hold_writers`]
///   write-locks RESERVED only.
/// * WAL mode, on `<db>-shm`: `exclude` write-locks WRITE, CKPT and every
///   READ mark (each as soon as it is free); `hold_writers` write-locks
///   WRITE only. Without a `-shm` no client has the WAL open: `exclude`
///   then locks the database file as in rollback mode (keeping out clients
///   that are just opening it; if one creates the `-shm` meanwhile, the
///   fence moves to the WAL-index locks), and `hold_writers` takes nothing.
///   The `-shm` is never created by a fence.
///
/// Busy locks are retried with short pauses; after [`LOCK_TIMEOUT`] the
/// call fails with a `TimedOut` I/O error naming the file. Files are
/// opened per guard; when it drops, a thread of the mount makes its
/// pending WAL-index writes, drops the kernel's cached pages if asked,
/// and closes the files, which releases the locks (so a guard can be
/// dropped while holding a lock FUSE request threads wait for). After the
/// unmount no client can reach a database, and guards hold nothing.
///
/// **Only take a fence from threads that do not serve FUSE requests, and
/// without holding anything FUSE requests wait for**: it opens files
/// through the mount, which needs a request thread to answer.
#[derive(Clone)]
pub struct MountFence {
    link: Arc<MountLink>,
}

impl std::fmt::Debug for MountFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountFence")
            .field("dir", &self.link.dir)
            .finish()
    }
}

impl MountFence {
    pub(crate) fn new(link: Arc<MountLink>) -> MountFence {
        MountFence { link }
    }

    fn guard(&self, db: &Db) -> Guard {
        Guard {
            link: self.link.clone(),
            name: db.name().to_owned(),
            db: None,
            shm: None,
            writes: Vec::new(),
            invalidate: false,
            parked: false,
        }
    }

    /// Rollback-mode exclusion on the database file, given up (`false`)
    /// when `give_up` says so between attempts.
    /// `parked`: a halt guard of this fence holds PENDING and RESERVED
    /// already.
    fn exclude_database(
        &self,
        file: &File,
        parked: bool,
        wait: &mut Wait,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError> {
        let order: &[Range] = if parked {
            &[SHARED]
        } else {
            &[PENDING, RESERVED, SHARED]
        };
        lock_in_order(file, order, wait, give_up)
    }
}

impl Fence for MountFence {
    fn exclude(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        let mut guard = self.guard(db);
        if !self.link.attached() {
            return Ok(Box::new(guard));
        }
        let db_path = self.link.path(db.name(), Kind::Database);
        let shm_path = self.link.path(db.name(), Kind::Shm);
        let mut wait = Wait::new(&db_path);
        loop {
            if wal {
                if let Some(shm) = self.link.open(&shm_path)? {
                    wait.path.clone_from(&shm_path);
                    // A parked guard of this fence holds the write lock.
                    let order: &[Range] = if self.link.is_parked(db.name(), true) {
                        &[WAL_CKPT]
                    } else {
                        &[WAL_WRITE, WAL_CKPT]
                    };
                    lock_in_order(&shm, order, &mut wait, &mut || false)?;
                    lock_each(&shm, &WAL_READ, &mut wait)?;
                    guard.shm = Some((shm, shm_path));
                    return Ok(Box::new(guard));
                }
            }
            let Some(file) = self.link.open(&db_path)? else {
                // No database file: no client has it open.
                return Ok(Box::new(guard));
            };
            wait.path.clone_from(&db_path);
            let mut shm_appeared = || wal && std::fs::symlink_metadata(&shm_path).is_ok();
            let parked = self.link.is_parked(db.name(), false);
            if self.exclude_database(&file, parked, &mut wait, &mut shm_appeared)? {
                guard.db = Some(file);
                return Ok(Box::new(guard));
            }
            // A WAL client is opening the database: fence its WAL index.
        }
    }

    fn hold_writers(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        let mut guard = self.guard(db);
        if !self.link.attached() {
            return Ok(Box::new(guard));
        }
        if self.link.is_parked(db.name(), wal) {
            // Writers are held by the parked guard already.
            return Ok(Box::new(guard));
        }
        let (kind, range) = if wal {
            (Kind::Shm, WAL_WRITE)
        } else {
            (Kind::Database, RESERVED)
        };
        let path = self.link.path(db.name(), kind);
        let Some(file) = self.link.open(&path)? else {
            return Ok(Box::new(guard));
        };
        let mut wait = Wait::new(&path);
        lock_in_order(&file, &[range], &mut wait, &mut || false)?;
        if wal {
            guard.shm = Some((file, path));
        } else {
            guard.db = Some(file);
        }
        Ok(Box::new(guard))
    }

    fn park_writers(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        let mut guard = self.guard(db);
        if !wal || self.link.is_parked(db.name(), true) {
            // Rollback-journal writes all pass through the mount, which
            // refuses them on a replica: nothing to hold.
            return Ok(Box::new(guard));
        }
        if !self.link.attached() {
            return Ok(Box::new(guard));
        }
        let path = self.link.path(db.name(), Kind::Shm);
        let Some(file) = self.link.open(&path)? else {
            // No WAL index: no connection has the WAL open.
            return Ok(Box::new(guard));
        };
        let mut wait = Wait::new(&path);
        lock_in_order(&file, &[WAL_WRITE], &mut wait, &mut || false)?;
        // Shared on DMS: no client can believe it is the first one and
        // reset the WAL index, whose recovery would need the write lock
        // this guard keeps.
        loop {
            match try_lock(&file, WAL_DMS, libc::F_RDLCK) {
                Ok(true) => break,
                Ok(false) => wait.pause()?,
                Err(e) => return Err(io_err(&wait, e)),
            }
        }
        guard.shm = Some((file, path));
        guard.parked = true;
        if let Ok(mut p) = self.link.parked.lock() {
            p.insert(db.name().to_owned(), true);
        }
        Ok(Box::new(guard))
    }

    fn halt_writers(&self, db: &Db, wal: bool) -> Result<Box<dyn FenceGuard>, StoreError> {
        if wal && std::fs::symlink_metadata(self.link.path(db.name(), Kind::Shm)).is_ok() {
            return self.park_writers(db, true);
        }
        // Rollback mode, or WAL mode with no client (no WAL index): PENDING
        // and RESERVED on the database file keep new connections and
        // writers out (readers too: LiteFS's halt does the same); the
        // fence's own applies then take only the SHARED range.
        let mut guard = self.guard(db);
        if !self.link.attached() || self.link.is_parked(db.name(), false) {
            return Ok(Box::new(guard));
        }
        let path = self.link.path(db.name(), Kind::Database);
        let Some(file) = self.link.open(&path)? else {
            return Ok(Box::new(guard));
        };
        let mut wait = Wait::new(&path);
        lock_in_order(&file, &[PENDING, RESERVED], &mut wait, &mut || false)?;
        guard.db = Some(file);
        guard.parked = true;
        if let Ok(mut p) = self.link.parked.lock() {
            p.insert(db.name().to_owned(), false);
        }
        Ok(Box::new(guard))
    }
}

/// A held fence: the files whose descriptions hold the locks.
///
/// The store calls a guard's methods and drops it while holding the
/// database's mutex, and FUSE request threads can be waiting for that
/// mutex (a `-pos` lookup, a client's close). So nothing a guard does after
/// it is taken may wait for a request thread: WAL-index writes, the page
/// invalidation and the closing of the files (the kernel sends a `FLUSH`
/// and waits for its answer) are handed, in that order, to the mount's
/// releaser thread when the guard drops. Clients come back only when the
/// files close, so they see every write and no stale page; `read_shm`
/// sees the pending writes. (`read_shm` itself reads through the mount:
/// with passthrough that never reaches this process; on the classic path
/// it is answered from the kernel's page cache when SQLite's clients have
/// the index mapped, as they do while it is in use.)
struct Guard {
    link: Arc<MountLink>,
    name: String,
    db: Option<File>,
    shm: Option<(File, PathBuf)>,
    /// WAL-index writes not yet made: (offset, bytes), in order.
    writes: Vec<(u64, Vec<u8>)>,
    invalidate: bool,
    /// Holds the write lock for [`Fence::park_writers`].
    parked: bool,
}

impl FenceGuard for Guard {
    fn read_shm(&mut self, buf: &mut [u8], offset: u64) -> Result<usize, StoreError> {
        let Some((f, path)) = &self.shm else {
            return Ok(0);
        };
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(overlay(&self.writes, buf, n, offset))
    }

    fn write_shm(&mut self, buf: &[u8], offset: u64) -> Result<(), StoreError> {
        if self.shm.is_some() && !buf.is_empty() {
            self.writes.push((offset, buf.to_vec()));
        }
        Ok(())
    }

    fn invalidate_database(&mut self) {
        self.invalidate = true;
    }
}

/// Lays the pending `writes` over `buf`, which holds `n` bytes read from
/// `offset`; returns how many bytes of `buf` are now valid (writes past
/// the end of the file extend it).
fn overlay(writes: &[(u64, Vec<u8>)], buf: &mut [u8], n: usize, offset: u64) -> usize {
    let mut valid = n;
    for (at, data) in writes {
        let (at, end) = (*at, *at + data.len() as u64);
        let lo = at.max(offset);
        let hi = end.min(offset + buf.len() as u64);
        if lo >= hi {
            continue;
        }
        let (b, d) = ((lo - offset) as usize, (lo - at) as usize);
        let len = (hi - lo) as usize;
        if b > valid {
            // A hole between the file's end and the write reads as zeros.
            buf[valid..b].fill(0);
        }
        buf[b..b + len].copy_from_slice(&data[d..d + len]);
        valid = valid.max(b + len);
    }
    valid
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.parked {
            // Fences take the write lock themselves from now on (and wait
            // for it until the releaser has closed this guard's file).
            if let Ok(mut p) = self.link.parked.lock() {
                p.remove(&self.name);
            }
        }
        if self.db.is_none() && self.shm.is_none() {
            return;
        }
        // Resolved now, while the mount is known to be attached.
        let inval = if self.invalidate {
            let ino = self
                .link
                .ids
                .read()
                .ok()
                .and_then(|ids| ids.ino(&self.name, Kind::Database));
            // An inode the kernel never heard of has nothing cached.
            self.link.notifier().zip(ino.map(INodeNo))
        } else {
            None
        };
        let release = Release {
            name: std::mem::take(&mut self.name),
            db: self.db.take(),
            shm: self.shm.take(),
            writes: std::mem::take(&mut self.writes),
            inval,
        };
        self.link.release(release);
    }
}

/// What a dropped guard leaves to do, in order: the WAL-index writes, the
/// invalidation, closing the files (which lets clients in).
struct Release {
    name: String,
    db: Option<File>,
    shm: Option<(File, PathBuf)>,
    writes: Vec<(u64, Vec<u8>)>,
    inval: Option<(Notifier, INodeNo)>,
}

impl Release {
    fn run(self) {
        if let Some((f, path)) = &self.shm {
            for (offset, data) in &self.writes {
                if let Err(e) = f.write_all_at(data, *offset) {
                    tracing::error!(db = %self.name, path = %path.display(), error = %e, "WAL index write failed");
                }
            }
        }
        if let Some((notifier, ino)) = &self.inval {
            if let Err(e) = notifier.inval_inode(*ino, 0, -1) {
                tracing::warn!(db = %self.name, error = %e, "could not drop the kernel's cached pages of the database");
            }
        }
        drop(self.shm);
        drop(self.db);
    }
}

/// The deadline and the pause between attempts at busy locks.
struct Wait {
    /// The file waited on, for the error.
    path: PathBuf,
    deadline: Instant,
    pause: Duration,
}

impl Wait {
    fn new(path: &Path) -> Wait {
        Wait {
            path: path.to_path_buf(),
            deadline: Instant::now() + LOCK_TIMEOUT,
            pause: FIRST_PAUSE,
        }
    }

    fn progressed(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// Sleeps before the next attempt; an error once the deadline passed.
    fn pause(&mut self) -> Result<(), StoreError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "SQLite clients kept their locks for {}s; gave up waiting",
                        LOCK_TIMEOUT.as_secs()
                    ),
                ),
            });
        }
        std::thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Ok(())
    }
}

/// Write-locks `ranges` of `file` one after the other, each once the one
/// before is held. `Ok(false)` when `give_up` returned true between
/// attempts (the locks taken so far are released with the file).
fn lock_in_order(
    file: &File,
    ranges: &[Range],
    wait: &mut Wait,
    give_up: &mut dyn FnMut() -> bool,
) -> Result<bool, StoreError> {
    for &r in ranges {
        while !try_write_lock(file, r).map_err(|e| io_err(wait, e))? {
            if give_up() {
                return Ok(false);
            }
            wait.pause()?;
        }
        wait.progressed();
    }
    Ok(true)
}

/// Write-locks every one of `ranges` of `file`, in any order: each as soon
/// as it is free, keeping those taken while retrying the rest.
fn lock_each(file: &File, ranges: &[Range], wait: &mut Wait) -> Result<(), StoreError> {
    let mut left = ranges.to_vec();
    loop {
        let before = left.len();
        let mut failed = None;
        left.retain(|&r| match try_write_lock(file, r) {
            Ok(got) => !got,
            Err(e) => {
                failed.get_or_insert(e);
                true
            }
        });
        if let Some(e) = failed {
            return Err(io_err(wait, e));
        }
        if left.is_empty() {
            return Ok(());
        }
        if left.len() < before {
            wait.progressed();
        }
        wait.pause()?;
    }
}

fn io_err(wait: &Wait, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: wait.path.clone(),
        source,
    }
}

/// One non-blocking attempt at an open-file-description write lock on
/// `range` of `file`: `Ok(false)` when someone else holds a conflicting
/// lock.
fn try_write_lock(file: &File, range: Range) -> std::io::Result<bool> {
    try_lock(file, range, libc::F_WRLCK)
}

/// Tries an OFD lock of `kind` (`F_WRLCK` or `F_RDLCK`) on `range`;
/// `false` when another holder conflicts.
pub(crate) fn try_lock(
    file: &File,
    (start, len): Range,
    kind: libc::c_int,
) -> std::io::Result<bool> {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // OFD locks require l_pid 0 (zeroed above).
    loop {
        // SAFETY: the descriptor is open for the duration of the call and
        // `fl` is a valid `flock` the kernel only reads.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An OFD write lock conflicts with another open of the same file (as a
    /// SQLite client's would), and goes away when its file closes.
    #[test]
    fn ofd_locks_conflict_between_opens_and_drop_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let open = || OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let (a, b) = (open(), open());
        assert!(try_write_lock(&a, RESERVED).unwrap());
        assert!(!try_write_lock(&b, RESERVED).unwrap());
        assert!(try_write_lock(&b, PENDING).unwrap());
        drop(a);
        assert!(try_write_lock(&b, RESERVED).unwrap());
    }

    #[test]
    fn lock_each_keeps_what_it_got_and_times_out_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db-shm");
        std::fs::write(&p, [0u8; 136]).unwrap();
        let open = || OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let (reader, fence) = (open(), open());
        assert!(try_write_lock(&reader, WAL_READ[2]).unwrap());
        let mut wait = Wait::new(&p);
        wait.deadline = Instant::now() + Duration::from_millis(30);
        let err = lock_each(&fence, &WAL_READ, &mut wait).unwrap_err();
        match err {
            StoreError::Io { path, source } => {
                assert_eq!(path, p);
                assert_eq!(source.kind(), ErrorKind::TimedOut);
            }
            other => panic!("{other}"),
        }
        // The free marks were taken and kept.
        assert!(!try_write_lock(&reader, WAL_READ[0]).unwrap());
        assert!(!try_write_lock(&reader, WAL_READ[4]).unwrap());
        drop(reader);
        let mut wait = Wait::new(&p);
        lock_each(&fence, &WAL_READ, &mut wait).unwrap();
    }

    #[test]
    fn pending_writes_overlay_what_was_read() {
        let writes = vec![(4u64, vec![1u8, 2, 3]), (10, vec![9, 9])];
        // Read 8 bytes at 2 from a file of 5 bytes (3 read): the first
        // write lands inside, the second beyond the buffer.
        let mut buf = [7u8; 8];
        let n = overlay(&writes, &mut buf, 3, 2);
        assert_eq!(n, 5);
        assert_eq!(&buf[..n], &[7, 7, 1, 2, 3]);
        // A write past the end of the file, with a hole before it.
        let mut buf = [7u8; 12];
        let n = overlay(&writes, &mut buf, 2, 0);
        assert_eq!(n, 12);
        assert_eq!(buf, [7, 7, 0, 0, 1, 2, 3, 0, 0, 0, 9, 9]);
        // Nothing pending: what was read.
        assert_eq!(overlay(&[], &mut buf, 4, 0), 4);
    }

    #[test]
    fn lock_in_order_gives_up_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, b"").unwrap();
        let open = || OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let (reader, fence) = (open(), open());
        assert!(try_write_lock(&reader, (SHARED.0 + 7, 1)).unwrap());
        let mut wait = Wait::new(&p);
        let mut tries = 0;
        let got = lock_in_order(&fence, &[PENDING, RESERVED, SHARED], &mut wait, &mut || {
            tries += 1;
            tries > 3
        })
        .unwrap();
        assert!(!got);
        assert_eq!(tries, 4);
    }
}
