//! The byte-exact LiteFS v0.5.14 `/stream` wire codec.
//!
//! A replica opens the stream with `POST /stream` whose body is a position
//! map ([`encode_pos_map`]); the primary answers with a sequence of frames
//! ([`Frame`]), each a big-endian `u32` type code followed by its payload.
//! An LTX frame's header is followed by the LTX file as chunks of
//! `u16 length + bytes`, ended by a zero-length chunk.
//!
//! All integers are big-endian. Encoding is infallible (names are validated
//! by the caller); decoding never panics and never trusts a declared length
//! for an allocation.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use litefs_ltx::{Pos, Txid};
use litefs_store::SpillBuf;

/// Frame type code: an LTX file follows as chunks.
pub const FRAME_LTX: u32 = 1;
/// Frame type code: the initial replication pass is complete.
pub const FRAME_READY: u32 = 2;
/// Frame type code: the primary ends the stream cleanly.
pub const FRAME_END: u32 = 3;
/// Frame type code: a database is gone (deprecated, ignored by replicas).
pub const FRAME_DROP_DB: u32 = 4;
/// Frame type code: the primary hands its lease to this replica.
pub const FRAME_HANDOFF: u32 = 5;
/// Frame type code: a database's high-water mark.
pub const FRAME_HWM: u32 = 6;
/// Frame type code: the primary's clock, sent when idle.
pub const FRAME_HEARTBEAT: u32 = 7;

/// Longest database name or handoff lease ID accepted, in bytes: a name
/// in the mount may be as long as Linux allows a path.
pub const MAX_NAME_LEN: usize = litefs_store::MAX_NAME_LEN;
/// Largest LTX chunk: a chunk length is a `u16` and 0 ends the data.
pub const MAX_CHUNK_LEN: usize = u16::MAX as usize;
/// The zero-length chunk that ends an LTX frame's data.
pub const CHUNK_END: [u8; 2] = [0, 0];
/// A suggested LTX size limit for [`FrameDecoder::new`] (4 GiB).
pub const DEFAULT_MAX_LTX_BYTES: u64 = 1 << 32;

/// Smallest encoded position-map entry: name length, TXID and checksum (an
/// empty name is rejected later, with its own error).
const MIN_POS_ENTRY_LEN: usize = 4 + 8 + 8;

/// Why bytes on the wire could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside the named item.
    #[error("truncated {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A position map was followed by more bytes.
    #[error("{count} trailing bytes after the position map")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// A frame type code outside 1..=7.
    #[error("unknown stream frame type {0}")]
    UnknownFrameType(u32),
    /// A name that is empty or not UTF-8.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A length or count over its limit.
    #[error("{what} of {len} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The declared or accumulated size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Writing LTX data to its spill file failed.
    #[error("spilling LTX data to {dir}: {message}")]
    Spill {
        /// The spill directory.
        dir: String,
        /// What failed.
        message: String,
    },
    /// A position map lists the same database twice.
    #[error("position map lists database {name:?} twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
}

/// One frame of the primary's `/stream` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An LTX file (a transaction or a snapshot) for a database.
    Ltx {
        /// Database name.
        name: String,
        /// The whole LTX file.
        data: Bytes,
    },
    /// The initial replication pass is complete.
    Ready,
    /// The primary ends the stream cleanly.
    End,
    /// The replica has a database the primary does not (deprecated).
    DropDb {
        /// Database name.
        name: String,
    },
    /// The primary hands its lease to this replica, then ends the stream.
    Handoff {
        /// The lease (Consul session) ID to take over.
        lease_id: String,
    },
    /// A database's high-water mark.
    Hwm {
        /// The high-water-mark TXID.
        txid: Txid,
        /// Database name.
        name: String,
    },
    /// The primary's clock, in milliseconds since the Unix epoch.
    Heartbeat {
        /// Milliseconds since the Unix epoch.
        timestamp_ms: i64,
    },
}

