//! The streaming encoder: header, pages in ascending order, then the trailer.

use crate::checksum::{page_checksum, Crc64};
use crate::decoder::PAGE_FLAG_SIZE;
use crate::error::EncodeError;
use crate::header::{post_apply_rule, Header, Trailer, Version, FLAG_COMPRESS_LZ4};
use crate::io::put_uvarint;
use crate::types::{lock_pgno, Checksum, CHECKSUM_FLAG};
use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
use std::io::Write;

/// Which wire format (and, for v3, which page encoding) to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// LiteFS v0.5.14. Compression follows the header's
    /// [`FLAG_COMPRESS_LZ4`] flag (one LZ4 frame around the page block).
    V1,
    /// Litestream 0.5.16+: each page a size-prefixed LZ4 block (page flag 1).
    V3Block,
    /// Every Litestream 0.5.x: each page its own LZ4 frame (page flag 0).
    V3Frame,
}

impl Format {
    /// The file format this encoding belongs to.
    pub fn version(self) -> Version {
        match self {
            Format::V1 => Version::V1,
            Format::V3Block | Format::V3Frame => Version::V3,
        }
    }
}

/// Where body bytes go: straight to the writer, or through the v1 LZ4 frame.
enum Sink<W: Write> {
    Raw(W),
    Lz4(FrameEncoder<W>),
    Done,
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_all(b),
            Sink::Lz4(w) => w.write_all(b),
            Sink::Done => Err(std::io::Error::other("encoder already finished")),
        }
    }
}

/// LZ4 frame settings for everything we write: what Go's writer emits
/// (pierrec/lz4, FLG 0x64: independent 64 KiB blocks, a content checksum,
/// no block checksums). Block checksums must stay off: the pierrec/lz4 in
/// LiteFS v0.5.14 and ltx v0.3.14 checks them against the wrong bytes and
/// rejects every frame that has them ("invalid block checksum"). The
/// content checksum and the file checksum cover the decompressed stream;
/// a changed compressed byte that still decodes to the same content (LZ4
/// is not canonical) changes nothing that is read.
fn frame_info() -> FrameInfo {
    FrameInfo::new()
        .block_checksums(false)
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .content_checksum(true)
}

/// Encodes one LTX file into a writer, one page at a time.
///
/// Enforces what readers require: pages strictly ascending, within the commit
/// size, never the lock page, exactly one page long; snapshots complete and
/// (when checksums are tracked) carrying the checksum their pages add up to.
/// The writer sees many small writes: wrap files in a `BufWriter`. Holds one
/// page of scratch plus, for v3, the page index (a few bytes per page).
pub struct Encoder<W: Write> {
    sink: Sink<W>,
    header: Header,
    format: Format,
    crc: Crc64,
    prev_pgno: u32,
    lock: u32,
    offset: u64,
    index: Vec<u8>,
    scratch: Vec<u8>,
    snapshot_checksum: Checksum,
}

