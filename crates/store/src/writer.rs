//! Writes LTX files off the commit path.
//!
//! Creating a file costs far more than encoding a small transaction, and on
//! a filesystem busy with SQLite's own fsyncs it can block for a
//! millisecond on metadata the fsync holds. Capture therefore encodes the
//! file in memory, advances the position, and hands the bytes to one
//! writer thread per store, which writes each database's files in order.
//! Whoever must see a file on disk (a `-pos` read, a checkpoint about to
//! overwrite the frames a pending file came from, shutdown) waits for the
//! database's queue with [`Progress::flush`].

use crate::error::{IoContext, StoreError};
use crate::stats::DbStats;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};

/// One database's queue of LTX files waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    state: Mutex<Counts>,
    written: Condvar,
    /// Set when a file could not be written: the chain has a hole, so the
    /// next capture must write a snapshot.
    force_snapshot: AtomicBool,
}

#[derive(Debug, Default)]
struct Counts {
    queued: u64,
    written: u64,
    /// The first write failure since the last flush.
    failed: Option<StoreError>,
}

impl Progress {
    /// Waits until every file queued so far is written. Reports (once) a
    /// write that failed since the last flush.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let Ok(mut c) = self.state.lock() else {
            return Ok(());
        };
        while c.written < c.queued {
            c = match self.written.wait(c) {
                Ok(c) => c,
                Err(_) => return Ok(()),
            };
        }
        match c.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// LTX files queued and not written yet.
    pub(crate) fn pending(&self) -> u64 {
        self.state
            .lock()
            .map(|c| c.queued.saturating_sub(c.written))
            .unwrap_or(0)
    }

    /// Takes the "write a snapshot next" flag.
    pub(crate) fn take_force_snapshot(&self) -> bool {
        self.force_snapshot.swap(false, Ordering::AcqRel)
    }

    /// Makes the next capture write a snapshot.
    pub(crate) fn force_snapshot(&self) {
        self.force_snapshot.store(true, Ordering::Release);
    }

    fn queued(&self) {
        if let Ok(mut c) = self.state.lock() {
            c.queued += 1;
        }
    }

    fn done(&self, result: Result<(), StoreError>) {
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing an LTX file failed; the next capture writes a snapshot");
            self.force_snapshot.store(true, Ordering::Release);
        }
        if let Ok(mut c) = self.state.lock() {
            c.written += 1;
            if let Err(e) = result {
                c.failed.get_or_insert(e);
            }
        }
        self.written.notify_all();
    }
}

struct Job {
    dir: PathBuf,
    name: String,
    bytes: Vec<u8>,
    progress: Arc<Progress>,
    stats: Arc<DbStats>,
}

impl Job {
    fn run(self) {
        let r = write_file_atomically(&self.dir, &self.name, &self.bytes);
        if r.is_ok() {
            self.stats.ltx_added(self.bytes.len() as u64);
        }
        self.progress.done(r);
    }
}

/// The writer thread's queue. Cloning shares the thread; it ends when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct LtxWriter {
    tx: Option<Sender<Job>>,
}

impl LtxWriter {
    /// Starts the writer thread. If no thread can be started, files are
    /// written synchronously instead.
    pub(crate) fn spawn() -> LtxWriter {
        let (tx, rx) = channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("litefs-ltx-writer".into())
            .spawn(move || {
                for job in rx {
                    job.run();
                }
            });
        match spawned {
            Ok(_) => LtxWriter { tx: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "no LTX writer thread; writing LTX files on the commit path");
                LtxWriter { tx: None }
            }
        }
    }

    /// Queues `bytes` to be written as `dir/name`; `stats` counts the file
    /// once it is on disk.
    pub(crate) fn write(&self, db: &DbQueue<'_>, dir: &Path, name: String, bytes: Vec<u8>) {
        db.progress.queued();
        let job = Job {
            dir: dir.to_path_buf(),
            name,
            bytes,
            progress: db.progress.clone(),
            stats: db.stats.clone(),
        };
        let job = match &self.tx {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => job,
        };
        job.run();
    }
}

/// What the writer needs of one database: its queue and its counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbQueue<'a> {
    /// The database's queue.
    pub(crate) progress: &'a Arc<Progress>,
    /// The database's counters (LTX files on disk).
    pub(crate) stats: &'a Arc<DbStats>,
}

/// Where capture encodes an LTX file: memory for the writer thread, or,
/// for a transaction too large to hold in memory, the file itself.
pub(crate) enum LtxOut {
    /// Bytes for [`LtxWriter::write`].
    Memory(Vec<u8>),
    /// A temporary file beside the final name, renamed into place by
    /// [`LtxOut::commit`].
    File {
        /// The buffered temporary file.
        file: std::io::BufWriter<std::fs::File>,
        /// Its path.
        tmp: PathBuf,
    },
}

/// Above this many bytes of pages, capture streams the LTX file to disk
/// instead of encoding it in memory, so the daemon's memory stays bounded
/// whatever the transaction size.
pub(crate) const SPILL_BYTES: usize = 8 << 20;

impl LtxOut {
    /// A buffer for `len` bytes of pages: memory below [`SPILL_BYTES`],
    /// else a temporary file for `dir/name` (the caller first flushes the
    /// queue, so that files still land in order).
    pub(crate) fn new(dir: &Path, name: &str, len: usize) -> Result<LtxOut, StoreError> {
        if len <= SPILL_BYTES {
            return Ok(LtxOut::Memory(Vec::with_capacity(len + 256)));
        }
        let tmp = tmp_path(dir, name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(&tmp)?;
        Ok(LtxOut::File {
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            tmp,
        })
    }

    /// Puts the encoded file in place: queued on the writer thread, or,
    /// for a spilled file, renamed now. A failed spill leaves no file
    /// under the final name.
    pub(crate) fn commit(
        self,
        writer: &LtxWriter,
        db: &DbQueue<'_>,
        dir: &Path,
        name: String,
    ) -> Result<(), StoreError> {
        match self {
            LtxOut::Memory(bytes) => {
                writer.write(db, dir, name, bytes);
                Ok(())
            }
            LtxOut::File { file, tmp } => {
                let r = file
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.metadata())
                    .ctx(&tmp)
                    .and_then(|m| {
                        let path = dir.join(&name);
                        std::fs::rename(&tmp, &path).ctx(&path)?;
                        Ok(m.len())
                    });
                match r {
                    Ok(len) => {
                        db.stats.ltx_added(len);
                        Ok(())
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            }
        }
    }
}

impl Write for LtxOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            LtxOut::Memory(v) => v.write(buf),
            LtxOut::File { file, .. } => file.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            LtxOut::Memory(v) => v.write_all(buf),
            LtxOut::File { file, .. } => file.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LtxOut::Memory(_) => Ok(()),
            LtxOut::File { file, .. } => file.flush(),
        }
    }
}

/// The temporary name `dir/name` is written under before its rename.
pub(crate) fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Writes `bytes` as `dir/name` through a temporary name, so that the name
/// never shows a partial file. Not fsynced (see the durability contract in
/// docs/architecture.md).
fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = tmp_path(dir, name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .ctx(&tmp)?;
    f.write_all(bytes).ctx(&tmp)?;
    drop(f);
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).ctx(&path)
}
