//! Mapping between names in the mount and (database, file kind).

/// Which file of a database a name or inode refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Database = 0,
    Journal = 1,
    Wal = 2,
    Shm = 3,
    Pos = 4,
    Lock = 5,
    /// A directory of the mount (the "database name" is its path).
    Dir = 6,
}

pub(crate) const KINDS: [Kind; 6] = [
    Kind::Database,
    Kind::Journal,
    Kind::Wal,
    Kind::Shm,
    Kind::Pos,
    Kind::Lock,
];

impl Kind {
    /// The store's name for a data file's kind (`None`: no data file).
    pub(crate) fn file_kind(self) -> Option<litefs_store::FileKind> {
        use litefs_store::FileKind;
        match self {
            Kind::Database => Some(FileKind::Database),
            Kind::Journal => Some(FileKind::Journal),
            Kind::Wal => Some(FileKind::Wal),
            Kind::Shm => Some(FileKind::Shm),
            Kind::Pos | Kind::Lock | Kind::Dir => None,
        }
    }

    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Kind::Database => "",
            Kind::Journal => "-journal",
            Kind::Wal => "-wal",
            Kind::Shm => "-shm",
            Kind::Pos => "-pos",
            Kind::Lock => "-lock",
            Kind::Dir => "",
        }
    }

    pub(crate) fn from_index(i: u64) -> Option<Kind> {
        if i == Kind::Dir as u64 {
            return Some(Kind::Dir);
        }
        KINDS.get(i as usize).copied()
    }
}

/// Joins a directory path (`""` for the root) and an entry name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Splits a mount path into the database name and the file kind.
pub(crate) fn parse(name: &str) -> (&str, Kind) {
    for k in [Kind::Journal, Kind::Wal, Kind::Shm, Kind::Pos, Kind::Lock] {
        if let Some(db) = name.strip_suffix(k.suffix()) {
            if !db.is_empty() {
                return (db, k);
            }
        }
    }
    (name, Kind::Database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(parse("app.db"), ("app.db", Kind::Database));
        assert_eq!(parse("app.db-wal"), ("app.db", Kind::Wal));
        assert_eq!(parse("app.db-journal"), ("app.db", Kind::Journal));
        assert_eq!(parse("x-shm"), ("x", Kind::Shm));
        assert_eq!(parse("x-pos"), ("x", Kind::Pos));
        assert_eq!(parse("-wal"), ("-wal", Kind::Database));
    }
}
