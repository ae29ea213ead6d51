//! Bad input on `/stream` from a LiteFS primary: our replica follows a real
//! LiteFS v0.5.14 primary through a gateway whose first connections are
//! answered by a scripted HTTP/2 primary instead (an unknown frame type, an
//! LTX file whose bytes are damaged, a TXID gap, a stream cut inside a
//! frame, a file for a database in the middle of a chunk). Each must give a
//! clear log line and a reconnect, never a crash or a wrong database: once
//! the gateway passes connections through, the replica converges on the
//! real primary byte for byte.
//!
//! The scripted primary is a mock only for faults a real LiteFS cannot be
//! made to produce; everything else is the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use litefs_fuse_tests::cluster::{require_fuse, same_bytes, sql, wait_log_line, wait_same_pos};
use litefs_fuse_tests::peer::{self, new_node, Impl};
use litefs_fuse_tests::{free_port, primary_lease, replica_lease};
use litefs_ltx::{Checksum, Encoder, Format, Header, Txid, CHECKSUM_FLAG};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FRAME_LTX: u32 = 1;
const FRAME_READY: u32 = 2;
const FRAME_HEARTBEAT: u32 = 7;

/// An LTX frame as LiteFS sends it: type, unused size, name, then the file
/// in chunks of at most `chunk` bytes, each with a u16 length, and a 0.
fn ltx_frame(name: &str, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(FRAME_LTX.to_be_bytes());
    out.extend(0u64.to_be_bytes());
    out.extend((name.len() as u32).to_be_bytes());
    out.extend(name.as_bytes());
    for c in data.chunks(chunk) {
        out.extend((c.len() as u16).to_be_bytes());
        out.extend(c);
    }
    out.extend(0u16.to_be_bytes());
    out
}

fn heartbeat() -> Vec<u8> {
    let mut out = FRAME_HEARTBEAT.to_be_bytes().to_vec();
    out.extend(litefs_ltx::now_ms().to_be_bytes());
    out
}

/// A valid LTX v1 file (LZ4, as LiteFS writes) of one page for `txid`,
/// claiming `pre` as the checksum before it.
fn ltx_file(txid: u64, pre: Checksum) -> Vec<u8> {
    let page = vec![7u8; 4096];
    let h = Header {
        flags: litefs_ltx::FLAG_COMPRESS_LZ4,
        page_size: 4096,
        commit: 2,
        min_txid: Txid(txid),
        max_txid: Txid(txid),
        timestamp: litefs_ltx::now_ms(),
        pre_apply_checksum: pre,
        ..Header::default()
    };
    let mut e = Encoder::new(Vec::new(), h, Format::V1).unwrap();
    e.encode_page(2, &page).unwrap();
    e.finish(Checksum(CHECKSUM_FLAG | 0x1234)).unwrap().0
}

/// A snapshot of `commit` pages of 4096 bytes that are not a database.
fn snapshot_file(commit: u32) -> Vec<u8> {
    let h = Header {
        flags: litefs_ltx::FLAG_COMPRESS_LZ4,
        ..Header::snapshot(4096, commit, Txid(1), litefs_ltx::now_ms())
    };
    let mut e = Encoder::new(Vec::new(), h, Format::V1).unwrap();
    let mut sum = Checksum::EMPTY;
    for p in 1..=commit {
        let page = vec![p as u8; 4096];
        sum = sum.toggle(litefs_ltx::page_checksum(p, &page));
        e.encode_page(p, &page).unwrap();
    }
    e.finish(sum).unwrap().0
}

