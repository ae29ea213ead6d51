//! The set of databases under one data directory.

use crate::db::{Db, DbPaths};
use crate::error::{IoContext, StoreError};
use crate::names::validate_db_name;
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
    dbs: RwLock<BTreeMap<String, Arc<Db>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dbs_dir", &self.dbs_dir)
            .finish()
    }
}

impl Store {
    /// Opens the data directory, creating it if needed, and recovers every
    /// database in it. Any database that cannot be brought to a consistent
    /// state fails the whole open: a node never serves a corrupt database.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let dbs_dir = data_dir.join("dbs");
        std::fs::create_dir_all(&dbs_dir).ctx(&dbs_dir)?;
        let mut dbs = BTreeMap::new();
        for entry in std::fs::read_dir(&dbs_dir).ctx(&dbs_dir)? {
            let entry = entry.ctx(&dbs_dir)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %entry.path().display(), "skipping non-UTF-8 database directory");
                continue;
            };
            if validate_db_name(&name).is_err() || !entry.path().is_dir() {
                tracing::warn!(path = %entry.path().display(), "skipping unexpected entry in dbs/");
                continue;
            }
            let db = Db::open(name.clone(), DbPaths::new(entry.path()), opts)?;
            dbs.insert(name, Arc::new(db));
        }
        Ok(Store {
            dbs_dir,
            opts,
            dbs: RwLock::new(dbs),
        })
    }

    /// The database called `name`, if it exists.
    pub fn db(&self, name: &str) -> Option<Arc<Db>> {
        self.dbs.read().ok()?.get(name).cloned()
    }

    /// Every database, by name.
    pub fn dbs(&self) -> Vec<Arc<Db>> {
        self.dbs
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Returns the database `name`, creating its directory if it is new.
    pub fn create_db(&self, name: &str) -> Result<Arc<Db>, StoreError> {
        validate_db_name(name)?;
        let mut dbs = self.dbs.write().map_err(|_| poisoned(&self.dbs_dir))?;
        if let Some(db) = dbs.get(name) {
            return Ok(db.clone());
        }
        let dir = self.dbs_dir.join(name);
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        let db = Arc::new(Db::open(name.to_owned(), DbPaths::new(dir), self.opts)?);
        dbs.insert(name.to_owned(), db.clone());
        Ok(db)
    }
}

pub(crate) fn poisoned(path: &Path) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("lock poisoned by a panicked thread"),
    }
}
