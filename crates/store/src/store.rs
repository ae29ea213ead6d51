//! The set of databases (and directories of the mount) under one data
//! directory.

use crate::db::{Applied, Db, DbPaths};
use crate::error::{IoContext, StoreError};
use crate::fence::Fence;
use crate::names::{
    db_entry, dir_entry, is_empty_long_entry, is_long_entry, parent_of, parse_entry,
    read_long_name, record_long_name, validate_db_name, Entry, NAME_FILE,
};
use crate::role::Role;
use crate::writer::LtxWriter;
use litefs_ltx::Pos;
use litefs_sqlite::{DbHeader, DB_HEADER_SIZE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Settings that shape the LTX files a store writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// LZ4-compress LTX page blocks (`data.compress`).
    pub compress: bool,
    /// This node's ID, stamped into LTX headers.
    pub node_id: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compress: true,
            node_id: 0,
        }
    }
}

/// All databases of a node. Databases are opened (and recovered) when the
/// store opens, and created on demand.
pub struct Store {
    dbs_dir: PathBuf,
    opts: StoreOptions,
    inner: RwLock<Inner>,
    writer: LtxWriter,
    role: Role,
    changes: Arc<Changes>,
}

/// Called with a database's name whenever its position moves (a capture,
/// an apply, an import). Must be cheap and must not call back into the
/// database: it runs under the database's mutex.
pub type Listener = Arc<dyn Fn(&str) + Send + Sync>;

/// The registered [`Listener`]s.
#[derive(Default)]
pub(crate) struct Changes {
    next: std::sync::atomic::AtomicU64,
    listeners: RwLock<Vec<(u64, Listener)>>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Changes")
    }
}

impl Changes {
    pub(crate) fn notify(&self, db: &str) {
        if let Ok(l) = self.listeners.read() {
            for (_, f) in l.iter() {
                f(db);
            }
        }
    }
}

/// Keeps a [`Listener`] registered; unregisters it when dropped.
pub struct Listening {
    id: u64,
    changes: Arc<Changes>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening").field("id", &self.id).finish()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Ok(mut l) = self.changes.listeners.write() {
            l.retain(|(id, _)| *id != self.id);
        }
    }
}

#[derive(Default)]
struct Inner {
    dbs: BTreeMap<String, Arc<Db>>,
    /// Directories of the mount other than the root, with their markers
    /// under `dbs/` (which may be missing: see [`Store::open`]).
    dirs: BTreeMap<String, PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dbs_dir", &self.dbs_dir)
            .finish()
    }
}

/// The entries of one directory of the mount.
#[derive(Debug, Default)]
pub struct Listing {
    /// Subdirectory names (last component only).
    pub dirs: Vec<String>,
    /// Databases directly in it.
    pub dbs: Vec<Arc<Db>>,
}

