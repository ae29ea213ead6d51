//! LTX ("Lite Transaction") change files.
//!
//! An LTX file holds the pages one or more SQLite transactions changed, plus
//! enough checksums to prove that applying it to a database at a known
//! position yields a known database. This crate encodes and decodes the two
//! wire formats that share the `LTX1` magic:
//!
//! * [`Version::V1`]: LiteFS v0.5.14 (superfly/ltx v0.3.14). Raw page frames,
//!   optionally one LZ4 frame around the whole page block, checksums required.
//! * [`Version::V3`]: Litestream 0.5.x (superfly/ltx v0.5.x). Six-byte page
//!   headers, per-page LZ4 (size-prefixed block or legacy frame), a page
//!   index, and usually the `NoChecksum` flag.
//!
//! Nothing in a file says which format it is, so every reader names the
//! version it expects. The codec is streaming: it holds one page (and, for
//! LZ4 frames, one block) at a time, never a whole file. It knows nothing of
//! files on disk, FUSE or HTTP; it reads from [`std::io::Read`] and writes to
//! [`std::io::Write`].
//!
//! ```
//! use litefs_ltx::{Decoder, Encoder, Format, Header, Txid, Version, page_checksum, Checksum};
//!
//! let page = vec![7u8; 4096];
//! let header = Header::snapshot(4096, 1, Txid(1), 1_700_000_000_000);
//! let mut enc = Encoder::new(Vec::new(), header, Format::V1).unwrap();
//! enc.encode_page(1, &page).unwrap();
//! let post = Checksum::EMPTY.toggle(page_checksum(1, &page));
//! let (bytes, _trailer) = enc.finish(post).unwrap();
//!
//! let mut dec = Decoder::new(&bytes[..], Version::V1).unwrap();
//! let mut buf = vec![0u8; 4096];
//! while let Some(p) = dec.next_page(&mut buf).unwrap() {
//!     assert_eq!(p.pgno, 1);
//! }
//! let trailer = dec.finish().unwrap();
//! assert_eq!(trailer.post_apply_checksum, post);
//! ```

mod checksum;
mod decoder;
mod encoder;
mod error;
mod header;
mod io;
mod lz4frame;
mod types;

pub use checksum::{crc64, page_checksum, Crc64};
pub use decoder::{verify, Decoder, PageInfo};
pub use encoder::{Encoder, Format};
pub use error::{DecodeError, EncodeError, HeaderError};
pub use header::{
    now_ms, Header, Trailer, Version, FLAG_COMPRESS_LZ4, FLAG_NO_CHECKSUM, HEADER_SIZE, MAGIC,
    TRAILER_SIZE,
};
pub use types::{
    format_file_name, is_valid_page_size, lock_pgno, parse_file_name, Checksum, ParsePosError, Pos,
    Txid, CHECKSUM_FLAG, MAX_PAGE_SIZE, MIN_PAGE_SIZE,
};
