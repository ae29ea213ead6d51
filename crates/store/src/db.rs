//! One database: its files, position, page checksums, and capture of
//! committed transactions into LTX files.

use crate::error::{IoContext, StoreError};
use crate::saved::{self, fold, Saved, Stamp};
use crate::stats::{ltx_on_disk, DbStats};
use crate::store::{poisoned, Changes, StoreOptions};
use crate::writer::{tmp_path, DbQueue, LtxOut, LtxWriter, Progress, SPILL_BYTES};
use litefs_ltx::{
    format_file_name, lock_pgno, page_checksum, parse_file_name, Checksum, Encoder, Format, Header,
    Pos, Txid, Version, FLAG_COMPRESS_LZ4,
};
use litefs_sqlite::{
    scan_wal, DbHeader, WalFrameHeader, WalHeader, WalIndexHeader, WalTxn, WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE, WAL_INDEX_HEADER_SIZE,
};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

mod apply;
pub use apply::{Applied, Committed};

/// The files of one database inside the data directory.
#[derive(Debug, Clone)]
pub struct DbPaths {
    /// `dbs/<name>/`.
    pub dir: PathBuf,
    /// The SQLite database file.
    pub database: PathBuf,
    /// The rollback journal.
    pub journal: PathBuf,
    /// The write-ahead log.
    pub wal: PathBuf,
    /// The WAL index (shared memory).
    pub shm: PathBuf,
    /// LTX files, one per captured transaction (or snapshot).
    pub ltx: PathBuf,
}

impl DbPaths {
    /// The layout under `dir`, as LiteFS has it.
    pub fn new(dir: PathBuf) -> DbPaths {
        DbPaths {
            database: dir.join("database"),
            journal: dir.join("journal"),
            wal: dir.join("wal"),
            shm: dir.join("shm"),
            ltx: dir.join("ltx"),
            dir,
        }
    }
}

/// One database's state at a moment, for diagnostics (`/debug/vars`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStatus {
    /// The replication position.
    pub pos: Pos,
    /// Timestamp (ms) of the LTX file that made the position.
    pub timestamp: i64,
    /// Page size in bytes (0 before the first page).
    pub page_size: u32,
    /// Size in pages at the position.
    pub pages: u32,
    /// Whether the database header says WAL mode (else a rollback-journal
    /// mode, or no database file yet).
    pub wal: bool,
    /// How far capture has read the WAL (bytes), if a WAL is being read.
    pub wal_cursor: Option<u64>,
    /// Open handles through which the kernel writes the WAL directly
    /// (FUSE passthrough).
    pub wal_passthrough_handles: usize,
    /// LTX files captured and not on disk yet.
    pub pending_ltx: u64,
}

/// Where capture has got to in the WAL: the next frame to look at and the
/// running checksum before it.
#[derive(Debug, Clone, Copy)]
struct WalCursor {
    header: WalHeader,
    offset: u64,
    checksum: (u32, u32),
}

/// The WAL fields an LTX header records about the range it came from.
#[derive(Debug, Clone, Copy, Default)]
struct WalRange {
    offset: i64,
    size: i64,
    salt1: u32,
    salt2: u32,
}

#[derive(Debug)]
struct State {
    pos: Pos,
    /// Timestamp (ms) of the last LTX file.
    timestamp: i64,
    page_size: u32,
    /// Database size in pages at `pos`.
    commit: u32,
    /// Checksum of each page 1..=commit at `pos` (index pgno-1); 0 for the
    /// lock page.
    checksums: Vec<u64>,
    /// Database checksum at `pos` (all page checksums folded).
    checksum: Checksum,
    wal: Option<WalCursor>,
    /// Byte ranges of the database file written since the last commit
    /// (start -> end). In rollback-journal mode these are the transaction's
    /// pages: the journal alone misses pages reused from the freelist.
    dirty: std::collections::BTreeMap<u64, u64>,
    /// The journal's checksum nonce when `dirty` began: the rollback-mode
    /// transaction those writes belong to. `None` for writes made without
    /// a hot journal (journal_mode MEMORY/OFF, checkpoints).
    dirty_nonce: Option<u32>,
    /// The rollback journal, kept open between checks while it exists.
    journal_file: Option<File>,
    /// The WAL, kept open between writes (dropped when the WAL is removed).
    wal_file: Option<File>,
    /// Whether journal-less writes were reported in the log already.
    journal_less_logged: bool,
    /// Whether WAL writes have bypassed the store (FUSE passthrough) in
    /// this process: commits are then captured at barriers (see
    /// [`Db::capture_wal`]) instead of when the commit frame is written.
    wal_lazy: bool,
    /// Opens through which WAL writes bypass the store.
    wal_handles: usize,
    /// The WAL index, kept open while it exists.
    shm_file: Option<File>,
    /// The database file's stamp when its page checksums came from the
    /// clean shutdown's saved table, until the background scan checks them.
    unverified: Option<Stamp>,
}

impl State {
    /// A database with no pages and no history.
    fn empty() -> State {
        State {
            pos: Pos::ZERO,
            timestamp: 0,
            page_size: 0,
            commit: 0,
            checksums: Vec::new(),
            checksum: Checksum::EMPTY,
            wal: None,
            dirty: Default::default(),
            dirty_nonce: None,
            journal_file: None,
            wal_file: None,
            journal_less_logged: false,
            wal_lazy: false,
            wal_handles: 0,
            shm_file: None,
            unverified: None,
        }
    }
}

/// One database. All capture for it is serialised by one mutex; SQLite's
/// own locks already serialise writers, so it is rarely contended.
#[derive(Debug)]
pub struct Db {
    name: String,
    paths: DbPaths,
    opts: StoreOptions,
    state: Mutex<State>,
    writer: LtxWriter,
    /// LTX files of this database queued but not yet written.
    progress: Arc<Progress>,
    changes: Arc<Changes>,
    stats: Arc<DbStats>,
    /// This replica holds the primary's halt lock on the database: SQLite
    /// clients here may write it (their commits go to the primary).
    halted: std::sync::atomic::AtomicBool,
}

use litefs_ltx::now_ms;

fn open_read(path: &Path) -> Result<Option<File>, StoreError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(path),
    }
}

impl Db {
    /// Opens a database directory and brings its state up to date with its
    /// files: position from the newest LTX file, page checksums from the
    /// database file and the committed part of the WAL, and an LTX file for
    /// every committed WAL transaction that has none yet (a crash between
    /// SQLite's commit and ours).
    pub(crate) fn open(
        name: String,
        paths: DbPaths,
        opts: StoreOptions,
        writer: LtxWriter,
        changes: Arc<Changes>,
    ) -> Result<Db, StoreError> {
        std::fs::create_dir_all(&paths.ltx).ctx(&paths.ltx)?;
        let db = Db {
            name,
            paths,
            opts,
            state: Mutex::new(State::empty()),
            writer,
            progress: Arc::default(),
            changes,
            stats: Arc::default(),
            halted: Default::default(),
        };
        db.recover()?;
        db.progress.flush()?;
        let (files, bytes) = ltx_on_disk(&db.paths.ltx).ctx(&db.paths.ltx)?;
        db.stats.set_ltx_on_disk(files, bytes);
        Ok(db)
    }

