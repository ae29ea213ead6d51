//! `GET /export` and `POST /import`: whole databases in and out.

use crate::node::Node;
use crate::server::{full, query, text, Body};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use litefs_store::StoreError;
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
        let mut out = ExportBuf::Mem(Vec::new());
        let c = db.read_committed(fence.as_ref(), |c, _, page| {
            out.page(c, page, &spill_dir).map_err(|e| StoreError::Io {
                path: spill_dir.clone(),
                source: e,
            })
        })?;
        let out = out.finish().map_err(|e| StoreError::Io {
            path: spill_dir.clone(),
            source: e,
        })?;
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

/// An export being read: memory, or for a database over 64 MiB an
/// unlinked temporary file in the data directory, mapped once whole (an
/// export costs page cache, not heap).
enum ExportBuf {
    Mem(Vec<u8>),
    File(std::io::BufWriter<std::fs::File>),
}

impl ExportBuf {
    fn page(
        &mut self,
        c: &litefs_store::Committed,
        page: &[u8],
        dir: &std::path::Path,
    ) -> std::io::Result<()> {
        use std::io::Write;
        if let ExportBuf::Mem(v) = self {
            if v.is_empty() && u64::from(c.commit) * u64::from(c.page_size) > 64 << 20 {
                let f = tempfile::tempfile_in(dir)?;
                *self = ExportBuf::File(std::io::BufWriter::with_capacity(1 << 20, f));
            }
        }
        match self {
            ExportBuf::Mem(v) => v.extend_from_slice(page),
            ExportBuf::File(w) => w.write_all(page)?,
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<bytes::Bytes> {
        match self {
            ExportBuf::Mem(v) => Ok(bytes::Bytes::from(v)),
            ExportBuf::File(w) => {
                let f = w.into_inner().map_err(|e| e.into_error())?;
                // SAFETY: the file is this export's alone: created unlinked
                // above, written only above, never written again.
                let map = unsafe { memmap2::Mmap::map(&f) }?;
                Ok(bytes::Bytes::from_owner(map))
            }
        }
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
    let limit = usize::try_from(node.max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("reading the database (limit {limit} bytes): {e}"),
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
