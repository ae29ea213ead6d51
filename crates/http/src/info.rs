//! `/info`, `/metrics` and `/events`: what the node is and what it does.

use crate::node::Node;
use crate::server::{json, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// `GET /info`: LiteFS's JSON (`clusterID`, `isPrimary`, `candidate`,
/// `primary.hostname`), plus our node ID.
pub(crate) fn info(node: &Node) -> Response<Body> {
    let role = node.store.role();
    let primary = primary_hostname(node);
    json(&serde_json::json!({
        "clusterID": node.cluster().get().unwrap_or_default(),
        "isPrimary": role.is_primary(),
        "candidate": role.is_candidate(),
        "nodeID": format!("{:016x}", node.node_id),
        "primary": primary.map(|h| serde_json::json!({ "hostname": h })),
    }))
}

/// The primary's hostname as this node knows it: its own on the primary,
/// the one it follows on a replica (`None` while not connected).
fn primary_hostname(node: &Node) -> Option<String> {
    let role = node.store.role();
    if role.is_primary() {
        Some(node.hostname.clone())
    } else {
        role.primary().map(|p| p.hostname)
    }
}

/// `GET /metrics`: Prometheus text format with LiteFS's metric names for
/// what this node tracks.
pub(crate) fn metrics(node: &Node) -> Response<Body> {
    let role = node.store.role();
    let dbs = node.store.dbs();
    let mut s = String::new();
    let gauge = |s: &mut String, name: &str, help: &str| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(&mut s, "litefs_db_count", "Number of databases.");
    let _ = writeln!(s, "litefs_db_count {}", dbs.len());
    gauge(
        &mut s,
        "litefs_is_primary",
        "1 if this node is the primary.",
    );
    let _ = writeln!(s, "litefs_is_primary {}", u8::from(role.is_primary()));
    gauge(
        &mut s,
        "litefs_lag_seconds",
        "Replication lag behind the primary.",
    );
    let lag = role.lag_ms();
    let lag = if lag == litefs_store::LAG_UNKNOWN_MS {
        f64::NAN
    } else {
        lag as f64 / 1000.0
    };
    let _ = writeln!(s, "litefs_lag_seconds {lag}");
    gauge(
        &mut s,
        "litefs_http_stream_count",
        "Replica streams being served.",
    );
    let _ = writeln!(s, "litefs_http_stream_count {}", node.stream_count());
    gauge(&mut s, "litefs_db_txid", "Current TXID of each database.");
    for db in &dbs {
        let _ = writeln!(
            s,
            "litefs_db_txid{{db=\"{}\"}} {}",
            escape_label(db.name()),
            db.pos().txid.0
        );
    }
    let mut r = Response::new(crate::server::full(s));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Events a subscriber has not read yet before it is cut off (LiteFS's
/// buffer size).
const EVENT_BUFFER: usize = 1024;

/// `GET /events`: NDJSON, starting with an `init` event, then a `tx` event
/// each time a database's position moves. A subscriber that falls
/// [`EVENT_BUFFER`] events behind is disconnected, so a slow reader never
/// holds anything up.
pub(crate) fn events(node: &Arc<Node>) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(EVENT_BUFFER);
    let role = node.store.role();
    let init = serde_json::json!({
        "type": "init",
        "data": {
            "isPrimary": role.is_primary(),
            "hostname": primary_hostname(node),
        },
    });
    let _ = tx.try_send(Bytes::from(format!("{init}\n")));
    let store = node.store.clone();
    let sender = Arc::new(Mutex::new(Some(tx)));
    let weak_store = Arc::downgrade(&store);
    let s2 = sender.clone();
    let listening = store.listen(Arc::new(move |name: &str| {
        let Some(store) = weak_store.upgrade() else {
            return;
        };
        let Some(db) = store.db(name) else { return };
        let (pos, ts) = db.pos_and_timestamp();
        let ev = serde_json::json!({
            "type": "tx",
            "db": name,
            "data": {
                "txID": format!("{:016x}", pos.txid.0),
                "postApplyChecksum": format!("{:016x}", pos.post_apply_checksum.0),
                "timestamp": ts,
            },
        });
        if let Ok(mut g) = s2.lock() {
            let full = g
                .as_ref()
                .is_some_and(|tx| tx.try_send(Bytes::from(format!("{ev}\n"))).is_err());
            if full {
                // Too slow (or gone): disconnect it.
                *g = None;
            }
        }
    }));
    let stream = futures_util::stream::unfold((rx, listening), |(mut rx, l)| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::io::Error>(hyper::body::Frame::data(b)),
                (rx, l),
            )
        })
    });
    drop(sender);
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    r
}
