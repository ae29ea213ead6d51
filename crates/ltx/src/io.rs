//! Byte plumbing for the decoder: a reader that counts the offset it has
//! reached so every error can say where it happened, and LEB128 varints.

use crate::error::DecodeError;
use std::io::{ErrorKind, Read};

/// Wraps the caller's reader and counts consumed bytes.
pub(crate) struct Source<R> {
    inner: R,
    pub(crate) offset: u64,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Self {
        Source { inner, offset: 0 }
    }

    /// Fills `buf` or fails with `Truncated` naming `what`.
    pub(crate) fn read_exact(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), DecodeError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(DecodeError::Truncated {
                        offset: self.offset,
                        what,
                    })
                }
                Ok(n) => {
                    done += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(DecodeError::Io {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Succeeds only if the stream has no more bytes.
    pub(crate) fn expect_eof(&mut self, what: &'static str) -> Result<(), DecodeError> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(DecodeError::TrailingData {
                        offset: self.offset,
                        what,
                    })
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(DecodeError::Io {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
    }
}

/// Appends `v` as an unsigned LEB128 varint (Go's `binary.AppendUvarint`).
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes `v` as an unsigned LEB128 varint into `buf`, returning its length.
pub(crate) fn uvarint(buf: &mut [u8; 10], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_go() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(out, want);
            let mut b = [0u8; 10];
            let n = uvarint(&mut b, v);
            assert_eq!(&b[..n], want);
        }
        let mut b = [0u8; 10];
        assert_eq!(uvarint(&mut b, u64::MAX), 10);
    }
}
