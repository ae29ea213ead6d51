//! The `fuser::Filesystem` implementation: thin adapters over helpers that
//! return `Result<_, Errno>`.

use crate::backing::{side_file_generation, Registry};
use crate::fence::{MountFence, MountLink};
use crate::names::{join, parse, Kind, KINDS};
use fuser::{
    BackgroundSession, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use litefs_store::{Db, Fence, Store, StoreError};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TTL: Duration = Duration::from_secs(1);
/// Attributes and entries of generated files that change at any moment
/// (`.primary`): never cached, so every lookup sees the current state.
const NO_TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;
const LAG: u64 = 2;
const PRIMARY: u64 = 3;
pub(crate) const DB_BASE: u64 = 16;
pub(crate) const KIND_SLOTS: u64 = 8;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let users other than the mounting one in (`fuse.allow-other`);
    /// what each may then do is decided by the kernel from the files'
    /// modes and owners (`default_permissions`).
    pub allow_other: bool,
    /// Request-dispatch threads.
    pub threads: usize,
    /// Hand WAL, WAL-index and journal I/O to the kernel (FUSE passthrough)
    /// when the kernel offers it; otherwise, or when false, every read and write of
    /// them passes through this process (classic FUSE I/O).
    pub passthrough: bool,
    /// How often commits written behind the store's back (passthrough) are
    /// captured when no barrier forces it sooner.
    pub capture_interval: Duration,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            passthrough: true,
            capture_interval: Duration::from_millis(1),
        }
    }
}

/// A live mount; unmounts when dropped.
pub struct Mounted {
    session: Option<BackgroundSession>,
    dir: PathBuf,
    poller: Option<Poller>,
    /// What [`MountFence`]s reach the mount through.
    link: Arc<MountLink>,
}

/// The thread that captures lazily written WAL commits between barriers,
/// and tells the kernel when file modes change with the node's role.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Poller {
    fn spawn(
        store: Arc<Store>,
        link: Arc<MountLink>,
        interval: Duration,
    ) -> std::io::Result<Poller> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut primary = store.role().is_primary();
        let thread = std::thread::Builder::new()
            .name("litefs-capture".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    if store.role().is_primary() != primary {
                        primary = !primary;
                        link.role_changed(&[ROOT]);
                    }
                    if !capture_all(&store) {
                        // Persistent failures are logged once a second, not
                        // once per tick.
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    std::thread::sleep(interval);
                }
                capture_all(&store);
                if let Err(e) = store.flush_all() {
                    tracing::error!(error = %e, "LTX files not all written at unmount");
                }
            })?;
        Ok(Poller { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("capture thread panicked");
        }
    }
}

/// Captures the published WAL commits of every lazily captured database;
/// false if any failed (each failure is logged).
fn capture_all(store: &Store) -> bool {
    let mut ok = true;
    for db in store.dbs() {
        if !db.wal_writable_behind() {
            continue;
        }
        if let Err(e) = db.capture_wal() {
            tracing::error!(db = db.name(), error = %e, "WAL capture failed");
            ok = false;
        }
    }
    ok
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mounted")
    }
}

impl Mounted {
    /// The fence the store uses to keep this mount's SQLite clients out
    /// while it changes a database (see [`MountFence`]; never use it from a
    /// FUSE request thread).
    pub fn fence(&self) -> Arc<dyn Fence> {
        Arc::new(MountFence::new(self.link.clone()))
    }

    /// Whether the kernel still serves the mount through us. False once it
    /// was unmounted from outside (`fusermount3 -u`, `umount`).
    pub fn is_serving(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmounts and waits for the request loop to end. A mount still busy
    /// with open files is detached lazily (the kernel finishes it when the
    /// last file closes).
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> std::io::Result<()> {
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        // Fences from now on have no clients to keep out.
        self.link.detach();
        // After the unmount no client can write; the poller's last pass
        // then captures everything that is left.
        let r = self.unmount_session(s);
        if let Some(p) = self.poller.take() {
            p.stop();
        }
        r
    }

    fn unmount_session(&mut self, s: BackgroundSession) -> std::io::Result<()> {
        if s.guard.is_finished() {
            // Unmounted from outside already: nothing left to detach.
            if let Err(e) = s.join() {
                tracing::warn!(error = %e, "FUSE session ended with an error");
            }
            return Ok(());
        }
        if let Err(e) = s.umount_and_join() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "unmount failed; detaching lazily");
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.dir)
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other(format!(
                    "could not unmount {}: run `fusermount3 -u -z {}`",
                    self.dir.display(),
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::error!(error = %e, "unmount");
        }
    }
}

/// Mounts `store` at `dir` and serves it on background threads.
pub fn mount(store: Arc<Store>, dir: &Path, opts: &MountOptions) -> std::io::Result<Mounted> {
    let ids = Arc::new(RwLock::new(Ids::default()));
    let gates = Arc::new(std::sync::OnceLock::new());
    // The mount point itself, held open: the root shows its mode and owner
    // and `chmod`/`chown` of the root change them, although the mount
    // covers it.
    let point = match File::open(dir) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot open the mount point; the root shows mode 0755");
            None
        }
    };
    let mut fs = LiteFs::new(store.clone(), ids.clone(), opts.passthrough, gates.clone());
    fs.point = point;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("litefs".into()),
        MountOption::Subtype("litefs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        // The kernel checks every access against the modes and owners we
        // return, from the attributes it caches: no round trip per read or
        // write (after a create or unlink it asks once for the directory's).
        MountOption::DefaultPermissions,
    ];
    if opts.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = opts.threads > 1;
    let session = fuser::spawn_mount(fs, dir, &config)?;
    let link = Arc::new(MountLink::new(dir, ids, session.notifier()));
    let _ = gates.set(Arc::new(crate::halt::Gates::new(
        link.clone(),
        store.clone(),
    )));
    let poller = Poller::spawn(store, link.clone(), opts.capture_interval)?;
    Ok(Mounted {
        session: Some(session),
        dir: dir.to_path_buf(),
        poller: Some(poller),
        link,
    })
}

/// An open file: the backing file (none for generated files) and what it is.
struct Handle {
    db: Arc<Db>,
    kind: Kind,
    file: Option<File>,
    /// The kernel's reference to the backing file when its I/O bypasses
    /// this process; shared by every open of the same inode, as the kernel
    /// requires.
    backing: Option<Arc<BackingId>>,
}