impl Frame {
    /// This frame's wire type code.
    pub fn type_code(&self) -> u32 {
        match self {
            Frame::Ltx { .. } => FRAME_LTX,
            Frame::Ready => FRAME_READY,
            Frame::End => FRAME_END,
            Frame::DropDb { .. } => FRAME_DROP_DB,
            Frame::Handoff { .. } => FRAME_HANDOFF,
            Frame::Hwm { .. } => FRAME_HWM,
            Frame::Heartbeat { .. } => FRAME_HEARTBEAT,
        }
    }
}

/// Writes a `u32` length and the bytes of `s` (at most `u32::MAX` bytes;
/// callers pass validated names).
fn put_str(out: &mut BytesMut, s: &str) {
    debug_assert!(u32::try_from(s.len()).is_ok());
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

/// Encodes a position map (the `POST /stream` body): `u32` count, then per
/// database in name order `u32` name length, name, `u64` TXID and `u64`
/// post-apply checksum.
pub fn encode_pos_map(map: &BTreeMap<String, Pos>) -> Vec<u8> {
    let len = 4 + map.keys().map(|n| 20 + n.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    debug_assert!(u32::try_from(map.len()).is_ok());
    out.put_u32(map.len() as u32);
    for (name, pos) in map {
        put_str(&mut out, name);
        out.put_u64(pos.txid.0);
        out.put_u64(pos.post_apply_checksum.0);
    }
    out.to_vec()
}

/// Decodes a whole position map, rejecting truncation, trailing bytes, a
/// count the input cannot hold, duplicates and bad names (empty, not UTF-8,
/// over [`MAX_NAME_LEN`]). Entries may arrive in any order.
pub fn decode_pos_map(b: &[u8]) -> Result<BTreeMap<String, Pos>, WireError> {
    let mut cur = Cursor { b, pos: 0 };
    let what = "position map";
    let count = cur.u32().ok_or(WireError::Truncated { what })?;
    let room = (b.len() - cur.pos) / MIN_POS_ENTRY_LEN;
    if count as usize > room {
        return Err(WireError::TooLarge {
            what: "position map entry count",
            len: u64::from(count),
            limit: room as u64,
        });
    }
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let name = cur
            .name("database name", MAX_NAME_LEN, false)?
            .ok_or(WireError::Truncated { what })?;
        let txid = cur.u64().ok_or(WireError::Truncated { what })?;
        let checksum = cur.u64().ok_or(WireError::Truncated { what })?;
        if map.contains_key(&name) {
            return Err(WireError::DuplicateName { name });
        }
        map.insert(name, Pos::new(txid, checksum));
    }
    match b.len() - cur.pos {
        0 => Ok(map),
        count => Err(WireError::TrailingBytes { count }),
    }
}

/// Appends a whole frame to `out`; an LTX frame includes its chunked data
/// and the end chunk.
pub fn encode_frame_into(f: &Frame, out: &mut BytesMut) {
    if let Frame::Ltx { name, data } = f {
        out.put_slice(&encode_ltx_frame_header(name));
        encode_chunks(data, out);
        out.put_slice(&CHUNK_END);
        return;
    }
    out.put_u32(f.type_code());
    match f {
        Frame::Ltx { .. } | Frame::Ready | Frame::End => {}
        Frame::DropDb { name } => put_str(out, name),
        Frame::Handoff { lease_id } => put_str(out, lease_id),
        Frame::Hwm { txid, name } => {
            out.put_u64(txid.0);
            put_str(out, name);
        }
        Frame::Heartbeat { timestamp_ms } => out.put_i64(*timestamp_ms),
    }
}

/// Encodes a whole frame (see [`encode_frame_into`]).
pub fn encode_frame(f: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_frame_into(f, &mut out);
    out.freeze()
}

/// The header of an LTX frame: type 1, a `u64` size of 0 (LiteFS never fills
/// it in and ignores it), `u32` name length and name. Follow it with
/// [`encode_chunks`] (any number of calls) and then [`CHUNK_END`], so a large
/// file can be streamed piece by piece.
pub fn encode_ltx_frame_header(name: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + name.len());
    out.put_u32(FRAME_LTX);
    out.put_u64(0);
    put_str(&mut out, name);
    out.freeze()
}