impl<W: Write> Encoder<W> {
    /// Validates `header` for `format` and writes it.
    pub fn new(mut writer: W, header: Header, format: Format) -> Result<Self, EncodeError> {
        header.validate(format.version())?;
        let hb = header.to_bytes();
        writer.write_all(&hb)?;
        let mut crc = Crc64::new();
        crc.update(&hb);
        let sink = if format == Format::V1 && header.flags & FLAG_COMPRESS_LZ4 != 0 {
            Sink::Lz4(FrameEncoder::with_frame_info(frame_info(), writer))
        } else {
            Sink::Raw(writer)
        };
        Ok(Encoder {
            sink,
            header,
            format,
            crc,
            prev_pgno: 0,
            lock: lock_pgno(header.page_size),
            offset: hb.len() as u64,
            index: Vec::new(),
            scratch: Vec::new(),
            snapshot_checksum: Checksum::EMPTY,
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Appends one page. Pages must come in strictly ascending order.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<(), EncodeError> {
        self.check_page(pgno, data)?;
        match self.format {
            Format::V1 => {
                self.sink.write_all(&pgno.to_be_bytes())?;
                self.sink.write_all(data)?;
                self.crc.update(&pgno.to_be_bytes());
            }
            Format::V3Block => {
                let max = lz4_flex::block::get_maximum_output_size(data.len());
                self.scratch.resize(max, 0);
                let n = lz4_flex::block::compress_into(data, &mut self.scratch)
                    .map_err(|e| EncodeError::Io(std::io::Error::other(e)))?;
                let mut ph = [0u8; 10];
                ph[0..4].copy_from_slice(&pgno.to_be_bytes());
                ph[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
                ph[6..10].copy_from_slice(&(n as u32).to_be_bytes());
                self.sink.write_all(&ph)?;
                self.sink.write_all(&self.scratch[..n])?;
                self.crc.update(&ph);
                self.push_index(pgno, 10 + n as u64);
            }
            Format::V3Frame => {
                self.scratch.clear();
                let mut fe =
                    FrameEncoder::with_frame_info(frame_info(), std::mem::take(&mut self.scratch));
                fe.write_all(data)?;
                self.scratch = fe
                    .finish()
                    .map_err(|e| EncodeError::Io(std::io::Error::other(e)))?;
                let mut ph = [0u8; 6];
                ph[0..4].copy_from_slice(&pgno.to_be_bytes());
                self.sink.write_all(&ph)?;
                self.sink.write_all(&self.scratch)?;
                self.crc.update(&ph);
                self.push_index(pgno, 6 + self.scratch.len() as u64);
            }
        }
        self.crc.update(data);
        if self.header.is_snapshot() && !self.header.no_checksum() {
            self.snapshot_checksum = self.snapshot_checksum.toggle(page_checksum(pgno, data));
        }
        self.prev_pgno = pgno;
        Ok(())
    }

    fn push_index(&mut self, pgno: u32, size: u64) {
        put_uvarint(&mut self.index, u64::from(pgno));
        put_uvarint(&mut self.index, self.offset);
        put_uvarint(&mut self.index, size);
        self.offset += size;
    }

    fn check_page(&self, pgno: u32, data: &[u8]) -> Result<(), EncodeError> {
        let h = &self.header;
        if data.len() != h.page_size as usize {
            return Err(EncodeError::PageLength {
                pgno,
                len: data.len(),
                page_size: h.page_size,
            });
        }
        if pgno == 0 || pgno <= self.prev_pgno {
            return Err(EncodeError::PageOrder {
                pgno,
                prev: self.prev_pgno,
            });
        }
        if pgno > h.commit {
            return Err(EncodeError::PageBeyondCommit {
                pgno,
                commit: h.commit,
            });
        }
        if pgno == self.lock {
            return Err(EncodeError::LockPage(pgno));
        }
        if h.is_snapshot() {
            let expected = self.next_snapshot_pgno();
            if pgno != expected {
                return Err(EncodeError::SnapshotGap {
                    expected,
                    got: pgno,
                });
            }
        }
        Ok(())
    }

    fn next_snapshot_pgno(&self) -> u32 {
        let n = self.prev_pgno + 1;
        if n == self.lock {
            n + 1
        } else {
            n
        }
    }

    /// Ends the page block, writes the page index (v3) and the trailer, and
    /// returns the writer (flushed) and the trailer written.
    pub fn finish(mut self, post_apply_checksum: Checksum) -> Result<(W, Trailer), EncodeError> {
        let h = self.header;
        if h.is_snapshot() && h.commit > 0 {
            let expected = self.next_snapshot_pgno();
            if expected <= h.commit {
                return Err(EncodeError::SnapshotGap { expected, got: 0 });
            }
            if !h.no_checksum() && post_apply_checksum != self.snapshot_checksum {
                return Err(EncodeError::PostApplyChecksum {
                    checksum: post_apply_checksum.0,
                    reason: "does not match the snapshot's pages",
                });
            }
        }
        post_apply_rule(&h, post_apply_checksum).map_err(|reason| {
            EncodeError::PostApplyChecksum {
                checksum: post_apply_checksum.0,
                reason,
            }
        })?;

        let mut w = match std::mem::replace(&mut self.sink, Sink::Done) {
            Sink::Raw(mut w) => {
                let term: &[u8] = if self.format == Format::V1 {
                    &[0; 4]
                } else {
                    &[0; 6]
                };
                w.write_all(term)?;
                self.crc.update(term);
                w
            }
            Sink::Lz4(mut f) => {
                f.write_all(&[0; 4])?;
                self.crc.update(&[0; 4]);
                f.finish()
                    .map_err(|e| EncodeError::Io(std::io::Error::other(e)))?
            }
            Sink::Done => {
                return Err(EncodeError::Io(std::io::Error::other(
                    "encoder already finished",
                )))
            }
        };
        if self.format.version() == Version::V3 {
            put_uvarint(&mut self.index, 0);
            let len = (self.index.len() as u64).to_be_bytes();
            w.write_all(&self.index)?;
            w.write_all(&len)?;
            self.crc.update(&self.index);
            self.crc.update(&len);
        }
        let post = post_apply_checksum.0.to_be_bytes();
        self.crc.update(&post);
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: Checksum(CHECKSUM_FLAG | self.crc.value()),
        };
        w.write_all(&trailer.to_bytes())?;
        w.flush()?;
        Ok((w, trailer))
    }
}
