//! The floor: the least a FUSE filesystem can cost on this kernel.
//!
//! A flat directory mirrored from a backing directory, with no capture,
//! no store and no bookkeeping beyond an inode table. Every open file is
//! handed to the kernel (FUSE passthrough) unless `--classic` is given,
//! in which case reads and writes go through this process like the
//! classic path of the real mount. The benchmark runs the same SQLite
//! workloads on it to show what any FUSE filesystem pays for each
//! workload here, so the real mount's ratios can be read against the
//! floor rather than against plain SQLite alone.
//!
//! ```text
//! cargo run --release -p litefs-fuse --example floorfs -- [--classic] BACKING MOUNT
//! ```
//!
//! It runs until SIGINT/SIGTERM, or until the mount is removed.

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The same attribute and entry lifetime as the real mount.
const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

/// An open file and the backing registration it was opened with.
type OpenFile = (Arc<File>, Option<Arc<BackingId>>);

struct Floor {
    dir: PathBuf,
    classic: bool,
    passthrough: AtomicBool,
    inodes: Mutex<HashMap<String, u64>>,
    names: RwLock<HashMap<u64, String>>,
    next_ino: AtomicU64,
    /// Open files, each with the backing registration it was opened with:
    /// the kernel resolves the ID when the opener resumes, after the reply,
    /// so the registration must outlive the reply.
    handles: RwLock<HashMap<u64, OpenFile>>,
    next_fh: AtomicU64,
    backing: Mutex<HashMap<u64, Weak<BackingId>>>,
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Floor {
    fn ino(&self, name: &str) -> u64 {
        let mut m = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = m.get(name) {
            return i;
        }
        let i = self.next_ino.fetch_add(1, Ordering::Relaxed);
        m.insert(name.to_owned(), i);
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i, name.to_owned());
        i
    }

    fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        names
            .get(&ino)
            .map(|n| self.dir.join(n))
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        if parent.0 != ROOT {
            return Err(Errno::ENOENT);
        }
        name.to_str().map(str::to_owned).ok_or(Errno::EINVAL)
    }

    fn attr(&self, ino: u64, path: &Path) -> Result<FileAttr, Errno> {
        let m = std::fs::metadata(path).map_err(|e| errno(&e))?;
        let mtime = m.modified().unwrap_or(UNIX_EPOCH);
        let dir = m.is_dir();
        Ok(FileAttr {
            ino: INodeNo(ino),
            size: m.len(),
            blocks: m.blocks(),
            // The backing file's real atime: the kernel invalidates cached
            // attributes after each passthrough read when they differ.
            atime: m.accessed().unwrap_or(mtime),
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: (m.mode() & 0o7777) as u16,
            nlink: if dir { 2 } else { 1 },
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        let h = self.handles.read().unwrap_or_else(|p| p.into_inner());
        h.get(&fh.0).map(|(f, _)| f.clone()).ok_or(Errno::EBADF)
    }

    /// Opens the backing file: read-write for passthrough, since one
    /// backing registration serves every open of the inode.
    fn open_file(&self, path: &Path, flags: i32, create: bool) -> Result<File, Errno> {
        let pt = self.passthrough.load(Ordering::Relaxed);
        let acc = if pt {
            libc::O_RDWR
        } else {
            flags & libc::O_ACCMODE
        };
        OpenOptions::new()
            .read(acc != libc::O_WRONLY)
            .write(acc != libc::O_RDONLY || create)
            .create(create)
            .mode(0o644)
            .custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC))
            .open(path)
            .map_err(|e| errno(&e))
    }

    fn finish_open(
        &self,
        ino: u64,
        file: File,
        register: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> (FileHandle, Option<Arc<BackingId>>) {
        let mut backing = None;
        if self.passthrough.load(Ordering::Relaxed) {
            let mut map = self.backing.lock().unwrap_or_else(|p| p.into_inner());
            backing = map.get(&ino).and_then(Weak::upgrade);
            if backing.is_none() {
                match register(&file) {
                    Ok(b) => {
                        let b = Arc::new(b);
                        map.retain(|_, w| w.strong_count() > 0);
                        map.insert(ino, Arc::downgrade(&b));
                        backing = Some(b);
                    }
                    Err(e) => {
                        eprintln!("floorfs: backing registration failed ({e}); classic I/O");
                        self.passthrough.store(false, Ordering::Relaxed);
                    }
                }
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, (Arc::new(file), backing.clone()));
        (FileHandle(fh), backing)
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.classic {
            eprintln!("floorfs: classic FUSE I/O");
            return Ok(());
        }
        match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
            Ok(()) => {
                if let Err(max) = config.set_max_stack_depth(2) {
                    let _ = config.set_max_stack_depth(max);
                }
                self.passthrough.store(true, Ordering::Relaxed);
                eprintln!("floorfs: passthrough for every file");
            }
            Err(_) => eprintln!("floorfs: kernel lacks passthrough; classic FUSE I/O"),
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.child(parent, name).and_then(|n| {
            let path = self.dir.join(&n);
            std::fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
            self.attr(self.ino(&n), &path)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = if ino.0 == ROOT {
            self.attr(ROOT, &self.dir)
        } else {
            self.path(ino.0).and_then(|p| self.attr(ino.0, &p))
        };
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.path(ino.0).and_then(|p| {
            if let Some(size) = size {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| errno(&e))?;
                f.set_len(size).map_err(|e| errno(&e))?;
            }
            self.attr(ino.0, &p)
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child(parent, name)
            .and_then(|n| std::fs::remove_file(self.dir.join(n)).map_err(|e| errno(&e)))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let file = match self
            .path(ino.0)
            .and_then(|p| self.open_file(&p, flags.0, false))
        {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        match self.finish_open(ino.0, file, |f| reply.open_backing(f)) {
            (fh, Some(b)) => reply.opened_passthrough(fh, FopenFlags::empty(), &b),
            (fh, None) => reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.child(parent, name).and_then(|n| {
            let path = self.dir.join(&n);
            let file = self.open_file(&path, flags, true)?;
            let ino = self.ino(&n);
            Ok((ino, self.attr(ino, &path)?, file))
        });
        let (ino, attr, file) = match r {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        match self.finish_open(ino, file, |f| reply.open_backing(f)) {
            (fh, Some(b)) => {
                reply.created_passthrough(&TTL, &attr, Generation(0), fh, FopenFlags::empty(), &b)
            }
            (fh, None) => {
                reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::FOPEN_KEEP_CACHE)
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let f = match self.handle(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
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
        match self
            .handle(fh)
            .and_then(|f| f.write_all_at(data, offset).map_err(|e| errno(&e)))
        {
            Ok(()) => reply.written(data.len() as u32),
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
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
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
        let r = self.handle(fh).and_then(|f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(|e| errno(&e))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == ROOT {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOTDIR);
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut entries = vec![
            (ROOT, FileType::Directory, ".".to_owned()),
            (ROOT, FileType::Directory, "..".to_owned()),
        ];
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    if let Some(n) = e.file_name().to_str() {
                        entries.push((self.ino(n), FileType::RegularFile, n.to_owned()));
                    }
                }
            }
            Err(e) => return reply.error(errno(&e)),
        }
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

    // As in the real mount: ENOSYS stops the kernel asking for
    // `security.capability` before every write.
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
        match File::open(&self.dir).and_then(|d| d.sync_all()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let classic = args.first().is_some_and(|a| a == "--classic");
    if classic {
        args.remove(0);
    }
    let [backing, mount] = args.as_slice() else {
        eprintln!("usage: floorfs [--classic] BACKING MOUNT");
        std::process::exit(2);
    };
    let fs = Floor {
        dir: std::fs::canonicalize(backing)?,
        classic,
        passthrough: AtomicBool::new(false),
        inodes: Mutex::new(HashMap::new()),
        names: RwLock::new(HashMap::new()),
        next_ino: AtomicU64::new(ROOT + 1),
        handles: RwLock::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
        backing: Mutex::new(HashMap::new()),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("floorfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    // The real mount's default dispatch: one thread per core, 2 to 8.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    config.n_threads = Some(threads);
    config.clone_fd = threads > 1;
    // Block SIGINT/SIGTERM before the session threads start (they inherit
    // the mask), then wait for one of them or for an outside unmount.
    // SAFETY: a zeroed sigset_t is a valid value to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let session = fuser::spawn_mount(fs, mount, &config)?;

    loop {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: `set` and `ts` are valid for the call.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if sig > 0 || session.guard.is_finished() {
            break;
        }
    }
    if !session.guard.is_finished() {
        session.umount_and_join()?;
    }
    Ok(())
}