/// Appends `data` as chunks of at most [`MAX_CHUNK_LEN`] bytes, each with a
/// `u16` length. Empty data appends nothing (a zero length ends the file).
pub fn encode_chunks(data: &[u8], out: &mut BytesMut) {
    out.reserve(data.len() + 2 * data.len().div_ceil(MAX_CHUNK_LEN));
    for chunk in data.chunks(MAX_CHUNK_LEN) {
        out.put_u16(chunk.len() as u16);
        out.put_slice(chunk);
    }
}

/// A reader over a byte slice; `None` means "not enough bytes yet".
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    /// Reads a `u32`-length-prefixed string, rejecting an over-long length
    /// as soon as it is known.
    fn name(
        &mut self,
        what: &'static str,
        limit: usize,
        allow_empty: bool,
    ) -> Result<Option<String>, WireError> {
        let Some(len) = self.u32() else {
            return Ok(None);
        };
        if len as usize > limit {
            return Err(WireError::TooLarge {
                what,
                len: u64::from(len),
                limit: limit as u64,
            });
        }
        let Some(bytes) = self.take(len as usize) else {
            return Ok(None);
        };
        if bytes.is_empty() && !allow_empty {
            return Err(WireError::InvalidName {
                what,
                reason: "empty",
            });
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(WireError::InvalidName {
                what,
                reason: "not UTF-8",
            }),
        }
    }
}

/// What the decoder is in the middle of.
#[derive(Debug)]
enum State {
    /// Between frames.
    Idle,
    /// Reading an LTX frame's chunks.
    Ltx {
        name: String,
        data: SpillBuf,
        /// Bytes still to come in the current chunk; 0 means a chunk length
        /// is expected next.
        chunk_left: usize,
    },
}

/// Spill settings of a [`FrameDecoder`].
#[derive(Debug, Clone)]
struct Spill {
    dir: std::path::PathBuf,
    threshold: u64,
}

/// An incremental `/stream` frame decoder for bytes arriving in arbitrary
/// pieces: [`push`](Self::push) what arrives, then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
///
/// Memory is proportional to the bytes received: header fields are checked
/// against their limits as soon as they are complete, and LTX data is
/// copied out of the input buffer as it arrives. After an error the decoder
/// keeps returning that error.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    state: State,
    max_ltx_bytes: u64,
    spill: Option<Spill>,
    failed: Option<WireError>,
}

