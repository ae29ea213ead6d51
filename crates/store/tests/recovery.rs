//! Start-up recovery against files real SQLite wrote, without FUSE: the
//! store must come up consistent (position = newest LTX file = checksum of
//! the files) or refuse.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_store::{Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

fn python(script: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn db_dir(data: &Path, name: &str) -> PathBuf {
    let d = data.join("dbs").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ltx_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("ltx"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A database placed in the data directory by hand gets a snapshot; a
/// damaged newest LTX file is set aside and the state recaptured.
#[test]
fn database_without_ltx_files_gets_a_snapshot_and_damage_is_set_aside() {
    let data = tempfile::tempdir().unwrap();
    let dir = db_dir(data.path(), "app.db");
    let db = dir.join("database");
    python(&format!(
        "import sqlite3; c=sqlite3.connect('{}'); c.execute('create table t(x)'); \
         c.executemany('insert into t values (?)', [(i,) for i in range(500)]); c.commit(); c.close()",
        db.display()
    ));
    let store = Store::open(data.path(), StoreOptions::default()).unwrap();
    let d = store.db("app.db").unwrap();
    assert_eq!(d.pos().txid.0, 1);
    d.verify().unwrap();
    drop(store);
    assert_eq!(ltx_files(&dir), ["0000000000000001-0000000000000001.ltx"]);

    // Change the database behind the store's back (a commit whose LTX file
    // a power loss took) and tear the newest LTX file.
    python(&format!(
        "import sqlite3; c=sqlite3.connect('{}'); c.execute('update t set x=x+1'); c.commit(); c.close()",
        db.display()
    ));
    let newest = dir.join("ltx/0000000000000001-0000000000000001.ltx");
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let store = Store::open(data.path(), StoreOptions::default()).unwrap();
    let d = store.db("app.db").unwrap();
    d.verify().unwrap();
    assert_eq!(d.pos().txid.0, 1, "recaptured as a fresh snapshot");
    let files = ltx_files(&dir);
    assert!(
        files.contains(&"0000000000000001-0000000000000001.ltx.damaged".to_owned()),
        "{files:?}"
    );
}

/// Transactions committed to the WAL but never captured (the daemon died
/// between SQLite's commit and ours) are captured at start-up.
#[test]
fn committed_wal_transactions_without_ltx_are_captured() {
    let data = tempfile::tempdir().unwrap();
    let dir = db_dir(data.path(), "w.db");
    let db = dir.join("database");
    // SQLite names the WAL "<db>-wal"; copy it to the store's name while the
    // connection still holds it (SQLite removes it on close).
    python(&format!(
        "import sqlite3, shutil; c=sqlite3.connect('{db}', isolation_level=None); \
         c.execute('pragma journal_mode=wal'); c.execute('pragma wal_autocheckpoint=0'); \
         c.execute('create table t(x)'); \
         [c.execute('insert into t values (?)', (i,)) for i in range(20)]; \
         shutil.copy('{db}-wal', '{wal}'); shutil.copy('{db}', '{db}.copy'); c.close()",
        db = db.display(),
        wal = dir.join("wal").display()
    ));
    std::fs::rename(dir.join("database.copy"), &db).unwrap();
    let store = Store::open(data.path(), StoreOptions::default()).unwrap();
    let d = store.db("w.db").unwrap();
    // One LTX file for the 21 uncaptured transactions (CREATE TABLE and
    // 20 inserts), one TXID each: here a snapshot, as nothing came before.
    let files = ltx_files(&dir);
    assert_eq!(files, ["0000000000000001-0000000000000015.ltx"]);
    assert_eq!(d.pos().txid.0, 21);
    d.verify().unwrap();
    // A second start finds everything captured and writes nothing new.
    drop(store);
    let store = Store::open(data.path(), StoreOptions::default()).unwrap();
    assert_eq!(ltx_files(&dir), files);
    store.db("w.db").unwrap().verify().unwrap();
}

/// A hot journal left by a crash is rolled back before anything is served,
/// and the position matches the rolled-back database.
#[test]
fn hot_journal_is_rolled_back_at_start_up() {
    let data = tempfile::tempdir().unwrap();
    let dir = db_dir(data.path(), "j.db");
    let db = dir.join("database");
    python(&format!(
        "import sqlite3; c=sqlite3.connect('{}'); c.execute('create table t(x)'); \
         c.executemany('insert into t values (?)', [(i,) for i in range(2000)]); c.commit(); c.close()",
        db.display()
    ));
    let store = Store::open(data.path(), StoreOptions::default()).unwrap();
    let before = store.db("j.db").unwrap().pos();
    drop(store);
    let original = std::fs::read(&db).unwrap();
    // Spill a big update to the database file mid-transaction, then copy the
    // hot journal and the half-written database as a crash would leave them.
    python(&format!(
        "import sqlite3, shutil; c=sqlite3.connect('{db}', isolation_level=None); \
         c.execute('pragma cache_size=5'); c.execute('begin'); c.execute('update t set x=x*7'); \
         shutil.copy('{db}-journal', '{journal}'); shutil.copy('{db}', '{db}.torn'); c.execute('rollback'); c.close()",
        db = db.display(),
        journal = dir.join("journal").display()
    ));
    let torn = std::fs::read(dir.join("database.torn")).unwrap();
    assert_ne!(
        torn, original,
        "the update must have spilled to the database file"
    );
    std::fs::rename(dir.join("database.torn"), &db).unwrap();
    let store = Store::open(data.path(), StoreOptions::default()).unwrap();
    let d = store.db("j.db").unwrap();
    assert_eq!(
        std::fs::read(&db).unwrap(),
        original,
        "rolled back byte for byte"
    );
    assert!(!dir.join("journal").exists());
    assert_eq!(d.pos(), before);
    d.verify().unwrap();
}