    /// What this database has done since the process started (for
    /// metrics); cheap to update from any thread.
    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    /// Whether this replica holds the primary's halt lock on the database,
    /// so that its SQLite clients may write it.
    pub fn halted(&self) -> bool {
        self.halted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records whether this replica holds the halt lock (set once it has
    /// caught up with the lock's position; cleared before it is released).
    pub fn set_halted(&self, held: bool) {
        self.halted
            .store(held, std::sync::atomic::Ordering::Release);
    }

    /// The queue and counters the LTX writer needs.
    fn queue(&self) -> DbQueue<'_> {
        DbQueue {
            progress: &self.progress,
            stats: &self.stats,
        }
    }

    /// The database's state now, for `/debug/vars`: takes the database's
    /// mutex briefly and reads the database header.
    pub fn status(&self) -> Result<DbStatus, StoreError> {
        let (pos, timestamp, page_size, pages, wal_cursor, wal_passthrough_handles) = {
            let st = self.lock()?;
            (
                st.pos,
                st.timestamp,
                st.page_size,
                st.commit,
                st.wal.map(|c| c.offset),
                st.wal_handles,
            )
        };
        let wal = self.database_is_wal()?;
        Ok(DbStatus {
            pos,
            timestamp,
            page_size,
            pages,
            wal,
            wal_cursor,
            wal_passthrough_handles,
            pending_ltx: self.progress.pending(),
        })
    }

    /// Waits until every LTX file captured so far is on disk (they are
    /// written off the commit path). Reports a write that failed since the
    /// last call; the capture after such a failure writes a snapshot.
    pub fn flush_ltx(&self) -> Result<(), StoreError> {
        self.progress.flush()
    }

    /// Brings the position and the LTX files fully up to date: captures the
    /// published WAL commits (see [`Db::capture_wal`]) and waits for their
    /// files. Call before exposing the position or before anything that
    /// destroys what pending files were captured from.
    pub fn sync_position(&self) -> Result<(), StoreError> {
        self.capture_wal()?;
        {
            let mut st = self.lock()?;
            self.journal_barrier_locked(&mut st)?;
        }
        self.flush_ltx()
    }

    /// After a failed LTX write the chain has a hole: make the next capture
    /// a snapshot (every page) by forgetting the page size.
    fn check_chain_hole(&self, st: &mut State) {
        if self.progress.take_force_snapshot() {
            st.page_size = 0;
        }
    }

    /// The header flags of the LTX files this node writes.
    fn ltx_flags(&self) -> u32 {
        if self.opts.compress {
            FLAG_COMPRESS_LZ4
        } else {
            0
        }
    }

    /// The database's name in the mount.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its files.
    pub fn paths(&self) -> &DbPaths {
        &self.paths
    }

    /// The current replication position.
    pub fn pos(&self) -> Pos {
        self.state.lock().map(|s| s.pos).unwrap_or(Pos::ZERO)
    }

    /// The position and the timestamp (ms) of the LTX file that made it.
    pub fn pos_and_timestamp(&self) -> (Pos, i64) {
        self.state
            .lock()
            .map(|s| (s.pos, s.timestamp))
            .unwrap_or((Pos::ZERO, 0))
    }

    /// The `<db>-pos` file content: `%016x/%016x\n`.
    pub fn pos_file(&self) -> String {
        format!("{}\n", self.pos())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| poisoned(&self.paths.dir))
    }

