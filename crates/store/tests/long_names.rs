//! Names as long as Linux allows (255-byte components, 4095 bytes in all)
//! in the data directory: their fixed-length entries under `dbs/`, and
//! data directories written with the older `%2F` spelling opening
//! unchanged. Without FUSE; database files written by real SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_store::{NoClients, Store, StoreOptions};
use std::path::Path;
use std::process::Command;

/// A SQLite database file made by Python's sqlite3 running `sql`.
fn sqlite_image(dir: &Path, sql: &str) -> Vec<u8> {
    let path = dir.join("image.db");
    let _ = std::fs::remove_file(&path);
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c=sqlite3.connect('{}'); c.executescript('''{sql}'''); c.commit(); c.close()",
            path.display()
        ))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

fn entries(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("dbs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// `mkdir -p` in the store.
fn mkdir_p(s: &Store, path: &str) {
    let mut at = 0;
    loop {
        let end = path[at..].find('/').map_or(path.len(), |i| at + i);
        if !s.dir_exists(&path[..end]) {
            s.mkdir(&path[..end]).unwrap();
        }
        if end == path.len() {
            return;
        }
        at = end + 1;
    }
}

/// Component `i` of a long name: `len` bytes.
fn comp(i: usize, len: usize) -> String {
    format!("{i:02}-")
        .chars()
        .chain(std::iter::repeat('x'))
        .take(len)
        .collect()
}

/// Fifteen 255-byte directories and a 255-byte database: 4095 bytes, the
/// longest name; eight 32-byte components (the 263 bytes); a
/// flat and a short nested name beside them.
#[test]
fn long_names_live_in_fixed_length_entries_and_survive_a_reopen() {
    let data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dirs: Vec<String> = (0..15).map(|i| comp(i, 255)).collect();
    let longest_dir = dirs.join("/");
    let longest = format!("{longest_dir}/{}", comp(15, 255));
    assert_eq!(longest.len(), 4095);
    let deep_dir: String = (0..7).map(|i| comp(i, 32)).collect::<Vec<_>>().join("/");
    let deep = format!("{deep_dir}/{}", comp(7, 32));
    assert_eq!(deep.len(), 263);
    let names = [longest.as_str(), deep.as_str(), "app.db", "tenants/42.db"];

    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    mkdir_p(&s, &longest_dir);
    mkdir_p(&s, &deep_dir);
    mkdir_p(&s, "tenants");
    let mut pos = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let img = sqlite_image(
            scratch.path(),
            &format!("create table t(x); insert into t values ({i});"),
        );
        pos.push(s.import(name, &img, &NoClients).unwrap());
        assert_eq!(s.db(name).unwrap().name(), *name);
    }
    // Every entry fits one on-disk name; the short ones keep their
    // spelling (LiteFS's for flat names).
    let on_disk = entries(data.path());
    assert!(on_disk.iter().all(|e| e.len() <= 255), "{on_disk:?}");
    for e in ["app.db", "tenants%2F", "tenants%2F42.db"] {
        assert!(on_disk.contains(&e.to_owned()), "{e} missing: {on_disk:?}");
    }
    // 15 + 7 directories, 2 databases with long entries, each holding
    // its name.
    let long: Vec<&String> = on_disk.iter().filter(|e| e.contains("%L")).collect();
    let short_dirs = (1..=dirs.len())
        .filter(|n| dirs[..*n].join("/").len() + 2 * (n - 1) + 3 <= 255)
        .count();
    let deep_short = (1..=7)
        .filter(|n| {
            (0..*n)
                .map(|i| comp(i, 32))
                .collect::<Vec<_>>()
                .join("%2F")
                .len()
                + 3
                <= 255
        })
        .count();
    assert_eq!(
        long.len(),
        (15 - short_dirs) + (7 - deep_short) + 2,
        "{on_disk:?}"
    );
    let mut recorded: Vec<String> = long
        .iter()
        .map(|e| std::fs::read_to_string(data.path().join("dbs").join(e).join("name")).unwrap())
        .collect();
    recorded.sort();
    assert!(recorded.contains(&longest) && recorded.contains(&deep));

    // Listing by directory, as readdir asks.
    let l = s.list(&longest_dir);
    assert!(l.dirs.is_empty());
    assert_eq!(
        l.dbs.iter().map(|d| d.name()).collect::<Vec<_>>(),
        [longest.as_str()]
    );
    assert_eq!(s.list(&dirs[..3].join("/")).dirs, [dirs[3].clone()]);
    drop(s);

    // Reopened: the same names at the same positions, the same listing.
    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    for (name, p) in names.iter().zip(&pos) {
        let db = s.db(name).unwrap_or_else(|| panic!("{name} lost"));
        assert_eq!(db.pos(), *p, "{name}");
        db.verify().unwrap();
    }
    for d in [&longest_dir, &deep_dir, &dirs[0]] {
        assert!(s.dir_exists(d), "{d}");
    }
    assert_eq!(entries(data.path()), on_disk);

    // Removing: a directory with a database is not empty; once the
    // database is dropped and the directories empty, they go, long
    // markers and all.
    let db = s.db(&deep).unwrap();
    assert!(s.rmdir(&deep_dir).is_err());
    db.drop_files().unwrap();
    s.rmdir(&deep_dir).unwrap();
    assert!(!s.dir_exists(&deep_dir));
    let mut p = deep_dir.as_str();
    while let Some((parent, _)) = p.rsplit_once('/') {
        s.rmdir(parent).unwrap();
        p = parent;
    }
    drop(s);
    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    assert!(!s.dir_exists(&comp(0, 32)));
    assert!(s.dir_exists(&longest_dir));
    // The dropped database keeps its entry (its TXIDs continue).
    assert!(s.db(&deep).is_some());
}

/// A data directory as the `%2F` layout wrote it (nested names flattened,
/// directories as empty markers) opens with the same names, and new
/// databases beside them get the same spelling.
#[test]
fn percent_2f_layout_opens_unchanged() {
    let data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dbs = data.path().join("dbs");
    for marker in ["a%2F", "a%2Fb%2F", "empty%2F"] {
        std::fs::create_dir_all(dbs.join(marker)).unwrap();
    }
    for (entry, v) in [("a%2Fb%2Fc.db", 1), ("a%2Fd.db", 2), ("top.db", 3)] {
        std::fs::create_dir_all(dbs.join(entry)).unwrap();
        let img = sqlite_image(
            scratch.path(),
            &format!("create table t(x); insert into t values ({v});"),
        );
        std::fs::write(dbs.join(entry).join("database"), img).unwrap();
    }
    let before = entries(data.path());
    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    for name in ["a/b/c.db", "a/d.db", "top.db"] {
        let db = s.db(name).unwrap_or_else(|| panic!("{name} not opened"));
        assert_eq!(db.pos().txid.0, 1, "{name}: snapshot at start-up");
    }
    for d in ["a", "a/b", "empty"] {
        assert!(s.dir_exists(d), "{d}");
    }
    assert_eq!(s.list("a").dirs, ["b"]);
    s.create_db("a/b/new.db").unwrap();
    s.mkdir("a/b/sub").unwrap();
    let mut want = before.clone();
    want.extend(["a%2Fb%2Fnew.db".to_owned(), "a%2Fb%2Fsub%2F".to_owned()]);
    want.sort();
    assert_eq!(entries(data.path()), want);
    s.rmdir("empty").unwrap();
    assert!(!dbs.join("empty%2F").exists());
}

/// What a crash can leave of a long entry: one with no name file (or only
/// its temporary file) and nothing else is removed at start-up; one whose
/// name file is missing or does not match but that holds files is left
/// alone and skipped.
#[test]
fn long_entries_without_their_name() {
    let data = tempfile::tempdir().unwrap();
    let name = vec![comp(0, 200); 3].join("/");
    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    mkdir_p(&s, &vec![comp(0, 200); 2].join("/"));
    s.create_db(&name).unwrap();
    drop(s);
    let dbs = data.path().join("dbs");
    let entry = entries(data.path())
        .into_iter()
        .find(|e| e.contains("%L") && !e.ends_with("%2F"))
        .unwrap();
    let hash = entry.rsplit_once("%L").unwrap().1.to_owned();
    // Half-created entries elsewhere: empty, or a temporary name only.
    let empty = dbs.join(format!("x%L{}", "0".repeat(64)));
    std::fs::create_dir(&empty).unwrap();
    let tmp_only = dbs.join(format!("y%L{}%2F", "1".repeat(64)));
    std::fs::create_dir(&tmp_only).unwrap();
    std::fs::write(tmp_only.join("name.tmp"), "y").unwrap();
    // A name file that does not match the hash, in an entry with files.
    std::fs::write(dbs.join(&entry).join("name"), "other.db").unwrap();
    std::fs::create_dir_all(dbs.join(&entry).join("ltx")).unwrap();

    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    assert!(!empty.exists() && !tmp_only.exists());
    assert!(s.db(&name).is_none() && s.db("other.db").is_none());
    assert!(dbs.join(&entry).exists(), "files kept");
    drop(s);
    // The right name back: the database is back.
    std::fs::write(dbs.join(&entry).join("name"), &name).unwrap();
    let s = Store::open(data.path(), StoreOptions::default()).unwrap();
    assert!(s.db(&name).is_some(), "{hash}");
}
