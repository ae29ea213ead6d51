//! Helpers for tests that produce real SQLite files with python3's `sqlite3`
//! module (CPython is installed on every machine of this project's kind).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `script` with `python3 -c`, passing `args` as `sys.argv[1..]`, and
/// returns its stdout. Panics with stderr on failure.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed to generate SQLite test files");
    assert!(
        out.status.success(),
        "python3 failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Python snippet defining `h(conn)`: a hash of the logical content of table
/// `t` (every row, ordered by id), shared by the generator scripts and
/// [`logical_hashes`].
pub(crate) const HASH_FN: &str = r#"
import hashlib
def h(c):
    rows = c.execute("select id, v from t order by id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()
"#;

/// Logical content hash of each database file (see [`HASH_FN`]), opened
/// read/write by SQLite (so a hot journal or WAL next to it is honoured).
pub(crate) fn logical_hashes(paths: &[&Path]) -> Vec<String> {
    let script = format!(
        "{HASH_FN}\nimport sqlite3, sys\nfor p in sys.argv[1:]:\n    c = sqlite3.connect(p)\n    \
         assert c.execute('pragma integrity_check').fetchone()[0] == 'ok', p\n    print(h(c))\n    c.close()\n"
    );
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    python(&script, &args).lines().map(str::to_owned).collect()
}

/// Returns page `pgno` (1-based) of `data`, or `None` if the file is shorter.
pub(crate) fn page(data: &[u8], page_size: usize, pgno: u32) -> Option<&[u8]> {
    let start = (pgno as usize - 1) * page_size;
    data.get(start..start + page_size)
}

/// Minimal JSON number-array extraction from the generators' output lines of
/// the form `key=1,2,3`.
pub(crate) fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("missing {key} in generator output:\n{out}"))
}

/// Parses a comma-separated list of numbers.
pub(crate) fn nums(s: &str) -> Vec<u64> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse().unwrap())
        .collect()
}
