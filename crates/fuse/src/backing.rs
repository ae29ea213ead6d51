//! Which backing file the kernel does an open's I/O on (FUSE passthrough),
//! and which inode the kernel sees for a side file.
//!
//! The kernel lets every passthrough open of one inode use only one backing
//! file, so while any open of an inode holds a registration, further opens
//! of that inode reuse it. Inode numbers here are stable per name, though:
//! a `-wal`, `-shm` or `-journal` removed and created again gets the number
//! of the removed one. SQLite's last connection closes the WAL and removes
//! it, and the next connection creates it again at once; FUSE sends the
//! close's RELEASE asynchronously, so the create can be handled while the
//! removed file's open still holds its registration (more likely the busier
//! the machine). Reusing it sent the new WAL's I/O to the removed file: the
//! path showed an empty WAL (`stat`, SQLite's own tests), and capture never
//! saw the commits, so they were not replicated. A registration is
//! therefore reused only for the very same backing file (device and inode
//! number in the data directory; no other file can have them while the
//! registration holds its file open).
//!
//! When the removed side file is still open somewhere (a process that
//! forked holds its descriptors), the kernel still has its inode, and a new
//! registration for that inode would be refused. So the kernel gets a side
//! file's inode with a generation taken from its backing file: the new file
//! is a new inode to the kernel, as on a local filesystem.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

/// A file's identity: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file `f` is open on (`None` if `fstat` fails).
    pub(crate) fn of(f: &File) -> Option<FileId> {
        f.metadata().ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

struct Entry<T> {
    file: FileId,
    reg: Weak<T>,
}

/// Live registrations by inode and backing file. The open handles own
/// them (`Arc`); a registration ends when the last handle using it closes.
pub(crate) struct Registry<T> {
    map: Mutex<HashMap<u64, Entry<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Registry<T> {
    /// The registration for an open of inode `ino` on backing file `file`:
    /// the live one if it is for this same file, else a new one from
    /// `register`. A live registration of another file (one removed since)
    /// stays with the opens that hold it.
    pub(crate) fn get_or_register(
        &self,
        ino: u64,
        file: &File,
        register: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<Arc<T>> {
        let id = FileId::of(file);
        // The map stays consistent whatever panicked while holding it.
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(&ino).filter(|e| Some(e.file) == id) {
            if let Some(r) = e.reg.upgrade() {
                return Ok(r);
            }
        }
        let r = Arc::new(register()?);
        map.retain(|_, e| e.reg.strong_count() > 0);
        match id {
            Some(file) => {
                map.insert(
                    ino,
                    Entry {
                        file,
                        reg: Arc::downgrade(&r),
                    },
                );
            }
            None => {
                map.remove(&ino);
            }
        }
        Ok(r)
    }

    /// Whether an open of inode `ino` holds a registration now.
    pub(crate) fn in_use(&self, ino: u64) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ino).is_some_and(|e| e.reg.strong_count() > 0)
    }
}

/// The generation to give the kernel with a side file's inode: from its
/// backing file at `path` (0 when it has none), so that a side file
/// created again is a new inode to the kernel. The kernel keeps 32 bits.
pub(crate) fn side_file_generation(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.ino() & 0xffff_ffff)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn open(p: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .unwrap()
    }

    #[test]
    fn opens_of_the_same_file_share_one_registration() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wal");
        let reg = Registry::<u32>::default();
        let calls = Cell::new(0);
        let next = || {
            calls.set(calls.get() + 1);
            Ok(calls.get())
        };
        let a = reg.get_or_register(7, &open(&p), next).unwrap();
        let b = reg.get_or_register(7, &open(&p), next).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(calls.get(), 1);
        assert!(reg.in_use(7));
        drop((a, b));
        assert!(!reg.in_use(7));
        // Once no open holds it, the next open registers again.
        let c = reg.get_or_register(7, &open(&p), next).unwrap();
        assert_eq!(*c, 2);
    }

    /// The race behind wal5's flaky `wal_page_count`: the removed WAL's
    /// registration is still held (its RELEASE not handled yet) when the
    /// new WAL is opened under the same inode number. The new open must
    /// not get the removed file's registration.
    #[test]
    fn a_file_created_again_gets_its_own_registration() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wal");
        let reg = Registry::<&'static str>::default();
        let old_file = open(&p);
        let old = reg.get_or_register(7, &old_file, || Ok("old")).unwrap();
        std::fs::remove_file(&p).unwrap();
        let new_file = open(&p);
        let new = reg.get_or_register(7, &new_file, || Ok("new")).unwrap();
        assert_eq!(
            *new, "new",
            "the new file's open got the removed file's registration"
        );
        assert_eq!(*old, "old");
        // Later opens of the new file share the new registration; the old
        // one lives on with the open that holds it.
        let again = reg.get_or_register(7, &open(&p), || Ok("third")).unwrap();
        assert!(Arc::ptr_eq(&new, &again));
        drop((new, again));
        assert!(!reg.in_use(7));
        drop(old);
    }

    #[test]
    fn a_failed_registration_is_reported_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wal");
        let reg = Registry::<u32>::default();
        let e = reg
            .get_or_register(7, &open(&p), || Err(std::io::Error::other("no")))
            .unwrap_err();
        assert_eq!(e.to_string(), "no");
        assert!(!reg.in_use(7));
    }

    #[test]
    fn a_side_file_created_again_has_another_generation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wal");
        assert_eq!(side_file_generation(&p), 0);
        let held = open(&p);
        let first = side_file_generation(&p);
        std::fs::remove_file(&p).unwrap();
        let _new = open(&p);
        // The removed file is still open, so its inode number is not free.
        assert_ne!(side_file_generation(&p), first);
        drop(held);
    }
}
