//! The halt lock on a replica, as SQLite clients ask for it: a write lock
//! on byte 72 of `<db>-lock` (`F_OFD_SETLKW`, as LiteFS's `litefs run
//! -with-halt-lock-on` and its Go library take it).
//!
//! POSIX locks stay in the kernel (this filesystem never asks the kernel
//! to pass them on, which keeps SQLite's own locking at native speed), so
//! the daemon learns of the request by taking part in it: while a client
//! has a replica's `<db>-lock` open, a *gate* thread holds byte 72 itself
//! (taken before the client's `open` returns), so the client's lock
//! request waits. The gate sees the waiter in `/proc/locks`, takes the
//! primary's halt lock ([`HaltRemote::acquire`]: the database is then
//! writable here), and lets go of byte 72, so the client gets it. When no
//! one holds the byte any more (unlock or close), the gate takes it back
//! and releases the primary's lock ([`HaltRemote::release`]). The gate
//! ends a little after the last client closes the file.

use crate::fence::MountLink;
use crate::names::Kind;
use litefs_store::Store;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The byte LiteFS's halt lock covers.
const HALT_BYTE: libc::off_t = 72;
/// How often the gate looks for waiters and for the end of a hold.
const POLL: Duration = Duration::from_millis(2);
/// A gate with no client left ends after this.
const LINGER: Duration = Duration::from_secs(2);
/// How long a client's `open` waits for its gate.
const OPEN_WAIT: Duration = Duration::from_secs(2);

