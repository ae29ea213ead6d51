//! `/info` and `/events` (and, from [`crate::metrics`], `/metrics`): what
//! the node is and what it does.

use crate::node::Node;
use crate::server::{json, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use std::sync::{Arc, Mutex};

/// `GET /metrics` lives in its own module.
pub(crate) use crate::metrics::metrics;

/// `GET /info`: LiteFS's JSON (`clusterID`, `isPrimary`, `candidate`,
/// `primary.hostname`), plus our node ID.
pub(crate) fn info(node: &Node) -> Response<Body> {
    let role = node.store.role();
    let primary = primary_hostname(node);
    let mut v = serde_json::json!({
        "clusterID": node.cluster().get().unwrap_or_default(),
        "isPrimary": role.is_primary(),
        "candidate": role.is_candidate(),
        "nodeID": format!("{:016x}", node.node_id),
        "primary": primary.map(|h| serde_json::json!({ "hostname": h })),
        "proxyURL": node.proxy_url,
    });
    if let Some(o) = v.as_object_mut() {
        for (k, x) in node.extra_info() {
            o.insert(k, x);
        }
    }
    json(&v)
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
    // Role and halt events go through the same queue as `tx` ones.
    let mut others = node.subscribe();
    let s3 = sender.clone();
    tokio::spawn(async move {
        loop {
            let ev = match others.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let Ok(mut g) = s3.lock() else { return };
            let Some(tx) = g.as_ref() else { return };
            if tx.try_send(ev).is_err() {
                *g = None;
                return;
            }
        }
    });
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
