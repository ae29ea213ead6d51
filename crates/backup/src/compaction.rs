//! Keeping a backup cheap to store and quick to restore, as Litestream 0.5
//! does: level-0 files are merged into level 1, level 1 into level 2, and
//! so on, each level on its own interval; a fresh snapshot is written now
//! and then; files no restore inside the retention window can use are
//! deleted.
//!
//! Invariants, whatever crashes in between:
//! - a compacted file covers exactly the contiguous run of files it was
//!   made from, never a missing TXID (a gap in one level stays a gap in
//!   the next, where the restore sees it, and a snapshot after it bridges
//!   it);
//! - nothing is deleted before what replaces it is written, and the newest
//!   file of every level and the newest snapshot always stay;
//! - a restore at any TXID at or after the oldest kept snapshot stays
//!   possible.

use crate::layout::{ReplicaFile, Storage, SNAPSHOT_LEVEL};
use crate::BackupError;
use litefs_ltx::Txid;
use std::time::{Duration, SystemTime};

/// When old files go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    /// Snapshots older than this go (the newest always stays), then every
    /// file of levels 0 to 8 wholly before the oldest snapshot left; zero:
    /// keep everything.
    pub snapshots: Duration,
    /// Level-0 files a higher level covers go once this old.
    pub l0: Duration,
}

/// Merges the first contiguous run of files at `level - 1` after the
/// newest file at `level` into one file at `level`. Returns the file
/// written, if there was anything to merge.
pub(crate) fn compact_level(
    replica: &dyn Storage,
    files: &[ReplicaFile],
    level: u8,
) -> Result<Option<ReplicaFile>, BackupError> {
    if level == 0 || level >= SNAPSHOT_LEVEL {
        return Err(BackupError::Invalid(format!(
            "level {level} cannot be compacted into"
        )));
    }
    let base = files
        .iter()
        .filter(|f| f.level == level)
        .map(|f| f.max)
        .max()
        .unwrap_or(Txid(0));
    let mut src: Vec<&ReplicaFile> = files
        .iter()
        .filter(|f| f.level == level - 1 && f.min > base)
        .collect();
    src.sort_by_key(|f| (f.min, f.max));
    let mut run: Vec<&ReplicaFile> = Vec::new();
    for f in src {
        match run.last() {
            None => run.push(f),
            Some(prev) if f.min.0 == prev.max.0 + 1 => run.push(f),
            Some(_) => break,
        }
    }
    let Some(first) = run.first() else {
        return Ok(None);
    };
    if base.0 > 0 && first.min.0 != base.0 + 1 {
        tracing::warn!(
            level,
            after = %base,
            next = %first.min,
            "backup level {} has a gap before {}; level {level} continues after it (a restore needs a snapshot past the gap)",
            level - 1,
            first.path.display()
        );
    }
    let bytes: Vec<Vec<u8>> = run
        .iter()
        .map(|f| replica.read(f))
        .collect::<Result<_, _>>()?;
    let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let (h, b, _) = crate::convert::compact(&slices, litefs_ltx::Version::V3)?;
    let file = replica.write(level, &h, &b)?;
    tracing::debug!(level, min = %h.min_txid, max = %h.max_txid, files = run.len(), "backup compacted");
    Ok(Some(file))
}

/// Deletes what `retention` no longer keeps (see [`Retention`]); returns
/// how many files went.
pub(crate) fn enforce_retention(
    replica: &dyn Storage,
    files: &[ReplicaFile],
    retention: Retention,
    now: SystemTime,
) -> Result<usize, BackupError> {
    let older_than =
        |f: &ReplicaFile, age: Duration| now.duration_since(f.time).is_ok_and(|a| a >= age);
    let newest = |level: u8| {
        files
            .iter()
            .filter(|f| f.level == level)
            .max_by_key(|f| (f.max, f.min))
    };
    let mut doomed: Vec<&ReplicaFile> = Vec::new();
    let mut oldest_snapshot: Option<Txid> = None;
    if let Some(keep) = newest(SNAPSHOT_LEVEL) {
        for f in files.iter().filter(|f| f.level == SNAPSHOT_LEVEL) {
            if f != keep && !retention.snapshots.is_zero() && older_than(f, retention.snapshots) {
                doomed.push(f);
            } else if oldest_snapshot.is_none_or(|t| f.max < t) {
                oldest_snapshot = Some(f.max);
            }
        }
    }
    let before_snapshots = |f: &ReplicaFile| {
        !retention.snapshots.is_zero() && oldest_snapshot.is_some_and(|s| f.max < s)
    };
    for level in 0..SNAPSHOT_LEVEL {
        let keep = newest(level);
        for f in files.iter().filter(|f| f.level == level) {
            if Some(f) == keep {
                continue;
            }
            let covered = level == 0
                && older_than(f, retention.l0)
                && files.iter().any(|g| {
                    g.level > 0 && g.level < SNAPSHOT_LEVEL && g.min <= f.min && g.max >= f.max
                });
            if covered || before_snapshots(f) {
                doomed.push(f);
            }
        }
    }
    for f in &doomed {
        replica.delete(f)?;
    }
    if !doomed.is_empty() {
        tracing::debug!(files = doomed.len(), "backup retention removed files");
    }
    Ok(doomed.len())
}