struct LiteFs {
    store: Arc<Store>,
    /// Shared with the mount's fences, which name inodes to the kernel.
    ids: Arc<RwLock<Ids>>,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// Backing directories with entries created or removed since the last
    /// `fsyncdir`: SQLite syncs the directory after creating a journal, and
    /// that durability must reach the directory that really holds it.
    dirty_dirs: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// Open handles on each database file: when the last closes, writes
    /// made without a journal are committed (see `Db::database_synced`).
    db_handles: std::sync::Mutex<HashMap<String, usize>>,
    /// Whether passthrough was asked for, and whether it is in use (the
    /// kernel granted it and registering backing files works).
    passthrough_wanted: bool,
    passthrough: AtomicBool,
    /// One backing registration per inode and backing file while any open
    /// uses it (see `backing.rs`).
    backing: Registry<BackingId>,
    uid: u32,
    gid: u32,
    /// The halt-lock gates, once the mount exists.
    gates: Arc<std::sync::OnceLock<Arc<crate::halt::Gates>>>,
    /// Handles of `-lock` files clients opened on a replica (each counted
    /// by its database's gate).
    gated: Mutex<HashMap<u64, String>>,
    /// The mount point directory under the mount (see [`mount`]).
    point: Option<File>,
}

/// Stable inode numbers for database names within this process.
#[derive(Default)]
pub(crate) struct Ids {
    by_name: HashMap<String, u64>,
    names: Vec<String>,
}

impl Ids {
    /// Every name (database or directory path) with inodes.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The inode of `name`'s `kind` file, if the kernel was ever told of it.
    pub(crate) fn ino(&self, name: &str, kind: Kind) -> Option<u64> {
        self.by_name
            .get(name)
            .map(|id| DB_BASE + id * KIND_SLOTS + kind as u64)
    }
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn store_errno(db: &str, what: &str, e: StoreError) -> Errno {
    tracing::error!(db, error = %e, "{what} failed");
    match e {
        StoreError::InvalidName { .. } => Errno::EINVAL,
        StoreError::Io { source, .. } => errno(&source),
        _ => Errno::EIO,
    }
}

impl LiteFs {
    fn new(
        store: Arc<Store>,
        ids: Arc<RwLock<Ids>>,
        passthrough: bool,
        gates: Arc<std::sync::OnceLock<Arc<crate::halt::Gates>>>,
    ) -> LiteFs {
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        LiteFs {
            store,
            ids,
            handles: RwLock::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            dirty_dirs: Default::default(),
            db_handles: Default::default(),
            passthrough_wanted: passthrough,
            passthrough: AtomicBool::new(false),
            backing: Default::default(),
            uid,
            gid,
            gates,
            gated: Default::default(),
            point: None,
        }
    }

    fn id_of(&self, name: &str) -> u64 {
        if let Some(&id) = self
            .ids
            .read()
            .ok()
            .and_then(|i| i.by_name.get(name).copied())
            .as_ref()
        {
            return id;
        }
        let Ok(mut ids) = self.ids.write() else {
            return u64::MAX;
        };
        if let Some(&id) = ids.by_name.get(name) {
            return id;
        }
        let id = ids.names.len() as u64;
        ids.names.push(name.to_owned());
        ids.by_name.insert(name.to_owned(), id);
        id
    }

    fn ino(&self, name: &str, kind: Kind) -> u64 {
        DB_BASE + self.id_of(name) * KIND_SLOTS + kind as u64
    }

    /// The name (database or directory path) and kind behind an inode.
    fn name_of(&self, ino: u64) -> Result<(String, Kind), Errno> {
        if ino < DB_BASE {
            return Err(Errno::ENOENT);
        }
        let id = (ino - DB_BASE) / KIND_SLOTS;
        let kind = Kind::from_index((ino - DB_BASE) % KIND_SLOTS).ok_or(Errno::ENOENT)?;
        let name = self
            .ids
            .read()
            .ok()
            .and_then(|i| i.names.get(id as usize).cloned())
            .ok_or(Errno::ENOENT)?;
        Ok((name, kind))
    }

    fn resolve(&self, ino: u64) -> Result<(Arc<Db>, Kind), Errno> {
        let (name, kind) = self.name_of(ino)?;
        if kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        let db = self.store.db(&name).ok_or(Errno::ENOENT)?;
        Ok((db, kind))
    }

