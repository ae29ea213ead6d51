//! CRC-64/GO-ISO, the checksum every LTX file and database position uses.
//!
//! This is Go's `hash/crc64` with the ISO table (poly 0x1B reflected,
//! init/xorout all ones). `crc-fast` computes it with carry-less multiply
//! instructions where the CPU has them.

use crate::types::{Checksum, CHECKSUM_FLAG};
use crc_fast::CrcAlgorithm;

/// CRC-64/GO-ISO of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64GoIso, data)
}

/// An incremental CRC-64/GO-ISO.
#[derive(Clone)]
pub struct Crc64(crc_fast::Digest);

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({:016x})", self.0.finalize())
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    /// A CRC over nothing yet.
    pub fn new() -> Crc64 {
        Crc64(crc_fast::Digest::new(CrcAlgorithm::Crc64GoIso))
    }

    /// Feeds more bytes.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything fed so far.
    pub fn value(&self) -> u64 {
        self.0.finalize()
    }
}

/// The checksum of one database page: `1<<63 | crc64(be32(pgno) ++ data)`.
pub fn page_checksum(pgno: u32, data: &[u8]) -> Checksum {
    let mut d = Crc64::new();
    d.update(&pgno.to_be_bytes());
    d.update(data);
    Checksum(CHECKSUM_FLAG | d.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_is_go_iso() {
        // The catalogue check value of CRC-64/GO-ISO; CRC-64/XZ would give
        // 0x995dc9bbdf1939fa.
        assert_eq!(crc64(b"123456789"), 0xB909_56C7_75A4_1001);
        let mut d = Crc64::new();
        d.update(b"1234");
        d.update(b"56789");
        assert_eq!(d.value(), 0xB909_56C7_75A4_1001);
    }

    #[test]
    fn crc_fast_agrees_with_table_crc() {
        let table = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
        for len in [0usize, 1, 7, 8, 15, 16, 63, 64, 65, 255, 4096, 4100, 65536] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            assert_eq!(crc64(&data), table.checksum(&data), "len {len}");
        }
    }

    #[test]
    fn page_checksum_covers_pgno() {
        let page = [0u8; 512];
        assert_ne!(page_checksum(1, &page), page_checksum(2, &page));
        assert!(page_checksum(1, &page).has_flag());
    }
}