/// Whether a new snapshot is due: the newest is older than `every` and
/// the database has moved on since.
pub(crate) fn snapshot_due(
    files: &[ReplicaFile],
    every: Duration,
    at: Txid,
    now: SystemTime,
) -> bool {
    if every.is_zero() {
        return false;
    }
    match files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL)
        .max_by_key(|f| f.max)
    {
        None => false,
        Some(s) => at > s.max && now.duration_since(s.time).is_ok_and(|a| a >= every),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::layout::FileReplica;
    use litefs_ltx::{Checksum, Encoder, Format, Header, FLAG_NO_CHECKSUM};
    use std::time::UNIX_EPOCH;

    fn put(r: &FileReplica, level: u8, min: u64, max: u64, ts_ms: i64) {
        let h = Header {
            flags: FLAG_NO_CHECKSUM,
            min_txid: Txid(min),
            pre_apply_checksum: Checksum(0),
            ..Header::snapshot(512, 2, Txid(max), ts_ms)
        };
        let mut enc = Encoder::new(Vec::new(), h, Format::V3Block).unwrap();
        enc.encode_page(1, &[min as u8; 512]).unwrap();
        enc.encode_page(2, &[max as u8; 512]).unwrap();
        let (b, _) = enc.finish(Checksum(0)).unwrap();
        r.write(level, &h, &b).unwrap();
    }

    fn names(r: &FileReplica) -> Vec<(u8, u64, u64)> {
        r.files()
            .unwrap()
            .iter()
            .map(|f| (f.level, f.min.0, f.max.0))
            .collect()
    }

    #[test]
    fn compaction_takes_the_contiguous_run_after_the_level_and_never_spans_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let r = FileReplica::new(dir.path());
        put(&r, SNAPSHOT_LEVEL, 1, 4, 1);
        for (a, b) in [(5, 6), (7, 7), (8, 9), (12, 12), (13, 14)] {
            put(&r, 0, a, b, 2);
        }
        let f = compact_level(&r, &r.files().unwrap(), 1).unwrap().unwrap();
        assert_eq!((f.min.0, f.max.0), (5, 9));
        // The gap 10-11 stays a gap in level 1.
        let f = compact_level(&r, &r.files().unwrap(), 1).unwrap().unwrap();
        assert_eq!((f.min.0, f.max.0), (12, 14));
        assert!(compact_level(&r, &r.files().unwrap(), 1).unwrap().is_none());
        let f = compact_level(&r, &r.files().unwrap(), 2).unwrap().unwrap();
        assert_eq!((f.min.0, f.max.0), (5, 9));
        assert!(compact_level(&r, &r.files().unwrap(), 0).is_err());
    }

    #[test]
    fn retention_keeps_the_newest_and_whatever_a_kept_snapshot_needs() {
        let dir = tempfile::tempdir().unwrap();
        let r = FileReplica::new(dir.path());
        let s = 1_000_000i64; // 1,000 s after the epoch
        put(&r, SNAPSHOT_LEVEL, 1, 4, s);
        put(&r, SNAPSHOT_LEVEL, 1, 10, s + 500_000);
        put(&r, 0, 5, 8, s);
        put(&r, 0, 9, 12, s + 500_000);
        put(&r, 0, 13, 14, s + 599_000);
        put(&r, 1, 5, 12, s + 500_000);
        put(&r, 2, 5, 8, s);
        let now = UNIX_EPOCH + Duration::from_millis((s + 600_000) as u64);
        let keep_all = Retention {
            snapshots: Duration::ZERO,
            l0: Duration::from_secs(3600),
        };
        assert_eq!(
            enforce_retention(&r, &r.files().unwrap(), keep_all, now).unwrap(),
            0
        );
        let n = enforce_retention(
            &r,
            &r.files().unwrap(),
            Retention {
                snapshots: Duration::from_secs(300),
                l0: Duration::from_secs(60),
            },
            now,
        )
        .unwrap();
        // Gone: the old snapshot, the level-0 files level 1 covers (the
        // newest level-0 file stays), and nothing else: level 2's only
        // file is its newest.
        assert_eq!(n, 3, "{:?}", names(&r));
        assert_eq!(
            names(&r),
            vec![(0, 13, 14), (1, 5, 12), (2, 5, 8), (SNAPSHOT_LEVEL, 1, 10)]
        );
    }

    #[test]
    fn snapshots_are_due_by_age_and_only_when_the_database_moved() {
        let dir = tempfile::tempdir().unwrap();
        let r = FileReplica::new(dir.path());
        put(&r, SNAPSHOT_LEVEL, 1, 4, 1_000);
        let files = r.files().unwrap();
        let later = UNIX_EPOCH + Duration::from_secs(100);
        let day = Duration::from_secs(50);
        assert!(snapshot_due(&files, day, Txid(5), later));
        assert!(!snapshot_due(&files, day, Txid(4), later));
        assert!(!snapshot_due(
            &files,
            Duration::from_secs(200),
            Txid(5),
            later
        ));
        assert!(!snapshot_due(&files, Duration::ZERO, Txid(5), later));
        assert!(!snapshot_due(&[], day, Txid(5), later));
    }
}
