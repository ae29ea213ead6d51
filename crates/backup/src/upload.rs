//! The primary's side: keep each database's replica directory up to date
//! with its LTX history.

use crate::convert::{compact, header_of, next_after, v1_to_v3};
use crate::layout::{FileReplica, Storage, SNAPSHOT_LEVEL};
use crate::s3::S3Options;
use crate::BackupError;
use litefs_ltx::{Pos, Txid};
use litefs_store::{Db, Fence, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where backups go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `type: file`: one replica directory per database under this path
    /// (`<path>/<db name>/ltx/...`).
    File(PathBuf),
    /// `type: s3`: one prefix per database under `path` in the bucket.
    S3(S3Options),
}

impl Target {
    /// The backup of database `db`.
    pub fn replica(&self, db: &str) -> Result<Box<dyn Storage>, BackupError> {
        Ok(match self {
            Target::File(p) => Box::new(FileReplica::new(p.join(db))),
            Target::S3(o) => Box::new(o.replica(db)?),
        })
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Target::File(p) => p.display().to_string(),
            Target::S3(o) => format!("s3://{}/{}", o.bucket, o.path.trim_matches('/')),
        }
    }
}

/// `backup:` settings.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Where.
    pub target: Target,
    /// How often new transactions are written out (Litestream: 1 s).
    pub interval: Duration,
    /// How often level-0 files are compacted into one level-1 file
    /// (Litestream: 30 s); zero: never.
    pub compaction_interval: Duration,
    /// How long a level-0 file a level-1 file covers is kept (Litestream:
    /// 5 min), for restores to a point inside it.
    pub l0_retention: Duration,
}

/// Continuous backup of a node's databases while it is the primary.
pub struct Backup {
    store: Arc<Store>,
    fence: Arc<dyn Fence>,
    opts: BackupOptions,
    /// The newest TXID in each database's replica, as far as we know.
    have: Mutex<HashMap<String, Txid>>,
    /// When each database's backup last caught up with it.
    synced: Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup").field("opts", &self.opts).finish()
    }
}

impl Backup {
    /// A backup of `store`'s databases; `fence` holds writers off while a
    /// snapshot is taken.
    pub fn new(store: Arc<Store>, fence: Arc<dyn Fence>, opts: BackupOptions) -> Backup {
        Backup {
            store,
            fence,
            opts,
            have: Mutex::new(HashMap::new()),
            synced: Mutex::new(HashMap::new()),
        }
    }

    /// `/info`'s `backup` member: where, and per database the backup's
    /// TXID (16 hex digits) and how many transactions it is behind
    /// (`null` on a node that is not writing the backup).
    pub fn info(&self) -> serde_json::Value {
        let dbs: serde_json::Map<String, serde_json::Value> = if self.store.role().is_primary() {
            self.store
                .dbs()
                .iter()
                .filter_map(|db| {
                    let have = self.position(db.name())?;
                    Some((
                        db.name().to_owned(),
                        serde_json::json!({
                            "txid": format!("{:016x}", have.0),
                            "lagTxids": db.pos().txid.0.saturating_sub(have.0),
                        }),
                    ))
                })
                .collect()
        } else {
            serde_json::Map::new()
        };
        serde_json::json!({ "target": self.opts.target.describe(), "dbs": dbs })
    }

    /// `/metrics` text: per database, the backup's TXID, and how far it
    /// is behind this node in TXIDs and in seconds (since it last caught
    /// up). Empty on a node that is not writing the backup.
    pub fn exposition(&self) -> String {
        if !self.store.role().is_primary() {
            return String::new();
        }
        let mut txid = String::new();
        let mut lag = String::new();
        let mut secs = String::new();
        for db in self.store.dbs() {
            let name = db.name().replace('\\', "\\\\").replace('"', "\\\"");
            let Some(have) = self.position(db.name()) else {
                continue;
            };
            let behind = db.pos().txid.0.saturating_sub(have.0);
            let age = if behind == 0 {
                0.0
            } else {
                self.synced
                    .lock()
                    .ok()
                    .and_then(|s| s.get(db.name()).map(|t| t.elapsed().as_secs_f64()))
                    .unwrap_or(f64::NAN)
            };
            txid.push_str(&format!("litefs_backup_txid{{db=\"{name}\"}} {}\n", have.0));
            lag.push_str(&format!(
                "litefs_backup_lag_txids{{db=\"{name}\"}} {behind}\n"
            ));
            secs.push_str(&format!(
                "litefs_backup_lag_seconds{{db=\"{name}\"}} {age}\n"
            ));
        }
        if txid.is_empty() {
            return String::new();
        }
        format!(
            "# HELP litefs_backup_txid Newest TXID in the backup.\n# TYPE litefs_backup_txid gauge\n{txid}\
             # HELP litefs_backup_lag_txids Transactions this primary has that the backup does not.\n# TYPE litefs_backup_lag_txids gauge\n{lag}\
             # HELP litefs_backup_lag_seconds Seconds since the backup last caught up, while it is behind.\n# TYPE litefs_backup_lag_seconds gauge\n{secs}"
        )
    }

