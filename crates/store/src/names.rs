//! Database and directory names: what may appear in the mount and how it
//! maps to `dbs/`.
//!
//! A name is a path of one or more components separated by `/`
//! (`app.db`, `tenants/42.db`), as long as Linux allows: components of 1
//! to 255 bytes ([`MAX_COMPONENT_LEN`]), 4095 bytes in all
//! ([`MAX_NAME_LEN`]).
//!
//! `dbs/` stays flat, one entry per database or directory of the mount:
//! * Flat names map to `dbs/<name>/`, exactly LiteFS's layout.
//! * Nested names write each `/` as `%2F` (`dbs/tenants%2F42.db/`), which
//!   is why `%` itself is not allowed in names. A directory of the mount
//!   is the empty marker `dbs/<encoded>%2F/`.
//! * A name whose entry would not fit one on-disk name (255 bytes) is
//!   stored under a fixed-length one, `<head>%L<sha256>`
//!   (`<head>%L<sha256>%2F` for a directory): `<head>` is the start of the
//!   encoded name, for people reading `ls`; the SHA-256 of the whole name
//!   identifies it; the whole name is in the file `name` inside the entry,
//!   written before the entry holds anything else.
//!
//! Whatever spelling the data directory has for a name is kept: entries
//! are read as they are at start-up ([`parse_entry`]) and new ones are
//! spelled by [`db_entry`] and [`dir_entry`], so data directories written
//! before long names existed open unchanged.

use crate::error::{IoContext, StoreError};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Longest name component, in bytes (Linux's `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Longest name, in bytes (Linux's `PATH_MAX` less its NUL).
pub const MAX_NAME_LEN: usize = 4095;

/// Suffixes of SQLite's side files and LiteFS's mount files; a name ending
/// in one would be ambiguous.
const RESERVED_SUFFIXES: [&str; 5] = ["-journal", "-wal", "-shm", "-pos", "-lock"];

/// The on-disk spelling of a `/` inside a name.
pub(crate) const SLASH: &str = "%2F";

/// Separates the readable head of a long entry from its hash.
const LONG: &str = "%L";

/// Longest entry name under `dbs/` (`NAME_MAX` of the usual filesystems).
const ENTRY_MAX: usize = 255;

/// At most this many bytes of a long name start its entry's name.
const HEAD_MAX: usize = 48;

/// Hex digits of a SHA-256.
const HASH_HEX: usize = 64;

/// The file inside a long entry that holds its whole name.
pub(crate) const NAME_FILE: &str = "name";

/// Checks a database or directory name: components of 1 to 255 bytes, none
/// starting with `.`, none ending in a side-file suffix, no NUL or `%`, at
/// most 4095 bytes in all.
pub fn validate_db_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::InvalidName {
            name: name.chars().take(300).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 4095 bytes");
    }
    if name.contains('\0') || name.contains('%') {
        return bad("contains NUL or '%'");
    }
    for c in name.split('/') {
        if c.is_empty() {
            return bad("empty path component");
        }
        if c.len() > MAX_COMPONENT_LEN {
            return bad("a path component is longer than 255 bytes");
        }
        if c.starts_with('.') {
            return bad("a path component starts with '.'");
        }
        if RESERVED_SUFFIXES.iter().any(|s| c.ends_with(s)) {
            return bad("ends with a reserved suffix (-journal, -wal, -shm, -pos, -lock)");
        }
    }
    Ok(())
}

/// The `/`-encoded spelling of a name.
pub(crate) fn encode(name: &str) -> String {
    name.replace('/', SLASH)
}

/// The name a `/`-encoded spelling stands for.
pub(crate) fn decode(dir: &str) -> String {
    dir.replace(SLASH, "/")
}

/// The entry under `dbs/` of a new database called `name`.
pub(crate) fn db_entry(name: &str) -> String {
    let e = encode(name);
    if e.len() <= ENTRY_MAX {
        e
    } else {
        long_entry(name)
    }
}

/// The entry under `dbs/` of a new directory of the mount at `path`.
pub(crate) fn dir_entry(path: &str) -> String {
    let e = format!("{}{SLASH}", encode(path));
    if e.len() <= ENTRY_MAX {
        e
    } else {
        format!("{}{SLASH}", long_entry(path))
    }
}

/// Whether `name` has a fixed-length entry (and so a `name` file).
pub(crate) fn is_long_entry(entry: &str) -> bool {
    entry.contains(LONG)
}

