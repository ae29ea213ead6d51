//! Small positional-read helpers.

use std::io;
use std::os::unix::fs::FileExt;

/// Reads into `buf` at `offset` until `buf` is full or end of file is
/// reached, retrying on `Interrupted`. Returns the number of bytes read,
/// which is less than `buf.len()` only at end of file.
pub(crate) fn read_full_at<F: FileExt + ?Sized>(
    file: &F,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(pos) = offset.checked_add(done as u64) else {
            break;
        };
        let Some(dst) = buf.get_mut(done..) else {
            break;
        };
        match file.read_at(dst, pos) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Big-endian `u32` at `off`, or 0 if out of range (callers check lengths
/// beforehand; this only exists to avoid panicking indexing).
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Big-endian `u16` at `off`, or 0 if out of range.
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off.wrapping_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Byte at `off`, or 0 if out of range.
pub(crate) fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}