    /// The backup of `db`.
    pub fn replica(&self, db: &str) -> Result<Box<dyn Storage>, BackupError> {
        self.opts.target.replica(db)
    }

    /// The newest TXID backed up for `db`, if any.
    pub fn position(&self, db: &str) -> Option<Txid> {
        self.have.lock().ok().and_then(|h| h.get(db).copied())
    }

    /// Writes out what `db` committed since the last sync: one level-0 file
    /// with every transaction since, or a level-9 snapshot when the
    /// backup is empty or this node's LTX files no longer continue it.
    /// Returns the backup's TXID afterwards.
    pub fn sync_db(&self, db: &Db) -> Result<Txid, BackupError> {
        let name = db.name().to_owned();
        let replica = self.replica(&name)?;
        let replica = replica.as_ref();
        let mut have = match self.position(&name) {
            Some(t) => t,
            None => self.first_look(db, replica)?,
        };
        let pos = db.capture_committed()?;
        if pos.txid <= have {
            self.set(&name, have);
            self.caught_up(&name);
            return Ok(have);
        }
        let mut files: Vec<Vec<u8>> = Vec::new();
        let mut next = Txid(have.0 + 1);
        let mut continuous = have.0 > 0;
        while continuous && next <= pos.txid {
            match db.read_ltx_from(next)? {
                Some(b) => match header_of(&b) {
                    // A snapshot in the node's history does not continue the
                    // backup: the backup then takes one of its own.
                    Some(h) if h.min_txid == next && !h.is_snapshot() => {
                        next = next_after(&h);
                        files.push(b);
                    }
                    _ => continuous = false,
                },
                None => continuous = false,
            }
        }
        let (level, header, bytes, post) = if continuous && !files.is_empty() {
            let slices: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
            let (h, b, post) = v1_to_v3(&slices)?;
            (0, h, b, post)
        } else {
            let Some((_, snap)) = db.snapshot_ltx(self.fence.as_ref())? else {
                return Ok(have);
            };
            let (h, b, post) = v1_to_v3(&[&snap])?;
            if have.0 > 0 && h.max_txid <= have {
                // Cannot happen while the lineage check holds; never let
                // a snapshot sit under newer files of another history.
                replica.retire()?;
                have = Txid(0);
            }
            (SNAPSHOT_LEVEL, h, b, post)
        };
        // The position first: a crash between the two leaves the sidecar
        // ahead of the files, which the next look accepts.
        replica.write_pos(Pos {
            txid: header.max_txid,
            post_apply_checksum: post,
        })?;
        let path = replica.write(level, &header, &bytes)?;
        tracing::debug!(db = %name, file = %path.display(), level, from = have.0, "backed up");
        self.set(&name, header.max_txid);
        if header.max_txid >= pos.txid {
            self.caught_up(&name);
        }
        Ok(header.max_txid)
    }

    /// At the start of a term as primary: the backup's newest TXID if this
    /// node's history has the backup's position (so it may append to it);
    /// otherwise the existing files are moved aside and the backup starts
    /// again from a snapshot (returns 0).
    fn first_look(&self, db: &Db, replica: &dyn Storage) -> Result<Txid, BackupError> {
        let Some(have) = replica.max_txid()? else {
            return Ok(Txid(0));
        };
        let ours = replica.read_pos().is_some_and(|p| self.history_has(db, p));
        if ours {
            return Ok(have);
        }
        let to = replica.retire()?;
        tracing::warn!(
            db = db.name(),
            backup_txid = have.0,
            moved_to = %to.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "the backup holds a history this node does not have (transactions of an earlier primary that never reached it, or files of another writer): starting a new backup from a snapshot; the old files are kept aside"
        );
        Ok(Txid(0))
    }

    /// Whether this node's history passes through `p`.
    fn history_has(&self, db: &Db, p: Pos) -> bool {
        let local = db.pos();
        if local.txid == p.txid {
            return local.post_apply_checksum == p.post_apply_checksum;
        }
        if local.txid < p.txid {
            return false;
        }
        match db.read_ltx_from(Txid(p.txid.0 + 1)) {
            Ok(Some(b)) => header_of(&b).is_some_and(|h| {
                h.min_txid.0 == p.txid.0 + 1 && h.pre_apply_checksum == p.post_apply_checksum
            }),
            _ => false,
        }
    }

