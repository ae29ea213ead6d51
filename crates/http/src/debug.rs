//! `/debug/*`: internal state for diagnosis, off unless `http.debug` is
//! set (then, like every endpoint, behind the bearer token if one is
//! configured). While off every `/debug/` path answers 404.
//!
//! `GET /debug/vars` is JSON, as LiteFS's expvar page is, though not its
//! layout: the node (role, primary, replicas streaming from it) and, per
//! database, its position, size, journal mode, capture and apply state,
//! and the counters behind `/metrics`. LiteFS's `/debug/pprof` has no
//! counterpart.

use crate::node::Node;
use crate::server::{json, text, Body};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use litefs_store::{Db, DbCounters};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether `/debug/` answers (process-wide: one node per process).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the `/debug/` endpoints on or off (`http.debug`); off by default.
/// The setting is process-wide.
pub fn set_debug_endpoints(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Serves a `/debug/` path.
pub(crate) async fn route(node: &Arc<Node>, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if !ENABLED.load(Ordering::Relaxed) || path != "/debug/vars" {
        return text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"));
    }
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed on {path}", req.method()),
        );
    }
    let n = node.clone();
    match tokio::task::spawn_blocking(move || vars(&n)).await {
        Ok(v) => json(&v),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("debug vars: {e}"),
        ),
    }
}

/// The `/debug/vars` document. Takes each database's mutex briefly and
/// reads its header, so it runs off the async threads.
pub(crate) fn vars(node: &Node) -> Value {
    let role = node.store.role();
    let lag = role.lag_ms();
    let replicas: Vec<Value> = node
        .peers()
        .iter()
        .map(|p| {
            json!({
                "nodeID": format!("{:016x}", p.node_id),
                "candidate": p.candidate,
                "ready": p.ready.load(Ordering::Relaxed),
            })
        })
        .collect();
    let dbs: serde_json::Map<String, Value> = node
        .store
        .dbs()
        .iter()
        .map(|db| (db.name().to_owned(), db_vars(db)))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "node": {
            "nodeID": format!("{:016x}", node.node_id),
            "hostname": node.hostname,
            "clusterID": node.cluster().get(),
            "isPrimary": role.is_primary(),
            "candidate": role.is_candidate(),
            "primary": role.primary().map(|p| json!({
                "hostname": p.hostname,
                "advertiseURL": p.advertise_url,
            })),
            "lagMs": (lag != litefs_store::LAG_UNKNOWN_MS).then_some(lag),
            "streams": node.stream_count(),
            "replicas": replicas,
            "databases": node.databases,
        },
        "dbs": dbs,
    })
}

/// One database's entry: its state, or the error reading it.
fn db_vars(db: &Db) -> Value {
    let c = db.stats().read();
    let mut v = match db.status() {
        Ok(s) => json!({
            "txid": format!("{:016x}", s.pos.txid.0),
            "checksum": format!("{:016x}", s.pos.post_apply_checksum.0),
            "timestamp": s.timestamp,
            "pageSize": s.page_size,
            "pages": s.pages,
            "journalMode": if s.wal { "wal" } else { "rollback" },
            "walCursor": s.wal_cursor,
            "walPassthroughHandles": s.wal_passthrough_handles,
            "pendingLTX": s.pending_ltx,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    if let Value::Object(m) = &mut v {
        m.insert("fences".into(), c.fences.into());
        m.insert("applying".into(), c.applying.into());
        m.insert("counters".into(), counters(&c));
    }
    v
}

fn counters(c: &DbCounters) -> Value {
    json!({
        "databaseWrites": c.database_writes,
        "journalWrites": c.journal_writes,
        "walWrites": c.wal_writes,
        "shmWrites": c.shm_writes,
        "commits": c.commits,
        "ltxFiles": c.ltx_files,
        "ltxBytes": c.ltx_bytes,
        "ltxReaped": c.ltx_reaped,
        "appliedFiles": c.applied_files,
        "applySeconds": c.apply_time.as_secs_f64(),
        "applyErrors": c.apply_errors,
        "refusedWrites": c.refused_writes,
        "lagSeconds": c.lag.map(|l| l.as_secs_f64()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::node::NodeOptions;
    use litefs_store::{NoClients, Store, StoreOptions};

    #[test]
    fn vars_show_the_node_and_each_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        store.create_db("a.db").unwrap();
        let node = Node::new(
            store,
            Arc::new(NoClients),
            dir.path(),
            NodeOptions {
                node_id: 0xabc,
                hostname: "h1".into(),
                ..NodeOptions::default()
            },
        )
        .unwrap();
        let v = vars(&node);
        assert_eq!(v["node"]["nodeID"], "0000000000000abc");
        assert_eq!(v["node"]["hostname"], "h1");
        assert_eq!(v["node"]["isPrimary"], true);
        assert_eq!(v["node"]["streams"], 0);
        let db = &v["dbs"]["a.db"];
        assert_eq!(db["txid"], "0000000000000000");
        assert_eq!(db["journalMode"], "rollback");
        assert_eq!(db["pages"], 0);
        assert_eq!(db["applying"], false);
        assert_eq!(db["counters"]["commits"], 0);
        assert_eq!(db["counters"]["lagSeconds"], Value::Null);
    }
}
