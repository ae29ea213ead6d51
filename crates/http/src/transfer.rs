//! `GET /export` and `POST /import`: whole databases in and out.

use crate::node::Node;
use crate::server::{full, query, text, Body};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use litefs_store::StoreError;
use litefs_store::{SpillBuf, SPILL_BYTES};
use std::sync::Arc;

/// The `?name=` database, or the message saying what is wrong with it.
fn db_name(req: &Request<Incoming>) -> Result<String, String> {
    let name = query(req, "name").unwrap_or_default();
    if name.is_empty() {
        return Err("missing ?name= (the database)".into());
    }
    litefs_store::validate_db_name(&name).map_err(|e| e.to_string())?;
    Ok(name)
}

/// `GET /export?name=`: the database as SQLite sees it (pages still in the
/// WAL included), read while writers are held off. Any node.
pub(crate) async fn export(node: &Arc<Node>, req: &Request<Incoming>) -> Response<Body> {
    let name = match db_name(req) {
        Ok(n) => n,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    let Some(db) = node.store.db(&name) else {
        return text(StatusCode::NOT_FOUND, format!("database not found: {name}"));
    };
    let fence = node.fence.clone();
    let spill_dir = node.spill_dir.clone();
    let r = tokio::task::spawn_blocking(move || {
        let io = |source| StoreError::Io {
            path: spill_dir.clone(),
            source,
        };
        let mut out = SpillBuf::new(&spill_dir, SPILL_BYTES);
        let c = db.read_committed(fence.as_ref(), |_, _, page| out.push(page).map_err(io))?;
        let out = out.finish().map_err(io)?;
        Ok::<_, StoreError>((c, out))
    })
    .await;
    match r {
        Ok(Ok((c, out))) if c.commit > 0 => {
            let mut resp = Response::new(full(out));
            if let Ok(v) = c.pos.to_string().parse() {
                resp.headers_mut().insert("litefs-pos", v);
            }
            resp
        }
        Ok(Ok(_)) => text(
            StatusCode::NOT_FOUND,
            format!("database has no pages: {name}"),
        ),
        Ok(Err(e)) => {
            tracing::error!(db = %name, error = %e, "export failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("export failed: {e}"),
            )
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("export failed: {e}"),
        ),
    }
}

/// The refusal a replica gives to writes: who the primary is.
pub(crate) fn not_primary(node: &Node) -> Response<Body> {
    let msg = match node.store.role().primary() {
        Some(p) => format!(
            "this node is a replica; send writes to the primary {} ({})",
            p.hostname, p.advertise_url
        ),
        None => "this node is a replica and no primary is known".to_owned(),
    };
    text(StatusCode::SERVICE_UNAVAILABLE, msg)
}

/// `POST /import?name=`: replaces the database with the body (a whole
/// SQLite database file) as one replicated transaction. Primary only.
pub(crate) async fn import(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let name = match db_name(&req) {
        Ok(n) => n,
        Err(m) => return text(StatusCode::BAD_REQUEST, m),
    };
    if !node.store.role().is_primary() {
        return not_primary(node);
    }
    let body = match receive(&node.spill_dir, req.into_body()).await {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the database: {e}"),
            )
        }
    };
    let (store, fence, n2) = (node.store.clone(), node.fence.clone(), name.clone());
    match tokio::task::spawn_blocking(move || store.import(&n2, &body, fence.as_ref())).await {
        Ok(Ok(pos)) => {
            tracing::info!(db = %name, pos = %pos, "imported");
            text(StatusCode::OK, format!("imported {name} at {pos}"))
        }
        Ok(Err(e @ (StoreError::InvalidImport { .. } | StoreError::InvalidName { .. }))) => {
            text(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!(db = %name, error = %e, "import failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("import failed: {e}"),
            )
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("import failed: {e}"),
        ),
    }
}

/// The largest database `POST /import` takes (1 TiB).
const IMPORT_MAX: u64 = 1 << 40;

/// An import's body, whole: in memory, or past [`SPILL_BYTES`] in a mapped
/// temporary file in `dir`.
async fn receive(dir: &std::path::Path, mut body: Incoming) -> Result<bytes::Bytes, String> {
    let mut buf = SpillBuf::new(dir, SPILL_BYTES);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() as u64 > IMPORT_MAX {
                return Err(format!("larger than {IMPORT_MAX} bytes"));
            }
            buf.push(&data)
                .map_err(|e| format!("{}: {e}", buf.dir().display()))?;
        }
    }
    buf.finish().map_err(|e| format!("{}: {e}", dir.display()))
}
