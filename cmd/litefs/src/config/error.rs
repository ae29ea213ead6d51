//! [`ConfigError`], and turning YAML errors into one-line messages that name
//! the file, the line and the key.

use std::path::{Path, PathBuf};

/// Why a configuration was not accepted. Every message is one line naming
/// the file, line, key or path at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// No config file in any of the searched places.
    #[error("config file not found (searched {})", join_paths(.searched))]
    NotFound {
        /// The places searched, in order.
        searched: Vec<PathBuf>,
    },
    /// The file could not be read (for an explicit `-config`, also when it
    /// does not exist).
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key the schema does not have (a typo, or a key of a newer LiteFS).
    #[error(
        "{}{}: {}unknown field {field:?}{}",
        .path.display(),
        line_part(*.line),
        section_part(.section.as_deref()),
        suggestion_part(.suggestion.as_deref())
    )]
    UnknownField {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key, when known.
        line: Option<usize>,
        /// The dotted path of the enclosing mapping (`lease.consul`); `None`
        /// at the top level.
        section: Option<String>,
        /// The unknown key.
        field: String,
        /// A known key of that mapping it is probably a typo of.
        suggestion: Option<String>,
    },
    /// YAML that does not fit the schema (wrong type, bad duration, unknown
    /// enum value) or is not YAML at all.
    #[error(
        "{}{}: {}{message}",
        .path.display(),
        line_part(*.line),
        key_part(.key.as_deref())
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// The dotted key (`data.retention`, `exec[1].cmd`), when known.
        key: Option<String>,
        /// What is wrong, naming the value where there is one.
        message: String,
    },
    /// A value that parses but cannot be used, or a required key that is
    /// missing.
    #[error("config: {key}: {reason}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// Why, naming the value where there is one.
        reason: String,
    },
    /// A directory that must exist before mounting does not.
    #[error("config: {key}: {reason}: {}", .path.display())]
    Dir {
        /// The dotted key.
        key: &'static str,
        /// The directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Shorthand for [`ConfigError::Invalid`].
pub(crate) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(", ")
}

fn line_part(line: Option<usize>) -> String {
    line.map(|l| format!(": line {l}")).unwrap_or_default()
}

fn section_part(section: Option<&str>) -> String {
    section.map(|s| format!("{s}: ")).unwrap_or_default()
}

fn key_part(key: Option<&str>) -> String {
    key.map(|k| format!("{k}: ")).unwrap_or_default()
}

fn suggestion_part(s: Option<&str>) -> String {
    s.map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

/// Turns a deserialization error into a [`ConfigError`] for `path`: the line
/// from the YAML error, the key from `serde_path_to_error`, and the message
/// without the parser's own location and path decorations, on one line.
pub(crate) fn from_yaml(
    path: &Path,
    err: serde_path_to_error::Error<serde_norway::Error>,
) -> ConfigError {
    let key = err.path().to_string();
    let inner = err.into_inner();
    let location = inner.location();
    let mut msg = inner.to_string();
    if let Some(l) = &location {
        // serde_norway appends " at line L column C"; the line leads instead.
        let at = format!(" at line {} column {}", l.line(), l.column());
        if let Some(i) = msg.find(&at) {
            msg.replace_range(i..i + at.len(), "");
        }
    }
    let msg = strip_path_prefix(&msg, &key);
    let mut msg = msg.replace('`', "\"").replace(['\n', '\r'], " ");
    for (from, to) in PLAIN_WORDS {
        if let Some(stem) = msg.strip_suffix(from) {
            msg = format!("{stem}{to}");
        }
    }
    let mut line = location.map(|l| l.line());
    if msg.starts_with("duplicate field") {
        // serde reports it at the start of the mapping, not at the repeat.
        if let Some(l) = line.take() {
            msg = format!("{msg} in the mapping starting at line {l}");
        }
    }
    // serde_path_to_error writes "?" for a position it could not name.
    let key = (!key.is_empty() && key != "." && !key.contains('?')).then_some(key);

    if let Some(field) = unknown_field(&msg) {
        // serde_path_to_error's path ends with the unknown key itself.
        let section = key.and_then(|k| {
            if k == field {
                None
            } else {
                Some(
                    k.strip_suffix(&format!(".{field}"))
                        .unwrap_or(&k)
                        .to_owned(),
                )
            }
        });
        return ConfigError::UnknownField {
            path: path.to_path_buf(),
            line,
            section,
            field: field.to_owned(),
            suggestion: suggest(field, &msg),
        };
    }
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        key,
        message: msg,
    }
}

/// serde's names of primitive types at the end of "expected ..." messages,
/// in the words of the config file.
const PLAIN_WORDS: [(&str, &str); 4] = [
    ("expected u64", "expected a whole number"),
    ("expected a boolean", "expected true or false"),
    ("expected path string", "expected a path"),
    ("expected a sequence", "expected a list"),
];

/// serde_norway starts messages below the top level with its own path of
/// the enclosing value (`data: ...`); we name the key ourselves, so drop it
/// when it is `key` or one of its ancestors.
fn strip_path_prefix(msg: &str, key: &str) -> String {
    let mut ends: Vec<usize> = key
        .char_indices()
        .filter(|(_, c)| *c == '.' || *c == '[')
        .map(|(i, _)| i)
        .collect();
    ends.push(key.len());
    for end in ends.into_iter().rev() {
        if let Some(rest) = msg.strip_prefix(&format!("{}: ", &key[..end])) {
            return rest.to_owned();
        }
    }
    msg.to_owned()
}

/// The key of serde's `unknown field "x", expected ...` message.
fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field \"")?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// A known key within edit distance 2 of the unknown `field`, taken from
/// serde's `expected one of "a", "b"` (or `expected "a"`) list in `msg`.
fn suggest(field: &str, msg: &str) -> Option<String> {
    let (_, expected) = msg.split_once(", expected ")?;
    expected
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|k| (edit_distance(field, k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().max(field.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_owned())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