/// `<head>%L<sha256 of name>`: at most 48 + 2 + 3 * 15 + 64 bytes.
fn long_entry(name: &str) -> String {
    let mut end = HEAD_MAX.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{LONG}{}", encode(&name[..end]), hash_hex(name))
}

fn hash_hex(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut s = String::with_capacity(HASH_HEX);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What an entry under `dbs/` is, from its name alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The database of this name.
    Db(String),
    /// The directory of the mount at this path.
    Dir(String),
    /// A long name's database, identified by this hash: its name is in
    /// its `name` file.
    LongDb(String),
    /// A long name's directory marker, likewise.
    LongDir(String),
    /// Nothing of ours.
    Other,
}

/// Reads an entry name under `dbs/`.
pub(crate) fn parse_entry(raw: &str) -> Entry {
    let (stem, dir) = match raw.strip_suffix(SLASH) {
        Some(s) => (s, true),
        None => (raw, false),
    };
    if let Some((_, hash)) = stem.rsplit_once(LONG) {
        let ok =
            hash.len() == HASH_HEX && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        return match (ok, dir) {
            (true, true) => Entry::LongDir(hash.to_owned()),
            (true, false) => Entry::LongDb(hash.to_owned()),
            (false, _) => Entry::Other,
        };
    }
    let name = decode(stem);
    if validate_db_name(&name).is_err() {
        // A flat database name can end in `%2F` only if it is not one.
        return Entry::Other;
    }
    if dir {
        Entry::Dir(name)
    } else {
        Entry::Db(name)
    }
}

/// The name recorded in the long entry `dir` whose hash is `hash`, if its
/// `name` file holds a valid name with that hash.
pub(crate) fn read_long_name(dir: &Path, hash: &str) -> Option<String> {
    let name = std::fs::read_to_string(dir.join(NAME_FILE)).ok()?;
    (hash_hex(&name) == hash && validate_db_name(&name).is_ok()).then_some(name)
}