    /// The path of a directory inode (`""` for the root).
    fn dir_path(&self, ino: u64) -> Result<String, Errno> {
        if ino == ROOT {
            return Ok(String::new());
        }
        match self.name_of(ino)? {
            (path, Kind::Dir) if self.store.dir_exists(&path) => Ok(path),
            (_, Kind::Dir) => Err(Errno::ENOENT),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The full path of `name` inside directory `parent`.
    fn child(&self, parent: u64, name: &OsStr) -> Result<String, Errno> {
        // As on any Linux filesystem: a component of at most NAME_MAX
        // bytes, and (ours) a whole path in the mount of at most PATH_MAX-1.
        // The kernel passes FUSE components of up to 1024 bytes.
        if name.len() > litefs_store::MAX_COMPONENT_LEN {
            return Err(Errno::ENAMETOOLONG);
        }
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        if name.contains('/') {
            return Err(Errno::EINVAL);
        }
        let path = join(&self.dir_path(parent)?, name);
        if path.len() > litefs_store::MAX_NAME_LEN {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(path)
    }

    /// On a replica holding the halt lock on `db`: returns once every
    /// commit captured so far is on the primary, so a client's commit is
    /// acknowledged only when the primary has it (as on the primary, where
    /// a commit returns once it is in an LTX file).
    fn forwarded(&self, db: &Db) {
        if !db.halted() || !self.is_replica() {
            return;
        }
        if let Some(r) = self.store.role().halt_remote() {
            r.wait_sent(db.name());
        }
    }

    /// A client's open of a replica's `<db>-lock`: a gate holds the halt
    /// byte before the open returns (see `halt.rs`).
    fn gate_lock_open(&self, ino: u64, fh: u64, own: FopenFlags) {
        if !own.is_empty() || !self.is_replica() {
            return;
        }
        let Ok((name, Kind::Lock)) = self.name_of(ino) else {
            return;
        };
        let Some(gates) = self.gates.get() else {
            return;
        };
        if let Ok(mut g) = self.gated.lock() {
            g.insert(fh, name.clone());
        }
        gates.opened(&name);
    }

    /// Whether `db` is read-only here: on a replica, unless this node holds
    /// the primary's halt lock on it.
    fn read_only(&self, db: &Db) -> bool {
        self.is_replica() && !db.halted()
    }

    /// Whether this node is a read-only replica: every write path refuses.
    fn is_replica(&self) -> bool {
        !self.store.role().is_primary()
    }

    /// Refuses a write on a replica: one warning naming the database, the
    /// operation and the primary, and `EROFS`. Counted in the database's
    /// stats when it exists.
    fn refuse(&self, db: &str, op: &str) -> Errno {
        if let Some(d) = self.store.db(db) {
            d.stats().count_refused_write();
        }
        let primary = self
            .store
            .role()
            .primary()
            .map_or_else(|| "unknown".to_owned(), |p| p.hostname);
        tracing::warn!(db, op, primary = %primary, "write refused: this node is a read-only replica");
        Errno::EROFS
    }

    /// Refuses to create a rollback journal on a replica. `EACCES`, not
    /// `EROFS`: SQLite turns `EACCES` on a new journal into
    /// `SQLITE_READONLY_DIRECTORY` ("attempt to write a readonly
    /// database"), while any other error makes it retry the open read-only,
    /// fail with `ENOENT` and report "unable to open database file". LiteFS
    /// answers `EACCES` too.
    fn refuse_journal(&self, db: &str) -> Errno {
        self.refuse(db, "create journal");
        Errno::EACCES
    }

    /// The `.primary` file's content: present only on a replica that knows
    /// its primary.
    fn primary_content(&self) -> Option<String> {
        self.store.role().primary_file()
    }

    fn primary_attr(&self, content: &str) -> FileAttr {
        self.file_attr(PRIMARY, content.len() as u64, UNIX_EPOCH, 0o444)
    }

    fn lag_attr(&self) -> FileAttr {
        let len = self.store.role().lag_file().len() as u64;
        self.file_attr(LAG, len, UNIX_EPOCH, 0o444)
    }

    /// The generation the kernel gets with `db`'s `kind` file: a side
    /// file's (`-wal`, `-shm`, `-journal`) from its backing file, so that
    /// one removed and created again is a new inode to the kernel even
    /// while the removed one is still open (see `backing.rs`); 0 for the
    /// rest.
    fn generation(db: &Db, kind: Kind) -> Generation {
        match kind {
            Kind::Wal | Kind::Shm | Kind::Journal => Self::backing(db, kind)
                .map_or(Generation(0), |p| Generation(side_file_generation(&p))),
            _ => Generation(0),
        }
    }

    fn backing(db: &Db, kind: Kind) -> Option<PathBuf> {
        let p = db.paths();
        match kind {
            Kind::Database => Some(p.database.clone()),
            Kind::Journal => Some(p.journal.clone()),
            Kind::Wal => Some(p.wal.clone()),
            Kind::Shm => Some(p.shm.clone()),
            Kind::Pos | Kind::Lock | Kind::Dir => None,
        }
    }

    /// Attributes of a generated file (`.lag`, `.primary`): owned by the
    /// daemon's user.
    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime, perm: u16) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: FileType::RegularFile,
            perm,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The root: mode and owner of the mount point directory (0755 and the
    /// daemon's user if it could not be opened), times of `dbs/` in the
    /// data directory, which changes as databases come and go.
    fn root_attr(&self) -> FileAttr {
        let data = std::fs::metadata(self.store.dbs_dir()).ok();
        let mut a = match &data {
            Some(md) => md_attr(ROOT, md),
            None => self.file_attr(ROOT, 0, UNIX_EPOCH, 0o755),
        };
        match self.point.as_ref().and_then(|f| f.metadata().ok()) {
            Some(p) => {
                a.perm = (p.mode() & 0o7777) as u16;
                a.uid = p.uid();
                a.gid = p.gid();
            }
            None => {
                a.perm = 0o755;
                a.uid = self.uid;
                a.gid = self.gid;
            }
        }
        as_dir(a)
    }

    /// A directory of the mount (`path`; `""` is the root): the mode,
    /// owner and times of its marker directory in `dbs/`. A replica shows
    /// them as they are (unlike a database's): creating in it is refused
    /// by this process, while readers must be able to create `-shm`.
    fn dir_attr(&self, ino: u64, path: &str) -> FileAttr {
        if ino == ROOT || path.is_empty() {
            return self.root_attr();
        }
        match std::fs::metadata(self.store.dir_marker(path)) {
            Ok(md) => as_dir(md_attr(ino, &md)),
            // A directory whose marker was lost (the store recreates it
            // from the databases in it): as a new one would be.
            Err(_) => FileAttr {
                ino: INodeNo(ino),
                perm: 0o755,
                uid: self.uid,
                gid: self.gid,
                ..self.root_attr()
            },
        }
    }

    /// The attributes of `db`'s `kind` file. Data files show their backing
    /// file's mode, owner and times (see [`md_attr`]); on a replica a
    /// database shows its mode without write bits, since it is read-only
    /// whatever its mode. `-pos` is read-only (0444) and `-lock` takes the
    /// database's read and write bits, both with its owner.
    fn attr_of(&self, db: &Db, kind: Kind) -> Result<FileAttr, Errno> {
        let ino = self.ino(db.name(), kind);
        match kind {
            Kind::Pos => {
                let (_, ts) = db.pos_and_timestamp();
                let mtime = UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64);
                let mut a = self.file_attr(ino, db.pos_file().len() as u64, mtime, 0o444);
                if let Ok(md) = std::fs::metadata(&db.paths().database) {
                    a.uid = md.uid();
                    a.gid = md.gid();
                }
                Ok(a)
            }
            Kind::Lock => Ok(match std::fs::metadata(&db.paths().database) {
                Ok(md) => FileAttr {
                    size: 0,
                    blocks: 0,
                    perm: (md.mode() & 0o666) as u16,
                    ..md_attr(ino, &md)
                },
                Err(_) => self.file_attr(ino, 0, UNIX_EPOCH, 0o666),
            }),
            Kind::Dir => Ok(self.dir_attr(ino, db.name())),
            _ => {
                let path = Self::backing(db, kind).ok_or(Errno::ENOENT)?;
                let md = std::fs::metadata(&path).map_err(|e| errno(&e))?;
                let mut a = md_attr(ino, &md);
                if kind == Kind::Database && self.read_only(db) {
                    a.perm &= !0o222;
                }
                Ok(a)
            }
        }
    }

    /// The attributes of `name` in directory `parent`, and the generation
    /// the kernel gets with them (see [`LiteFs::generation`]).
    fn lookup_child(&self, parent: u64, name: &OsStr) -> Result<(FileAttr, Generation), Errno> {
        if parent == ROOT && name == ".lag" {
            return Ok((self.lag_attr(), Generation(0)));
        }
        if parent == ROOT && name == ".primary" {
            let content = self.primary_content().ok_or(Errno::ENOENT)?;
            return Ok((self.primary_attr(&content), Generation(0)));
        }
        let path = self.child(parent, name)?;
        if self.store.dir_exists(&path) {
            let attr = self.dir_attr(self.ino(&path, Kind::Dir), &path);
            return Ok((attr, Generation(0)));
        }
        let (dbname, kind) = parse(&path);
        let db = self.store.db(dbname).ok_or(Errno::ENOENT)?;
        if matches!(kind, Kind::Pos | Kind::Lock) && !db.paths().database.exists() {
            return Err(Errno::ENOENT);
        }
        Ok((self.attr_of(&db, kind)?, Self::generation(&db, kind)))
    }

    fn add_handle(
        &self,
        db: Arc<Db>,
        kind: Kind,
        file: Option<File>,
        backing: Option<Arc<BackingId>>,
    ) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        if kind == Kind::Database {
            if let Ok(mut n) = self.db_handles.lock() {
                *n.entry(db.name().to_owned()).or_default() += 1;
            }
        }
        if let Ok(mut h) = self.handles.write() {
            h.insert(
                fh,
                Arc::new(Handle {
                    db,
                    kind,
                    file,
                    backing,
                }),
            );
        }
        fh
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        self.handles
            .read()
            .ok()
            .and_then(|h| h.get(&fh.0).cloned())
            .ok_or(Errno::EBADF)
    }

    /// Whether opens of `kind` hand their I/O to the kernel: the WAL, the
    /// WAL index and the rollback journal, whose commits capture recovers
    /// from the files at barriers. Database writes stay in the daemon:
    /// capture must see which pages a rollback-mode transaction wrote (the
    /// journal misses reused freelist pages) and checkpoints are barriers.
    fn wants_passthrough(&self, kind: Kind) -> bool {
        matches!(kind, Kind::Wal | Kind::Shm | Kind::Journal)
            && self.passthrough.load(Ordering::Relaxed)
    }

    /// The backing registration of inode `ino` opened on `file`: the live
    /// one if an open of the same file holds it (the kernel refuses a
    /// second backing file per inode), else a new one from `register`;
    /// never a removed file's (see `backing.rs`). A failed registration
    /// turns passthrough off for the rest of the mount and the open
    /// continues classically.
    fn backing_for(
        &self,
        ino: u64,
        file: &File,
        register: impl FnOnce() -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        match self.backing.get_or_register(ino, file, register) {
            Ok(b) => Some(b),
            Err(e) => {
                if self.passthrough.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "registering a backing file for FUSE passthrough failed; using classic FUSE I/O from now on");
                }
                None
            }
        }
    }