/// What the scripted primary sends on each faulty connection, and a part
/// of the log line the replica must write about it.
fn faults() -> Vec<(Vec<u8>, &'static str)> {
    let mut unknown = heartbeat();
    unknown.extend(99u32.to_be_bytes());
    let mut damaged = snapshot_file(3);
    let n = damaged.len();
    damaged[n - 20] ^= 0x40;
    let mut cut = ltx_frame("a.db", &snapshot_file(3), 1000);
    cut.truncate(cut.len() / 2);
    let mut gap = ltx_frame("a.db", &ltx_file(5, Checksum(CHECKSUM_FLAG | 9)), 65535);
    gap.extend(FRAME_READY.to_be_bytes());
    // A chunk length that runs past the bytes sent, then the stream ends.
    let mut short = FRAME_LTX.to_be_bytes().to_vec();
    short.extend(0u64.to_be_bytes());
    short.extend(4u32.to_be_bytes());
    short.extend(b"a.db");
    short.extend(60_000u16.to_be_bytes());
    short.extend([0u8; 100]);
    vec![
        (unknown, "frame type 99"),
        (ltx_frame("a.db", &damaged, 4096), "a.db"),
        (cut, "malformed stream"),
        (gap, "a.db"),
        (short, "malformed stream"),
    ]
}

/// A gateway on 127.0.0.1: connection `i < scripts.len()` is answered by a
/// scripted HTTP/2 primary that sends `scripts[i]` as the `/stream` body
/// and ends it; every later connection is passed through to `upstream`.
fn gateway(upstream: String, scripts: Vec<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let port = free_port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = conns.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((down, _)) = l.accept().await else {
                    return;
                };
                let i = c2.fetch_add(1, Ordering::SeqCst);
                if let Some(script) = scripts.get(i).cloned() {
                    tokio::spawn(async move {
                        let body = Bytes::from(script);
                        let svc = service_fn(move |_req| {
                            let body = body.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(200)
                                        .body(Full::new(body))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(down), svc)
                            .await;
                    });
                } else {
                    let up = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut up) = tokio::net::TcpStream::connect(&up).await else {
                            return;
                        };
                        let mut down = down;
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    });
                }
            }
        });
    });
    (format!("http://127.0.0.1:{port}"), conns)
}

#[test]
fn bad_stream_input_from_a_litefs_primary_is_refused_and_recovered() {
    if !require_fuse() {
        return;
    }
    let Some(litefs) = peer::litefs_bin() else {
        return;
    };
    let mut p = new_node(
        Impl::LiteFs,
        &litefs,
        free_port(),
        &primary_lease("primary-1"),
        "",
        "",
    );
    p.spawn();
    sql(
        &p.path("a.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(9000));",
    );
    sql(
        &p.path("b.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let scripts = faults();
    let needles: Vec<&str> = scripts.iter().map(|(_, n)| *n).collect();
    let (url, conns) = gateway(
        p.url.trim_start_matches("http://").to_owned(),
        scripts.into_iter().map(|(s, _)| s).collect(),
    );
    let mut r = new_node(
        Impl::Ours,
        &litefs,
        free_port(),
        &replica_lease("primary-1", &url),
        "",
        "",
    );
    r.spawn();
    for db in ["a.db", "b.db"] {
        wait_same_pos(&p, &r, db);
        same_bytes(&p, &r, db);
    }
    assert!(
        conns.load(Ordering::SeqCst) > needles.len(),
        "the replica reached the real primary only after every scripted connection"
    );
    // Each fault is named in a warning of the failed stream.
    let log = r.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("replication stream failed"))
        .collect();
    eprintln!("{}", warnings.join("\n"));
    for needle in &needles {
        assert!(
            warnings.iter().any(|w| w.contains(needle)),
            "no stream failure names {needle:?}:\n{log}"
        );
    }
    assert!(
        warnings.len() >= needles.len(),
        "{} stream failures logged for {} faults:\n{log}",
        warnings.len(),
        needles.len()
    );
    wait_log_line(&r, &["frame type 99"], Duration::from_secs(1));
    wait_log_line(&r, &["checksum"], Duration::from_secs(1));
    wait_log_line(&r, &["a.db", "TXID"], Duration::from_secs(1));
    assert!(r.exit_status().is_none(), "the replica exited:\n{log}");
    // More writes on the real primary still arrive.
    sql(&p.path("a.db"), "INSERT INTO t VALUES (randomblob(100));");
    wait_same_pos(&p, &r, "a.db");
    same_bytes(&p, &r, "a.db");
    if let Some(ltx) = peer::ltx_bin() {
        peer::go_verify(&ltx, &r);
    }
}