impl Store {
    /// This node's role: primary or replica, whom it follows, its lag.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.opts
    }

    /// Calls `f` with a database's name each time its position moves, until
    /// the returned handle is dropped.
    pub fn listen(&self, f: Listener) -> Listening {
        let id = self
            .changes
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut l) = self.changes.listeners.write() {
            l.push((id, f));
        }
        Listening {
            id,
            changes: self.changes.clone(),
        }
    }

    /// Waits until every database's captured LTX files are on disk (see
    /// [`Db::flush_ltx`]); reports the first write failure.
    pub fn flush_all(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for db in self.dbs() {
            if let Err(e) = db.flush_ltx() {
                tracing::error!(db = db.name(), error = %e, "LTX write failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Saves every database's page-checksum table for a fast next start
    /// (see [`Db::save_checksums`]). Call at a clean shutdown, once nothing
    /// can write. Failures are logged: the next start rescans.
    pub fn save_checksums(&self) {
        for db in self.dbs() {
            match db.save_checksums() {
                Ok(saved) => tracing::debug!(db = db.name(), saved, "page checksums saved"),
                Err(e) => {
                    tracing::warn!(db = db.name(), error = %e, "page checksums not saved; the next start rescans")
                }
            }
        }
    }

    /// Opens the data directory, creating it if needed, and recovers every
    /// database in it. Any database that cannot be brought to a consistent
    /// state fails the whole open: a node never serves a corrupt database.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let dbs_dir = data_dir.join("dbs");
        std::fs::create_dir_all(&dbs_dir).ctx(&dbs_dir)?;
        let mut inner = Inner::default();
        let writer = LtxWriter::spawn();
        let changes = Arc::new(Changes::default());
        for entry in std::fs::read_dir(&dbs_dir).ctx(&dbs_dir)? {
            let entry = entry.ctx(&dbs_dir)?;
            let path = entry.path();
            let Some(raw) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "skipping non-UTF-8 entry in dbs/");
                continue;
            };
            if !path.is_dir() {
                tracing::warn!(path = %path.display(), "skipping unexpected file in dbs/");
                continue;
            }
            let long = |hash: &str| {
                let name = read_long_name(&path, hash);
                if name.is_none() {
                    skip_nameless(&path);
                }
                name
            };
            let (name, is_dir) = match parse_entry(&raw) {
                Entry::Db(name) => (name, false),
                Entry::Dir(name) => (name, true),
                Entry::LongDb(hash) => match long(&hash) {
                    Some(name) => (name, false),
                    None => continue,
                },
                Entry::LongDir(hash) => match long(&hash) {
                    Some(name) => (name, true),
                    None => continue,
                },
                Entry::Other => {
                    tracing::warn!(path = %path.display(), "skipping entry in dbs/ that is not a valid name");
                    continue;
                }
            };
            if inner.dbs.contains_key(&name) || inner.dirs.contains_key(&name) {
                tracing::warn!(path = %path.display(), "skipping a second entry in dbs/ for the same name");
                continue;
            }
            if is_dir {
                inner.dirs.insert(name, path);
                continue;
            }
            let db = Db::open(
                name.clone(),
                DbPaths::new(path),
                opts,
                writer.clone(),
                changes.clone(),
            )?;
            inner.dbs.insert(name, Arc::new(db));
        }
        // A live database's directories exist even if their markers were lost.
        let parents: Vec<String> = inner
            .dbs
            .iter()
            .filter(|(_, d)| d.paths().database.exists())
            .map(|(n, _)| parent_of(n).to_owned())
            .collect();
        for p in parents {
            let mut p = p.as_str();
            while !p.is_empty() {
                if !inner.dirs.contains_key(p) {
                    inner.dirs.insert(p.to_owned(), dbs_dir.join(dir_entry(p)));
                }
                p = parent_of(p);
            }
        }
        // Tables taken from the last clean shutdown are checked against the
        // database files off the start-up path.
        let unverified: Vec<Arc<Db>> = inner.dbs.values().cloned().collect();
        let spawned = std::thread::Builder::new()
            .name("litefs-verify".into())
            .spawn(move || {
                for db in unverified {
                    if let Err(e) = db.verify_saved_checksums() {
                        tracing::error!(db = db.name(), error = %e, "verifying saved page checksums failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread to verify saved page checksums");
        }
        Ok(Store {
            dbs_dir,
            opts,
            inner: RwLock::new(inner),
            writer,
            role: Role::default(),
            changes,
        })
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Inner>, StoreError> {
        self.inner.read().map_err(|_| poisoned(&self.dbs_dir))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Inner>, StoreError> {
        self.inner.write().map_err(|_| poisoned(&self.dbs_dir))
    }

    /// The directory holding every database (`<data.dir>/dbs`).
    pub fn dbs_dir(&self) -> &Path {
        &self.dbs_dir
    }

    /// The database called `name`, if it exists.
    pub fn db(&self, name: &str) -> Option<Arc<Db>> {
        self.read().ok()?.dbs.get(name).cloned()
    }

    /// Every database, by name.
    pub fn dbs(&self) -> Vec<Arc<Db>> {
        self.read()
            .map(|i| i.dbs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `path` is a directory of the mount (`""` is the root).
    pub fn dir_exists(&self, path: &str) -> bool {
        path.is_empty() || self.read().is_ok_and(|i| i.dirs.contains_key(path))
    }

    /// What the directory `path` holds.
    pub fn list(&self, path: &str) -> Listing {
        let Ok(i) = self.read() else {
            return Listing::default();
        };
        Listing {
            dirs: i
                .dirs
                .keys()
                .filter(|d| parent_of(d) == path)
                .map(|d| d.rsplit('/').next().unwrap_or(d).to_owned())
                .collect(),
            dbs: i
                .dbs
                .iter()
                .filter(|(n, _)| parent_of(n) == path)
                .map(|(_, d)| d.clone())
                .collect(),
        }
    }

    /// Returns the database `name`, creating its directory if it is new. Its
    /// parent directory must exist.
    pub fn create_db(&self, name: &str) -> Result<Arc<Db>, StoreError> {
        validate_db_name(name)?;
        let mut inner = self.write()?;
        if let Some(db) = inner.dbs.get(name) {
            return Ok(db.clone());
        }
        let parent = parent_of(name);
        if !parent.is_empty() && !inner.dirs.contains_key(parent) {
            return Err(not_found(&self.dbs_dir.join(dir_entry(parent))));
        }
        if inner.dirs.contains_key(name) {
            return Err(StoreError::InvalidName {
                name: name.to_owned(),
                reason: "is a directory",
            });
        }
        let entry = db_entry(name);
        let dir = self.dbs_dir.join(&entry);
        if is_long_entry(&entry) {
            record_long_name(&dir, name)?;
        } else {
            std::fs::create_dir_all(&dir).ctx(&dir)?;
        }
        let db = Arc::new(Db::open(
            name.to_owned(),
            DbPaths::new(dir),
            self.opts,
            self.writer.clone(),
            self.changes.clone(),
        )?);
        inner.dbs.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Replaces database `name` (created if new) with `image`, a whole
    /// SQLite database file, as one transaction that replicates like any
    /// other. The image is checked first (header, page size, size a whole
    /// number of pages matching the header's page count); a bad one changes
    /// nothing. The caller is responsible for SQLite's own integrity check,
    /// which needs SQLite. Retries if a local commit races the import.
    pub fn import(&self, name: &str, image: &[u8], fence: &dyn Fence) -> Result<Pos, StoreError> {
        validate_db_name(name)?;
        let page_size = check_image(name, image)?;
        let db = self.create_db(name)?;
        let mut tries = 0;
        loop {
            let ltx = db.import_ltx(image, page_size, None)?;
            match db.apply_files(&[&ltx], fence, true) {
                Ok(Applied::At(pos)) => return Ok(pos),
                Ok(Applied::Own) => return Ok(db.pos()),
                Err(StoreError::NotContiguous { .. }) if tries < 5 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Restores database `name`, which must not exist yet (or be empty), as
    /// `image` at TXID `txid`: one snapshot LTX file spanning TXIDs 1 to
    /// `txid`, so a backup taken up to `txid` continues from it.
    pub fn restore(
        &self,
        name: &str,
        image: &[u8],
        txid: litefs_ltx::Txid,
        fence: &dyn Fence,
    ) -> Result<Pos, StoreError> {
        validate_db_name(name)?;
        let page_size = check_image(name, image)?;
        let db = self.create_db(name)?;
        if db.pos().txid.0 != 0 {
            return Err(StoreError::InvalidImport {
                db: name.to_owned(),
                reason: format!("already at {}; restore only creates databases", db.pos()),
            });
        }
        let ltx = db.import_ltx(image, page_size, Some(txid))?;
        match db.apply_files(&[&ltx], fence, true)? {
            Applied::At(pos) => Ok(pos),
            Applied::Own => Ok(db.pos()),
        }
    }

    /// Creates the directory `path` of the mount; its parent must exist.
    pub fn mkdir(&self, path: &str) -> Result<(), StoreError> {
        validate_db_name(path)?;
        let mut inner = self.write()?;
        let parent = parent_of(path);
        let entry = dir_entry(path);
        let marker = self.dbs_dir.join(&entry);
        if !parent.is_empty() && !inner.dirs.contains_key(parent) {
            return Err(not_found(&self.dbs_dir.join(dir_entry(parent))));
        }
        if inner.dirs.contains_key(path) || inner.dbs.contains_key(path) {
            return Err(StoreError::Io {
                path: marker,
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        if is_long_entry(&entry) {
            record_long_name(&marker, path)?;
        } else {
            std::fs::create_dir_all(&marker).ctx(&marker)?;
        }
        inner.dirs.insert(path.to_owned(), marker);
        Ok(())
    }

    /// Removes the empty directory `path` of the mount.
    pub fn rmdir(&self, path: &str) -> Result<(), StoreError> {
        let mut inner = self.write()?;
        let Some(marker) = inner.dirs.get(path).cloned() else {
            return Err(not_found(&self.dbs_dir.join(dir_entry(path))));
        };
        let prefix = format!("{path}/");
        let live_db = inner
            .dbs
            .iter()
            .any(|(n, d)| n.starts_with(&prefix) && d.paths().database.exists());
        if live_db || inner.dirs.keys().any(|d| d.starts_with(&prefix)) {
            return Err(StoreError::Io {
                path: marker,
                source: std::io::Error::from_raw_os_error(39),
            });
        }
        // A long marker's name file first: a crash between the two leaves
        // an empty entry, which the next start removes.
        let name_file = marker.join(NAME_FILE);
        match std::fs::remove_file(&name_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(&name_file),
        }
        match std::fs::remove_dir(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(&marker),
        }
        inner.dirs.remove(path);
        Ok(())
    }
}

/// Checks that `image` looks like a whole SQLite database file; returns
/// its page size.
fn check_image(name: &str, image: &[u8]) -> Result<u32, StoreError> {
    let bad = |reason: String| StoreError::InvalidImport {
        db: name.to_owned(),
        reason,
    };
    if image.len() < DB_HEADER_SIZE {
        return Err(bad(format!(
            "{} bytes is shorter than a SQLite header",
            image.len()
        )));
    }
    let h = DbHeader::parse(&image[..DB_HEADER_SIZE])
        .map_err(|e| bad(format!("not a SQLite database: {e}")))?;
    let ps = h.page_size as usize;
    if image.len() % ps != 0 {
        return Err(bad(format!(
            "{} bytes is not a whole number of {ps}-byte pages",
            image.len()
        )));
    }
    let pages = image.len() / ps;
    if pages > u32::MAX as usize - 1 {
        return Err(bad("too many pages".into()));
    }
    if h.page_count_valid() && h.page_count as usize != pages {
        return Err(bad(format!(
            "the header says {} pages but the file holds {pages}",
            h.page_count
        )));
    }
    Ok(h.page_size)
}

/// A long entry without a valid `name` file: removed if empty (a crash
/// while it was created or removed), else left alone and skipped.
fn skip_nameless(path: &Path) {
    if is_empty_long_entry(path) {
        let _ = std::fs::remove_file(path.join(format!("{NAME_FILE}.tmp")));
        match std::fs::remove_dir(path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed an empty entry left by a crash")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an empty entry left by a crash")
            }
        }
    } else {
        tracing::warn!(path = %path.display(), "skipping a long-name entry in dbs/ whose name file is missing or does not match");
    }
}

fn not_found(path: &Path) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

pub(crate) fn poisoned(path: &Path) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("lock poisoned by a panicked thread"),
    }
}

impl Store {
    /// The marker directory in `dbs/` that stands for directory `path` of
    /// the mount (see `mkdir`): the mount shows its mode, owner and times
    /// as the directory's, and `chmod`/`chown`/`utimens` change them there.
    pub fn dir_marker(&self, path: &str) -> PathBuf {
        self.read()
            .ok()
            .and_then(|i| i.dirs.get(path).cloned())
            .unwrap_or_else(|| self.dbs_dir.join(dir_entry(path)))
    }
}
