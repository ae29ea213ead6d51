//! The streaming decoder: header, pages one at a time, then the trailer with
//! every check the format allows.

use crate::checksum::{page_checksum, Crc64};
use crate::error::DecodeError;
use crate::header::{
    be_u32, be_u64, post_apply_rule, Header, Trailer, Version, HEADER_SIZE, TRAILER_SIZE,
};
use crate::io::{uvarint, Source};
use crate::lz4frame::FrameReader;
use crate::types::{lock_pgno, Checksum, CHECKSUM_FLAG};
use std::io::Read;

/// v3 page-header flag: a 4-byte size and an LZ4 block follow.
pub(crate) const PAGE_FLAG_SIZE: u16 = 0x1;

/// One decoded page: its number and checksum (`1<<63 | crc64(pgno ++ data)`),
/// which the caller needs to move a database checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// Page number.
    pub pgno: u32,
    /// Page checksum.
    pub checksum: Checksum,
}

/// Decodes one LTX file from a reader, holding one page at a time.
///
/// Checks, beyond the reference decoders: pages strictly ascending, within
/// the commit size, never the lock page, snapshots contiguous, no bytes after
/// the trailer, and (v3) a page index that matches the pages. A file is only
/// proven good once [`Decoder::finish`] returns `Ok`; callers that apply pages
/// as they go must be able to discard them.
pub struct Decoder<R> {
    src: Source<R>,
    version: Version,
    header: Header,
    crc: Crc64,
    body_frame: Option<FrameReader>,
    page_frame: FrameReader,
    compressed: Vec<u8>,
    prev_pgno: u32,
    lock: u32,
    db_checksum: Checksum,
    pages_done: bool,
    index: Crc64,
    index_len: u64,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header for `version`.
    pub fn new(reader: R, version: Version) -> Result<Self, DecodeError> {
        let mut src = Source::new(reader);
        let mut hb = [0u8; HEADER_SIZE];
        src.read_exact(&mut hb, "header")?;
        let header = Header::from_bytes(&hb)?;
        header.validate(version)?;
        let mut crc = Crc64::new();
        crc.update(&hb);
        let body_frame = if version == Version::V1 && header.compressed() {
            let mut f = FrameReader::default();
            f.begin(&mut src, 0)?;
            Some(f)
        } else {
            None
        };
        Ok(Decoder {
            src,
            version,
            header,
            crc,
            body_frame,
            page_frame: FrameReader::default(),
            compressed: Vec::new(),
            prev_pgno: 0,
            lock: lock_pgno(header.page_size),
            db_checksum: Checksum::EMPTY,
            pages_done: false,
            index: Crc64::new(),
            index_len: 0,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the next page into `buf`, which must be exactly one page long.
    /// Returns `None` after the last page.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<PageInfo>, DecodeError> {
        if self.pages_done {
            return Ok(None);
        }
        if buf.len() != self.header.page_size as usize {
            return Err(DecodeError::Io {
                offset: self.src.offset,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "page buffer of {} bytes for page size {}",
                        buf.len(),
                        self.header.page_size
                    ),
                ),
            });
        }
        match self.version {
            Version::V1 => self.next_page_v1(buf),
            Version::V3 => self.next_page_v3(buf),
        }
    }

    fn next_page_v1(&mut self, buf: &mut [u8]) -> Result<Option<PageInfo>, DecodeError> {
        let at = self.src.offset;
        let mut ph = [0u8; 4];
        self.body_read(&mut ph, 0, "page header")?;
        self.crc.update(&ph);
        let pgno = be_u32(&ph);
        if pgno == 0 {
            self.end_of_pages(at)?;
            if let Some(f) = self.body_frame.as_mut() {
                f.end(&mut self.src, 0)?;
            }
            return Ok(None);
        }
        self.check_pgno(pgno, at)?;
        self.body_read(buf, pgno, "page data")?;
        Ok(Some(self.accept_page(pgno, buf)))
    }

    fn next_page_v3(&mut self, buf: &mut [u8]) -> Result<Option<PageInfo>, DecodeError> {
        let at = self.src.offset;
        let mut ph = [0u8; 6];
        self.src.read_exact(&mut ph, "page header")?;
        self.crc.update(&ph);
        let pgno = be_u32(&ph);
        let flags = u16::from_be_bytes([ph[4], ph[5]]);
        if pgno == 0 {
            if flags != 0 {
                return Err(DecodeError::PageFlags {
                    pgno,
                    flags,
                    offset: at,
                });
            }
            self.index_entry(0);
            return self.end_of_pages(at).map(|()| None);
        }
        self.check_pgno(pgno, at)?;
        match flags {
            PAGE_FLAG_SIZE => {
                let mut sb = [0u8; 4];
                self.src.read_exact(&mut sb, "page size prefix")?;
                self.crc.update(&sb);
                let size = be_u32(&sb);
                let max = lz4_flex::block::get_maximum_output_size(buf.len()) as u32;
                if size == 0 || size > max {
                    return Err(DecodeError::PageCompressedSize {
                        pgno,
                        size,
                        offset: at,
                    });
                }
                self.compressed.resize(size as usize, 0);
                let data_at = self.src.offset;
                self.src
                    .read_exact(&mut self.compressed, "compressed page")?;
                match lz4_flex::block::decompress_into(&self.compressed, buf) {
                    Ok(n) if n == buf.len() => {}
                    Ok(n) => {
                        return Err(DecodeError::Lz4 {
                            pgno,
                            offset: data_at,
                            reason: format!(
                                "block decodes to {n} bytes, page size is {}",
                                buf.len()
                            ),
                        })
                    }
                    Err(e) => {
                        return Err(DecodeError::Lz4 {
                            pgno,
                            offset: data_at,
                            reason: format!("corrupt block: {e}"),
                        })
                    }
                }
            }
            0 => {
                self.page_frame.begin(&mut self.src, pgno)?;
                self.page_frame.read_exact(&mut self.src, buf, pgno)?;
                self.page_frame.end(&mut self.src, pgno)?;
            }
            _ => {
                return Err(DecodeError::PageFlags {
                    pgno,
                    flags,
                    offset: at,
                })
            }
        }
        self.index_entry(u64::from(pgno));
        self.index_entry(at);
        self.index_entry(self.src.offset - at);
        Ok(Some(self.accept_page(pgno, buf)))
    }

