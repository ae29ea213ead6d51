//! Changing a database from outside SQLite: applying LTX files received
//! from the primary (or built from an import), and reading the committed
//! database for snapshots and exports.
//!
//! An apply is a small redo log: the LTX file is written (under its final
//! name, atomically) before any page of the database changes, and the
//! rolling checksum must equal the file's post-apply checksum afterwards.
//! Recovery rolls an interrupted apply forward from that file (see
//! [`Db::roll_forward`]).

use super::*;
use crate::fence::{Fence, FenceGuard};
use crate::spill::{SpillBuf, SPILL_BYTES};

/// A whole LTX file of the LTX directory: read into memory, or past
/// [`SPILL_BYTES`] mapped (page cache, not heap).
fn read_whole(path: &Path) -> std::io::Result<bytes::Bytes> {
    let f = File::open(path)?;
    if f.metadata()?.len() <= SPILL_BYTES {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut v)?;
        return Ok(bytes::Bytes::from(v));
    }
    // SAFETY: LTX files are written whole under a temporary name and
    // renamed into place, never written again; retention may unlink one,
    // which leaves the mapping intact.
    let map = unsafe { memmap2::Mmap::map(&f) }?;
    Ok(bytes::Bytes::from_owner(map))
}

use litefs_ltx::{DecodeError, Decoder};
use litefs_sqlite::{DB_HEADER_SIZE, WAL_INDEX_HEADER_SIZE as IH};

/// What [`Db::apply_ltx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The database is now at this position.
    At(Pos),
    /// The file came from this node (a write it forwarded, streamed back):
    /// it is already part of the database; nothing was done.
    Own,
}

/// The committed state a snapshot or export reads, fixed while writers are
/// held off.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The position the pages add up to.
    pub pos: Pos,
    /// Timestamp (ms) of the LTX file that made the position.
    pub timestamp: i64,
    /// Page size in bytes.
    pub page_size: u32,
    /// Size in pages.
    pub commit: u32,
}

impl Db {
    /// Applies one LTX file from the primary: checks it end to end, checks
    /// that it continues this database's position (a snapshot always
    /// does), writes it to `ltx/`, writes its pages while `fence` keeps
    /// SQLite clients out, and proves the result against its post-apply
    /// checksum. On a mismatch the file is removed and the position reset to
    /// zero, so the next connection to the primary asks for a snapshot; the
    /// error says why. Files this node wrote itself are skipped.
    pub fn apply_ltx(&self, ltx: &[u8], fence: &dyn Fence) -> Result<Applied, StoreError> {
        self.apply_files(&[ltx], fence, false)
    }

    /// [`Db::apply_ltx`] for consecutive files of this database, under one
    /// fence: a replica that fell behind pays for keeping clients out once
    /// per batch, not once per file. Files are applied in order; on an
    /// error, those before it stay applied. Returns the position after the
    /// last file applied (`Own` if every file was this node's).
    pub fn apply_ltx_batch(
        &self,
        files: &[&[u8]],
        fence: &dyn Fence,
    ) -> Result<Applied, StoreError> {
        self.apply_files(files, fence, false)
    }

    /// The apply behind [`Db::apply_ltx`] and [`Db::apply_ltx_batch`];
    /// `local` marks a file this node built itself (an import): never
    /// skipped as its own, and fsynced (it is the only copy). Counted in
    /// [`Db::stats`].
    pub(crate) fn apply_files(
        &self,
        files: &[&[u8]],
        fence: &dyn Fence,
        local: bool,
    ) -> Result<Applied, StoreError> {
        let started = std::time::Instant::now();
        let mut done = Done::default();
        let r = self.apply_counted(files, fence, local, &mut done);
        if done.files > 0 || r.is_err() {
            let ok = r.is_ok();
            // An import is this node's own transaction: a commit, no lag.
            let from = if local { None } else { done.newest_ms };
            self.stats.applied(done.files, started.elapsed(), from, ok);
            if local {
                self.stats.committed(done.files);
            }
        }
        r
    }