    fn recover(&self) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        // Position from the newest LTX file that verifies. LTX files are not
        // fsynced (the WAL or the database file is the durable copy), so
        // after a power loss the newest may be torn: set it aside and fall
        // back; the transaction is captured again from the files below.
        let mut last_wal = WalRange::default();
        while let Some((path, _)) = self.newest_ltx()? {
            let f = File::open(&path).ctx(&path)?;
            match litefs_ltx::verify(std::io::BufReader::new(f), Version::V1) {
                Ok((h, t)) => {
                    st.pos = Pos {
                        txid: h.max_txid,
                        post_apply_checksum: t.post_apply_checksum,
                    };
                    st.timestamp = h.timestamp;
                    last_wal = WalRange {
                        offset: h.wal_offset,
                        size: h.wal_size,
                        salt1: h.wal_salt1,
                        salt2: h.wal_salt2,
                    };
                    break;
                }
                Err(e) => {
                    let aside = path.with_extension("ltx.damaged");
                    tracing::warn!(db = %self.name, path = %path.display(), error = %e, "newest LTX file is damaged; setting it aside");
                    std::fs::rename(&path, &aside).ctx(&path)?;
                }
            }
        }
        self.rollback_hot_journal()?;
        // Every client of the previous run is gone; SQLite rebuilds the WAL
        // index from the WAL, so a stale one must not survive.
        match std::fs::remove_file(&self.paths.shm) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(&self.paths.shm),
        }
        // Page checksums of the database file: saved at the last clean
        // shutdown if that still holds, else read from every page.
        if !self.use_saved_checksums(&mut st)? {
            self.load_checksums(&mut st)?;
        }
        // Overlay the committed WAL; capture what has no LTX file yet.
        if let Some(w) = open_read(&self.paths.wal)? {
            self.recover_wal(&mut st, &w, last_wal)?;
        }
        let wal_has_frames = st.wal.is_some_and(|c| c.offset > WAL_HEADER_SIZE as u64);
        if st.pos.txid.0 > 0 && st.checksum != st.pos.post_apply_checksum && wal_has_frames {
            return Err(StoreError::ChecksumMismatch {
                db: self.name.clone(),
                pos: st.pos,
                actual: st.checksum,
            });
        }
        if st.pos.txid.0 > 1 && st.checksum != st.pos.post_apply_checksum {
            // The newest LTX file may describe a transaction whose journal
            // was rolled back above: the daemon stopped between writing the
            // LTX file and performing the journal's deletion, so the client
            // never saw it commit. Its pre-apply checksum then matches the
            // database: set it aside and stand at the transaction before.
            if let Some((path, _)) = self.newest_ltx()? {
                let f = File::open(&path).ctx(&path)?;
                let dec = litefs_ltx::Decoder::new(std::io::BufReader::new(f), Version::V1)
                    .map_err(|source| StoreError::Decode {
                        path: path.clone(),
                        source,
                    })?;
                let h = *dec.header();
                if !h.is_snapshot()
                    && h.min_txid == h.max_txid
                    && h.pre_apply_checksum == st.checksum
                {
                    let aside = path.with_extension("ltx.rolledback");
                    std::fs::rename(&path, &aside).ctx(&path)?;
                    tracing::warn!(db = %self.name, txid = %h.max_txid, "newest LTX file describes a transaction that was rolled back; set aside");
                    st.pos = Pos {
                        txid: Txid(h.min_txid.0 - 1),
                        post_apply_checksum: h.pre_apply_checksum,
                    };
                }
            }
        }
        if st.pos.txid.0 > 0
            && st.checksum != st.pos.post_apply_checksum
            && !wal_has_frames
            && self.roll_forward(&mut st)?
        {
            return Ok(());
        }
        if st.pos.txid.0 == 0 && st.commit > 0 && !wal_has_frames {
            // A database placed in the data directory by hand (or whose LTX
            // files were all lost): its first LTX file is a snapshot of it.
            tracing::info!(db = %self.name, pages = st.commit, "database without LTX files; writing a snapshot");
            self.snapshot_database_file(&mut st)?;
        }
        if st.pos.txid.0 > 0 && st.checksum != st.pos.post_apply_checksum && st.commit > 0 {
            // The files hold a committed state no LTX file describes (a
            // rollback-journal commit whose LTX file a power loss took). The
            // database is what SQLite committed, so record it as a snapshot
            // at the next TXID; replicas holding the lost file will see the
            // checksum differ and take the snapshot.
            tracing::warn!(db = %self.name, pos = %st.pos, actual = %st.checksum, "database ahead of its LTX files; writing a recovery snapshot");
            self.snapshot_database_file(&mut st)?;
        }
        Ok(())
    }

    /// Records the database file as it is as a snapshot LTX file at the next
    /// TXID (recovery only: the WAL holds no committed frames).
    fn snapshot_database_file(&self, st: &mut State) -> Result<(), StoreError> {
        let (ps, commit) = (st.page_size, st.commit);
        let pages: Vec<(u32, Source)> = (1..=commit).map(|p| (p, Source::Db)).collect();
        let db = open_read(&self.paths.database)?;
        st.page_size = 0; // forces a snapshot
        self.write_ltx(
            st,
            ps,
            commit,
            &pages,
            None,
            db.as_ref(),
            WalRange::default(),
            1,
        )
    }

    /// Rolls back a hot journal left by a crash, as SQLite would on its next
    /// open: original pages written back, the file cut to its original size,
    /// the journal removed. Done before the mount so that no client ever
    /// sees the half-written transaction and our checksums start from the
    /// state the last LTX file describes.
    fn rollback_hot_journal(&self) -> Result<(), StoreError> {
        let Some(j) = open_read(&self.paths.journal)? else {
            return Ok(());
        };
        let jlen = j.metadata().ctx(&self.paths.journal)?.len();
        if open_read(&self.paths.database)?.is_none() {
            std::fs::remove_file(&self.paths.journal).ctx(&self.paths.journal)?;
            return Ok(());
        }
        let db = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.paths.database)
            .ctx(&self.paths.database)?;
        let mut hb = [0u8; 100];
        let page_size = match db.read_exact_at(&mut hb, 0) {
            Ok(()) => DbHeader::parse(&hb).map(|h| h.page_size).unwrap_or(0),
            Err(_) => 0,
        };
        let dbp = &self.paths.database;
        let found = litefs_sqlite::read_journal_with(&j, jlen, page_size, |pgno, data| {
            db.write_all_at(data, u64::from(pgno - 1) * data.len() as u64)
        })
        .map_err(|source| StoreError::Sqlite {
            path: self.paths.journal.clone(),
            source,
        })?;
        if let Some(jp) = found {
            db.set_len(u64::from(jp.initial_pages) * u64::from(jp.page_size))
                .ctx(dbp)?;
            db.sync_all().ctx(dbp)?;
            tracing::warn!(db = %self.name, pages = jp.pgnos.len(), "rolled back a hot journal left by a crash");
        }
        std::fs::remove_file(&self.paths.journal).ctx(&self.paths.journal)?;
        Ok(())
    }

    /// Records that the database file is about to be written at `offset`:
    /// in rollback mode these are the transaction's pages (the journal
    /// alone misses pages reused from the freelist).
    ///
    /// When WAL writes bypass the store, this is also capture's barrier: a
    /// checkpoint copies committed frames into the database file before
    /// SQLite may restart the WAL over them, so every published commit is
    /// captured before the first such write lands.
    pub fn database_writing(&self, offset: u64, len: usize) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        if st.wal_lazy {
            self.capture_wal_locked(&mut st)?;
        }
        if st.wal_lazy || st.wal.is_some() {
            // A checkpoint: pending files must be on disk before the frames
            // they came from can be overwritten.
            self.progress.flush()?;
        }
        self.journal_barrier_locked(&mut st)?;
        if st.dirty.is_empty() {
            st.dirty_nonce = match self.journal_state(&mut st)? {
                JournalState::Hot(n) => Some(n),
                _ => None,
            };
        }
        let end = offset + len as u64;
        let e = st.dirty.entry(offset).or_insert(end);
        *e = (*e).max(end);
        Ok(())
    }

    /// Whether the database file holds a SQLite database in rollback-journal
    /// mode. Files that are not SQLite databases (a super-journal, any
    /// other file named like a database) are plain files: nothing to refuse.
    fn is_rollback_mode_database(&self) -> Result<bool, StoreError> {
        let Some(f) = open_read(&self.paths.database)? else {
            return Ok(false);
        };
        let mut b = [0u8; 20];
        if f.read_exact_at(&mut b, 0).is_err() {
            return Ok(false);
        }
        Ok(&b[..16] == litefs_sqlite::DB_HEADER_MAGIC && b[18..20] != [2, 2])
    }

    /// What the journal's first header says now. Read from the file, not
    /// tracked from writes: journal writes may bypass the store.
    fn journal_state(&self, st: &mut State) -> Result<JournalState, StoreError> {
        if st.journal_file.is_none() {
            st.journal_file = open_read(&self.paths.journal)?;
        }
        let Some(j) = st.journal_file.as_ref() else {
            return Ok(JournalState::Absent);
        };
        let mut b = [0u8; litefs_sqlite::JOURNAL_HEADER_SIZE];
        let n = read_up_to(j, &mut b, 0).ctx(&self.paths.journal)?;
        Ok(match litefs_sqlite::JournalHeader::parse(&b[..n]) {
            Ok(h) => JournalState::Hot(h.nonce),
            Err(_) => JournalState::Idle,
        })
    }

    /// Captures a rollback-mode transaction whose journal was finalised
    /// without passing through the store: `journal_mode=PERSIST` commits by
    /// zeroing the journal header, a write that FUSE passthrough hands to
    /// the kernel. The writes recorded since the last commit belong to a
    /// committed transaction once the journal they were made under is no
    /// longer hot, or is hot again with another nonce (the next
    /// transaction, before its first database write).
    fn journal_barrier_locked(&self, st: &mut State) -> Result<(), StoreError> {
        let Some(nonce) = st.dirty_nonce else {
            return Ok(());
        };
        if st.dirty.is_empty() {
            return Ok(());
        }
        match self.journal_state(st)? {
            JournalState::Hot(n) if n == nonce => Ok(()),
            _ => self.capture_database(st, None),
        }
    }

    /// Called when a handle on the rollback journal is closed (SQLite
    /// closes it at the end of each transaction): a barrier for commits
    /// made by zeroing the journal header (see `journal_barrier_locked`).
    pub fn journal_closed(&self) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        self.journal_barrier_locked(&mut st)
    }

    fn load_checksums(&self, st: &mut State) -> Result<(), StoreError> {
        st.checksums.clear();
        st.checksum = Checksum::EMPTY;
        st.commit = 0;
        let Some(f) = open_read(&self.paths.database)? else {
            return Ok(());
        };
        let len = f.metadata().ctx(&self.paths.database)?.len();
        if len < 100 {
            return Ok(());
        }
        let mut hb = [0u8; 100];
        f.read_exact_at(&mut hb, 0).ctx(&self.paths.database)?;
        let h = match DbHeader::parse(&hb) {
            Ok(h) => h,
            Err(e) if st.pos.txid.0 == 0 => {
                // Never a database here: a plain file that has a database's name.
                tracing::info!(db = %self.name, reason = %e, "not a SQLite database; serving it as a plain file");
                return Ok(());
            }
            Err(source) => {
                return Err(StoreError::Sqlite {
                    path: self.paths.database.clone(),
                    source,
                });
            }
        };
        st.page_size = h.page_size;
        let commit = (len / u64::from(h.page_size)) as u32;
        st.checksums = self.scan_pages(&f, h.page_size, commit)?;
        st.checksum = fold(&st.checksums);
        st.commit = commit;
        Ok(())
    }

    /// The checksum of every page 1..=`commit` of the database file (0 for
    /// the lock page).
    fn scan_pages(&self, f: &File, page_size: u32, commit: u32) -> Result<Vec<u64>, StoreError> {
        let lock = lock_pgno(page_size);
        // Large reads: start-up time is this loop on a big database.
        let per_read = ((1usize << 20) / page_size.max(1) as usize).max(1);
        let mut buf = vec![0u8; per_read * page_size as usize];
        let mut out = Vec::with_capacity(commit as usize);
        let mut pgno = 1u32;
        while pgno <= commit {
            let n = ((commit - pgno + 1) as usize).min(per_read);
            let chunk = &mut buf[..n * page_size as usize];
            f.read_exact_at(chunk, u64::from(pgno - 1) * u64::from(page_size))
                .ctx(&self.paths.database)?;
            for page in chunk.chunks_exact(page_size as usize) {
                out.push(if pgno == lock {
                    0
                } else {
                    page_checksum(pgno, page).0
                });
                pgno += 1;
            }
        }
        Ok(out)
    }

    /// Takes the table saved at the last clean shutdown if it provably
    /// describes the database file at the recovered position (see
    /// `saved.rs`); the background verification is then due.
    fn use_saved_checksums(&self, st: &mut State) -> Result<bool, StoreError> {
        let Some(saved) = saved::take(&self.paths.dir.join(SAVED_CHECKSUMS), &self.name) else {
            return Ok(false);
        };
        let Some(f) = open_read(&self.paths.database)? else {
            return Ok(false);
        };
        let meta = f.metadata().ctx(&self.paths.database)?;
        if let Err(reason) = saved.check(st.pos, &meta) {
            tracing::warn!(db = %self.name, reason, "saved checksum table does not apply; rescanning");
            return Ok(false);
        }
        tracing::info!(db = %self.name, pages = saved.checksums.len(), "page checksums taken from the clean shutdown; verifying in the background");
        st.page_size = saved.page_size;
        st.commit = saved.checksums.len() as u32;
        st.checksum = st.pos.post_apply_checksum;
        st.checksums = saved.checksums;
        st.unverified = Some(saved.stamp);
        Ok(true)
    }

    /// Saves the page-checksum table for the next start, at a clean
    /// shutdown once nothing can write. Returns whether it did: a database
    /// whose WAL still holds frames, or with writes not yet captured, is
    /// skipped (the next start rescans it).
    pub fn save_checksums(&self) -> Result<bool, StoreError> {
        self.sync_position()?;
        let st = self.lock()?;
        if st.pos.txid.0 == 0
            || st.page_size == 0
            || st.commit == 0
            || !st.dirty.is_empty()
            || st.checksum != st.pos.post_apply_checksum
        {
            return Ok(false);
        }
        match std::fs::metadata(&self.paths.wal) {
            Ok(m) if m.len() > 0 => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(&self.paths.wal),
        }
        let meta = std::fs::metadata(&self.paths.database).ctx(&self.paths.database)?;
        let saved = Saved {
            pos: st.pos,
            page_size: st.page_size,
            checksums: st.checksums.clone(),
            stamp: Stamp::of(&meta),
        };
        if saved.check(st.pos, &meta).is_err() {
            return Ok(false);
        }
        let path = self.paths.dir.join(SAVED_CHECKSUMS);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, saved.encode()).ctx(&tmp)?;
        std::fs::rename(&tmp, &path).ctx(&path)?;
        Ok(true)
    }

    /// Checks a table taken from the clean shutdown against the database
    /// file itself, off the start-up path. If they differ, the table is
    /// replaced and the next LTX file is a snapshot. Inconclusive (and
    /// logged) when the database is written before the scan completes:
    /// the table has moved on with it by then.
    pub fn verify_saved_checksums(&self) -> Result<(), StoreError> {
        let (stamp, page_size, commit) = {
            let mut st = self.lock()?;
            let Some(stamp) = st.unverified.take() else {
                return Ok(());
            };
            (stamp, st.page_size, st.commit)
        };
        let Some(f) = open_read(&self.paths.database)? else {
            return Ok(());
        };
        let unchanged = |f: &File| -> Result<bool, StoreError> {
            Ok(Stamp::of(&f.metadata().ctx(&self.paths.database)?) == stamp)
        };
        let skipped = || {
            tracing::info!(db = %self.name, "database written before its saved checksums were verified; verification skipped");
            Ok(())
        };
        if !unchanged(&f)? {
            return skipped();
        }
        let scanned = self.scan_pages(&f, page_size, commit)?;
        let mut st = self.lock()?;
        if !unchanged(&f)? || st.page_size != page_size || st.commit != commit {
            return skipped();
        }
        if scanned == st.checksums {
            tracing::info!(db = %self.name, pages = commit, "saved page checksums verified");
            return Ok(());
        }
        let bad = scanned
            .iter()
            .zip(&st.checksums)
            .position(|(a, b)| a != b)
            .map_or(0, |i| i + 1);
        tracing::error!(db = %self.name, first_page = bad, "saved page checksums were wrong; rescanned, the next LTX file is a snapshot");
        st.checksum = fold(&scanned);
        st.checksums = scanned;
        self.progress.force_snapshot();
        Ok(())
    }

    fn recover_wal(&self, st: &mut State, w: &File, last: WalRange) -> Result<(), StoreError> {
        let mut hb = [0u8; WAL_HEADER_SIZE];
        if w.read_exact_at(&mut hb, 0).is_err() {
            return Ok(());
        }
        let Ok(header) = WalHeader::parse(&hb) else {
            return Ok(());
        };
        let txns = scan_wal(w, &header, WAL_HEADER_SIZE as u64, header.checksum, None)
            .ctx(&self.paths.wal)?;
        let same_gen = last.salt1 == header.salt1 && last.salt2 == header.salt2 && last.offset > 0;
        let captured_end = if same_gen {
            (last.offset + last.size) as u64
        } else {
            WAL_HEADER_SIZE as u64
        };
        let mut cursor = WalCursor {
            header,
            offset: WAL_HEADER_SIZE as u64,
            checksum: header.checksum,
        };
        let split = txns.partition_point(|t| t.end <= captured_end);
        for txn in &txns[..split] {
            // Already in an LTX file: fold its pages into the state silently.
            self.fold_wal_txn(st, w, header.page_size, txn)?;
        }
        if let Some(last) = txns.last() {
            cursor.offset = last.end;
            cursor.checksum = last.checksum;
        }
        if split < txns.len() {
            self.capture_wal_txns(st, w, &header, &txns[split..])?;
            tracing::info!(db = %self.name, txns = txns.len() - split, txid = %st.pos.txid, "captured WAL transactions found at start-up");
        }
        st.wal = Some(cursor);
        Ok(())
    }

    /// Applies a WAL transaction's pages to the in-memory checksums only.
    fn fold_wal_txn(
        &self,
        st: &mut State,
        w: &File,
        page_size: u32,
        txn: &WalTxn,
    ) -> Result<(), StoreError> {
        st.page_size = page_size;
        let ps = page_size;
        let mut buf = vec![0u8; ps as usize];
        set_commit(st, txn.commit);
        for &(pgno, off) in &txn.pages {
            if pgno > txn.commit || pgno == lock_pgno(ps) {
                continue;
            }
            w.read_exact_at(&mut buf, off).ctx(&self.paths.wal)?;
            set_page(st, pgno, page_checksum(pgno, &buf));
        }
        Ok(())
    }

    fn newest_ltx(&self) -> Result<Option<(PathBuf, Txid)>, StoreError> {
        let mut best: Option<(PathBuf, Txid)> = None;
        for e in std::fs::read_dir(&self.paths.ltx).ctx(&self.paths.ltx)? {
            let e = e.ctx(&self.paths.ltx)?;
            let name = e.file_name();
            let Some((_, max)) = name.to_str().and_then(parse_file_name) else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, b)| max > *b) {
                best = Some((e.path(), max));
            }
        }
        Ok(best)
    }

    /// Called after bytes were written to the WAL at `offset`. When the write
    /// completes (or re-checksums) a commit frame, every transaction up to it
    /// is captured before this returns, so no one can observe the commit
    /// before its LTX file exists.
    pub fn wal_written(&self, offset: u64, len: usize) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        let w = match st.wal_file.take() {
            Some(w) => w,
            None => File::open(&self.paths.wal).ctx(&self.paths.wal)?,
        };
        let r = self.wal_written_locked(&mut st, &w, offset, len);
        st.wal_file = Some(w);
        r
    }

    fn wal_written_locked(
        &self,
        st: &mut State,
        w: &File,
        offset: u64,
        len: usize,
    ) -> Result<(), StoreError> {
        if offset < WAL_HEADER_SIZE as u64 {
            let mut hb = [0u8; WAL_HEADER_SIZE];
            if w.read_exact_at(&mut hb, 0).is_ok() {
                if let Ok(header) = WalHeader::parse(&hb) {
                    st.wal = Some(WalCursor {
                        header,
                        offset: WAL_HEADER_SIZE as u64,
                        checksum: header.checksum,
                    });
                }
            }
            return Ok(());
        }
        let Some(cur) = st.wal else { return Ok(()) };
        let end = offset + len as u64;
        if end <= cur.offset {
            return Ok(());
        }
        let frame = WAL_FRAME_HEADER_SIZE as u64 + u64::from(cur.header.page_size);
        let idx = (end - 1 - WAL_HEADER_SIZE as u64) / frame;
        let start = WAL_HEADER_SIZE as u64 + idx * frame;
        let mut fh = [0u8; WAL_FRAME_HEADER_SIZE];
        if w.read_exact_at(&mut fh, start).is_err() {
            return Ok(());
        }
        match WalFrameHeader::parse(&fh) {
            Ok(h) if h.commit != 0 => {}
            _ => return Ok(()),
        }
        // Nothing past this frame can belong to a transaction it commits.
        let limit = start + frame;
        let txns =
            scan_wal(w, &cur.header, cur.offset, cur.checksum, Some(limit)).ctx(&self.paths.wal)?;
        st.dirty.clear();
        self.capture_wal_txns(st, w, &cur.header, &txns)?;
        if let (Some(c), Some(last)) = (st.wal.as_mut(), txns.last()) {
            c.offset = last.end;
            c.checksum = last.checksum;
        }
        Ok(())
    }

    /// Captures every WAL transaction SQLite has published since the last
    /// capture, as one LTX file spanning their TXIDs. A barrier: call it
    /// before anything that must see every commit (a position read, a
    /// checkpoint's database write, the WAL's truncation or removal) and
    /// periodically so that replication follows. Cheap when nothing is new:
    /// one read of the WAL index header. A no-op unless the WAL is lazy.
    /// Returns how many transactions were captured.
    pub fn capture_wal(&self) -> Result<usize, StoreError> {
        let mut st = self.lock()?;
        if !st.wal_lazy {
            return Ok(0);
        }
        self.capture_wal_locked(&mut st)
    }

    /// Records that an open handing WAL I/O to the kernel began (`true`) or
    /// ended (`false`). When the last one ends, what it wrote is captured
    /// at once: a client killed between commits leaves the WAL behind.
    pub fn wal_handle(&self, open: bool) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        if open {
            st.wal_lazy = true;
            st.wal_handles += 1;
            return Ok(());
        }
        st.wal_handles = st.wal_handles.saturating_sub(1);
        if st.wal_handles == 0 {
            self.capture_wal_locked(&mut st)?;
            // Nothing can write the WAL behind the store now; drop the
            // cached files so a removed WAL is not held open.
            st.wal_file = None;
            st.shm_file = None;
        }
        Ok(())
    }

    /// Whether any open hands WAL writes to the kernel: only then can new
    /// commits appear without a request passing through the store, so only
    /// then does the periodic capture need to look.
    pub fn wal_writable_behind(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.wal_handles > 0)
    }

    /// Tells the store the WAL index was removed.
    pub fn shm_removed(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.shm_file = None;
        }
    }

    /// The WAL index header, when the `-shm` file holds a valid one.
    fn wal_index_header(&self, st: &mut State) -> Option<WalIndexHeader> {
        if st.shm_file.is_none() {
            st.shm_file = File::open(&self.paths.shm).ok();
        }
        let f = st.shm_file.as_ref()?;
        let mut b = [0u8; 2 * WAL_INDEX_HEADER_SIZE];
        // A writer updates the two copies one after the other; retry a few
        // times while they disagree.
        for _ in 0..8 {
            if f.read_exact_at(&mut b, 0).is_err() {
                return None;
            }
            if let Some(h) = WalIndexHeader::parse(&b) {
                return Some(h);
            }
            std::hint::spin_loop();
        }
        None
    }

    fn capture_wal_locked(&self, st: &mut State) -> Result<usize, StoreError> {
        let w = match st.wal_file.take() {
            Some(w) => w,
            None => match open_read(&self.paths.wal)? {
                Some(w) => w,
                None => return Ok(0),
            },
        };
        let r = self.capture_wal_from(st, &w);
        st.wal_file = Some(w);
        r
    }

    fn capture_wal_from(&self, st: &mut State, w: &File) -> Result<usize, StoreError> {
        let mut hb = [0u8; WAL_HEADER_SIZE];
        if w.read_exact_at(&mut hb, 0).is_err() {
            return Ok(0);
        }
        let Ok(header) = WalHeader::parse(&hb) else {
            return Ok(0);
        };
        // A cursor from another WAL generation is spent: SQLite restarts
        // the WAL only after a checkpoint copied every frame, and the
        // checkpoint's first database write captured them all.
        let cur = match st.wal {
            Some(c)
                if c.header.salt1 == header.salt1
                    && c.header.salt2 == header.salt2
                    && c.header.page_size == header.page_size =>
            {
                c
            }
            _ => WalCursor {
                header,
                offset: WAL_HEADER_SIZE as u64,
                checksum: header.checksum,
            },
        };
        // Only what SQLite has published is committed: a commit frame past
        // the index's last frame belongs to a writer that died before
        // publishing it, and the next writer will overwrite it. Without a
        // live index (all connections gone), the WAL alone decides, as
        // SQLite's recovery does.
        let limit = match self.wal_index_header(st) {
            Some(ih) if ih.matches(&header) => {
                let end = WAL_HEADER_SIZE as u64 + u64::from(ih.mx_frame) * header.frame_size();
                if end <= cur.offset {
                    st.wal = Some(cur);
                    return Ok(0);
                }
                Some(end)
            }
            _ => None,
        };
        let txns = scan_wal(w, &header, cur.offset, cur.checksum, limit).ctx(&self.paths.wal)?;
        let mut next = cur;
        if let Some(last) = txns.last() {
            self.capture_wal_txns(st, w, &header, &txns)?;
            next.offset = last.end;
            next.checksum = last.checksum;
        }
        st.wal = Some(next);
        Ok(txns.len())
    }

    /// Called when the WAL file is removed or truncated to zero: capture has
    /// nothing left to read in it.
    pub fn wal_reset(&self) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        st.wal = None;
        st.wal_file = None;
        Ok(())
    }

    /// Captures consecutive committed WAL transactions as one LTX file
    /// spanning their TXIDs: the latest frame of every page they wrote, the
    /// size after the last. A replica applying it lands exactly where the
    /// last of them left the database.
    fn capture_wal_txns(
        &self,
        st: &mut State,
        w: &File,
        header: &WalHeader,
        txns: &[WalTxn],
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (txns.first(), txns.last()) else {
            return Ok(());
        };
        let range = WalRange {
            offset: first.start as i64,
            size: (last.end - first.start) as i64,
            salt1: header.salt1,
            salt2: header.salt2,
        };
        self.check_chain_hole(st);
        let ps = header.page_size;
        let commit = last.commit;
        let latest = apply::latest_frames(txns);
        let db = open_read(&self.paths.database)?;
        let pages: Vec<(u32, Source)> = if st.pos.txid.0 == 0 || st.page_size != ps {
            // First transaction, or a new page size: a snapshot of every page.
            (1..=commit)
                .map(|p| (p, latest.get(&p).map_or(Source::Db, |&o| Source::Wal(o))))
                .collect()
        } else {
            latest
                .range(..=commit)
                .map(|(&p, &o)| (p, Source::Wal(o)))
                .collect()
        };
        self.write_ltx(
            st,
            ps,
            commit,
            &pages,
            Some(w),
            db.as_ref(),
            range,
            txns.len() as u64,
        )
    }

    /// Called before a rollback journal is finalised (deleted, truncated to
    /// zero, or its header zeroed): if it held a transaction, that
    /// transaction is committed in the database file now, and its pages are
    /// the journal's page list plus any pages past the old end.
    pub fn journal_finalizing(&self) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        // The journal is about to go (or be emptied): reopen it next time.
        st.journal_file = None;
        let journal = match open_read(&self.paths.journal)? {
            Some(j) => {
                let jlen = j.metadata().ctx(&self.paths.journal)?.len();
                litefs_sqlite::read_journal(&j, jlen, st.page_size).map_err(|source| {
                    StoreError::Sqlite {
                        path: self.paths.journal.clone(),
                        source,
                    }
                })?
            }
            None => None,
        };
        self.capture_database(&mut st, journal)
    }

    /// Called when the database file was fsynced, or its last open handle
    /// closed. Writes made to a rollback-mode database without a journal
    /// (`journal_mode` MEMORY or OFF, or a plain copy onto the file) have
    /// no other commit point: SQLite syncs the file at the end of each such
    /// transaction (unless `synchronous=OFF`), and a file nobody has open is
    /// between transactions. They become one LTX file here.
    pub fn database_synced(&self) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        if st.dirty.is_empty() || matches!(self.journal_state(&mut st)?, JournalState::Hot(_)) {
            return Ok(());
        }
        if st.wal.is_some() || !self.is_rollback_mode_database()? {
            // WAL-mode checkpoint writes: already captured from the WAL.
            st.dirty.clear();
            st.dirty_nonce = None;
            return Ok(());
        }
        if st.dirty_nonce.is_none() && !st.journal_less_logged {
            st.journal_less_logged = true;
            tracing::warn!(
                db = %self.name,
                "database written without a rollback journal (journal_mode MEMORY/OFF or a plain copy): \
                 captured when the file is synced or closed; use DELETE, TRUNCATE, PERSIST or WAL for \
                 one LTX file per transaction"
            );
        }
        self.capture_database(&mut st, None)
    }

    /// Captures the rollback-mode transaction now committed in the database
    /// file: the pages `journal` holds originals of and the pages past its
    /// original end, plus every page written since the last commit.
    fn capture_database(
        &self,
        st: &mut State,
        journal: Option<litefs_sqlite::JournalPages>,
    ) -> Result<(), StoreError> {
        let dirty = std::mem::take(&mut st.dirty);
        st.dirty_nonce = None;
        tracing::debug!(db = %self.name, journal = ?journal.as_ref().map(|j| (j.initial_pages, j.pgnos.len())), dirty = dirty.len(), "capture rollback-mode commit");
        if journal.is_none() && dirty.is_empty() {
            return Ok(());
        }
        let Some(db) = open_read(&self.paths.database)? else {
            return Ok(());
        };
        let dlen = db.metadata().ctx(&self.paths.database)?.len();
        let mut hb = [0u8; 100];
        if dlen < 100 || db.read_exact_at(&mut hb, 0).is_err() {
            return Ok(());
        }
        let Ok(h) = DbHeader::parse(&hb) else {
            // Not (yet) a SQLite database: a plain file, nothing to capture.
            return Ok(());
        };
        // The header's size counts only when valid and within the file:
        // SQLite calls a larger one corruption, and the file (what a replica
        // must end up with) bounds what is captured. A header damaged by a
        // plain write (SQLite's corruptC.test does this) must not make the
        // capture list billions of pages.
        let file_pages = u32::try_from(dlen / u64::from(h.page_size)).unwrap_or(u32::MAX);
        let commit = if h.page_count_valid() && h.page_count <= file_pages {
            h.page_count
        } else {
            file_pages
        };
        if commit == 0 {
            // Not one whole page yet: nothing a replica could open.
            return Ok(());
        }
        self.check_chain_hole(st);
        let pages: Vec<(u32, Source)> = if st.pos.txid.0 == 0 || st.page_size != h.page_size {
            (1..=commit).map(|p| (p, Source::Db)).collect()
        } else {
            let ps = u64::from(h.page_size);
            let mut set = std::collections::BTreeSet::new();
            match &journal {
                Some(jp) => {
                    set.extend(jp.pgnos.iter().copied().filter(|&p| p <= commit));
                    set.extend(jp.initial_pages.saturating_add(1)..=commit);
                }
                None => set.extend(st.commit.saturating_add(1)..=commit),
            }
            for (&start, &end) in &dirty {
                if end > start {
                    set.extend(
                        (start / ps + 1) as u32
                            ..=((end - 1) / ps + 1).min(u64::from(commit)) as u32,
                    );
                }
            }
            set.into_iter().map(|p| (p, Source::Db)).collect()
        };
        self.write_ltx(
            st,
            h.page_size,
            commit,
            &pages,
            None,
            Some(&db),
            WalRange::default(),
            1,
        )
    }

    /// Encodes one LTX file for the `txns` transactions (one TXID each) that
    /// take the database to `commit` pages with `pages` changed, moving the
    /// checksum page by page; writes nothing when they changed nothing (a
    /// rollback).
    #[allow(clippy::too_many_arguments)]
    fn write_ltx(
        &self,
        st: &mut State,
        page_size: u32,
        commit: u32,
        pages: &[(u32, Source)],
        wal: Option<&File>,
        db: Option<&File>,
        range: WalRange,
        txns: u64,
    ) -> Result<(), StoreError> {
        let snapshot = st.pos.txid.0 == 0 || st.page_size != page_size;
        if snapshot {
            st.page_size = page_size;
            st.checksums.clear();
            st.commit = 0;
            st.checksum = Checksum::EMPTY;
        }
        let txid = Txid(st.pos.txid.0 + txns.max(1));
        let header = Header {
            flags: self.ltx_flags(),
            page_size,
            commit,
            min_txid: if snapshot {
                Txid(1)
            } else {
                Txid(st.pos.txid.0 + 1)
            },
            max_txid: txid,
            timestamp: now_ms(),
            pre_apply_checksum: if snapshot {
                Checksum(0)
            } else {
                st.pos.post_apply_checksum
            },
            wal_offset: range.offset,
            wal_size: range.size,
            wal_salt1: range.salt1,
            wal_salt2: range.salt2,
            node_id: self.opts.node_id,
        };
        let name = format_file_name(header.min_txid, txid);
        // Small files are encoded in memory for the writer thread; large
        // ones stream to disk here, after the queue (files land in order).
        let len = pages.len() * (page_size as usize + 8);
        if len > SPILL_BYTES {
            self.progress.flush()?;
        }
        let out = LtxOut::new(&self.paths.ltx, &name, len)?;
        let spilled = matches!(out, LtxOut::File { .. });
        let src = PageSources { wal, db, commit };
        let encoded = self
            .encode_pages(st, out, header, pages, src, snapshot, &name)
            .and_then(|r| match r {
                Some((out, new, changes)) => out
                    .commit(&self.writer, &self.queue(), &self.paths.ltx, name.clone())
                    .map(|()| Some((new, changes))),
                None => Ok(None),
            });
        let (new, changes) = match encoded {
            Ok(Some(r)) => r,
            // Nothing to record, or a failure: no spilled file may remain.
            other => {
                if spilled {
                    let _ = std::fs::remove_file(tmp_path(&self.paths.ltx, &name));
                }
                return other.map(|_| ());
            }
        };
        set_commit(st, commit);
        for (p, c) in changes {
            set_page(st, p, Checksum(c));
        }
        debug_assert_eq!(st.checksum, new);
        st.checksum = new;
        st.pos = Pos {
            txid,
            post_apply_checksum: new,
        };
        st.timestamp = header.timestamp;
        self.stats.committed(txns.max(1));
        self.changes.notify(&self.name);
        tracing::debug!(db = %self.name, txid = %txid, pages = pages.len(), commit, "committed");
        Ok(())
    }

    /// Encodes `pages` into `out` after `header`, moving the checksum page
    /// by page from `st`'s (which it does not change). Returns the output,
    /// the new checksum and the pages whose checksums changed; `None` when
    /// the transactions changed nothing (a rollback).
    #[allow(clippy::too_many_arguments)]
    fn encode_pages(
        &self,
        st: &State,
        out: LtxOut,
        header: Header,
        pages: &[(u32, Source)],
        src: PageSources<'_>,
        snapshot: bool,
        name: &str,
    ) -> Result<Option<Encoded>, StoreError> {
        let path = self.paths.ltx.join(name);
        let encode_err = |source| StoreError::Encode {
            path: path.clone(),
            source,
        };
        let (page_size, commit) = (header.page_size, src.commit);
        let lock = lock_pgno(page_size);
        let mut enc = Encoder::new(out, header, Format::V1).map_err(encode_err)?;
        let mut new = st.checksum;
        let mut changes: Vec<(u32, u64)> = Vec::with_capacity(pages.len());
        // Pages past the new end leave the database.
        for p in commit + 1..=st.commit {
            let c = st.checksums.get((p - 1) as usize).copied().unwrap_or(0);
            if c != 0 {
                new = new.toggle(Checksum(c));
            }
        }
        let mut buf = vec![0u8; page_size as usize];
        for &(pgno, source) in pages {
            if pgno == lock || pgno > commit {
                continue;
            }
            let off = match source {
                Source::Wal(o) => (src.wal, o, &self.paths.wal),
                Source::Db => (
                    src.db,
                    u64::from(pgno - 1) * u64::from(page_size),
                    &self.paths.database,
                ),
            };
            match off.0 {
                Some(f) => read_page(f, &mut buf, off.1).ctx(off.2)?,
                None => buf.fill(0),
            }
            let c = page_checksum(pgno, &buf);
            let old = st.checksums.get((pgno - 1) as usize).copied().unwrap_or(0);
            if old != 0 {
                new = new.toggle(Checksum(old));
            }
            new = new.toggle(c);
            if old != c.0 || snapshot {
                changes.push((pgno, c.0));
            }
            enc.encode_page(pgno, &buf).map_err(encode_err)?;
        }
        if !snapshot && changes.is_empty() && commit == st.commit {
            return Ok(None);
        }
        let (out, _) = enc.finish(new).map_err(encode_err)?;
        Ok(Some((out, new, changes)))
    }

    /// Drops the database: records a deletion LTX file (commit 0) and
    /// removes the database file. Like `unlink(2)` on any filesystem, its
    /// side files (journal, WAL, WAL index) stay until they are removed
    /// themselves. The name can be created again; its history continues
    /// from the deletion.
    pub fn drop_files(&self) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        if st.wal_lazy {
            self.capture_wal_locked(&mut st)?;
        }
        if st.commit > 0 && st.page_size > 0 {
            let ps = st.page_size;
            self.write_ltx(&mut st, ps, 0, &[], None, None, WalRange::default(), 1)?;
        }
        // The deletion must be on disk before the database file goes.
        self.progress.flush()?;
        st.dirty.clear();
        match std::fs::remove_file(&self.paths.database) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(&self.paths.database),
        }
    }

    /// Removes LTX files whose timestamp is older than `retention`, always
    /// keeping the newest. Returns how many were removed. Errors are
    /// returned, not swallowed; a file that vanished meanwhile is not one.
    /// Afterwards the LTX gauges of [`Db::stats`] are set from what is on
    /// disk, as LiteFS does.
    pub fn enforce_retention(&self, retention: std::time::Duration) -> Result<usize, StoreError> {
        // Hold the lock so a commit cannot race the "newest" decision.
        let st = self.lock()?;
        let newest = st.pos.txid;
        drop(st);
        let cutoff = SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(UNIX_EPOCH);
        let mut removed = 0;
        for e in std::fs::read_dir(&self.paths.ltx).ctx(&self.paths.ltx)? {
            let e = e.ctx(&self.paths.ltx)?;
            let Some((_, max)) = e.file_name().to_str().and_then(parse_file_name) else {
                continue;
            };
            if max >= newest {
                continue;
            }
            let path = e.path();
            let (mtime, len) = match e.metadata() {
                Ok(m) => (m.modified().ctx(&path)?, m.len()),
                Err(err) if err.kind() == ErrorKind::NotFound => continue,
                Err(err) => return Err(err).ctx(&path),
            };
            if mtime < cutoff {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        removed += 1;
                        self.stats.ltx_reaped(len);
                    }
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(err).ctx(&path),
                }
            }
        }
        let (files, bytes) = ltx_on_disk(&self.paths.ltx).ctx(&self.paths.ltx)?;
        self.stats.set_ltx_on_disk(files, bytes);
        Ok(removed)
    }

    /// Recomputes the database checksum from the files and compares it with
    /// the position (only meaningful while no transaction is in flight).
    pub fn verify(&self) -> Result<(), StoreError> {
        let st = self.lock()?;
        let mut fresh = State {
            pos: st.pos,
            timestamp: st.timestamp,
            page_size: st.page_size,
            ..State::empty()
        };
        drop(st);
        self.load_checksums(&mut fresh)?;
        if let Some(w) = open_read(&self.paths.wal)? {
            let mut hb = [0u8; WAL_HEADER_SIZE];
            if w.read_exact_at(&mut hb, 0).is_ok() {
                if let Ok(h) = WalHeader::parse(&hb) {
                    for txn in scan_wal(&w, &h, WAL_HEADER_SIZE as u64, h.checksum, None)
                        .ctx(&self.paths.wal)?
                    {
                        self.fold_wal_txn(&mut fresh, &w, h.page_size, &txn)?;
                    }
                }
            }
        }
        if fresh.pos.txid.0 > 0 && fresh.checksum != fresh.pos.post_apply_checksum {
            return Err(StoreError::ChecksumMismatch {
                db: self.name.clone(),
                pos: fresh.pos,
                actual: fresh.checksum,
            });
        }
        Ok(())
    }
}

