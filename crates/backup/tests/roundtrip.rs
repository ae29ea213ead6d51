//! Node LTX history (v1) -> backup files (v3) -> restore, on synthetic
//! databases; and the restore's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_backup::{restore, v1_to_v3, BackupError, FileReplica, RestoreTarget, SNAPSHOT_LEVEL};
use litefs_ltx::{page_checksum, Checksum, Encoder, Format, Header, Txid, FLAG_COMPRESS_LZ4};

const PS: u32 = 512;

fn page(tag: u8) -> Vec<u8> {
    vec![tag; PS as usize]
}

/// A v1 file of `pages` moving `pre` to the returned checksum.
fn v1(
    min: u64,
    max: u64,
    commit: u32,
    pages: &[(u32, u8)],
    pre: Checksum,
    db: &mut Vec<Vec<u8>>,
) -> (Vec<u8>, Checksum) {
    let mut h = if min == 1 {
        Header::snapshot(PS, commit, Txid(max), 1_000 * max as i64)
    } else {
        Header {
            pre_apply_checksum: pre,
            ..Header::snapshot(PS, commit, Txid(max), 1_000 * max as i64)
        }
    };
    h.min_txid = Txid(min);
    h.flags = FLAG_COMPRESS_LZ4;
    db.resize(commit as usize, Vec::new());
    let mut enc = Encoder::new(Vec::new(), h, Format::V1).unwrap();
    for &(pgno, tag) in pages {
        enc.encode_page(pgno, &page(tag)).unwrap();
        db[pgno as usize - 1] = page(tag);
    }
    let mut sum = 0u64;
    for (i, p) in db.iter().enumerate() {
        sum ^= page_checksum(i as u32 + 1, p).0;
    }
    let post = Checksum(sum | (1 << 63));
    (enc.finish(post).unwrap().0, post)
}

#[test]
fn history_to_backup_to_database() {
    let dir = tempfile::tempdir().unwrap();
    let replica = FileReplica::new(dir.path().join("db"));
    let mut db = Vec::new();
    let (f1, c1) = v1(1, 1, 3, &[(1, 1), (2, 2), (3, 3)], Checksum(0), &mut db);
    let at1 = db.concat();
    let (f2, c2) = v1(2, 2, 3, &[(2, 9)], c1, &mut db);
    let (f3, _) = v1(3, 3, 2, &[(1, 7)], c2, &mut db);
    let at3 = db.concat();
    let (h, b, _) = v1_to_v3(&[&f1]).unwrap();
    replica.write(SNAPSHOT_LEVEL, &h, &b).unwrap();
    let (h, b, _) = v1_to_v3(&[&f2, &f3]).unwrap();
    assert_eq!((h.min_txid, h.max_txid, h.commit), (Txid(2), Txid(3), 2));
    replica.write(0, &h, &b).unwrap();

    let out = dir.path().join("out.db");
    let r = restore(&replica, &out, RestoreTarget::Latest).unwrap();
    assert_eq!(r.txid, Txid(3));
    assert_eq!(std::fs::read(&out).unwrap(), at3);
    let out1 = dir.path().join("out1.db");
    restore(&replica, &out1, RestoreTarget::Txid(Txid(1))).unwrap();
    assert_eq!(std::fs::read(&out1).unwrap(), at1);
    // TXID 2 is inside a compacted file: not restorable on its own.
    let e = restore(
        &replica,
        &dir.path().join("x.db"),
        RestoreTarget::Txid(Txid(2)),
    );
    assert!(
        matches!(
            e,
            Err(BackupError::TxidNotFound {
                want: 2,
                have: 1,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(!dir.path().join("x.db").exists());
}

#[test]
fn gaps_and_missing_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let replica = FileReplica::new(dir.path().join("db"));
    let mut db = Vec::new();
    let (f1, c1) = v1(1, 1, 2, &[(1, 1), (2, 2)], Checksum(0), &mut db);
    let (f2, c2) = v1(2, 2, 2, &[(2, 3)], c1, &mut db);
    let (f3, _) = v1(3, 3, 2, &[(2, 4)], c2, &mut db);
    let out = dir.path().join("out.db");
    let (h, b, _) = v1_to_v3(&[&f2]).unwrap();
    replica.write(0, &h, &b).unwrap();
    assert!(matches!(
        restore(&replica, &out, RestoreTarget::Latest),
        Err(BackupError::NoSnapshot { .. })
    ));
    let (h, b, _) = v1_to_v3(&[&f1]).unwrap();
    replica.write(SNAPSHOT_LEVEL, &h, &b).unwrap();
    std::fs::remove_file(
        replica
            .root()
            .join("ltx/0/0000000000000002-0000000000000002.ltx"),
    )
    .unwrap();
    let (h, b, _) = v1_to_v3(&[&f3]).unwrap();
    let next = replica.write(0, &h, &b).unwrap();
    match restore(&replica, &out, RestoreTarget::Latest) {
        Err(
            e @ BackupError::Gap {
                have: 1,
                next_min: 3,
                ..
            },
        ) => {
            assert!(e.to_string().contains(&*next.path.to_string_lossy()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists());
    // Non-contiguous history cannot be compacted.
    assert!(v1_to_v3(&[&f1, &f3]).is_err());
}
