//! Database names: what may appear in the mount and in `dbs/`.

use crate::error::StoreError;

/// Suffixes of SQLite's side files and LiteFS's mount files; a database
/// name ending in one would be ambiguous.
const RESERVED_SUFFIXES: [&str; 5] = ["-journal", "-wal", "-shm", "-pos", "-lock"];

/// Checks a database name: one path component of at most 255 bytes, not
/// starting with a dot, without NUL or '/', and not ending in a side-file
/// suffix.
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
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or NUL");
    }
    if RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return bad("ends with a reserved suffix (-journal, -wal, -shm, -pos, -lock)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_db_name("app.db").is_ok());
        assert!(validate_db_name("x").is_ok());
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a\0b",
            "db-wal",
            "db-journal",
            "db-pos",
            "db-lock",
            "db-shm",
        ] {
            assert!(validate_db_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_db_name(&"a".repeat(256)).is_err());
    }
}
