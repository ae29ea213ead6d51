//! The primary's side: keep each database's replica directory up to date
//! with its LTX history.

use crate::compaction::{compact_level, enforce_retention, snapshot_due, Retention};
use crate::convert::{header_of, next_after, v1_to_v3};
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
    /// Compaction levels 1, 2, ...: how often each merges the new files
    /// of the level below into one file (Litestream: 30 s, 5 min, 1 h);
    /// empty: no compaction. At most 8.
    pub levels: Vec<Duration>,
    /// How often a fresh snapshot is written, when the database has moved
    /// on since the newest one (Litestream: 24 h); zero: only the first.
    pub snapshot_interval: Duration,
    /// How long snapshots are kept (the newest always is), and with them
    /// every file a restore from them needs (Litestream: 24 h); zero:
    /// forever.
    pub retention: Duration,
    /// How long a level-0 file a higher level covers is kept (Litestream:
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
        let mut files: Vec<bytes::Bytes> = Vec::new();
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
            let slices: Vec<&[u8]> = files.iter().map(|b| b.as_ref()).collect();
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
        let file = replica.write(level, &header, &bytes)?;
        tracing::debug!(db = %name, file = %file.path.display(), level, from = have.0, "backed up");
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

    /// Housekeeping of `db`'s backup: compacts each level in `levels`
    /// (ascending, so a level sees what the one below just got), writes a
    /// fresh snapshot when one is due, and deletes what retention no
    /// longer keeps.
    pub fn maintain_db(&self, db: &Db, levels: &[u8]) -> Result<(), BackupError> {
        let replica = self.replica(db.name())?;
        let replica = replica.as_ref();
        let mut files = replica.files()?;
        for &level in levels {
            if let Some(f) = compact_level(replica, &files, level)? {
                files.push(f);
            }
        }
        let now = std::time::SystemTime::now();
        if snapshot_due(&files, self.opts.snapshot_interval, db.pos().txid, now) {
            if let Some(f) = self.snapshot(db, replica)? {
                files.push(f);
            }
        }
        enforce_retention(
            replica,
            &files,
            Retention {
                snapshots: self.opts.retention,
                l0: self.opts.l0_retention,
            },
            now,
        )?;
        Ok(())
    }

    /// Writes a snapshot of `db` at its committed position to level 9,
    /// beside the backup's other files. The level-0 chain is left as it
    /// is: the next sync continues it from where it was.
    fn snapshot(
        &self,
        db: &Db,
        replica: &dyn Storage,
    ) -> Result<Option<crate::layout::ReplicaFile>, BackupError> {
        let Some((_, snap)) = db.snapshot_ltx(self.fence.as_ref())? else {
            return Ok(None);
        };
        let (h, b, post) = v1_to_v3(&[&snap])?;
        replica.write_pos(Pos {
            txid: h.max_txid,
            post_apply_checksum: post,
        })?;
        let file = replica.write(SNAPSHOT_LEVEL, &h, &b)?;
        tracing::info!(db = db.name(), txid = %h.max_txid, file = %file.path.display(), "backup snapshot written");
        Ok(Some(file))
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
        let started = std::time::Instant::now();
        let mut level_at = vec![started; self.opts.levels.len()];
        // Snapshots and retention are looked at with the first level's
        // compaction, or every 30 s without compaction.
        let housekeeping = self
            .opts
            .levels
            .first()
            .copied()
            .unwrap_or(Duration::from_secs(30));
        let mut kept_at = started;
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(self.opts.interval);
            let now = std::time::Instant::now();
            let mut due: Vec<u8> = Vec::new();
            for (i, every) in self.opts.levels.iter().enumerate() {
                if now.duration_since(level_at[i]) >= *every {
                    level_at[i] = now;
                    due.push(i as u8 + 1);
                }
            }
            let maintain = !due.is_empty() || now.duration_since(kept_at) >= housekeeping;
            if maintain {
                kept_at = now;
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
                    if maintain {
                        self.maintain_db(&db, &due)?;
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
