//! `/metrics` and `/debug/vars` of real `litefs mount` processes: the
//! counters move where the work happens (commits and LTX files on the
//! primary, applies and refused writes on a replica), and `/debug/` answers
//! only on a node configured with `http.debug: true`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use litefs_fuse_tests::cluster::{get, require_fuse, sample, sql, wait_same_pos};
use litefs_fuse_tests::{classic_io, primary_lease, replica_lease, sqlite3_output, Node};

/// `/metrics` of `n`, checked to be the text format: every line a comment
/// or `name[{labels}] value`.
fn metrics(n: &Node) -> String {
    let (status, text) = get(n, "/metrics");
    assert_eq!(status, 200, "{text}");
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
        assert!(v == "NaN" || v.parse::<f64>().is_ok(), "{l:?}");
        assert!(l.starts_with("litefs_"), "{l:?}");
    }
    text
}

#[test]
fn metrics_count_commits_applies_and_refusals_and_debug_needs_its_flag() {
    if !require_fuse() {
        return;
    }
    let p = Node::start_lease(&format!("  debug: true\n{}", primary_lease("p1")), "");
    let r = Node::start_lease(&replica_lease("p1", &p.url), "");
    let db = "m.db";
    let series = |name: &str| format!("{name}{{db=\"{db}\"}}");
    sql(
        &p.path(db),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
    );
    let pos = wait_same_pos(&p, &r, db);
    let txid = u64::from_str_radix(&pos[..16], 16).unwrap() as f64;

    let m = metrics(&p);
    assert_eq!(sample(&m, "litefs_is_primary"), 1.0);
    assert_eq!(sample(&m, "litefs_db_count"), 1.0);
    assert_eq!(sample(&m, "litefs_lag_seconds"), 0.0);
    assert_eq!(sample(&m, "litefs_http_stream_count"), 1.0, "{m}");
    assert_eq!(sample(&m, "litefs_subscriber_count"), 1.0);
    assert_eq!(sample(&m, &series("litefs_db_txid")), txid);
    // One commit per transaction: the table, two inserts (and the switch
    // to WAL, which writes the header).
    let commits = sample(&m, &series("litefs_db_commit_count"));
    assert!(
        (3.0..=txid).contains(&commits),
        "{commits} commits, TXID {txid}"
    );
    assert!(sample(&m, &series("litefs_db_ltx_count")) >= 1.0);
    assert!(sample(&m, &series("litefs_db_ltx_bytes")) > 100.0);
    assert!(sample(&m, &series("litefs_db_database_write_count")) >= 1.0);
    if classic_io() {
        // Under passthrough the kernel writes the WAL without the daemon.
        assert!(sample(&m, &series("litefs_db_wal_write_count")) >= 2.0);
    }
    assert_eq!(sample(&m, &series("litefs_db_lag_seconds")), 0.0);
    assert_eq!(sample(&m, &series("litefs_db_apply_count")), 0.0);
    assert_eq!(sample(&m, &series("litefs_db_refused_write_count")), 0.0);

    let out = sqlite3_output(&r.path(db), "INSERT INTO t VALUES (3);");
    assert!(!out.status.success(), "a replica accepted a write");
    let m = metrics(&r);
    assert_eq!(sample(&m, "litefs_is_primary"), 0.0);
    assert!(sample(&m, "litefs_lag_seconds").is_finite(), "{m}");
    assert_eq!(sample(&m, &series("litefs_db_txid")), txid);
    assert!(sample(&m, &series("litefs_db_apply_count")) >= 1.0, "{m}");
    assert!(sample(&m, &series("litefs_db_apply_seconds")) > 0.0);
    assert_eq!(sample(&m, &series("litefs_db_apply_error_count")), 0.0);
    assert!(sample(&m, &series("litefs_db_ltx_count")) >= 1.0);
    assert!(sample(&m, &series("litefs_db_lag_seconds")) >= 0.0);
    assert_eq!(sample(&m, &series("litefs_db_commit_count")), 0.0);
    assert!(
        sample(&m, &series("litefs_db_refused_write_count")) >= 1.0,
        "{m}"
    );

    // /debug/: off by default, on with http.debug.
    let (status, body) = get(&r, "/debug/vars");
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&p, "/debug/vars");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"isPrimary\":true"), "{body}");
    assert!(body.contains(&format!("\"{db}\":{{")), "{body}");
    assert!(
        body.contains(&format!("\"txid\":\"{}\"", &pos[..16])),
        "{body}"
    );
    assert!(body.contains("\"journalMode\":\"wal\""), "{body}");
    assert_eq!(get(&p, "/debug/pprof/").0, 404);
}
