//! Bytes that may be larger than memory should hold: a snapshot, an LTX
//! file from the stream, an export, an import. They collect in memory up
//! to a threshold, then in an unlinked temporary file, mapped once whole,
//! so a large database costs page cache, not heap.

use bytes::{Bytes, BytesMut};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Past this many bytes, collect on disk (64 MiB).
pub const SPILL_BYTES: u64 = 64 << 20;

/// Bytes being collected.
#[derive(Debug)]
pub struct SpillBuf {
    dir: PathBuf,
    threshold: u64,
    data: Data,
}

#[derive(Debug)]
enum Data {
    Mem(BytesMut),
    File {
        file: std::io::BufWriter<std::fs::File>,
        len: u64,
    },
}

impl SpillBuf {
    /// An empty buffer that moves to a temporary file in `dir` once it
    /// holds more than `threshold` bytes.
    pub fn new(dir: &Path, threshold: u64) -> SpillBuf {
        SpillBuf {
            dir: dir.to_path_buf(),
            threshold,
            data: Data::Mem(BytesMut::new()),
        }
    }

    /// [`SpillBuf::new`] for about `estimate` bytes: straight to the file
    /// when that is over `threshold`, else memory reserved for them.
    pub fn with_estimate(dir: &Path, threshold: u64, estimate: u64) -> std::io::Result<SpillBuf> {
        let mut b = SpillBuf::new(dir, threshold);
        if estimate > threshold {
            b.data = Data::File {
                file: std::io::BufWriter::with_capacity(1 << 20, tempfile::tempfile_in(dir)?),
                len: 0,
            };
        } else if let Data::Mem(m) = &mut b.data {
            m.reserve(estimate as usize);
        }
        Ok(b)
    }

    /// Bytes collected so far.
    pub fn len(&self) -> u64 {
        match &self.data {
            Data::Mem(m) => m.len() as u64,
            Data::File { len, .. } => *len,
        }
    }

    /// Whether nothing was collected yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The spill directory, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Data::Mem(m) = &self.data {
            if m.len() as u64 + bytes.len() as u64 > self.threshold {
                let f = tempfile::tempfile_in(&self.dir)?;
                let mut file = std::io::BufWriter::with_capacity(1 << 20, f);
                file.write_all(m)?;
                self.data = Data::File {
                    file,
                    len: m.len() as u64,
                };
            }
        }
        match &mut self.data {
            Data::Mem(m) => m.extend_from_slice(bytes),
            Data::File { file, len } => {
                file.write_all(bytes)?;
                *len += bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// Everything collected: the memory, or the file mapped.
    pub fn finish(self) -> std::io::Result<Bytes> {
        match self.data {
            Data::Mem(m) => Ok(m.freeze()),
            Data::File { file, .. } => {
                let f = file.into_inner().map_err(|e| e.into_error())?;
                // SAFETY: the file is this buffer's alone: created unlinked
                // in `push`, written only there, and never written again,
                // so the mapping cannot change under the bytes that borrow
                // it.
                let map = unsafe { memmap2::Mmap::map(&f) }?;
                Ok(Bytes::from_owner(map))
            }
        }
    }
}

impl Write for SpillBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.push(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.data {
            Data::Mem(_) => Ok(()),
            Data::File { file, .. } => file.flush(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn small_stays_in_memory_large_goes_to_an_unlinked_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SpillBuf::new(dir.path(), 10);
        b.push(b"0123456789").unwrap();
        assert!(matches!(b.data, Data::Mem(_)));
        b.push(b"abc").unwrap();
        assert!(matches!(b.data, Data::File { .. }));
        assert_eq!(b.len(), 13);
        assert_eq!(&b.finish().unwrap()[..], b"0123456789abc");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut b = SpillBuf::with_estimate(dir.path(), 10, 11).unwrap();
        assert!(matches!(b.data, Data::File { .. }));
        b.write_all(b"x").unwrap();
        assert_eq!(&b.finish().unwrap()[..], b"x");
        let mut b = SpillBuf::new(&dir.path().join("missing"), 0);
        assert!(b.push(b"x").is_err());
    }
}