    /// [`Db::apply_files`], recording in `done` what it applied.
    fn apply_counted(
        &self,
        files: &[&[u8]],
        fence: &dyn Fence,
        local: bool,
        done: &mut Done,
    ) -> Result<Applied, StoreError> {
        let invalid = |source: DecodeError| StoreError::InvalidLtx {
            db: self.name.clone(),
            source,
        };
        // Every file is proven whole before anything changes.
        let mut todo = Vec::with_capacity(files.len());
        for &ltx in files {
            let (h, trailer) = litefs_ltx::verify(ltx, Version::V1).map_err(invalid)?;
            if !local && self.opts.node_id != 0 && h.node_id == self.opts.node_id {
                continue;
            }
            todo.push((ltx, h, trailer));
        }
        let Some((_, first, _)) = todo.first() else {
            return Ok(Applied::Own);
        };
        self.check_continues(&*self.lock()?, first)?;
        let wal = self.database_is_wal()?;
        let mut guard = fence.exclude(self, wal)?;
        let fenced = self.stats.fenced();
        let mut st = self.lock()?;
        if st.wal_lazy {
            self.capture_wal_locked(&mut st)?;
        }
        self.progress.flush()?;
        self.checkpoint_wal(&mut st)?;
        // Says "an apply may be half done" to recovery: only then may it roll
        // the newest LTX file forward (after a crash in capture, the newest
        // file is older than the database and must not be written back).
        let marker = self.paths.dir.join(APPLYING);
        File::create(&marker).ctx(&marker)?;
        let applying = self.stats.applying();
        let mut result = Ok(());
        let mut last: Option<Header> = None;
        for (ltx, h, trailer) in &todo {
            if let Err(e) = self.apply_one(&mut st, ltx, h, trailer.post_apply_checksum, local) {
                result = Err(e);
                break;
            }
            last = Some(*h);
            done.files += 1;
            done.newest_ms = Some(h.timestamp);
        }
        drop(applying);
        std::fs::remove_file(&marker).ctx(&marker)?;
        let pos = st.pos;
        // No I/O through the mount (the WAL index, the kernel's cache, the
        // fence's files closing) while holding the state mutex: FUSE
        // requests that I/O needs may queue behind request threads waiting
        // for the mutex. The fence still keeps clients out.
        drop(st);
        if let Some(h) = last.filter(|h| h.commit > 0) {
            if self.database_is_wal()? {
                refresh_wal_index(guard.as_mut(), h.page_size, h.commit)?;
            }
        }
        guard.invalidate_database();
        drop(guard);
        drop(fenced);
        if last.is_some() {
            self.changes.notify(&self.name);
            tracing::debug!(db = %self.name, pos = %pos, files = todo.len(), "applied");
        }
        result.map(|()| Applied::At(pos))
    }

    /// Applies one verified file under the fence and the state mutex.
    fn apply_one(
        &self,
        st: &mut State,
        ltx: &[u8],
        h: &Header,
        post: Checksum,
        local: bool,
    ) -> Result<(), StoreError> {
        self.check_continues(st, h)?;
        let name = format_file_name(h.min_txid, h.max_txid);
        write_durably(&self.paths.ltx, &name, ltx, local)?;
        self.stats.ltx_added(ltx.len() as u64);
        if h.is_snapshot() {
            self.remove_ltx_except(&name)?;
        }
        match self.write_pages(st, ltx, h) {
            Ok(()) if st.checksum == post => {}
            other => {
                // Never stand on a database the file does not describe.
                if std::fs::remove_file(self.paths.ltx.join(&name)).is_ok() {
                    self.stats.ltx_removed(ltx.len() as u64);
                }
                st.pos = Pos::ZERO;
                other?;
                return Err(StoreError::ChecksumMismatch {
                    db: self.name.clone(),
                    pos: Pos {
                        txid: h.max_txid,
                        post_apply_checksum: post,
                    },
                    actual: st.checksum,
                });
            }
        }
        st.pos = Pos {
            txid: h.max_txid,
            post_apply_checksum: post,
        };
        st.timestamp = h.timestamp;
        Ok(())
    }