    /// Compacts the level-0 files after the newest level-1 file (or
    /// snapshot) into one level-1 file, and deletes level-0 files a
    /// level-1 file covers once they are older than `l0_retention`.
    /// Returns the new level-1 file's last TXID, if one was written.
    pub fn compact_db(&self, name: &str) -> Result<Option<Txid>, BackupError> {
        let replica = self.replica(name)?;
        let files = replica.files()?;
        let base = files
            .iter()
            .filter(|f| f.level == 1 || f.level == SNAPSHOT_LEVEL)
            .map(|f| f.max)
            .max()
            .unwrap_or(Txid(0));
        let mut run = Vec::new();
        let mut next = Txid(base.0 + 1);
        for f in files.iter().filter(|f| f.level == 0 && f.min > base) {
            if f.min != next {
                break;
            }
            next = Txid(f.max.0 + 1);
            run.push(f);
        }
        let mut wrote = None;
        if base.0 > 0 && !run.is_empty() {
            let bytes: Vec<Vec<u8>> = run
                .iter()
                .map(|f| replica.read(f))
                .collect::<Result<_, _>>()?;
            let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            let (h, b, _) = compact(&slices, litefs_ltx::Version::V3)?;
            replica.write(1, &h, &b)?;
            tracing::debug!(db = name, min = %h.min_txid, max = %h.max_txid, files = run.len(), "backup compacted into level 1");
            wrote = Some(h.max_txid);
        }
        let covered = wrote.unwrap_or(base);
        let now = std::time::SystemTime::now();
        for f in files.iter().filter(|f| f.level == 0 && f.max <= covered) {
            let covered_by_l1 = files
                .iter()
                .any(|g| g.level == 1 && g.min <= f.min && g.max >= f.max)
                || wrote.is_some_and(|w| f.max <= w && f.min > base);
            let old = now
                .duration_since(f.time)
                .is_ok_and(|age| age >= self.opts.l0_retention);
            if covered_by_l1 && old {
                replica.delete(f)?;
            }
        }
        Ok(wrote)
    }

    fn caught_up(&self, db: &str) {
        if let Ok(mut s) = self.synced.lock() {
            s.insert(db.to_owned(), std::time::Instant::now());
        }
    }

    fn set(&self, db: &str, t: Txid) {
        if let Ok(mut h) = self.have.lock() {
            h.insert(db.to_owned(), t);
        }
    }

    /// Syncs every database each interval while this node is the primary,
    /// until `stop`. Failures are logged and retried at the next interval
    /// (a failed write never moves the backup's position).
    pub fn run(&self, stop: &AtomicBool) {
        let mut failing: HashMap<String, String> = HashMap::new();
        let mut backoff: HashMap<String, (std::time::Instant, Duration)> = HashMap::new();
        let mut compacted = std::time::Instant::now();
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(self.opts.interval);
            let compact_now = !self.opts.compaction_interval.is_zero()
                && compacted.elapsed() >= self.opts.compaction_interval;
            if compact_now {
                compacted = std::time::Instant::now();
            }
            if !self.store.role().is_primary() {
                // Another node writes the backup; learn its position anew
                // when this one is primary again.
                if let Ok(mut h) = self.have.lock() {
                    h.clear();
                }
                continue;
            }
            for db in self.store.dbs() {
                // A failing backup is retried with a doubling pause (up to
                // 30 s) instead of every interval.
                if backoff
                    .get(db.name())
                    .is_some_and(|(at, _): &(std::time::Instant, Duration)| {
                        std::time::Instant::now() < *at
                    })
                {
                    continue;
                }
                let r = self.sync_db(&db).and_then(|t| {
                    if compact_now {
                        self.compact_db(db.name())?;
                    }
                    Ok(t)
                });
                match r {
                    Ok(_) => {
                        backoff.remove(db.name());
                        if failing.remove(db.name()).is_some() {
                            tracing::info!(db = db.name(), "backup working again");
                        }
                    }
                    Err(e) => {
                        let pause = backoff
                            .get(db.name())
                            .map_or(self.opts.interval, |(_, d)| *d * 2)
                            .min(Duration::from_secs(30));
                        backoff.insert(
                            db.name().to_owned(),
                            (std::time::Instant::now() + pause, pause),
                        );
                        let msg = e.to_string();
                        if failing.get(db.name()) != Some(&msg) {
                            tracing::error!(db = db.name(), error = %msg, backup = %self.opts.target.describe(), "backup failed; retrying");
                            failing.insert(db.name().to_owned(), msg);
                        }
                    }
                }
            }
        }
        // Whatever was committed before the stop.
        if self.store.role().is_primary() {
            for db in self.store.dbs() {
                if let Err(e) = self.sync_db(&db) {
                    tracing::error!(db = db.name(), error = %e, "final backup sync failed");
                }
            }
        }
    }
}
