//! The node around the mount: the API server, and (on a replica) the
//! follower of the static primary. Runs on its own tokio runtime so the
//! mount's threads stay plain threads.

use crate::config::{Config, LeaseType};
use anyhow::{bail, Context};
use litefs_http::{Follower, Node, NodeOptions};
use litefs_store::{Fence, PrimaryInfo, Store};
use std::sync::Arc;
use tokio::sync::watch;

/// The running API and replication.
pub(crate) struct Running {
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The bearer token: `http.auth-token`, else `LITEFS_AUTH_TOKEN`.
pub(crate) fn auth_token(config: &Config) -> Option<String> {
    token_or_env(Some(config.http.auth_token.clone()))
}

/// `token` if given and not empty, else `LITEFS_AUTH_TOKEN` if not empty.
pub(crate) fn token_or_env(token: Option<String>) -> Option<String> {
    token
        .filter(|t| !t.is_empty())
        .or_else(|| std::env::var("LITEFS_AUTH_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// `:20202` means every interface, as in Go.
pub(crate) fn listen_addr(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    }
}

/// Sets this node's role from the static lease before anything can reach
/// the mount: the candidate is the primary, every other node a replica of
/// `lease.advertise-url`.
pub(crate) fn init_role(config: &Config, store: &Store) -> anyhow::Result<()> {
    match config.lease.kind {
        Some(LeaseType::Static) => {}
        Some(LeaseType::Consul) => {
            bail!("lease.type consul is not available in this build yet; use lease.type static")
        }
        None => bail!("lease.type is required"),
    }
    let role = store.role();
    role.set_candidate(config.lease.candidate);
    if config.lease.candidate {
        role.become_primary();
    } else {
        role.become_replica(None);
    }
    Ok(())
}

impl Running {
    /// Binds the API and starts serving it; a replica starts following.
    pub(crate) fn start(
        config: &Config,
        store: Arc<Store>,
        fence: Arc<dyn Fence>,
        node_id: u64,
    ) -> anyhow::Result<Running> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("litefs-api")
            .enable_all()
            .build()
            .context("start the API runtime")?;
        let node = Arc::new(
            Node::new(
                store.clone(),
                fence,
                &config.data.dir,
                NodeOptions {
                    node_id,
                    hostname: config.lease.hostname.clone(),
                    auth_token: auth_token(config),
                    databases: config.lease.databases.clone(),
                    max_body: 0,
                },
            )
            .context("cluster ID")?,
        );
        if store.role().is_primary() {
            let id = node.cluster().ensure().context("cluster ID")?;
            tracing::info!(cluster_id = %id, "this node is the primary");
        }
        let addr = listen_addr(&config.http.addr);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&addr))
            .with_context(|| format!("http.addr {addr}: cannot listen"))?;
        let local = listener.local_addr().ok();
        tracing::info!(addr = ?local, "API listening");
        let (stop, rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        let n2 = node.clone();
        let s1 = stopped(rx.clone());
        tasks.push(runtime.spawn(async move {
            if let Err(e) = litefs_http::serve(listener, n2, s1).await {
                tracing::error!(error = %e, "API server failed");
            }
        }));
        if !store.role().is_primary() {
            let primary = PrimaryInfo {
                hostname: config.lease.hostname.clone(),
                advertise_url: config.lease.advertise_url.clone(),
            };
            tracing::info!(primary = %primary.advertise_url, "this node is a replica");
            let f = Follower::new(node.clone(), primary, config.lease.reconnect_delay);
            tasks.push(runtime.spawn(f.run(stopped(rx))));
        }
        Ok(Running {
            runtime,
            stop,
            tasks,
        })
    }

    /// Stops following and serving.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(true);
        let Running { runtime, tasks, .. } = self;
        // Replica streams end with the server; nothing else holds the node.
        runtime.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
            }
        });
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    }
}
