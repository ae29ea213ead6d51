//! Database and directory names: what may appear in the mount and how it
//! maps to `dbs/`.
//!
//! A name is a path of one or more components separated by `/`
//! (`app.db`, `tenants/42.db`). Flat names map to `dbs/<name>/`, exactly
//! LiteFS's layout; nested names keep `dbs/` flat by writing each `/` as
//! `%2F` (`dbs/tenants%2F42.db/`), which is why `%` itself is not allowed.
//! A directory of the mount is `dbs/<encoded>%2F/`, an empty marker.

use crate::error::StoreError;

/// Suffixes of SQLite's side files and LiteFS's mount files; a name ending
/// in one would be ambiguous.
const RESERVED_SUFFIXES: [&str; 5] = ["-journal", "-wal", "-shm", "-pos", "-lock"];

/// The on-disk spelling of a `/` inside a name.
pub(crate) const SLASH: &str = "%2F";

/// Checks a database or directory name: components of 1 to 255 bytes, none
/// starting with `.`, none ending in a side-file suffix, no NUL or `%`, at
/// most 1024 bytes in all.
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
    if name.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if name.contains('\0') || name.contains('%') {
        return bad("contains NUL or '%'");
    }
    for c in name.split('/') {
        if c.is_empty() {
            return bad("empty path component");
        }
        if c.len() > 255 {
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

/// The directory name under `dbs/` for a database name.
pub(crate) fn encode(name: &str) -> String {
    name.replace('/', SLASH)
}

/// The database name for a directory under `dbs/`, if it is one.
pub(crate) fn decode(dir: &str) -> String {
    dir.replace(SLASH, "/")
}

/// The directory part of a name (`""` for the root).
pub fn parent_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(p, _)| p)
}

#[cfg(test)]
mod tests {
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
        assert!(validate_db_name(&"a".repeat(256)).is_err());
        assert_eq!(encode("tenants/42.db"), "tenants%2F42.db");
        assert_eq!(decode("tenants%2F42.db"), "tenants/42.db");
        assert_eq!(parent_of("tenants/42.db"), "tenants");
        assert_eq!(parent_of("app.db"), "");
    }
}