    /// How an open of inode `ino` (`db`'s `kind` file) with `flags` does
    /// its I/O. On a replica, WAL and journal I/O must reach this process
    /// (passthrough writes would bypass the refusal), so they go the
    /// classic way, with `FOPEN_DIRECT_IO` so that they neither use a page
    /// cache nor keep the kernel from granting passthrough to opens made
    /// after this node becomes primary. The kernel refuses a classic open
    /// of an inode that has passthrough opens (left from when this node was
    /// primary): then a read-only open shares the passthrough, and one for
    /// writing is refused (SQLite retries read-only).
    fn io_for(&self, ino: u64, db: &Db, kind: Kind, flags: i32) -> Result<Io, Errno> {
        if !self.wants_passthrough(kind) {
            return Ok(Io::Classic { direct: false });
        }
        if kind == Kind::Shm || !self.is_replica() {
            return Ok(Io::Passthrough);
        }
        let in_passthrough = self.backing.in_use(ino);
        match (in_passthrough, flags & libc::O_ACCMODE == libc::O_RDONLY) {
            (false, _) => Ok(Io::Classic { direct: true }),
            (true, true) => Ok(Io::Passthrough),
            (true, false) => Err(self.refuse(db.name(), "open for writing")),
        }
    }

    /// Opens the backing file of `kind` for an open with `flags`: for
    /// passthrough always read-write, since one backing file serves every
    /// open of the inode (the kernel still enforces each open's mode).
    fn open_for(&self, db: &Db, kind: Kind, flags: i32, io: Io) -> Result<Option<File>, Errno> {
        let Some(path) = Self::backing(db, kind) else {
            return Ok(None);
        };
        let flags = if io == Io::Passthrough {
            libc::O_RDWR
        } else {
            flags
        };
        Self::openbacking(&path, flags).map(Some)
    }

