//! `GET /metrics`: Prometheus text format (version 0.0.4), with LiteFS
//! v0.5.14's metric names and types where LiteFS has the metric, plus our
//! own under the same `litefs_` prefix.
//!
//! The exposition is written by hand ([`Exposition`]): the
//! `prometheus-client` crate writes OpenMetrics, whose counters always get
//! a `_total` suffix, so LiteFS's counter names (`litefs_db_commit_count`)
//! could not be kept. Values are read at scrape time from the store's
//! per-database counters ([`litefs_store::DbStats`]) and the node.

use crate::node::Node;
use crate::server::{full, Body};
use hyper::Response;
use litefs_store::{DbCounters, LAG_UNKNOWN_MS};
use std::fmt::Write;

/// The Prometheus metric types this exposition uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    /// Goes up and down.
    Gauge,
    /// Only goes up (resets when the process restarts).
    Counter,
}

/// A Prometheus text-format (0.0.4) document being written: families of
/// samples, each family preceded by its `# HELP` and `# TYPE` lines and
/// written in one piece, as the format requires.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts the family `name`.
    pub(crate) fn family(&mut self, name: &str, kind: Type, help: &str) {
        debug_assert!(valid_name(name), "{name}");
        let kind = match kind {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the family just started, with `labels` (name, value).
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_name(k) && !k.contains(':'), "{k}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Type, help: &str, value: Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The document.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A sample value: an integer, or a float written as Prometheus reads it
/// (`NaN`, `+Inf`, `-Inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// An integer.
    Int(u64),
    /// A float.
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) if v.is_nan() => f.write_str("NaN"),
            Value::Float(v) if v.is_infinite() => {
                f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(v) => write!(f, "{v}"),
        }
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// Whether `s` is a valid metric or label name.
fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `# HELP` text escaping: backslash and line feed.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escaping: backslash, double quote and line feed.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What one scrape shows, read from the node and the store.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrape {
    /// Whether this node is the primary.
    pub(crate) is_primary: bool,
    /// Milliseconds behind the primary ([`LAG_UNKNOWN_MS`]: never synced).
    pub(crate) lag_ms: i64,
    /// Replica streams served now.
    pub(crate) streams: u64,
    /// Each database: name, TXID and counters, by name.
    pub(crate) dbs: Vec<(String, u64, DbCounters)>,
}

impl Scrape {
    /// Reads the node and every database's counters.
    pub(crate) fn of(node: &Node) -> Scrape {
        let role = node.store.role();
        Scrape {
            is_primary: role.is_primary(),
            lag_ms: role.lag_ms(),
            streams: node.stream_count() as u64,
            dbs: node
                .store
                .dbs()
                .iter()
                .map(|db| (db.name().to_owned(), db.pos().txid.0, db.stats().read()))
                .collect(),
        }
    }
}

/// A per-database family: its name, type, help, and the value of one
/// database (`None`: no sample for it).
type DbFamily = (
    &'static str,
    Type,
    &'static str,
    fn(u64, &DbCounters) -> Option<Value>,
);

/// Every per-database family, in the order they are written. LiteFS's
/// first (same names), then ours.
const DB_FAMILIES: &[DbFamily] = &[
    ("litefs_db_txid", Type::Gauge, "Current transaction ID.", |txid, _| Some(txid.into())),
    (
        "litefs_db_database_write_count",
        Type::Counter,
        "Number of writes to the database file.",
        |_, c| Some(c.database_writes.into()),
    ),
    (
        "litefs_db_journal_write_count",
        Type::Counter,
        "Number of writes to the journal file (that reached the daemon: none under FUSE passthrough).",
        |_, c| Some(c.journal_writes.into()),
    ),
    (
        "litefs_db_wal_write_count",
        Type::Counter,
        "Number of writes to the WAL file (that reached the daemon: none under FUSE passthrough).",
        |_, c| Some(c.wal_writes.into()),
    ),
    (
        "litefs_db_shm_write_count",
        Type::Counter,
        "Number of writes to the shared memory file (that reached the daemon: none under FUSE passthrough).",
        |_, c| Some(c.shm_writes.into()),
    ),
    (
        "litefs_db_commit_count",
        Type::Counter,
        "Number of database commits.",
        |_, c| Some(c.commits.into()),
    ),
    (
        "litefs_db_ltx_count",
        Type::Gauge,
        "Number of LTX files on disk.",
        |_, c| Some(c.ltx_files.into()),
    ),
    (
        "litefs_db_ltx_bytes",
        Type::Gauge,
        "Number of bytes used by LTX files on disk.",
        |_, c| Some(c.ltx_bytes.into()),
    ),
    (
        "litefs_db_ltx_reap_count",
        Type::Counter,
        "Number of LTX files removed by retention.",
        |_, c| Some(c.ltx_reaped.into()),
    ),
    (
        "litefs_db_lag_seconds",
        Type::Gauge,
        "Latency between generating an LTX file and consuming it.",
        |_, c| c.lag.map(|l| l.as_secs_f64().into()),
    ),
    (
        "litefs_db_apply_count",
        Type::Counter,
        "Number of LTX files applied (received from the primary, or imported).",
        |_, c| Some(c.applied_files.into()),
    ),
    (
        "litefs_db_apply_seconds",
        Type::Counter,
        "Seconds spent applying LTX files, waiting for SQLite clients to leave included.",
        |_, c| Some(c.apply_time.as_secs_f64().into()),
    ),
    (
        "litefs_db_apply_error_count",
        Type::Counter,
        "Number of applies that failed (not contiguous, checksum mismatch, I/O).",
        |_, c| Some(c.apply_errors.into()),
    ),
    (
        "litefs_db_refused_write_count",
        Type::Counter,
        "Number of writes refused because this node is a read-only replica.",
        |_, c| Some(c.refused_writes.into()),
    ),
    (
        "litefs_db_halt_count",
        Type::Counter,
        "Number of halt locks taken from the primary (replica) or granted to a replica (primary).",
        |_, c| Some(c.halts.into()),
    ),
    (
        "litefs_db_forwarded_tx_count",
        Type::Counter,
        "Number of LTX files forwarded under the halt lock: sent (replica) or applied (primary).",
        |_, c| Some(c.forwarded.into()),
    ),
];

/// The exposition of one scrape.
pub(crate) fn render(s: &Scrape) -> String {
    let mut e = Exposition::default();
    e.single(
        "litefs_db_count",
        Type::Gauge,
        "Number of managed databases.",
        (s.dbs.len() as u64).into(),
    );
    e.single(
        "litefs_is_primary",
        Type::Gauge,
        "Primary status of the node.",
        u64::from(s.is_primary).into(),
    );
    e.single(
        "litefs_subscriber_count",
        Type::Gauge,
        "Number of connected subscribers",
        s.streams.into(),
    );
    let lag = if s.lag_ms == LAG_UNKNOWN_MS {
        f64::NAN
    } else {
        s.lag_ms as f64 / 1000.0
    };
    e.single(
        "litefs_lag_seconds",
        Type::Gauge,
        "Lag behind the primary node, in seconds",
        lag.into(),
    );
    e.single(
        "litefs_http_stream_count",
        Type::Gauge,
        "Number of streams",
        s.streams.into(),
    );
    for (name, kind, help, value) in DB_FAMILIES {
        let samples: Vec<(&str, Value)> = s
            .dbs
            .iter()
            .filter_map(|(db, txid, c)| value(*txid, c).map(|v| (db.as_str(), v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        e.family(name, *kind, help);
        for (db, v) in samples {
            e.sample(name, &[("db", db)], v);
        }
    }
    e.finish()
}

/// `GET /metrics`.
pub(crate) fn metrics(node: &Node) -> Response<Body> {
    let mut text = render(&Scrape::of(node));
    if let Some(extra) = node.extra_metrics() {
        text.push_str(&extra);
    }
    let mut r = Response::new(full(text));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    /// A sample as a scraper reads it.
    #[derive(Debug, PartialEq)]
    struct Sample {
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// Parses an exposition as Prometheus's text parser does, checking
    /// the rules it enforces: `# HELP` and `# TYPE` once per family and
    /// before its samples, each family's samples in one block, valid
    /// names, well-formed and correctly escaped label values, numeric
    /// values. Returns family -> (type, samples).
    fn parse(text: &str) -> BTreeMap<String, (String, Vec<Sample>)> {
        let mut out: BTreeMap<String, (String, Vec<Sample>)> = BTreeMap::new();
        let mut helped = BTreeSet::new();
        let mut current: Option<String> = None;
        assert!(text.ends_with('\n'), "no final line feed");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').unwrap();
                assert!(valid_name(name), "{line}");
                assert!(helped.insert(name.to_owned()), "second HELP: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                assert!(!out.contains_key(name), "second TYPE: {line}");
                out.insert(name.to_owned(), (kind.to_owned(), Vec::new()));
                current = Some(name.to_owned());
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert_eq!(
                Some(name),
                current.as_deref(),
                "sample outside its family: {line}"
            );
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices();
                let mut key = String::new();
                let end = loop {
                    let (i, c) = chars.next().unwrap();
                    match c {
                        '}' if key.is_empty() => break i,
                        '=' => {
                            assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                            let mut v = String::new();
                            loop {
                                match chars.next().unwrap().1 {
                                    '\\' => match chars.next().unwrap().1 {
                                        'n' => v.push('\n'),
                                        c @ ('\\' | '"') => v.push(c),
                                        c => panic!("bad escape \\{c}: {line}"),
                                    },
                                    '"' => break,
                                    '\n' => panic!("raw line feed: {line}"),
                                    c => v.push(c),
                                }
                            }
                            assert!(valid_name(&key), "{line}");
                            labels.insert(std::mem::take(&mut key), v);
                            match chars.next().unwrap() {
                                (_, ',') => {}
                                (i, '}') => break i,
                                (_, c) => panic!("unexpected {c}: {line}"),
                            }
                        }
                        c => key.push(c),
                    }
                };
                rest = &r[end + 1..];
            }
            let value = rest.strip_prefix(' ').unwrap();
            let value: f64 = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            out.get_mut(name).unwrap().1.push(Sample { labels, value });
        }
        out
    }

    fn db_value(m: &BTreeMap<String, (String, Vec<Sample>)>, family: &str, db: &str) -> f64 {
        m[family]
            .1
            .iter()
            .find(|s| s.labels.get("db").map(String::as_str) == Some(db))
            .unwrap_or_else(|| panic!("no {family}{{db={db:?}}}"))
            .value
    }

    #[test]
    fn exposition_has_every_litefs_metric_and_parses() {
        let busy = DbCounters {
            database_writes: 7,
            journal_writes: 3,
            wal_writes: 11,
            shm_writes: 2,
            commits: 5,
            ltx_files: 4,
            ltx_bytes: 4096,
            ltx_reaped: 1,
            applied_files: 9,
            apply_time: Duration::from_millis(1500),
            apply_errors: 1,
            refused_writes: 6,
            halts: 2,
            forwarded: 12,
            lag: Some(Duration::from_millis(250)),
            ..DbCounters::default()
        };
        let odd = "we\"ird\\na\nme.db";
        let s = Scrape {
            is_primary: false,
            lag_ms: 1500,
            streams: 2,
            dbs: vec![
                ("a.db".into(), 12, busy),
                (odd.into(), 1, DbCounters::default()),
            ],
        };
        let text = render(&s);
        let m = parse(&text);
        for name in [
            "litefs_db_count",
            "litefs_is_primary",
            "litefs_subscriber_count",
            "litefs_lag_seconds",
            "litefs_http_stream_count",
        ] {
            assert_eq!(m[name].0, "gauge", "{name}");
            assert_eq!(m[name].1.len(), 1, "{name}");
        }
        assert_eq!(m["litefs_db_count"].1[0].value, 2.0);
        assert_eq!(m["litefs_is_primary"].1[0].value, 0.0);
        assert_eq!(m["litefs_lag_seconds"].1[0].value, 1.5);
        assert_eq!(m["litefs_subscriber_count"].1[0].value, 2.0);
        let want = [
            ("litefs_db_txid", "gauge", 12.0),
            ("litefs_db_database_write_count", "counter", 7.0),
            ("litefs_db_journal_write_count", "counter", 3.0),
            ("litefs_db_wal_write_count", "counter", 11.0),
            ("litefs_db_shm_write_count", "counter", 2.0),
            ("litefs_db_commit_count", "counter", 5.0),
            ("litefs_db_ltx_count", "gauge", 4.0),
            ("litefs_db_ltx_bytes", "gauge", 4096.0),
            ("litefs_db_ltx_reap_count", "counter", 1.0),
            ("litefs_db_lag_seconds", "gauge", 0.25),
            ("litefs_db_apply_count", "counter", 9.0),
            ("litefs_db_apply_seconds", "counter", 1.5),
            ("litefs_db_apply_error_count", "counter", 1.0),
            ("litefs_db_refused_write_count", "counter", 6.0),
            ("litefs_db_halt_count", "counter", 2.0),
            ("litefs_db_forwarded_tx_count", "counter", 12.0),
        ];
        for (name, kind, v) in want {
            assert_eq!(m[name].0, kind, "{name}");
            assert_eq!(db_value(&m, name, "a.db"), v, "{name}");
        }
        // Every family is listed above, and the odd name round-trips.
        let families: BTreeSet<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(families.len(), 5 + want.len(), "{families:?}");
        assert_eq!(db_value(&m, "litefs_db_txid", odd), 1.0);
        // No lag is known for the idle database: no sample, as in LiteFS.
        assert_eq!(m["litefs_db_lag_seconds"].1.len(), 1);
        assert!(text.contains(r#"{db="we\"ird\\na\nme.db"}"#), "{text}");
    }

    #[test]
    fn unknown_lag_is_nan_and_an_empty_node_still_parses() {
        let s = Scrape {
            is_primary: true,
            lag_ms: LAG_UNKNOWN_MS,
            ..Scrape::default()
        };
        let m = parse(&render(&s));
        assert!(m["litefs_lag_seconds"].1[0].value.is_nan());
        assert_eq!(m["litefs_is_primary"].1[0].value, 1.0);
        assert!(!m.contains_key("litefs_db_txid"));
    }

    #[test]
    fn values_help_and_names_are_written_as_prometheus_reads_them() {
        assert_eq!(Value::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value::Float(0.25).to_string(), "0.25");
        assert_eq!(Value::Int(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert!(valid_name("litefs_db_txid") && valid_name("_x:y"));
        assert!(!valid_name("") && !valid_name("1x") && !valid_name("a-b"));
        let mut e = Exposition::default();
        e.single("x", Type::Counter, "line\nbreak", 1u64.into());
        assert_eq!(e.finish(), "# HELP x line\\nbreak\n# TYPE x counter\nx 1\n");
    }
}