    fn check_continues(&self, st: &State, h: &Header) -> Result<(), StoreError> {
        if h.is_snapshot()
            || (st.pos.txid.0 + 1 == h.min_txid.0
                && st.pos.post_apply_checksum == h.pre_apply_checksum)
        {
            return Ok(());
        }
        Err(StoreError::NotContiguous {
            db: self.name.clone(),
            pos: st.pos,
            min_txid: h.min_txid,
            pre_apply: h.pre_apply_checksum,
        })
    }

    /// Whether SQLite's clients use the WAL (database header bytes 18/19).
    pub(super) fn database_is_wal(&self) -> Result<bool, StoreError> {
        let Some(f) = open_read(&self.paths.database)? else {
            return Ok(false);
        };
        let mut hb = [0u8; DB_HEADER_SIZE];
        if read_up_to(&f, &mut hb, 0).ctx(&self.paths.database)? < DB_HEADER_SIZE {
            return Ok(false);
        }
        Ok(DbHeader::parse(&hb).is_ok_and(|h| h.is_wal()))
    }

    /// Copies the committed WAL into the database file and empties the WAL,
    /// as a checkpoint would, so pages written into the database file are
    /// not shadowed by older frames. Clients are fenced out; the position
    /// does not move (the WAL was already part of it).
    fn checkpoint_wal(&self, st: &mut State) -> Result<(), StoreError> {
        let Some(w) = open_read(&self.paths.wal)? else {
            return Ok(());
        };
        let len = w.metadata().ctx(&self.paths.wal)?.len();
        if len == 0 {
            return Ok(());
        }
        let limit = st.wal.map(|c| c.offset);
        let mut hb = [0u8; WAL_HEADER_SIZE];
        if let (Ok(()), Some(limit)) = (w.read_exact_at(&mut hb, 0), limit) {
            if let Ok(header) = WalHeader::parse(&hb) {
                let txns = scan_wal(
                    &w,
                    &header,
                    WAL_HEADER_SIZE as u64,
                    header.checksum,
                    Some(limit),
                )
                .ctx(&self.paths.wal)?;
                if let Some(last) = txns.last() {
                    let latest = latest_frames(&txns);
                    let db = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&self.paths.database)
                        .ctx(&self.paths.database)?;
                    let ps = header.page_size;
                    let mut buf = vec![0u8; ps as usize];
                    for (&pgno, &off) in latest.range(..=last.commit) {
                        read_page(&w, &mut buf, off).ctx(&self.paths.wal)?;
                        db.write_all_at(&buf, u64::from(pgno - 1) * u64::from(ps))
                            .ctx(&self.paths.database)?;
                    }
                    db.set_len(u64::from(last.commit) * u64::from(ps))
                        .ctx(&self.paths.database)?;
                }
            }
        }
        drop(w);
        let f = OpenOptions::new()
            .write(true)
            .open(&self.paths.wal)
            .ctx(&self.paths.wal)?;
        f.set_len(0).ctx(&self.paths.wal)?;
        st.wal = None;
        st.wal_file = None;
        Ok(())
    }

    /// Removes every LTX file but `keep` (a snapshot replaces the history).
    fn remove_ltx_except(&self, keep: &str) -> Result<(), StoreError> {
        for e in std::fs::read_dir(&self.paths.ltx).ctx(&self.paths.ltx)? {
            let e = e.ctx(&self.paths.ltx)?;
            let name = e.file_name();
            if name
                .to_str()
                .is_some_and(|n| n != keep && n.ends_with(".ltx"))
            {
                let len = e.metadata().map_or(0, |m| m.len());
                match std::fs::remove_file(e.path()) {
                    Ok(()) => self.stats.ltx_removed(len),
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(err).ctx(&e.path()),
                }
            }
        }
        Ok(())
    }

    /// Writes the file's pages into the database file and moves the page
    /// checksums with them.
    fn write_pages(&self, st: &mut State, ltx: &[u8], h: &Header) -> Result<(), StoreError> {
        if h.commit == 0 {
            self.move_checksums(st, ltx, h, None)?;
            match std::fs::remove_file(&self.paths.database) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx(&self.paths.database),
            }
            return Ok(());
        }
        let db = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.paths.database)
            .ctx(&self.paths.database)?;
        self.move_checksums(st, ltx, h, Some(&db))?;
        db.set_len(u64::from(h.commit) * u64::from(h.page_size))
            .ctx(&self.paths.database)?;
        Ok(())
    }

    /// Moves `st`'s page checksums (and database checksum) to what they are
    /// after the file, writing each page into `db` when given (without it,
    /// this computes what applying the file would give).
    fn move_checksums(
        &self,
        st: &mut State,
        ltx: &[u8],
        h: &Header,
        db: Option<&File>,
    ) -> Result<(), StoreError> {
        let invalid = |source: DecodeError| StoreError::InvalidLtx {
            db: self.name.clone(),
            source,
        };
        if h.is_snapshot() || st.page_size != h.page_size {
            st.page_size = h.page_size;
            st.checksums.clear();
            st.commit = 0;
            st.checksum = Checksum::EMPTY;
        }
        set_commit(st, h.commit);
        let mut dec = Decoder::new(ltx, Version::V1).map_err(invalid)?;
        let ps = u64::from(h.page_size);
        let mut buf = vec![0u8; h.page_size as usize];
        while let Some(p) = dec.next_page(&mut buf).map_err(invalid)? {
            if let Some(db) = db {
                db.write_all_at(&buf, u64::from(p.pgno - 1) * ps)
                    .ctx(&self.paths.database)?;
            }
            set_page(st, p.pgno, p.checksum);
        }
        dec.finish().map_err(invalid)?;
        Ok(())
    }

    /// Waits for a write transaction in progress to end and keeps new ones
    /// out until the guard is dropped: what a primary takes on every
    /// database before it stops being one, so that no commit straddles the
    /// change. See [`Db::capture_committed`].
    pub fn hold_writers(&self, fence: &dyn Fence) -> Result<Box<dyn FenceGuard>, StoreError> {
        let wal = self.database_is_wal()?;
        fence.hold_writers(self, wal)
    }

    /// Keeps writers out for as long as this node is a replica (see
    /// [`Fence::park_writers`]); the guard is dropped at promotion.
    pub fn park_writers(&self, fence: &dyn Fence) -> Result<Box<dyn FenceGuard>, StoreError> {
        let wal = self.database_is_wal()?;
        fence.park_writers(self, wal)
    }

    /// Folds the WAL into the database file under the fence (what an apply
    /// does first): a replica giving the halt lock back does it, so that
    /// its database file holds what it wrote, as LiteFS does.
    pub fn checkpoint(&self, fence: &dyn Fence) -> Result<(), StoreError> {
        if !self.database_is_wal()? {
            return Ok(());
        }
        let mut guard = fence.exclude(self, true)?;
        let (page_size, commit) = {
            let mut st = self.lock()?;
            if st.wal_lazy {
                self.capture_wal_locked(&mut st)?;
            }
            self.progress.flush()?;
            self.checkpoint_wal(&mut st)?;
            (st.page_size, st.commit)
        };
        if commit > 0 {
            refresh_wal_index(guard.as_mut(), page_size, commit)?;
        }
        guard.invalidate_database();
        Ok(())
    }

    /// Holds this node's writers off while a replica holds the halt lock
    /// (see [`Fence::halt_writers`]).
    pub fn halt_writers(&self, fence: &dyn Fence) -> Result<Box<dyn FenceGuard>, StoreError> {
        let wal = self.database_is_wal()?;
        fence.halt_writers(self, wal)
    }

    /// Captures every commit SQLite made that is not in an LTX file yet
    /// (WAL commits written behind the store, a finished journal) and
    /// writes the files out; returns the position. Call with writers held
    /// ([`Db::hold_writers`]): a stepping-down primary makes sure every
    /// transaction it acknowledged is in its LTX files, so the streams can
    /// send it before they end.
    pub fn capture_committed(&self) -> Result<Pos, StoreError> {
        let mut st = self.lock()?;
        if st.wal_lazy {
            self.capture_wal_locked(&mut st)?;
        }
        self.journal_barrier_locked(&mut st)?;
        self.progress.flush()?;
        Ok(st.pos)
    }

    /// Reads the committed database, page by page (the lock page as
    /// zeros), while `fence` holds writers off: every captured commit, the
    /// database file overlaid with the committed WAL. Proves the pages
    /// against the position before returning it; `page` sees every page
    /// before that check, so a caller must discard its output on error.
    pub fn read_committed(
        &self,
        fence: &dyn Fence,
        mut page: impl FnMut(&Committed, u32, &[u8]) -> Result<(), StoreError>,
    ) -> Result<Committed, StoreError> {
        let wal = self.database_is_wal()?;
        let _guard = fence.hold_writers(self, wal)?;
        let _fenced = self.stats.fenced();
        let (c, cursor) = {
            let mut st = self.lock()?;
            if st.wal_lazy {
                self.capture_wal_locked(&mut st)?;
            }
            self.journal_barrier_locked(&mut st)?;
            self.progress.flush()?;
            (
                Committed {
                    pos: st.pos,
                    timestamp: st.timestamp,
                    page_size: st.page_size,
                    commit: st.commit,
                },
                st.wal,
            )
        };
        // Writers are held off, so the files stay as they are without the
        // state mutex (which FUSE requests need).
        let w = open_read(&self.paths.wal)?;
        let latest = match (&w, cursor) {
            (Some(w), Some(cur)) => latest_frames(
                &scan_wal(
                    w,
                    &cur.header,
                    WAL_HEADER_SIZE as u64,
                    cur.header.checksum,
                    Some(cur.offset),
                )
                .ctx(&self.paths.wal)?,
            ),
            _ => Default::default(),
        };
        let db = open_read(&self.paths.database)?;
        let lock = lock_pgno(c.page_size);
        let mut buf = vec![0u8; c.page_size as usize];
        let mut sum = Checksum::EMPTY;
        for pgno in 1..=c.commit {
            if pgno == lock {
                buf.fill(0);
            } else {
                match (latest.get(&pgno), &w, &db) {
                    (Some(&off), Some(w), _) => read_page(w, &mut buf, off).ctx(&self.paths.wal)?,
                    (_, _, Some(db)) => {
                        read_page(db, &mut buf, u64::from(pgno - 1) * u64::from(c.page_size))
                            .ctx(&self.paths.database)?
                    }
                    _ => buf.fill(0),
                }
                sum = sum.toggle(page_checksum(pgno, &buf));
            }
            page(&c, pgno, &buf)?;
        }
        if c.commit > 0 && sum != c.pos.post_apply_checksum {
            return Err(StoreError::ChecksumMismatch {
                db: self.name.clone(),
                pos: c.pos,
                actual: sum,
            });
        }
        Ok(c)
    }

    /// A snapshot LTX file of the committed database (every page, MinTXID
    /// 1, at the current position), for a replica that cannot continue
    /// from its own position. `None` when the database has no pages. A
    /// database over 64 MiB is encoded into an unlinked temporary file in
    /// the LTX directory and returned mapped: a snapshot of a large
    /// database costs page cache, not heap.
    pub fn snapshot_ltx(
        &self,
        fence: &dyn Fence,
    ) -> Result<Option<(Header, bytes::Bytes)>, StoreError> {
        let path = self.paths.ltx.join("snapshot");
        let encode_err = |source| StoreError::Encode {
            path: path.clone(),
            source,
        };
        let mut enc: Option<Encoder<SpillBuf>> = None;
        let c = self.read_committed(fence, |c, pgno, data| {
            if enc.is_none() {
                let header = Header {
                    flags: self.ltx_flags(),
                    node_id: self.opts.node_id,
                    ..Header::snapshot(c.page_size, c.commit, c.pos.txid, c.timestamp)
                };
                let cap = u64::from(c.commit) * (u64::from(c.page_size) + 4) + 256;
                let sink = SpillBuf::with_estimate(&self.paths.ltx, SPILL_BYTES, cap)
                    .ctx(&self.paths.ltx)?;
                enc = Some(Encoder::new(sink, header, Format::V1).map_err(encode_err)?);
            }
            if pgno == lock_pgno(c.page_size) {
                return Ok(());
            }
            if let Some(e) = enc.as_mut() {
                e.encode_page(pgno, data).map_err(encode_err)?;
            }
            Ok(())
        })?;
        let Some(enc) = enc else {
            return Ok(None);
        };
        let header = *enc.header();
        let (sink, _) = enc.finish(c.pos.post_apply_checksum).map_err(encode_err)?;
        Ok(Some((header, sink.finish().ctx(&path)?)))
    }

    /// The LTX file whose first transaction is `min`, read whole, if it is
    /// still on disk (retention removes old ones). Waits for pending files
    /// first.
    pub fn read_ltx_from(&self, min: Txid) -> Result<Option<bytes::Bytes>, StoreError> {
        self.progress.flush()?;
        let exact = self.paths.ltx.join(format_file_name(min, min));
        match read_whole(&exact) {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(&exact),
        }
        for e in std::fs::read_dir(&self.paths.ltx).ctx(&self.paths.ltx)? {
            let e = e.ctx(&self.paths.ltx)?;
            let found = e
                .file_name()
                .to_str()
                .and_then(parse_file_name)
                .is_some_and(|(lo, _)| lo == min);
            if found {
                match read_whole(&e.path()) {
                    Ok(b) => return Ok(Some(b)),
                    Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(err) => return Err(err).ctx(&e.path()),
                }
            }
        }
        Ok(None)
    }

    /// Builds the LTX file that turns this database into `image` (a whole
    /// SQLite database file, already validated) as its next transaction.
    pub(crate) fn import_ltx(
        &self,
        image: &[u8],
        page_size: u32,
        at: Option<Txid>,
    ) -> Result<bytes::Bytes, StoreError> {
        let pos = self.pos();
        let commit = (image.len() / page_size as usize) as u32;
        let snapshot = pos.txid.0 == 0;
        let max = match at {
            Some(t) if snapshot => t,
            _ => Txid(pos.txid.0 + 1),
        };
        let header = Header {
            flags: self.ltx_flags(),
            page_size,
            commit,
            min_txid: Txid(if snapshot { 1 } else { pos.txid.0 + 1 }),
            max_txid: max,
            timestamp: now_ms(),
            pre_apply_checksum: if snapshot {
                Checksum(0)
            } else {
                pos.post_apply_checksum
            },
            node_id: self.opts.node_id,
            ..Header::default()
        };
        let path = self.paths.ltx.join("import");
        let encode_err = |source| StoreError::Encode {
            path: path.clone(),
            source,
        };
        let sink = SpillBuf::with_estimate(&self.paths.ltx, SPILL_BYTES, image.len() as u64 + 256)
            .ctx(&self.paths.ltx)?;
        let mut enc = Encoder::new(sink, header, Format::V1).map_err(encode_err)?;
        let lock = lock_pgno(page_size);
        let mut sum = Checksum::EMPTY;
        for (i, page) in image.chunks_exact(page_size as usize).enumerate() {
            let pgno = i as u32 + 1;
            if pgno == lock {
                continue;
            }
            sum = sum.toggle(page_checksum(pgno, page));
            enc.encode_page(pgno, page).map_err(encode_err)?;
        }
        enc.finish(sum).map_err(encode_err)?.0.finish().ctx(&path)
    }

    /// Recovery of an apply or import interrupted between its LTX file and
    /// its last page: the file is whole (it was in place before any page
    /// changed), so writing its pages again finishes the job. Returns
    /// whether the database now matches the position.
    pub(super) fn roll_forward(&self, st: &mut State) -> Result<bool, StoreError> {
        let marker = self.paths.dir.join(APPLYING);
        if !marker.exists() {
            return Ok(false);
        }
        let done = self.roll_forward_newest(st)?;
        std::fs::remove_file(&marker).ctx(&marker)?;
        Ok(done)
    }

    fn roll_forward_newest(&self, st: &mut State) -> Result<bool, StoreError> {
        let Some((path, _)) = self.newest_ltx()? else {
            return Ok(false);
        };
        let ltx = std::fs::read(&path).ctx(&path)?;
        let Ok((h, t)) = litefs_ltx::verify(&ltx[..], Version::V1) else {
            return Ok(false);
        };
        if t.post_apply_checksum != st.pos.post_apply_checksum || h.max_txid != st.pos.txid {
            return Ok(false);
        }
        // Only if writing the file's pages gives exactly the position: a
        // database that moved on past the file (a commit whose LTX file a
        // power loss took) must not be rolled back to it.
        let mut trial = State {
            pos: st.pos,
            page_size: st.page_size,
            commit: st.commit,
            checksums: st.checksums.clone(),
            checksum: st.checksum,
            ..State::empty()
        };
        self.move_checksums(&mut trial, &ltx, &h, None)?;
        if trial.checksum != st.pos.post_apply_checksum {
            return Ok(false);
        }
        self.write_pages(st, &ltx, &h)?;
        let ok = st.checksum == st.pos.post_apply_checksum;
        if ok {
            tracing::warn!(db = %self.name, pos = %st.pos, "finished an apply interrupted by a crash");
        }
        Ok(ok)
    }
}

