//! `POST /handoff` and `POST /promote`: moving the primary by hand, with
//! LiteFS's semantics. A replica's `/promote` asks the primary's
//! `/handoff` for the lease; the primary steps down and passes the lease ID
//! to that replica's stream in a Handoff frame.

use crate::node::{Control, Node};
use crate::server::{query, text, Body};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long `/promote` waits for the lease to arrive after the primary
/// agreed to hand it off.
const PROMOTE_WAIT: Duration = Duration::from_secs(10);

/// `POST /handoff?nodeID=<16 hex digits>`, on the primary.
pub(crate) async fn handoff(node: &Arc<Node>, req: &Request<Incoming>) -> Response<Body> {
    let Some(raw) = query(req, "nodeID") else {
        return text(StatusCode::BAD_REQUEST, "missing nodeID (16 hex digits)");
    };
    let Ok(node_id) = u64::from_str_radix(&raw, 16) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("invalid nodeID {raw:?}: expected 16 hex digits"),
        );
    };
    if node_id == node.node_id {
        return text(
            StatusCode::BAD_REQUEST,
            "cannot hand off to this node itself",
        );
    }
    if !node.store.role().is_primary() {
        return text(StatusCode::CONFLICT, "this node is not the primary");
    }
    let Some(control) = node.control() else {
        return text(
            StatusCode::CONFLICT,
            "this node runs no election; nothing to hand off",
        );
    };
    let (tx, rx) = oneshot::channel();
    if control
        .send(Control::Handoff { node_id, reply: tx })
        .await
        .is_err()
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the election loop has stopped",
        );
    }
    match tokio::time::timeout(PROMOTE_WAIT, rx).await {
        Ok(Ok(Ok(()))) => text(StatusCode::OK, "handed off"),
        Ok(Ok(Err(e))) => text(StatusCode::CONFLICT, format!("hand-off refused: {e}")),
        Ok(Err(_)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the election loop has stopped",
        ),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            "the hand-off did not finish in time",
        ),
    }
}

/// `POST /promote`, on a candidate replica: asks the primary to hand its
/// lease here and waits until this node is the primary.
pub(crate) async fn promote(node: &Arc<Node>) -> Response<Body> {
    let role = node.store.role();
    if role.is_primary() {
        return text(StatusCode::OK, "this node is already the primary");
    }
    if !role.is_candidate() {
        return text(
            StatusCode::CONFLICT,
            "this node is not a candidate for primary (lease.candidate is false)",
        );
    }
    let Some(primary) = role.primary() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no primary is connected to this node; cannot promote",
        );
    };
    if let Err(e) = crate::follow::request_handoff(
        &primary.advertise_url,
        node.node_id,
        node.auth_token.as_deref(),
    )
    .await
    {
        return text(
            StatusCode::BAD_GATEWAY,
            format!("the primary {} refused the hand-off: {e}", primary.hostname),
        );
    }
    let until = tokio::time::Instant::now() + PROMOTE_WAIT;
    while tokio::time::Instant::now() < until {
        if role.is_primary() {
            return text(StatusCode::OK, "this node is now the primary");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    text(
        StatusCode::GATEWAY_TIMEOUT,
        "the primary agreed to hand off, but this node did not become primary in time",
    )
}