/// The first header of the rollback journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JournalState {
    /// No journal file.
    Absent,
    /// A transaction is in flight (or was interrupted): the header carries
    /// the magic; the checksum nonce identifies the transaction.
    Hot(u32),
    /// A journal file whose header is not hot (zeroed by a PERSIST commit,
    /// empty after a TRUNCATE commit).
    Idle,
}

/// Reads as much of `buf` as the file holds from `off`; returns the count.
fn read_up_to(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The file in a database's directory holding its page checksums between
/// a clean shutdown and the next start.
const SAVED_CHECKSUMS: &str = "checksums";

/// An encoded LTX file, its post-apply checksum, and the pages whose
/// checksums it changes (page number, new checksum).
type Encoded = (LtxOut, Checksum, Vec<(u32, u64)>);

/// Where an LTX file's pages are read from.
#[derive(Clone, Copy)]
struct PageSources<'a> {
    wal: Option<&'a File>,
    db: Option<&'a File>,
    /// The database size in pages after the transactions.
    commit: u32,
}

/// Where a page's committed content is read from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The WAL, at this offset of the page data.
    Wal(u64),
    /// The database file.
    Db,
}

/// Reads a page; bytes past the end of the file read as zeros (a page SQLite
/// counts in the database size but has not written yet).
fn read_page(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let n = read_up_to(f, buf, off)?;
    buf[n..].fill(0);
    Ok(())
}

/// Resizes the page table to `commit` pages, dropping truncated pages from
/// the checksum.
fn set_commit(st: &mut State, commit: u32) {
    for p in commit + 1..=st.commit {
        let c = st.checksums.get((p - 1) as usize).copied().unwrap_or(0);
        if c != 0 {
            st.checksum = st.checksum.toggle(Checksum(c));
        }
    }
    st.checksums.resize(commit as usize, 0);
    st.commit = commit;
}

/// Replaces one page's checksum, moving the database checksum.
fn set_page(st: &mut State, pgno: u32, c: Checksum) {
    let i = (pgno - 1) as usize;
    if i >= st.checksums.len() {
        st.checksums.resize(i + 1, 0);
    }
    let old = st.checksums[i];
    if old != 0 {
        st.checksum = st.checksum.toggle(Checksum(old));
    }
    st.checksum = st.checksum.toggle(c);
    st.checksums[i] = c.0;
}