    /// Records one varint of the page index the file must end with.
    fn index_entry(&mut self, v: u64) {
        let mut b = [0u8; 10];
        let n = uvarint(&mut b, v);
        self.index.update(&b[..n]);
        self.index_len += n as u64;
    }

    fn body_read(
        &mut self,
        out: &mut [u8],
        pgno: u32,
        what: &'static str,
    ) -> Result<(), DecodeError> {
        match self.body_frame.as_mut() {
            Some(f) => f.read_exact(&mut self.src, out, pgno),
            None => self.src.read_exact(out, what),
        }
    }

    fn check_pgno(&self, pgno: u32, offset: u64) -> Result<(), DecodeError> {
        let h = &self.header;
        if pgno <= self.prev_pgno {
            return Err(DecodeError::PageOrder {
                pgno,
                prev: self.prev_pgno,
                offset,
            });
        }
        if h.commit == 0 {
            return Err(DecodeError::PageInDeletion { pgno, offset });
        }
        if pgno > h.commit {
            return Err(DecodeError::PageBeyondCommit {
                pgno,
                commit: h.commit,
                offset,
            });
        }
        if pgno == self.lock {
            return Err(DecodeError::LockPage { pgno, offset });
        }
        if h.is_snapshot() {
            let expected = self.next_snapshot_pgno();
            if pgno != expected {
                return Err(DecodeError::SnapshotGap {
                    expected,
                    got: pgno,
                    offset,
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

    fn accept_page(&mut self, pgno: u32, data: &[u8]) -> PageInfo {
        self.crc.update(data);
        self.prev_pgno = pgno;
        let checksum = page_checksum(pgno, data);
        self.db_checksum = self.db_checksum.toggle(checksum);
        PageInfo { pgno, checksum }
    }

    fn end_of_pages(&mut self, offset: u64) -> Result<(), DecodeError> {
        if self.header.is_snapshot() && self.header.commit > 0 {
            let expected = self.next_snapshot_pgno();
            if expected <= self.header.commit {
                return Err(DecodeError::SnapshotGap {
                    expected,
                    got: 0,
                    offset,
                });
            }
        }
        self.pages_done = true;
        Ok(())
    }

    /// Reads any remaining pages, the page index (v3) and the trailer, and
    /// verifies the file checksum, the trailer rules, a snapshot's database
    /// checksum, and that nothing follows the trailer.
    pub fn finish(mut self) -> Result<Trailer, DecodeError> {
        if !self.pages_done {
            let mut buf = vec![0u8; self.header.page_size as usize];
            while self.next_page(&mut buf)?.is_some() {}
        }
        if self.version == Version::V3 {
            self.read_index()?;
        }
        let at = self.src.offset;
        let mut tb = [0u8; TRAILER_SIZE];
        self.src.read_exact(&mut tb, "trailer")?;
        self.src.expect_eof("trailer")?;
        let trailer = Trailer::from_bytes(&tb);
        self.crc.update(&tb[..8]);
        let actual = CHECKSUM_FLAG | self.crc.value();
        if trailer.file_checksum.0 != actual {
            return Err(DecodeError::FileChecksum {
                expected: trailer.file_checksum.0,
                actual,
            });
        }
        post_apply_rule(&self.header, trailer.post_apply_checksum).map_err(|reason| {
            DecodeError::PostApplyChecksum {
                offset: at,
                checksum: trailer.post_apply_checksum.0,
                reason,
            }
        })?;
        if self.header.is_snapshot()
            && !self.header.no_checksum()
            && trailer.post_apply_checksum != self.db_checksum
        {
            return Err(DecodeError::SnapshotChecksum {
                expected: trailer.post_apply_checksum.0,
                actual: self.db_checksum.0,
            });
        }
        Ok(trailer)
    }

    fn read_index(&mut self) -> Result<(), DecodeError> {
        let at = self.src.offset;
        let mut actual = Crc64::new();
        let mut remaining = self.index_len;
        let mut chunk = [0u8; 4096];
        while remaining > 0 {
            let n = remaining.min(chunk.len() as u64) as usize;
            self.src.read_exact(&mut chunk[..n], "page index")?;
            actual.update(&chunk[..n]);
            self.crc.update(&chunk[..n]);
            remaining -= n as u64;
        }
        if actual.value() != self.index.value() {
            return Err(DecodeError::PageIndex {
                offset: at,
                reason: "entries do not match the pages",
            });
        }
        let mut lb = [0u8; 8];
        self.src.read_exact(&mut lb, "page index size")?;
        self.crc.update(&lb);
        if be_u64(&lb) != self.index_len {
            return Err(DecodeError::PageIndex {
                offset: at,
                reason: "size field does not match the entries",
            });
        }
        Ok(())
    }
}

/// Decodes a whole file, checking everything, and returns its header and
/// trailer.
pub fn verify<R: Read>(reader: R, version: Version) -> Result<(Header, Trailer), DecodeError> {
    let dec = Decoder::new(reader, version)?;
    let header = *dec.header();
    let trailer = dec.finish()?;
    Ok((header, trailer))
}