impl FrameDecoder {
    /// A decoder that rejects LTX files over `max_ltx_bytes` (see
    /// [`DEFAULT_MAX_LTX_BYTES`]).
    pub fn new(max_ltx_bytes: u64) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            state: State::Idle,
            max_ltx_bytes,
            spill: None,
            failed: None,
        }
    }

    /// Collects an LTX file's data past `threshold` bytes in an unlinked
    /// temporary file in `dir` instead of memory.
    pub fn with_spill(mut self, dir: impl Into<std::path::PathBuf>, threshold: u64) -> Self {
        self.spill = Some(Spill {
            dir: dir.into(),
            threshold,
        });
        self
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
            self.state = State::Idle;
        }
        r
    }

    /// Checks that the stream did not end inside a frame; call it at end of
    /// input, after [`next_frame`](Self::next_frame) has returned `Ok(None)`.
    pub fn finish(&self) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.state {
            State::Ltx { .. } => Err(WireError::Truncated {
                what: "LTX frame data",
            }),
            State::Idle if !self.buf.is_empty() => Err(WireError::Truncated {
                what: "stream frame",
            }),
            State::Idle => Ok(()),
        }
    }

    fn step(&mut self) -> Result<Option<Frame>, WireError> {
        if let State::Idle = self.state {
            let mut cur = Cursor {
                b: &self.buf,
                pos: 0,
            };
            let Some(frame) = parse_frame_header(&mut cur)? else {
                return Ok(None);
            };
            let used = cur.pos;
            self.buf.advance(used);
            match frame {
                Header::Whole(f) => return Ok(Some(f)),
                Header::Ltx(name) => {
                    self.state = State::Ltx {
                        name,
                        data: match &self.spill {
                            Some(sp) => SpillBuf::new(&sp.dir, sp.threshold),
                            None => SpillBuf::new(std::path::Path::new(""), u64::MAX),
                        },
                        chunk_left: 0,
                    }
                }
            }
        }
        let State::Ltx {
            data, chunk_left, ..
        } = &mut self.state
        else {
            return Ok(None);
        };
        loop {
            if *chunk_left > 0 {
                let n = (*chunk_left).min(self.buf.len());
                if n == 0 {
                    return Ok(None);
                }
                data.push(&self.buf[..n]).map_err(|e| spill_err(data, e))?;
                self.buf.advance(n);
                *chunk_left -= n;
                continue;
            }
            if self.buf.len() < 2 {
                return Ok(None);
            }
            let len = usize::from(self.buf.get_u16());
            if len == 0 {
                break;
            }
            let total = data.len() + len as u64;
            if total > self.max_ltx_bytes {
                return Err(WireError::TooLarge {
                    what: "LTX data",
                    len: total,
                    limit: self.max_ltx_bytes,
                });
            }
            *chunk_left = len;
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ltx { name, data, .. } => {
                let dir = data.dir().display().to_string();
                let data = data.finish().map_err(|e| WireError::Spill {
                    dir,
                    message: e.to_string(),
                })?;
                Ok(Some(Frame::Ltx { name, data }))
            }
            State::Idle => Ok(None),
        }
    }
}

fn spill_err(data: &SpillBuf, e: std::io::Error) -> WireError {
    WireError::Spill {
        dir: data.dir().display().to_string(),
        message: e.to_string(),
    }
}

/// A parsed frame header: a whole frame, or the start of an LTX frame.
enum Header {
    Whole(Frame),
    Ltx(String),
}