/// The gates of one mount, by database.
pub(crate) struct Gates {
    link: Arc<MountLink>,
    store: Arc<Store>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

struct Gate {
    /// Clients with `<db>-lock` open.
    opens: AtomicUsize,
    /// Set once byte 72 is held (or the gate gave up).
    ready: Mutex<bool>,
    ready_cv: Condvar,
}

impl Gates {
    pub(crate) fn new(link: Arc<MountLink>, store: Arc<Store>) -> Gates {
        Gates {
            link,
            store,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// A client opened `<db>-lock` on a replica: makes sure a gate holds
    /// byte 72 before the open returns (at most [`OPEN_WAIT`]).
    pub(crate) fn opened(self: &Arc<Self>, db: &str) {
        let gate = {
            let Ok(mut gates) = self.gates.lock() else {
                return;
            };
            if let Some(g) = gates.get(db) {
                g.opens.fetch_add(1, Ordering::AcqRel);
                g.clone()
            } else {
                let g = Arc::new(Gate {
                    opens: AtomicUsize::new(1),
                    ready: Mutex::new(false),
                    ready_cv: Condvar::new(),
                });
                gates.insert(db.to_owned(), g.clone());
                let (me, name, g2) = (self.clone(), db.to_owned(), g.clone());
                let spawned = std::thread::Builder::new()
                    .name("litefs-halt".into())
                    .spawn(move || {
                        me.run(&name, &g2);
                        g2.set_ready();
                        if let Ok(mut gates) = me.gates.lock() {
                            if gates.get(&name).is_some_and(|x| Arc::ptr_eq(x, &g2)) {
                                gates.remove(&name);
                            }
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(db, error = %e, "cannot start the halt-lock gate");
                    gates.remove(db);
                    return;
                }
                g
            }
        };
        let Ok(ready) = gate.ready.lock() else {
            return;
        };
        let _ = gate.ready_cv.wait_timeout_while(ready, OPEN_WAIT, |r| !*r);
    }

    /// A client closed `<db>-lock`.
    pub(crate) fn closed(&self, db: &str) {
        if let Ok(gates) = self.gates.lock() {
            if let Some(g) = gates.get(db) {
                let _ = g
                    .opens
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
    }

    fn run(&self, db: &str, gate: &Gate) {
        let path = self.link.path(db, Kind::Lock);
        let file = match self.link.open(&path) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(db, error = %e, "halt-lock gate: cannot open the lock file");
                return;
            }
        };
        let Ok(md) = file.metadata() else { return };
        let id = LockId {
            major: libc::major(md.dev()),
            minor: libc::minor(md.dev()),
            ino: md.ino(),
        };
        // Take the byte; a client that got there first holds it without the
        // primary's lock (its writes stay refused): wait for it to let go.
        let mut idle = Instant::now();
        loop {
            match lock(&file, libc::F_WRLCK) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(db, error = %e, "halt-lock gate: cannot lock");
                    return;
                }
            }
            if gate.opens.load(Ordering::Acquire) == 0 && idle.elapsed() > LINGER {
                return;
            }
            std::thread::sleep(POLL);
        }
        gate.set_ready();
        let role = self.store.role();
        loop {
            if role.is_primary() {
                // The halt lock is a no-op on the primary: let clients in.
                return;
            }
            if gate.opens.load(Ordering::Acquire) > 0 {
                idle = Instant::now();
            } else if idle.elapsed() > LINGER {
                return;
            }
            if has_waiter(id) {
                self.hold(db, &file, id);
            }
            std::thread::sleep(POLL);
        }
    }

    /// A client waits for byte 72: take the primary's lock, hand the byte
    /// over, and give the primary's lock back when the client is done.
    fn hold(&self, db: &str, file: &File, id: LockId) {
        let Some(remote) = self.store.role().halt_remote() else {
            return;
        };
        let started = Instant::now();
        if let Err(e) = remote.acquire(db) {
            tracing::warn!(db, error = %e, "halt lock: the primary's lock could not be taken; the client keeps waiting");
            std::thread::sleep(Duration::from_millis(500));
            return;
        }
        tracing::info!(
            db,
            waited_ms = started.elapsed().as_millis() as u64,
            "halt lock held: this replica may write the database"
        );
        if let Err(e) = lock(file, libc::F_UNLCK) {
            tracing::error!(db, error = %e, "halt-lock gate: cannot let go of the lock byte");
        }
        // Until the client has the byte, then until nobody has it.
        let mut seen = false;
        let handed = Instant::now();
        loop {
            std::thread::sleep(POLL);
            let held = holder(file).unwrap_or(false);
            if held {
                seen = true;
                continue;
            }
            if !seen && handed.elapsed() < Duration::from_secs(1) && has_waiter(id) {
                continue;
            }
            // Nobody holds it: take it back (a client quicker than us keeps
            // it, and we go on watching).
            match lock(file, libc::F_WRLCK) {
                Ok(true) => break,
                Ok(false) => {
                    seen = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(db, error = %e, "halt-lock gate: cannot take the lock byte back");
                    break;
                }
            }
        }
        remote.release(db);
        tracing::info!(
            db,
            held_ms = handed.elapsed().as_millis() as u64,
            "halt lock released"
        );
    }
}

impl Gate {
    fn set_ready(&self) {
        if let Ok(mut r) = self.ready.lock() {
            *r = true;
        }
        self.ready_cv.notify_all();
    }
}

/// A file as `/proc/locks` names it.
#[derive(Debug, Clone, Copy)]
struct LockId {
    major: u32,
    minor: u32,
    ino: u64,
}

/// Whether `/proc/locks` lists a blocked request for byte 72 of `id`.
fn has_waiter(id: LockId) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    let dev = format!("{:02x}:{:02x}:{}", id.major, id.minor, id.ino);
    text.lines().any(|l| {
        let mut f = l.split_whitespace();
        // "N: -> OFDLCK ADVISORY WRITE PID DEV START END"
        let _ = f.next();
        if f.next() != Some("->") {
            return false;
        }
        let rest: Vec<&str> = f.collect();
        rest.len() >= 6
            && rest[rest.len() - 3] == dev
            && rest[rest.len() - 2]
                .parse::<i64>()
                .is_ok_and(|s| s <= HALT_BYTE)
            && (rest[rest.len() - 1] == "EOF"
                || rest[rest.len() - 1]
                    .parse::<i64>()
                    .is_ok_and(|e| e >= HALT_BYTE))
    })
}

/// Takes (`F_WRLCK`) or drops (`F_UNLCK`) byte 72 on `file`'s description;
/// false if another holder conflicts.
fn lock(file: &File, kind: libc::c_int) -> std::io::Result<bool> {
    crate::fence::try_lock(file, (HALT_BYTE as u64, 1), kind)
}

/// Whether anyone else holds byte 72.
fn holder(file: &File) -> std::io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK);
    // SAFETY: valid descriptor and `flock` the kernel fills in.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i32::from(fl.l_type) != libc::F_UNLCK)
}

fn flock(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (and
    // OFD locks require l_pid 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = HALT_BYTE;
    fl.l_len = 1;
    fl
}