/// Records `name` in its long entry `dir` (created if missing): written to
/// a temporary file, synced, renamed into place, and the directories
/// synced, so the entry never holds data under a name it cannot tell. An
/// entry that already records another name (a hash collision) is refused.
pub(crate) fn record_long_name(dir: &Path, name: &str) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).ctx(dir)?;
    let path = dir.join(NAME_FILE);
    match std::fs::read_to_string(&path) {
        Ok(have) if have == name => return Ok(()),
        Ok(_) => {
            return Err(StoreError::InvalidName {
                name: name.chars().take(300).collect(),
                reason: "its on-disk entry records another name (SHA-256 collision)",
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx(&path),
    }
    let tmp = dir.join(format!("{NAME_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).ctx(&tmp)?;
    f.write_all(name.as_bytes()).ctx(&tmp)?;
    f.sync_all().ctx(&tmp)?;
    drop(f);
    std::fs::rename(&tmp, &path).ctx(&path)?;
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).ctx(dir)
}

/// Whether a long entry without a valid `name` file holds nothing worth
/// keeping (at most a leftover temporary name file): what a crash while it
/// was being created, or removed, leaves.
pub(crate) fn is_empty_long_entry(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .all(|e| e.file_name() == *format!("{NAME_FILE}.tmp").as_str())
    })
}

/// The directory part of a name (`""` for the root).
pub fn parent_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(p, _)| p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        for good in ["app.db", "x", "tenants/42.db", "a/b/c"] {
            assert!(validate_db_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".hidden",
            "a/.b",
            "a//b",
            "/a",
            "a/",
            "a\0b",
            "50%.db",
            "db-wal",
            "db-journal",
            "db-pos",
            "db-lock",
            "db-shm",
            "x-wal/a.db",
        ] {
            assert!(validate_db_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_db_name(&"a".repeat(255)).is_ok());
        assert!(validate_db_name(&"a".repeat(256)).is_err());
        assert_eq!(encode("tenants/42.db"), "tenants%2F42.db");
        assert_eq!(decode("tenants%2F42.db"), "tenants/42.db");
        assert_eq!(parent_of("tenants/42.db"), "tenants");
        assert_eq!(parent_of("app.db"), "");
    }

    /// Sixteen 255-byte components: 4095 bytes, the longest name.
    fn longest() -> String {
        let c: Vec<String> = (0..16)
            .map(|i| format!("{i:x}").repeat(255).chars().take(255).collect())
            .collect();
        c.join("/")
    }

    #[test]
    fn lengths_up_to_linux_limits() {
        let n = longest();
        assert_eq!(n.len(), MAX_NAME_LEN);
        assert!(validate_db_name(&n).is_ok());
        assert!(validate_db_name(&format!("{n}x")).is_err());
        // 8 nested 32-byte components (the 263 bytes).
        let deep = vec!["d".repeat(32); 8].join("/");
        assert_eq!(deep.len(), 263);
        assert!(validate_db_name(&deep).is_ok());
    }

    #[test]
    fn short_names_keep_their_spelling() {
        // LiteFS's layout for flat names; the `%2F` layout for nested ones
        // that fit, as data directories written before have them.
        assert_eq!(db_entry("app.db"), "app.db");
        assert_eq!(db_entry(&"a".repeat(255)), "a".repeat(255));
        assert_eq!(db_entry("tenants/42.db"), "tenants%2F42.db");
        assert_eq!(dir_entry("tenants"), "tenants%2F");
        assert_eq!(dir_entry("a/b"), "a%2Fb%2F");
        let fits = format!("{}/{}", "a".repeat(100), "b".repeat(152));
        assert_eq!(db_entry(&fits).len(), 255);
        assert!(!is_long_entry(&db_entry(&fits)));
        // The marker would be 258 bytes: long.
        assert!(is_long_entry(&dir_entry(&fits)));
        assert_eq!(parse_entry("app.db"), Entry::Db("app.db".into()));
        assert_eq!(
            parse_entry("tenants%2F42.db"),
            Entry::Db("tenants/42.db".into())
        );
        assert_eq!(parse_entry("tenants%2F"), Entry::Dir("tenants".into()));
        assert_eq!(parse_entry("a%2Fb%2F"), Entry::Dir("a/b".into()));
        for other in ["50%.db", ".tmp", "%2F", "x%Lzz", "db-wal", "a%2F%2Fb"] {
            assert_eq!(parse_entry(other), Entry::Other, "{other:?}");
        }
    }

    #[test]
    fn long_names_get_fixed_length_entries() {
        let deep = vec!["d".repeat(32); 8].join("/");
        for name in [longest(), deep.clone(), "é".repeat(127) + "/x"] {
            let (db, dir) = (db_entry(&name), dir_entry(&name));
            assert!(db.len() <= 255 && dir.len() <= 255, "{db} {dir}");
            assert!(is_long_entry(&db) && is_long_entry(&dir));
            let hash = hash_hex(&name);
            assert_eq!(parse_entry(&db), Entry::LongDb(hash.clone()));
            assert_eq!(parse_entry(&dir), Entry::LongDir(hash));
            assert_ne!(db_entry(&format!("{name}x")), db);
        }
        // The head is readable: the start of the encoded name.
        assert!(db_entry(&deep).starts_with("dddddddddddddddddddddddddddddddd%2Fddddddddddddddd%L"));
        // Never a valid short name, and never taken for one.
        assert!(validate_db_name(&decode(&db_entry(&deep))).is_err());
    }

    #[test]
    fn long_name_file() {
        let t = tempfile::tempdir().unwrap();
        let name = vec!["n".repeat(200); 3].join("/");
        let dir = t.path().join(db_entry(&name));
        let Entry::LongDb(hash) = parse_entry(&db_entry(&name)) else {
            panic!("not long");
        };
        assert!(is_empty_long_entry(&dir) || !dir.exists());
        record_long_name(&dir, &name).unwrap();
        assert_eq!(read_long_name(&dir, &hash).as_deref(), Some(name.as_str()));
        assert!(!is_empty_long_entry(&dir));
        assert!(!dir.join("name.tmp").exists());
        // Again: no change. Another name in the same entry: refused.
        record_long_name(&dir, &name).unwrap();
        assert!(record_long_name(&dir, "other").is_err());
        // A name file that does not match the entry's hash is not trusted.
        std::fs::write(dir.join(NAME_FILE), "other").unwrap();
        assert_eq!(read_long_name(&dir, &hash), None);
        std::fs::remove_file(dir.join(NAME_FILE)).unwrap();
        std::fs::write(dir.join("name.tmp"), "half").unwrap();
        assert!(is_empty_long_entry(&dir));
    }
}