    /// Finishes an open: registers the handle, and for passthrough the
    /// backing file, before the client can do any I/O through it.
    fn finish_open(
        &self,
        ino: u64,
        db: Arc<Db>,
        kind: Kind,
        file: Option<File>,
        io: Io,
        register: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> (u64, Option<Arc<BackingId>>) {
        let backing = match &file {
            Some(f) if io == Io::Passthrough => self.backing_for(ino, f, || register(f)),
            _ => None,
        };
        if backing.is_some() && kind == Kind::Wal {
            if let Err(e) = db.wal_handle(true) {
                tracing::error!(db = db.name(), error = %e, "WAL open");
            }
        }
        let fh = self.add_handle(db, kind, file, backing.clone());
        (fh, backing)
    }

    /// Opens an existing backing file (creating one is `create_backing`).
    fn openbacking(path: &Path, flags: i32) -> Result<File, Errno> {
        let acc = flags & libc::O_ACCMODE;
        OpenOptions::new()
            .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
            .custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC))
            .open(path)
            .map_err(|e| errno(&e))
    }

    /// Creates the backing file for a `create` (or, without `O_EXCL`,
    /// opens the one that exists); a file it makes gets `meta`'s mode and
    /// owner (explicitly: this process's own umask must not apply).
    fn create_backing(path: &Path, flags: i32, meta: &NewMeta) -> Result<File, Errno> {
        let acc = flags & libc::O_ACCMODE;
        let made = OpenOptions::new()
            .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(true)
            .create_new(true)
            .mode(meta.perm & 0o777)
            .custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC))
            .open(path);
        match made {
            Ok(f) => match meta.apply_file(&f) {
                Ok(()) => Ok(f),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "setting a new file's mode and owner failed");
                    let _ = std::fs::remove_file(path);
                    Err(errno(&e))
                }
            },
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists && flags & libc::O_EXCL == 0 =>
            {
                Self::openbacking(path, flags)
            }
            Err(e) => Err(errno(&e)),
        }
    }

    fn do_write(&self, h: &Handle, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let file = h.file.as_ref().ok_or(Errno::EIO)?;
        if h.kind != Kind::Shm && self.read_only(&h.db) {
            return Err(self.refuse(h.db.name(), "write"));
        }
        if h.kind == Kind::Journal
            && offset == 0
            && !data.starts_with(&litefs_sqlite::JOURNAL_MAGIC)
        {
            // Zeroing the header (PERSIST mode) finalises the journal.
            h.db.journal_finalizing()
                .map_err(|e| store_errno(h.db.name(), "journal commit", e))?;
        }
        if h.kind == Kind::Database {
            h.db.database_writing(offset, data.len())
                .map_err(|e| store_errno(h.db.name(), "database write", e))?;
        }
        file.write_all_at(data, offset).map_err(|e| errno(&e))?;
        if let Some(k) = h.kind.file_kind() {
            h.db.stats().count_write(k);
        }
        if h.kind == Kind::Wal {
            h.db.wal_written(offset, data.len())
                .map_err(|e| store_errno(h.db.name(), "WAL commit", e))?;
        }
        Ok(data.len() as u32)
    }

    fn do_truncate(&self, db: &Db, kind: Kind, size: u64) -> Result<(), Errno> {
        let path = Self::backing(db, kind).ok_or(Errno::EACCES)?;
        if kind != Kind::Shm && self.read_only(db) {
            // Setting the size it already has changes nothing.
            return match std::fs::metadata(&path) {
                Ok(md) if md.len() == size => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Errno::ENOENT),
                _ => Err(self.refuse(db.name(), "truncate")),
            };
        }
        if matches!(kind, Kind::Wal | Kind::Database) {
            db.sync_position()
                .map_err(|e| store_errno(db.name(), "WAL capture", e))?;
        }
        if kind == Kind::Journal && size == 0 {
            db.journal_finalizing()
                .map_err(|e| store_errno(db.name(), "journal commit", e))?;
        }
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| errno(&e))?;
        f.set_len(size).map_err(|e| errno(&e))?;
        if kind == Kind::Wal && size == 0 {
            db.wal_reset()
                .map_err(|e| store_errno(db.name(), "WAL reset", e))?;
        }
        Ok(())
    }

    fn dir_changed(&self, db: &Db) {
        if let Ok(mut d) = self.dirty_dirs.lock() {
            d.insert(db.paths().dir.clone());
        }
    }

    fn do_fsyncdir(&self) -> Result<(), Errno> {
        let dirs: Vec<PathBuf> = self
            .dirty_dirs
            .lock()
            .map(|mut d| d.drain().collect())
            .unwrap_or_default();
        for dir in dirs {
            File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| errno(&e))?;
        }
        Ok(())
    }

    fn do_unlink(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let path = self.child(parent, name)?;
        if self.store.dir_exists(&path) {
            return Err(Errno::EISDIR);
        }
        let (dbname, kind) = parse(&path);
        let db = self.store.db(dbname).ok_or(Errno::ENOENT)?;
        if let Some(file) = Self::backing(&db, kind).filter(|_| self.read_only(&db)) {
            // SQLite's last connection removes the WAL index and the WAL,
            // which on a replica is empty: nothing is lost, so a replica
            // lets it. (The index is never empty: SQLite removes it as it
            // is, and rebuilds it from the WAL when it is missing.)
            match std::fs::metadata(file) {
                Ok(_) if kind == Kind::Shm => {}
                Ok(md) if md.len() == 0 && kind == Kind::Wal => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Errno::ENOENT),
                _ => return Err(self.refuse(dbname, "unlink")),
            }
        }
        self.dir_changed(&db);
        match kind {
            Kind::Pos | Kind::Lock | Kind::Dir => Err(Errno::EPERM),
            Kind::Database => db.drop_files().map_err(|e| store_errno(dbname, "drop", e)),
            Kind::Journal => {
                db.journal_finalizing()
                    .map_err(|e| store_errno(dbname, "journal commit", e))?;
                std::fs::remove_file(&db.paths().journal).map_err(|e| errno(&e))
            }
            Kind::Wal => {
                db.sync_position()
                    .map_err(|e| store_errno(dbname, "WAL capture", e))?;
                std::fs::remove_file(&db.paths().wal).map_err(|e| errno(&e))?;
                db.wal_reset()
                    .map_err(|e| store_errno(dbname, "WAL reset", e))
            }
            Kind::Shm => {
                std::fs::remove_file(&db.paths().shm).map_err(|e| errno(&e))?;
                db.shm_removed();
                Ok(())
            }
        }
    }

    fn do_create(
        &self,
        parent: u64,
        name: &OsStr,
        flags: i32,
        meta: &NewMeta,
    ) -> Result<Created, Errno> {
        let path = self.child(parent, name)?;
        if self.store.dir_exists(&path) {
            return Err(Errno::EISDIR);
        }
        let (dbname, kind) = parse(&path);
        if matches!(kind, Kind::Pos | Kind::Lock | Kind::Dir) {
            return Err(Errno::EPERM);
        }
        if self.is_replica() {
            let halted = self.store.db(dbname).is_some_and(|d| d.halted());
            match kind {
                Kind::Database if !halted => return Err(self.refuse(dbname, "create database")),
                Kind::Journal if !halted => return Err(self.refuse_journal(dbname)),
                _ => {}
            }
        }
        let db = match kind {
            Kind::Database => self
                .store
                .create_db(dbname)
                .map_err(|e| store_errno(dbname, "create", e))?,
            _ => self.store.db(dbname).ok_or(Errno::ENOENT)?,
        };
        let io = self.io_for(self.ino(db.name(), kind), &db, kind, flags)?;
        self.dir_changed(&db);
        let file = match Self::backing(&db, kind) {
            Some(path) => {
                let flags = if io == Io::Passthrough {
                    libc::O_RDWR | (flags & libc::O_EXCL)
                } else {
                    flags
                };
                Some(Self::create_backing(&path, flags, meta)?)
            }
            None => None,
        };
        let attr = self.attr_of(&db, kind)?;
        Ok(Created {
            attr,
            db,
            kind,
            file,
            io,
        })
    }

    fn readdir_entries(&self, ino: u64) -> Result<Vec<(u64, FileType, String)>, Errno> {
        let path = self.dir_path(ino)?;
        let mut out = vec![
            (ino, FileType::Directory, ".".to_owned()),
            (ROOT, FileType::Directory, "..".to_owned()),
        ];
        if ino == ROOT {
            out.push((LAG, FileType::RegularFile, ".lag".to_owned()));
            if self.primary_content().is_some() {
                out.push((PRIMARY, FileType::RegularFile, ".primary".to_owned()));
            }
        }
        let listing = self.store.list(&path);
        for d in listing.dirs {
            out.push((
                self.ino(&join(&path, &d), Kind::Dir),
                FileType::Directory,
                d,
            ));
        }
        for db in listing.dbs {
            if !db.paths().database.exists() {
                continue;
            }
            let base = db.name().rsplit('/').next().unwrap_or(db.name()).to_owned();
            for kind in KINDS {
                // `-pos` and `-lock` are virtual: reachable by name, never
                // listed, so `cp app.db* backup/` and the like see only
                // SQLite's own files.
                let present = match kind {
                    Kind::Database => true,
                    Kind::Pos | Kind::Lock | Kind::Dir => false,
                    _ => Self::backing(&db, kind).is_some_and(|p| p.exists()),
                };
                if present {
                    out.push((
                        self.ino(db.name(), kind),
                        FileType::RegularFile,
                        format!("{base}{}", kind.suffix()),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn do_mkdir(&self, parent: u64, name: &OsStr, meta: &NewMeta) -> Result<FileAttr, Errno> {
        let path = self.child(parent, name)?;
        if self.is_replica() {
            return Err(self.refuse(&path, "mkdir"));
        }
        if self
            .store
            .db(&path)
            .is_some_and(|d| d.paths().database.exists())
        {
            return Err(Errno::EEXIST);
        }
        self.store
            .mkdir(&path)
            .map_err(|e| store_errno(&path, "mkdir", e))?;
        if let Err(e) = meta.apply_path(&self.store.dir_marker(&path)) {
            tracing::error!(dir = path, error = %e, "setting a new directory's mode and owner failed");
            let _ = self.store.rmdir(&path);
            return Err(errno(&e));
        }
        Ok(self.dir_attr(self.ino(&path, Kind::Dir), &path))
    }

    /// The mode and owner a file or directory created in `parent` gets, as
    /// on a local filesystem: the mode asked for less the umask (which the
    /// kernel has normally applied already; applying it twice changes
    /// nothing), owned by the caller, with the group of a set-group-ID
    /// parent (whose bit a new directory inherits). Only a daemon running
    /// as root can give files away; otherwise they stay its user's.
    fn new_meta(&self, req: &Request, parent: u64, mode: u32, umask: u32, dir: bool) -> NewMeta {
        let mut perm = mode & !umask & 0o7777;
        let mut gid = req.gid();
        if let Ok(path) = self.dir_path(parent) {
            let p = self.dir_attr(parent, &path);
            if u32::from(p.perm) & libc::S_ISGID != 0 {
                gid = p.gid;
                if dir {
                    perm |= libc::S_ISGID;
                }
            }
        }
        NewMeta {
            perm,
            owner: (self.uid == 0).then_some((req.uid(), gid)),
        }
    }

    /// `setattr`: the size as before, then owner, mode and times on the
    /// real file or directory behind `ino` (the kernel has checked that the
    /// caller may: `default_permissions`). A replica allows them too: they
    /// stay local (LTX carries no modes). The root's mode and owner are the
    /// mount point's, its times those of `dbs/`.
    fn do_setattr(&self, ino: u64, size: Option<u64>, ch: &Change) -> Result<FileAttr, Errno> {
        match ino {
            ROOT => {
                if size.is_some() {
                    return Err(Errno::EISDIR);
                }
                if ch.uid.is_some() || ch.gid.is_some() || ch.mode.is_some() {
                    let f = self.point.as_ref().ok_or(Errno::EPERM)?;
                    if ch.uid.is_some() || ch.gid.is_some() {
                        std::os::unix::fs::fchown(f, ch.uid, ch.gid).map_err(|e| errno(&e))?;
                    }
                    if let Some(m) = ch.mode {
                        f.set_permissions(std::fs::Permissions::from_mode(m & 0o7777))
                            .map_err(|e| errno(&e))?;
                    }
                }
                if ch.atime.is_some() || ch.mtime.is_some() {
                    utimens(self.store.dbs_dir(), ch.atime, ch.mtime)?;
                }
                return Ok(self.root_attr());
            }
            LAG | PRIMARY => return Err(Errno::EPERM),
            _ => {}
        }
        if let Ok((path, Kind::Dir)) = self.name_of(ino) {
            if !self.store.dir_exists(&path) {
                return Err(Errno::ENOENT);
            }
            if size.is_some() {
                return Err(Errno::EISDIR);
            }
            ch.apply_path(&self.store.dir_marker(&path))?;
            return Ok(self.dir_attr(ino, &path));
        }
        let (db, kind) = self.resolve(ino)?;
        if let Some(size) = size {
            self.do_truncate(&db, kind, size)?;
        }
        if !ch.is_empty() {
            // `-pos` and `-lock` have no file of their own.
            let path = Self::backing(&db, kind).ok_or(Errno::EPERM)?;
            ch.apply_path(&path)?;
        }
        self.attr_of(&db, kind)
    }

    fn do_rmdir(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let path = self.child(parent, name)?;
        if self.is_replica() {
            return Err(self.refuse(&path, "rmdir"));
        }
        if !self.store.dir_exists(&path) {
            return Err(if self.store.db(&path).is_some() {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            });
        }
        self.store
            .rmdir(&path)
            .map_err(|e| store_errno(&path, "rmdir", e))
    }
}

impl Filesystem for LiteFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if !self.passthrough_wanted {
            tracing::info!("FUSE passthrough off by configuration; using classic FUSE I/O");
            return Ok(());
        }
        match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
            Ok(()) => {
                // 2: the data directory may itself be on a stacked
                // filesystem (overlayfs in a container).
                if let Err(max) = config.set_max_stack_depth(2) {
                    let _ = config.set_max_stack_depth(max);
                }
                self.passthrough.store(true, Ordering::Relaxed);
                tracing::info!("FUSE passthrough on for WAL, WAL-index and journal I/O");
            }
            Err(_) => tracing::warn!(
                "kernel lacks FUSE passthrough (needs Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH); \
                 using classic FUSE I/O"
            ),
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_child(parent.0, name) {
            Ok((attr, _)) if attr.ino.0 == PRIMARY => reply.entry(&NO_TTL, &attr, Generation(0)),
            Ok((attr, generation)) => reply.entry(&TTL, &attr, generation),
            // SQLite looks for a hot journal and a WAL before every read
            // transaction. Side files only come and go through this mount
            // (creat, unlink), which updates the kernel's cache, so the
            // kernel may remember their absence too (inode 0: a negative
            // entry) instead of asking each time.
            Err(e) if e == Errno::ENOENT && is_side_file(name) => {
                let attr = self.file_attr(0, 0, UNIX_EPOCH, 0);
                reply.entry(&TTL, &attr, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == PRIMARY {
            return match self.primary_content() {
                Some(c) => reply.attr(&NO_TTL, &self.primary_attr(&c)),
                None => reply.error(Errno::ENOENT),
            };
        }
        let r = match ino.0 {
            ROOT => Ok(self.root_attr()),
            LAG => Ok(self.lag_attr()),
            _ => match self.name_of(ino.0) {
                Ok((path, Kind::Dir)) if self.store.dir_exists(&path) => {
                    Ok(self.dir_attr(ino.0, &path))
                }
                Ok((_, Kind::Dir)) => Err(Errno::ENOENT),
                _ => self
                    .resolve(ino.0)
                    .and_then(|(db, kind)| self.attr_of(&db, kind)),
            },
        };
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let meta = self.new_meta(req, parent.0, mode, umask, true);
        match self.do_mkdir(parent.0, name, &meta) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ch = Change {
            mode,
            uid,
            gid,
            atime,
            mtime,
        };
        match self.do_setattr(ino.0, size, &ch) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    /// A rename cannot be replicated (LTX has no record for it), so the
    /// mount answers as one filesystem does to a rename onto another:
    /// `EXDEV`, on which `mv`, Tcl and `shutil.move` copy and delete; a
    /// database moved that way is a new database and a deleted one on
    /// every node. (LiteFS: `ENOSYS`, and `mv` fails.)
    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EXDEV);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.do_unlink(parent.0, name);
        if r.is_ok() {
            if let Ok(path) = self.child(parent.0, name) {
                if let Some(db) = self.store.db(parse(&path).0) {
                    self.forwarded(&db);
                }
            }
        }
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == LAG || (ino.0 == PRIMARY && self.primary_content().is_some()) {
            // Generated content: never from the page cache.
            return reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        }
        let r = self.resolve(ino.0).and_then(|(db, kind)| {
            if kind == Kind::Journal
                && flags.0 & (libc::O_CREAT | libc::O_TRUNC) != 0
                && self.read_only(&db)
            {
                return Err(self.refuse_journal(db.name()));
            }
            let io = self.io_for(ino.0, &db, kind, flags.0)?;
            let file = self.open_for(&db, kind, flags.0, io)?;
            let cache = open_flags(io, file.is_some());
            let (fh, backing) =
                self.finish_open(ino.0, db, kind, file, io, |f| reply.open_backing(f));
            Ok((fh, cache, backing))
        });
        let own = own_open(req);
        if let Ok((fh, _, _)) = &r {
            self.gate_lock_open(ino.0, *fh, own);
        }
        match r {
            Ok((fh, _, Some(b))) => reply.opened_passthrough(FileHandle(fh), own, &b),
            Ok((fh, cache, None)) => reply.opened(FileHandle(fh), cache | own),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let meta = self.new_meta(req, parent.0, mode, umask, false);
        let Created {
            attr,
            db,
            kind,
            file,
            io,
        } = match self.do_create(parent.0, name, flags, &meta) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let ino = attr.ino.0;
        let cache = open_flags(io, file.is_some());
        let generation = Self::generation(&db, kind);
        let (fh, backing) = self.finish_open(ino, db, kind, file, io, |f| reply.open_backing(f));
        match backing {
            Some(b) => reply.created_passthrough(
                &TTL,
                &attr,
                generation,
                FileHandle(fh),
                FopenFlags::empty(),
                &b,
            ),
            None => reply.created(&TTL, &attr, generation, FileHandle(fh), cache),
        }
    }

    /// `mknod` of a regular file is a `create` without the open; anything
    /// else (devices, FIFOs, sockets) has no place in the mount.
    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let meta = self.new_meta(req, parent.0, mode, umask, false);
        match self.do_create(parent.0, name, libc::O_WRONLY | libc::O_EXCL, &meta) {
            Ok(c) => reply.entry(&TTL, &c.attr, Self::generation(&c.db, c.kind)),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match ino.0 {
            LAG => {
                let lag = self.store.role().lag_file();
                return reply.data(slice_at(lag.as_bytes(), offset, size));
            }
            PRIMARY => {
                let primary = self.primary_content().unwrap_or_default();
                return reply.data(slice_at(primary.as_bytes(), offset, size));
            }
            _ => {}
        }
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        match (&h.file, h.kind) {
            (None, Kind::Pos) => {
                // A barrier: the position includes every published commit.
                if let Err(e) = h.db.sync_position() {
                    return reply.error(store_errno(h.db.name(), "WAL capture", e));
                }
                reply.data(slice_at(h.db.pos_file().as_bytes(), offset, size))
            }
            (None, _) => reply.data(&[]),
            (Some(f), _) => {
                let mut buf = vec![0u8; size as usize];
                let mut n = 0;
                while n < buf.len() {
                    match f.read_at(&mut buf[n..], offset + n as u64) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return reply.error(errno(&e)),
                    }
                }
                reply.data(&buf[..n]);
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.handle(fh).and_then(|h| {
            let n = self.do_write(&h, offset, data)?;
            self.forwarded(&h.db);
            Ok(n)
        }) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // SQLite closes the journal at the end of each transaction; with
        // its writes handed to the kernel, this is where a PERSIST commit
        // (a zeroed header) is seen. `flush` runs synchronously in close().
        let r = match self.handle(fh) {
            Ok(h) if h.kind == Kind::Journal => {
                h.db.journal_closed()
                    .map_err(|e| store_errno(h.db.name(), "journal commit", e))
            }
            _ => Ok(()),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let removed = self.handles.write().ok().and_then(|mut h| h.remove(&fh.0));
        let gated = self.gated.lock().ok().and_then(|mut g| g.remove(&fh.0));
        if let (Some(db), Some(gates)) = (gated, self.gates.get()) {
            gates.closed(&db);
        }
        if let Some(h) = removed
            .as_ref()
            .filter(|h| h.kind == Kind::Wal && h.backing.is_some())
        {
            if let Err(e) = h.db.wal_handle(false) {
                tracing::error!(db = h.db.name(), error = %e, "capture at WAL close failed");
            }
        }
        if let Some(h) = removed.filter(|h| h.kind == Kind::Database) {
            let last = self
                .db_handles
                .lock()
                .is_ok_and(|mut n| match n.get_mut(h.db.name()) {
                    Some(c) if *c > 1 => {
                        *c -= 1;
                        false
                    }
                    _ => {
                        n.remove(h.db.name());
                        true
                    }
                });
            if last {
                if let Err(e) = h.db.database_synced() {
                    tracing::error!(db = h.db.name(), error = %e, "capture at close failed");
                }
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.handle(fh).and_then(|h| {
            if let Some(f) = &h.file {
                if datasync {
                    f.sync_data()
                } else {
                    f.sync_all()
                }
                .map_err(|e| errno(&e))?;
            }
            if h.kind == Kind::Database {
                h.db.database_synced()
                    .map_err(|e| store_errno(h.db.name(), "capture at fsync", e))?;
            }
            self.forwarded(&h.db);
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // Not supported (posix_fallocate falls back to writes), except
        // that a replica says why it will not change the file.
        match self.resolve(ino.0) {
            Ok((db, Kind::Database | Kind::Journal | Kind::Wal)) if self.read_only(&db) => {
                reply.error(self.refuse(db.name(), "fallocate"))
            }
            _ => reply.error(Errno::ENOSYS),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.dir_path(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.readdir_entries(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    // No extended attributes. Answering ENOSYS makes the kernel stop
    // asking: every write checks `security.capability` otherwise, a round
    // trip per write even when the write itself bypasses this process
    // (passthrough).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.do_fsyncdir() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Report the data directory's filesystem: that is where the bytes go.
        let Ok(path) = std::ffi::CString::new(self.store.dbs_dir().as_os_str().as_encoded_bytes())
        else {
            return reply.error(Errno::EINVAL);
        };
        // SAFETY: `path` is a valid NUL-terminated string and `st` a plain C
        // struct that statvfs fills in; both outlive the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(errno(&std::io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            255,
            st.f_frsize as u32,
        );
    }
}

/// A file `create` made and opened.
struct Created {
    attr: FileAttr,
    db: Arc<Db>,
    kind: Kind,
    file: Option<File>,
    io: Io,
}

/// How an open's I/O is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// The kernel reads and writes the backing file itself.
    Passthrough,
    /// Every read and write reaches this process; `direct`: without the
    /// kernel's page cache.
    Classic { direct: bool },
}

/// `FOPEN_NOFLUSH` for a file this process opens through its own mount (a
/// fence's lock file), else nothing. Closing a mount file sends a FLUSH
/// and waits for the answer; a daemon killed with SIGKILL closes its files
/// before its `/dev/fuse` descriptors are released, so it would wait for
/// itself forever, holding the mount. Without FLUSH its close never waits.
/// (Such files are never written, so a FLUSH has nothing to do.)
fn own_open(req: &Request) -> FopenFlags {
    // The request carries the opening thread's ID; a thread of this process
    // is listed under /proc/self/task.
    let tid = req.pid();
    if tid != 0 && std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
        FopenFlags::FOPEN_NOFLUSH
    } else {
        FopenFlags::empty()
    }
}

/// The open reply's flags when the open does not end up in passthrough
/// (asked for and refused by the kernel counts as classic): cached for
/// backing files unless `io` says otherwise; generated files never are.
fn open_flags(io: Io, has_file: bool) -> FopenFlags {
    match io {
        Io::Classic { direct: true } => FopenFlags::FOPEN_DIRECT_IO,
        _ if has_file => FopenFlags::FOPEN_KEEP_CACHE,
        _ => FopenFlags::FOPEN_DIRECT_IO,
    }
}

/// Whether a name is a SQLite side file (`-journal`, `-wal`, `-shm`).
fn is_side_file(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| matches!(parse(n).1, Kind::Journal | Kind::Wal | Kind::Shm))
}

fn slice_at(b: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = (offset as usize).min(b.len());
    let end = start.saturating_add(size as usize).min(b.len());
    &b[start..end]
}

/// The mode and owner of a file or directory being created (see
/// `LiteFs::new_meta`).
struct NewMeta {
    perm: u32,
    /// `None`: this process's (it is not root and cannot give files away).
    owner: Option<(u32, u32)>,
}

impl NewMeta {
    fn apply_file(&self, f: &File) -> std::io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid))?;
        }
        // After the owner: changing it may clear set-ID bits.
        f.set_permissions(std::fs::Permissions::from_mode(self.perm))
    }

    fn apply_path(&self, p: &Path) -> std::io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(self.perm))
    }
}

/// What a `setattr` changes besides the size.
struct Change {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

impl Change {
    fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }

    /// Applies the change to a file or directory of the data directory.
    fn apply_path(&self, p: &Path) -> Result<(), Errno> {
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::chown(p, self.uid, self.gid).map_err(|e| errno(&e))?;
        }
        if let Some(m) = self.mode {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m & 0o7777))
                .map_err(|e| errno(&e))?;
        }
        if self.atime.is_some() || self.mtime.is_some() {
            utimens(p, self.atime, self.mtime)?;
        }
        Ok(())
    }
}

/// Sets `p`'s access and modification times; `None` leaves one as it is.
fn utimens(p: &Path, atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> Result<(), Errno> {
    fn spec(t: Option<TimeOrNow>) -> libc::timespec {
        let (tv_sec, tv_nsec) = match t {
            None => (0, libc::UTIME_OMIT),
            Some(TimeOrNow::Now) => (0, libc::UTIME_NOW),
            Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (
                    d.as_secs() as libc::time_t,
                    d.subsec_nanos() as libc::c_long,
                ),
                Err(e) => {
                    // Before 1970: whole seconds down, nanoseconds up.
                    let d = e.duration();
                    let mut secs = -(d.as_secs() as libc::time_t);
                    let mut nanos = d.subsec_nanos() as libc::c_long;
                    if nanos > 0 {
                        secs -= 1;
                        nanos = 1_000_000_000 - nanos;
                    }
                    (secs, nanos)
                }
            },
        };
        libc::timespec { tv_sec, tv_nsec }
    }
    let path =
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let times = [spec(atime), spec(mtime)];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs
    // utimensat reads; both outlive the call.
    if unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) } != 0 {
        return Err(errno(&std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A time from `stat`'s seconds and nanoseconds (before 1970 too).
fn stat_time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nsecs.clamp(0, 999_999_999) as u64);
    let whole = Duration::from_secs(secs.unsigned_abs());
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)
    } else {
        UNIX_EPOCH.checked_sub(whole)
    };
    base.and_then(|t| t.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

/// The attributes of a real file or directory in the data directory: its
/// mode, owner, size and times as they are on disk. This is where a data
/// file's (or a directory's) mode, owner and times live, so they survive
/// restarts.
fn md_attr(ino: u64, md: &std::fs::Metadata) -> FileAttr {
    let mtime = stat_time(md.mtime(), md.mtime_nsec());
    FileAttr {
        ino: INodeNo(ino),
        size: md.len(),
        blocks: md.blocks(),
        atime: stat_time(md.atime(), md.atime_nsec()),
        mtime,
        ctime: stat_time(md.ctime(), md.ctime_nsec()),
        crtime: mtime,
        kind: FileType::RegularFile,
        perm: (md.mode() & 0o7777) as u16,
        nlink: 1,
        uid: md.uid(),
        gid: md.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// `a` as a directory of the mount (which has no size of its own).
///
/// Its link count is 1, as btrfs reports, meaning "not counted": tools
/// read 2 + the number of subdirectories from a larger one, and with 2
/// glibc's fts (`FTS_NOSTAT`, as Tcl's `file delete -force` uses) took a
/// directory with subdirectories for a leaf and unlinked them as files.
fn as_dir(a: FileAttr) -> FileAttr {
    FileAttr {
        kind: FileType::Directory,
        nlink: 1,
        size: 0,
        blocks: 0,
        ..a
    }
}