/// Parses one frame (or an LTX frame's header) from the start of `cur`.
fn parse_frame_header(cur: &mut Cursor<'_>) -> Result<Option<Header>, WireError> {
    let Some(typ) = cur.u32() else {
        return Ok(None);
    };
    let db = "database name";
    let h = match typ {
        FRAME_LTX => {
            // The u64 size field: LiteFS writes 0 and never uses it.
            if cur.u64().is_none() {
                return Ok(None);
            }
            cur.name(db, MAX_NAME_LEN, false)?.map(Header::Ltx)
        }
        FRAME_READY => Some(Header::Whole(Frame::Ready)),
        FRAME_END => Some(Header::Whole(Frame::End)),
        FRAME_DROP_DB => cur
            .name(db, MAX_NAME_LEN, false)?
            .map(|name| Header::Whole(Frame::DropDb { name })),
        FRAME_HANDOFF => cur
            .name("handoff lease id", MAX_NAME_LEN, true)?
            .map(|lease_id| Header::Whole(Frame::Handoff { lease_id })),
        FRAME_HWM => {
            let Some(txid) = cur.u64() else {
                return Ok(None);
            };
            cur.name(db, MAX_NAME_LEN, false)?.map(|name| {
                Header::Whole(Frame::Hwm {
                    txid: Txid(txid),
                    name,
                })
            })
        }
        FRAME_HEARTBEAT => cur.u64().map(|t| {
            Header::Whole(Frame::Heartbeat {
                timestamp_ms: t as i64,
            })
        }),
        t => return Err(WireError::UnknownFrameType(t)),
    };
    Ok(h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use litefs_ltx::Checksum;
    use proptest::prelude::*;

    /// Decodes a whole stream fed `step` bytes at a time.
    fn decode_all(bytes: &[u8], step: usize) -> Result<Vec<Frame>, WireError> {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_LTX_BYTES);
        let mut frames = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            dec.push(piece);
            while let Some(f) = dec.next_frame()? {
                frames.push(f);
            }
        }
        dec.finish()?;
        Ok(frames)
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_LTX_BYTES);
        dec.push(bytes);
        dec.next_frame()
    }

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Ready,
            Frame::Ltx {
                name: "db".into(),
                data: Bytes::from_static(&[1, 2, 3]),
            },
            Frame::Hwm {
                txid: Txid(0x0102_0304_0506_0708),
                name: "db".into(),
            },
            Frame::Ltx {
                name: "empty.db".into(),
                data: Bytes::new(),
            },
            Frame::DropDb {
                name: "x.db".into(),
            },
            Frame::Heartbeat { timestamp_ms: -2 },
            Frame::Handoff {
                lease_id: "sid-1".into(),
            },
            Frame::End,
        ]
    }

    #[test]
    fn pos_map_exact_bytes() {
        let mut map = BTreeMap::new();
        map.insert("b".to_string(), Pos::new(1, 0x8000_0000_0000_0000));
        map.insert("app.db".to_string(), Pos::new(0x10, 0x8123_4567_89ab_cdef));
        let want: &[u8] = &[
            0, 0, 0, 2, // count
            0, 0, 0, 6, b'a', b'p', b'p', b'.', b'd', b'b', // name
            0, 0, 0, 0, 0, 0, 0, 0x10, // txid
            0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // checksum
            0, 0, 0, 1, b'b', // name
            0, 0, 0, 0, 0, 0, 0, 1, // txid
            0x80, 0, 0, 0, 0, 0, 0, 0, // checksum
        ];
        assert_eq!(encode_pos_map(&map), want);
        let back = decode_pos_map(want).unwrap();
        assert_eq!(back, map);
        assert_eq!(
            back["app.db"].post_apply_checksum,
            Checksum(0x8123_4567_89ab_cdef)
        );
        assert_eq!(encode_pos_map(&BTreeMap::new()), [0, 0, 0, 0]);
        assert!(decode_pos_map(&[0, 0, 0, 0]).unwrap().is_empty());
    }

    #[test]
    fn pos_map_any_order_accepted() {
        let b: &[u8] = &[
            0, 0, 0, 2, 0, 0, 0, 1, b'z', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0,
            1, b'a', 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5,
        ];
        let m = decode_pos_map(b).unwrap();
        assert_eq!(m["z"], Pos::new(2, 3));
        assert_eq!(m["a"], Pos::new(4, 5));
    }

    #[test]
    fn pos_map_malformed() {
        let mut map = BTreeMap::new();
        map.insert("a.db".to_string(), Pos::new(7, 9));
        let good = encode_pos_map(&map);
        for n in 0..good.len() {
            let e = decode_pos_map(&good[..n]).unwrap_err();
            assert!(
                matches!(e, WireError::Truncated { .. } | WireError::TooLarge { .. }),
                "{n}: {e}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode_pos_map(&long).unwrap_err(),
            WireError::TrailingBytes { count: 1 }
        );
        // A count far beyond what the input could hold.
        let e = decode_pos_map(&[0xff, 0xff, 0xff, 0xff, 0, 0]).unwrap_err();
        assert!(matches!(
            e,
            WireError::TooLarge {
                len: 0xffff_ffff,
                limit: 0,
                ..
            }
        ));
        // Empty, non-UTF-8 and over-long names.
        let entry = |name: &[u8]| {
            let mut b = vec![0, 0, 0, 1];
            b.extend_from_slice(&(name.len() as u32).to_be_bytes());
            b.extend_from_slice(name);
            b.extend_from_slice(&[0; 16]);
            b
        };
        assert!(matches!(
            decode_pos_map(&entry(b"")).unwrap_err(),
            WireError::InvalidName {
                reason: "empty",
                ..
            }
        ));
        assert!(matches!(
            decode_pos_map(&entry(&[0xff, 0xfe])).unwrap_err(),
            WireError::InvalidName {
                reason: "not UTF-8",
                ..
            }
        ));
        assert!(decode_pos_map(&entry(&[b'a'; MAX_NAME_LEN])).is_ok());
        assert!(matches!(
            decode_pos_map(&entry(&[b'a'; MAX_NAME_LEN + 1])).unwrap_err(),
            WireError::TooLarge {
                len: 4096,
                limit: 4095,
                ..
            }
        ));
        let mut dup = entry(b"a");
        dup[3] = 2;
        dup.extend_from_slice(&entry(b"a")[4..]);
        assert_eq!(
            decode_pos_map(&dup).unwrap_err(),
            WireError::DuplicateName { name: "a".into() }
        );
    }

    #[test]
    fn frames_exact_bytes() {
        let cases: Vec<(Frame, Vec<u8>)> = vec![
            (
                Frame::Ltx {
                    name: "db".into(),
                    data: Bytes::from_static(&[1, 2, 3]),
                },
                vec![
                    0, 0, 0, 1, // type
                    0, 0, 0, 0, 0, 0, 0, 0, // size (unused)
                    0, 0, 0, 2, b'd', b'b', // name
                    0, 3, 1, 2, 3, // one chunk
                    0, 0, // end chunk
                ],
            ),
            (
                Frame::Ltx {
                    name: "db".into(),
                    data: Bytes::new(),
                },
                vec![
                    0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, b'd', b'b', 0, 0,
                ],
            ),
            (Frame::Ready, vec![0, 0, 0, 2]),
            (Frame::End, vec![0, 0, 0, 3]),
            (
                Frame::DropDb {
                    name: "x.db".into(),
                },
                vec![0, 0, 0, 4, 0, 0, 0, 4, b'x', b'.', b'd', b'b'],
            ),
            (
                Frame::Handoff {
                    lease_id: "sid-1".into(),
                },
                vec![0, 0, 0, 5, 0, 0, 0, 5, b's', b'i', b'd', b'-', b'1'],
            ),
            (
                Frame::Hwm {
                    txid: Txid(0x0102_0304_0506_0708),
                    name: "db".into(),
                },
                vec![0, 0, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 2, b'd', b'b'],
            ),
            (
                Frame::Heartbeat {
                    timestamp_ms: 1_700_000_000_000,
                },
                vec![0, 0, 0, 7, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00],
            ),
            (
                Frame::Heartbeat { timestamp_ms: -2 },
                vec![0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
            ),
        ];
        for (frame, bytes) in cases {
            assert_eq!(&encode_frame(&frame)[..], &bytes[..], "{frame:?}");
            assert_eq!(decode_one(&bytes).unwrap(), Some(frame));
        }
    }

    #[test]
    fn ltx_header_helper_and_ignored_size() {
        let h = encode_ltx_frame_header("a");
        assert_eq!(
            &h[..],
            &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'a']
        );
        // A non-zero size field is ignored, as LiteFS does.
        let b = [
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, b'a', 0, 1, 7, 0, 0,
        ];
        assert_eq!(
            decode_one(&b).unwrap(),
            Some(Frame::Ltx {
                name: "a".into(),
                data: Bytes::from_static(&[7]),
            })
        );
    }

    #[test]
    fn round_trip_at_every_split() {
        let mut stream = BytesMut::new();
        for f in sample_frames() {
            encode_frame_into(&f, &mut stream);
        }
        for step in 1..=stream.len() {
            assert_eq!(
                decode_all(&stream, step).unwrap(),
                sample_frames(),
                "{step}"
            );
        }
        // Split into two pieces at every boundary.
        for cut in 0..=stream.len() {
            let mut dec = FrameDecoder::new(DEFAULT_MAX_LTX_BYTES);
            let mut got = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                dec.push(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            dec.finish().unwrap();
            assert_eq!(got, sample_frames(), "{cut}");
        }
    }

    #[test]
    fn large_ltx_spans_chunks() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let f = Frame::Ltx {
            name: "big.db".into(),
            data: Bytes::from(data.clone()),
        };
        let b = encode_frame(&f);
        let h = 4 + 8 + 4 + 6;
        assert_eq!(b.len(), h + 3 * 2 + 150_000 + 2);
        assert_eq!(&b[h..h + 2], &[0xff, 0xff]);
        let second = h + 2 + 65_535;
        assert_eq!(&b[second..second + 2], &[0xff, 0xff]);
        let third = second + 2 + 65_535;
        assert_eq!(u16::from_be_bytes([b[third], b[third + 1]]), 18_930);
        assert_eq!(&b[b.len() - 2..], &CHUNK_END);
        for step in [1, 2, 3, 1000, 65_537, b.len()] {
            assert_eq!(decode_all(&b, step).unwrap(), vec![f.clone()]);
        }
        // LiteFS's io.Copy writes 32 KiB chunks; any chunking decodes alike.
        let mut alt = BytesMut::from(&encode_ltx_frame_header("big.db")[..]);
        for piece in data.chunks(32 * 1024) {
            encode_chunks(piece, &mut alt);
        }
        encode_chunks(&[], &mut alt);
        alt.put_slice(&CHUNK_END);
        assert_eq!(decode_all(&alt, 4096).unwrap(), vec![f]);
    }

    #[test]
    fn malformed_frames() {
        for t in [0u32, 8, 0xffff_ffff] {
            assert_eq!(
                decode_one(&t.to_be_bytes()).unwrap_err(),
                WireError::UnknownFrameType(t)
            );
        }
        // Over-long names are rejected before their bytes arrive.
        let long = |typ: u32, pre: &[u8]| {
            let mut b = typ.to_be_bytes().to_vec();
            b.extend_from_slice(pre);
            b.extend_from_slice(&(MAX_NAME_LEN as u32 + 1).to_be_bytes());
            b
        };
        for b in [long(1, &[0; 8]), long(4, &[]), long(6, &[0; 8])] {
            assert!(matches!(
                decode_one(&b).unwrap_err(),
                WireError::TooLarge {
                    what: "database name",
                    len: 4096,
                    ..
                }
            ));
        }
        assert!(matches!(
            decode_one(&long(5, &[])).unwrap_err(),
            WireError::TooLarge {
                what: "handoff lease id",
                ..
            }
        ));
        let mut ok_id = vec![0, 0, 0, 5, 0, 0, 4, 0];
        ok_id.extend_from_slice(&[b'x'; 1024]);
        assert!(decode_one(&ok_id).unwrap().is_some());
        // Non-UTF-8 and empty names.
        let bad = [0, 0, 0, 4, 0, 0, 0, 1, 0xff];
        assert!(matches!(
            decode_one(&bad).unwrap_err(),
            WireError::InvalidName {
                reason: "not UTF-8",
                ..
            }
        ));
        let empty = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode_one(&empty).unwrap_err(),
            WireError::InvalidName {
                reason: "empty",
                ..
            }
        ));
        assert_eq!(
            decode_one(&[0, 0, 0, 5, 0, 0, 0, 0]).unwrap(),
            Some(Frame::Handoff {
                lease_id: String::new()
            })
        );
        // LTX data over the limit, rejected when the chunk length arrives.
        let mut dec = FrameDecoder::new(10);
        dec.push(&encode_ltx_frame_header("a"));
        dec.push(&[0, 6, 1, 2, 3, 4, 5, 6, 0, 5]);
        let e = dec.next_frame().unwrap_err();
        assert_eq!(
            e,
            WireError::TooLarge {
                what: "LTX data",
                len: 11,
                limit: 10
            }
        );
        // The error is sticky.
        dec.push(&[0, 0, 0, 2]);
        assert_eq!(dec.next_frame().unwrap_err(), e);
        assert_eq!(dec.finish().unwrap_err(), e);
        let mut dec = FrameDecoder::new(10);
        dec.push(&encode_frame(&Frame::Ltx {
            name: "a".into(),
            data: Bytes::from_static(&[0; 10]),
        }));
        assert!(dec.next_frame().unwrap().is_some());
    }

    #[test]
    fn large_ltx_data_spills_to_a_file_and_arrives_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let frames = [
            Frame::Ltx {
                name: "big".into(),
                data: Bytes::from(data.clone()),
            },
            Frame::Ltx {
                name: "small".into(),
                data: Bytes::from_static(b"tiny"),
            },
            Frame::Ready,
        ];
        let mut stream = BytesMut::new();
        for f in &frames {
            encode_frame_into(f, &mut stream);
        }
        let mut dec = FrameDecoder::new(DEFAULT_MAX_LTX_BYTES).with_spill(dir.path(), 1000);
        let mut got = Vec::new();
        // In odd pieces, as a network delivers them.
        for piece in stream.chunks(7919) {
            dec.push(piece);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        dec.finish().unwrap();
        assert_eq!(got, frames);
        // The spill file is unlinked from the start: nothing is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let gone = dir.path().join("missing");
        let mut dec = FrameDecoder::new(DEFAULT_MAX_LTX_BYTES).with_spill(&gone, 1000);
        dec.push(&stream);
        match dec.next_frame() {
            Err(WireError::Spill { dir, .. }) => assert_eq!(dir, gone.display().to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finish_detects_mid_frame_end() {
        let mut stream = BytesMut::new();
        for f in sample_frames() {
            encode_frame_into(&f, &mut stream);
        }
        let boundaries: Vec<usize> = sample_frames()
            .iter()
            .scan(0, |n, f| {
                *n += encode_frame(f).len();
                Some(*n)
            })
            .collect();
        for cut in 1..stream.len() {
            let mut dec = FrameDecoder::new(DEFAULT_MAX_LTX_BYTES);
            dec.push(&stream[..cut]);
            while dec.next_frame().unwrap().is_some() {}
            let r = dec.finish();
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "{cut}: {r:?}");
            if let Err(e) = r {
                assert!(matches!(e, WireError::Truncated { .. }));
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            step in 1usize..64,
        ) {
            let _ = decode_pos_map(&bytes);
            let mut dec = FrameDecoder::new(1 << 16);
            for piece in bytes.chunks(step) {
                dec.push(piece);
                while let Ok(Some(_)) = dec.next_frame() {}
            }
            let _ = dec.finish();
        }

        #[test]
        fn random_frames_round_trip(
            name in "[a-z0-9._-]{1,40}",
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            txid in any::<u64>(),
            ts in any::<i64>(),
            step in 1usize..700,
        ) {
            let frames = vec![
                Frame::Ltx { name: name.clone(), data: Bytes::from(data) },
                Frame::Hwm { txid: Txid(txid), name: name.clone() },
                Frame::Heartbeat { timestamp_ms: ts },
                Frame::Handoff { lease_id: name.clone() },
            ];
            let mut b = BytesMut::new();
            for f in &frames {
                encode_frame_into(f, &mut b);
            }
            prop_assert_eq!(decode_all(&b, step).unwrap(), frames);
            let map: BTreeMap<String, Pos> =
                [(name, Pos::new(txid, ts as u64))].into_iter().collect();
            prop_assert_eq!(decode_pos_map(&encode_pos_map(&map)).unwrap(), map);
        }
    }
}