/// What an apply got done before it returned (for [`Db::stats`]).
#[derive(Debug, Default)]
struct Done {
    /// LTX files applied.
    files: u64,
    /// The timestamp (ms) of the last one.
    newest_ms: Option<i64>,
}

/// A file in the database's directory that exists while an apply writes
/// pages (see [`Db::roll_forward`]).
const APPLYING: &str = "applying";

/// The latest frame of each page across consecutive committed WAL
/// transactions: page number -> offset of its data in the WAL.
pub(super) fn latest_frames(txns: &[WalTxn]) -> std::collections::BTreeMap<u32, u64> {
    let mut latest = std::collections::BTreeMap::new();
    for t in txns {
        latest.extend(t.pages.iter().copied());
    }
    latest
}

/// Writes `dir/name` through a temporary name; `durable` also fsyncs the
/// file and the directory (an import on the primary: the only copy).
fn write_durably(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let tmp = tmp_path(dir, name);
    let r = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(&tmp)?;
        f.write_all_at(bytes, 0).ctx(&tmp)?;
        if durable {
            f.sync_all().ctx(&tmp)?;
        }
        let path = dir.join(name);
        std::fs::rename(&tmp, &path).ctx(&path)?;
        if durable {
            File::open(dir).and_then(|d| d.sync_all()).ctx(dir)?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Rewrites the WAL index header after the database file changed behind
/// SQLite: no frames (the WAL was emptied), the new size, and a bumped
/// change counter, so every client drops its page cache at its next
/// transaction. Both copies are written, then the checkpoint info says
/// nothing is left to backfill.
fn refresh_wal_index(
    guard: &mut dyn FenceGuard,
    page_size: u32,
    commit: u32,
) -> Result<(), StoreError> {
    let mut b = [0u8; 2 * IH + 24];
    if guard.read_shm(&mut b, 0)? < 2 * IH + 24 {
        return Ok(());
    }
    let ne = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut h = [0u8; IH];
    h[0..4].copy_from_slice(&3_007_000u32.to_ne_bytes());
    h[8..12].copy_from_slice(&ne(8).wrapping_add(1).to_ne_bytes());
    h[12] = 1;
    h[13] = b[13];
    let sz = if page_size == 65536 {
        1u16
    } else {
        page_size as u16
    };
    h[14..16].copy_from_slice(&sz.to_ne_bytes());
    // mxFrame 0: readers go to the database file.
    h[20..24].copy_from_slice(&commit.to_ne_bytes());
    // Frame checksum and salts stay: the next writer restarts the WAL.
    h[24..40].copy_from_slice(&b[24..40]);
    let big = cfg!(target_endian = "big");
    let (c1, c2) = litefs_sqlite::wal_checksum(big, &h[..40], (0, 0));
    h[40..44].copy_from_slice(&c1.to_ne_bytes());
    h[44..48].copy_from_slice(&c2.to_ne_bytes());
    let mut out = [0u8; 2 * IH + 8];
    out[..IH].copy_from_slice(&h);
    out[IH..2 * IH].copy_from_slice(&h);
    // nBackfill and nBackfillAttempted (the first checkpoint-info words
    // after the read marks are separate; only nBackfill matters here).
    out[2 * IH..2 * IH + 4].copy_from_slice(&0u32.to_ne_bytes());
    guard.write_shm(&out[..2 * IH + 4], 0)
}
