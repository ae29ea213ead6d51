//! A reader for one LZ4 frame that stops exactly at the frame's end.
//!
//! `lz4_flex`'s `FrameDecoder` treats its input as a sequence of concatenated
//! frames, so after one frame it would consume the bytes that follow (the
//! next v3 page header, or the v1 trailer) as a new frame. LTX needs the
//! opposite: one frame, then its own bytes. This module parses the frame
//! format (magic, descriptor, blocks, end mark, checksums) and leaves block
//! decompression to `lz4_flex::block`. Memory is one block (at most 4 MiB, as
//! the descriptor declares) plus its compressed form.

use crate::error::DecodeError;
use crate::io::Source;
use std::hash::Hasher;
use std::io::Read;
use twox_hash::XxHash32;

const MAGIC: u32 = 0x184D_2204;

/// Decoding state for one frame; reusable across frames to keep buffers.
#[derive(Default)]
pub(crate) struct FrameReader {
    block: Vec<u8>,
    compressed: Vec<u8>,
    pos: usize,
    len: usize,
    block_max: usize,
    block_checksums: bool,
    content_checksum: bool,
    content_size: Option<u64>,
    hasher: XxHash32,
    total: u64,
    ended: bool,
}

fn lz4_err(pgno: u32, offset: u64, reason: impl Into<String>) -> DecodeError {
    DecodeError::Lz4 {
        pgno,
        offset,
        reason: reason.into(),
    }
}

impl FrameReader {
    /// Reads and checks a frame header from `src`.
    pub(crate) fn begin<R: Read>(
        &mut self,
        src: &mut Source<R>,
        pgno: u32,
    ) -> Result<(), DecodeError> {
        let start = src.offset;
        let mut b = [0u8; 7];
        src.read_exact(&mut b, "LZ4 frame header")?;
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC {
            return Err(lz4_err(pgno, start, format!("bad frame magic {magic:08x}")));
        }
        let (flg, bd) = (b[4], b[5]);
        if flg >> 6 != 0b01 {
            return Err(lz4_err(
                pgno,
                start,
                format!("unsupported frame version in FLG {flg:02x}"),
            ));
        }
        if flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
            return Err(lz4_err(pgno, start, "reserved descriptor bits set"));
        }
        if flg & 0b1 != 0 {
            return Err(lz4_err(
                pgno,
                start,
                "frames with a dictionary ID are not supported",
            ));
        }
        if flg & 0b10_0000 == 0 {
            return Err(lz4_err(
                pgno,
                start,
                "linked (dependent) blocks are not supported",
            ));
        }
        self.block_max = match (bd >> 4) & 0x7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            n => return Err(lz4_err(pgno, start, format!("invalid block size code {n}"))),
        };
        self.block_checksums = flg & 0b1_0000 != 0;
        self.content_checksum = flg & 0b100 != 0;
        let mut desc = vec![flg, bd];
        self.content_size = None;
        let hc = if flg & 0b1000 != 0 {
            let mut cs = [0u8; 9];
            cs[0] = b[6];
            src.read_exact(&mut cs[1..], "LZ4 frame content size")?;
            let size = u64::from_le_bytes([cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], cs[7]]);
            self.content_size = Some(size);
            desc.extend_from_slice(&cs[..8]);
            cs[8]
        } else {
            b[6]
        };
        let want = ((XxHash32::oneshot(0, &desc) >> 8) & 0xFF) as u8;
        if hc != want {
            return Err(lz4_err(pgno, start, "frame descriptor checksum mismatch"));
        }
        self.pos = 0;
        self.len = 0;
        self.total = 0;
        self.ended = false;
        self.hasher = XxHash32::with_seed(0);
        Ok(())
    }

    /// Fills `out` with decompressed bytes; running out of frame is an error.
    pub(crate) fn read_exact<R: Read>(
        &mut self,
        src: &mut Source<R>,
        mut out: &mut [u8],
        pgno: u32,
    ) -> Result<(), DecodeError> {
        while !out.is_empty() {
            if self.pos == self.len {
                if !self.next_block(src, pgno)? {
                    return Err(lz4_err(
                        pgno,
                        src.offset,
                        "frame ended before the data it must hold",
                    ));
                }
                continue;
            }
            let n = out.len().min(self.len - self.pos);
            out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
            self.pos += n;
            out = &mut out[n..];
        }
        Ok(())
    }

    /// Requires the frame to end here: no decompressed bytes left, an end
    /// mark, and matching content size and checksum.
    pub(crate) fn end<R: Read>(
        &mut self,
        src: &mut Source<R>,
        pgno: u32,
    ) -> Result<(), DecodeError> {
        if self.pos != self.len || (!self.ended && self.next_block(src, pgno)?) {
            return Err(lz4_err(
                pgno,
                src.offset,
                "frame holds data past its expected end",
            ));
        }
        if let Some(size) = self.content_size {
            if size != self.total {
                return Err(lz4_err(
                    pgno,
                    src.offset,
                    format!("content size {size} declared, {} decoded", self.total),
                ));
            }
        }
        if self.content_checksum {
            let at = src.offset;
            let mut c = [0u8; 4];
            src.read_exact(&mut c, "LZ4 content checksum")?;
            if u32::from_le_bytes(c) != self.hasher.finish_32() {
                return Err(lz4_err(pgno, at, "frame content checksum mismatch"));
            }
        }
        Ok(())
    }

    /// Loads the next block; returns false at the end mark.
    fn next_block<R: Read>(&mut self, src: &mut Source<R>, pgno: u32) -> Result<bool, DecodeError> {
        if self.ended {
            return Ok(false);
        }
        let at = src.offset;
        let mut s = [0u8; 4];
        src.read_exact(&mut s, "LZ4 block size")?;
        let word = u32::from_le_bytes(s);
        if word == 0 {
            self.ended = true;
            return Ok(false);
        }
        let stored = word & 0x8000_0000 != 0;
        let size = (word & 0x7FFF_FFFF) as usize;
        if size > self.block_max {
            return Err(lz4_err(
                pgno,
                at,
                format!(
                    "block of {size} bytes exceeds the frame's maximum {}",
                    self.block_max
                ),
            ));
        }
        self.compressed.resize(size, 0);
        src.read_exact(&mut self.compressed, "LZ4 block")?;
        if self.block_checksums {
            let mut c = [0u8; 4];
            src.read_exact(&mut c, "LZ4 block checksum")?;
            if u32::from_le_bytes(c) != XxHash32::oneshot(0, &self.compressed) {
                return Err(lz4_err(pgno, at, "block checksum mismatch"));
            }
        }
        if self.block.len() < self.block_max {
            self.block.resize(self.block_max, 0);
        }
        let n = if stored {
            self.block[..size].copy_from_slice(&self.compressed);
            size
        } else {
            lz4_flex::block::decompress_into(&self.compressed, &mut self.block[..self.block_max])
                .map_err(|e| lz4_err(pgno, at, format!("corrupt block: {e}")))?
        };
        self.hasher.write(&self.block[..n]);
        self.total += n as u64;
        self.pos = 0;
        self.len = n;
        Ok(true)
    }
}
