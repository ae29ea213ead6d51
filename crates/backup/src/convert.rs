//! From the node's LTX history (v1) to a backup file (v3).

use crate::BackupError;
use litefs_ltx::{Checksum, Decoder, Encoder, Format, Header, Txid, Version, FLAG_NO_CHECKSUM};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Compacts contiguous LTX v1 files (oldest first) into one LTX v3 file,
/// NoChecksum, block pages, as Litestream 0.5.16+ writes them: each page at
/// its newest version, pages beyond the last file's commit size dropped.
/// A first file starting at TXID 1 makes the result a snapshot (it must be
/// a whole database). Every input is verified (file checksum) first.
/// Also returns the last input's post-apply checksum (the node's rolling
/// checksum at the result's last TXID; the v3 file carries none).
pub fn v1_to_v3(files: &[&[u8]]) -> Result<(Header, Vec<u8>, Checksum), BackupError> {
    compact(files, Version::V1)
}

/// Compacts contiguous files of format `version` (oldest first) into one
/// LTX v3 file; see [`v1_to_v3`]. Backup compaction (level 0 into level 1)
/// uses it on v3 files.
pub(crate) fn compact(
    files: &[&[u8]],
    version: Version,
) -> Result<(Header, Vec<u8>, Checksum), BackupError> {
    let bad = |source| BackupError::Ltx {
        path: PathBuf::from("(LTX file being compacted)"),
        source,
    };
    let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut first: Option<Header> = None;
    let mut last: Option<Header> = None;
    let mut post = Checksum(0);
    for &f in files {
        let mut dec = Decoder::new(f, version).map_err(bad)?;
        let h = *dec.header();
        if let Some(prev) = last {
            if h.min_txid.0 != prev.max_txid.0 + 1 {
                return Err(BackupError::Invalid(format!(
                    "LTX files not contiguous: {} follows {}",
                    h.min_txid, prev.max_txid
                )));
            }
        }
        let mut buf = vec![0u8; h.page_size as usize];
        while let Some(p) = dec.next_page(&mut buf).map_err(bad)? {
            pages.insert(p.pgno, buf.clone());
        }
        post = dec.finish().map_err(bad)?.post_apply_checksum;
        first.get_or_insert(h);
        last = Some(h);
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err(BackupError::Invalid("no LTX files to back up".into()));
    };
    pages.retain(|&pgno, _| pgno <= last.commit);
    let header = Header {
        flags: FLAG_NO_CHECKSUM,
        page_size: last.page_size,
        commit: last.commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp: last.timestamp,
        pre_apply_checksum: Checksum(0),
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: 0,
    };
    let what = || format!("backup file {}-{}", header.min_txid, header.max_txid);
    let enc_err = |source| BackupError::Encode {
        what: what(),
        source,
    };
    let mut enc = Encoder::new(Vec::new(), header, Format::V3Block).map_err(enc_err)?;
    for (pgno, data) in &pages {
        enc.encode_page(*pgno, data).map_err(enc_err)?;
    }
    let (bytes, _) = enc.finish(Checksum(0)).map_err(enc_err)?;
    Ok((header, bytes, post))
}

/// The TXID range of an LTX file's header, if it has one.
pub(crate) fn header_of(b: &[u8]) -> Option<Header> {
    let hb: &[u8; litefs_ltx::HEADER_SIZE] = b.get(..litefs_ltx::HEADER_SIZE)?.try_into().ok()?;
    Header::from_bytes(hb).ok()
}

/// The first TXID after `h`.
pub(crate) fn next_after(h: &Header) -> Txid {
    Txid(h.max_txid.0 + 1)
}
