//! The real peers: the LiteFS v0.5.14 binary and the Go `ltx` v0.3.14
//! tool, for tests that run LiteFS next to our nodes (mixed clusters) and
//! check our LTX files with the reference decoder.
//!
//! Binaries: `LITEFS_PEER_BIN` and `LTX_GO_BIN`, else
//! `../shared/peers/litefs-0.5.14` and `../shared/peers/ltx-0.3.14` beside
//! the workspace. Missing, a test prints one SKIP line and returns; under
//! `CI=true` (or `LITEFS_REQUIRE_DEPS=1`) it fails.

use crate::{free_port, primary_lease, replica_lease, Node};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn peer(env_var: &str, file: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(env_var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/peers")
            .join(file),
    };
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "peer binary {file} not found at {} (set {env_var})",
        path.display()
    );
    assert!(
        !crate::deps_required(),
        "{msg}; required because CI=true or LITEFS_REQUIRE_DEPS=1"
    );
    eprintln!("SKIP: {msg}");
    None
}

/// The real LiteFS v0.5.14 binary, or `None` after a SKIP line.
pub fn litefs_bin() -> Option<PathBuf> {
    peer("LITEFS_PEER_BIN", "litefs-0.5.14")
}

/// The Go `ltx` v0.3.14 tool, or `None` after a SKIP line.
pub fn ltx_bin() -> Option<PathBuf> {
    peer("LTX_GO_BIN", "ltx-0.3.14")
}

/// Which implementation a node of a mixed cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// This project's `litefs`.
    Ours,
    /// The real LiteFS v0.5.14.
    LiteFs,
}

impl Impl {
    /// Both, ours first.
    pub const BOTH: [Impl; 2] = [Impl::Ours, Impl::LiteFs];

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Ours => "litefs-rs",
            Impl::LiteFs => "LiteFS",
        }
    }
}

/// A node of `imp` with its API on `port`, not started. `peer_bin` is the
/// LiteFS binary (needed for [`Impl::LiteFs`]); `data_keys` are `key:
/// value` lines of the `data:` section.
pub fn new_node(
    imp: Impl,
    peer_bin: &Path,
    port: u16,
    lease: &str,
    extra: &str,
    data_keys: &str,
) -> Node {
    match imp {
        Impl::LiteFs => Node::new_peer_on(peer_bin, port, lease, extra, data_keys),
        Impl::Ours => Node::new_data_on(port, lease, extra, data_keys),
    }
}

/// A static-lease pair: a primary of `p` (hostname `primary-1`) and a
/// replica of `r` following it, both started; `data_keys` go to both.
pub fn static_pair(p: Impl, r: Impl, peer_bin: &Path, data_keys: &str) -> (Node, Node) {
    let port = free_port();
    let mut primary = new_node(
        p,
        peer_bin,
        port,
        &primary_lease("primary-1"),
        "",
        data_keys,
    );
    primary.spawn();
    wait_primary(&primary);
    let mut replica = new_node(
        r,
        peer_bin,
        free_port(),
        &replica_lease("primary-1", &primary.url),
        "",
        data_keys,
    );
    replica.spawn();
    (primary, replica)
}

/// Every LTX file in `n`'s data directory (all databases).
pub fn ltx_files(n: &Node) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dbs) = std::fs::read_dir(n.data.join("dbs")) else {
        return out;
    };
    for db in dbs.flatten() {
        if let Ok(rd) = std::fs::read_dir(db.path().join("ltx")) {
            out.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "ltx")),
            );
        }
    }
    out.sort();
    out
}

/// Runs `ltx verify` of the Go tool on every LTX file of `n` and panics
/// with its output unless it accepts them all; returns how many it read.
/// Files that retention removes meanwhile are skipped.
pub fn go_verify(ltx: &Path, n: &Node) -> usize {
    let files: Vec<PathBuf> = ltx_files(n);
    assert!(
        !files.is_empty(),
        "{}: no LTX files to verify under {}",
        n.url,
        n.data.display()
    );
    let mut checked = 0;
    for chunk in files.chunks(200) {
        let present: Vec<&PathBuf> = chunk.iter().filter(|p| p.is_file()).collect();
        if present.is_empty() {
            continue;
        }
        let out = crate::cluster::run_bounded(
            Command::new(ltx).arg("verify").args(&present),
            Duration::from_secs(120),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let vanished = !out.status.success()
            && text.contains("no such file")
            && present.iter().any(|p| !p.is_file());
        assert!(
            out.status.success() || vanished,
            "ltx verify rejects LTX files of {}:\n{text}",
            n.url
        );
        checked += present.len();
    }
    checked
}

impl Node {
    /// Makes the next [`Node::spawn`] run `imp` on this node's own config
    /// and data directory: swapping a stopped node's binary in place, as an
    /// operator migrating a cluster would. `peer_bin` is the LiteFS binary.
    /// The node must have been created with a config LiteFS accepts
    /// ([`Node::new_peer_on`]), which ours reads as well.
    pub fn switch_impl(&mut self, imp: Impl, peer_bin: &Path) {
        assert!(self.child.is_none(), "stop the node before switching");
        self.bin = match imp {
            Impl::LiteFs => peer_bin.to_path_buf(),
            Impl::Ours => crate::litefs_bin(),
        };
        self.peer = imp == Impl::LiteFs;
    }

    /// Which implementation this node runs.
    pub fn implementation(&self) -> Impl {
        if self.peer {
            Impl::LiteFs
        } else {
            Impl::Ours
        }
    }
}

/// Waits (30 s at most) until `n`'s `/info` says it is the primary. The
/// real LiteFS takes even a static lease in the background, after it may
/// have mounted: until then its root is read-only and a write fails with
/// "attempt to write a readonly database".
pub fn wait_primary(n: &Node) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !crate::consul::info(&n.url).is_some_and(|i| i.is_primary) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} is not the primary after 30 s:\n{}",
            n.url,
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
