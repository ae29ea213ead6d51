//! The node around the mount: the API server and the election loop (which
//! holds the lease or follows its holder). Runs on its own tokio runtime so
//! the mount's threads stay plain threads.

use crate::config::{Config, LeaseType};
use anyhow::{bail, Context};
use litefs_http::{Election, ElectionOptions, Node, NodeOptions, ParkedWriters};
use litefs_lease::{ConsulLeaser, ConsulOptions, Leaser, StaticLeaser};
use litefs_store::{Fence, PrimaryInfo, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// The running API and replication.
pub(crate) struct Running {
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
    stop_server: watch::Sender<bool>,
    election: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
    proxy: Option<tokio::task::JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    parked: ParkedWriters,
    node: Arc<Node>,
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

/// Sets this node's role before anything can reach the mount: with a
/// static lease the candidate is the primary and every other node a
/// replica; with Consul every node starts as a replica with no primary
/// until the election says otherwise, so no client ever sees a node as
/// writable before it holds the lease.
pub(crate) fn init_role(config: &Config, store: &Store) -> anyhow::Result<()> {
    let role = store.role();
    role.set_candidate(config.lease.candidate);
    match config.lease.kind {
        // With a backup, the election makes it primary once it has restored
        // an empty node from the backup (before any write).
        Some(LeaseType::Static)
            if config.lease.candidate && config.backup.kind != crate::config::BackupType::File =>
        {
            role.become_primary()
        }
        Some(LeaseType::Static) | Some(LeaseType::Consul) => role.become_replica(None),
        None => bail!("lease.type is required"),
    }
    Ok(())
}

/// The OS hostname (Consul's default `lease.hostname`).
fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `lease.hostname` and `lease.advertise-url` with Consul's defaults
/// filled in (the OS hostname; `http://HOSTNAME:PORT` with the API port).
fn identity(config: &Config, port: Option<u16>) -> (String, String) {
    let mut hostname = config.lease.hostname.clone();
    let mut url = config.lease.advertise_url.clone();
    if config.lease.kind == Some(LeaseType::Consul) {
        if hostname.is_empty() {
            hostname = os_hostname();
        }
        if url.is_empty() {
            url = format!("http://{hostname}:{}", port.unwrap_or(20202));
        }
    }
    (hostname, url)
}

/// With `backup.type: file`: before each term as primary, a node with no
/// database at all rebuilds every database the backup holds (an empty
/// cluster comes back from its backup before its first write).
fn restore_on_start(
    config: &Config,
    store: &Arc<Store>,
    node: &Arc<Node>,
) -> Option<litefs_http::BeforePrimary> {
    let backup = backup_target(config)?;
    let (store, fence) = (store.clone(), node.fence.clone());
    let scratch = config.data.dir.clone();
    Some(Arc::new(move || {
        litefs_backup::restore_empty(&store, fence.as_ref(), &backup, &scratch)
            .map(|done| {
                if !done.is_empty() {
                    tracing::info!(dbs = done.len(), backup = %backup.describe(), "restored from the backup before taking writes");
                }
            })
            .map_err(|e| format!("restore from the backup {}: {e}", backup.describe()))
    }))
}

/// Where `backup:` sends backups, if anywhere.
pub(crate) fn backup_target(config: &Config) -> Option<litefs_backup::Target> {
    use crate::config::BackupType;
    let b = &config.backup;
    match b.kind {
        BackupType::None | BackupType::LitefsCloud => None,
        BackupType::File => Some(litefs_backup::Target::File(b.path.clone())),
        BackupType::S3 => Some(litefs_backup::Target::S3(litefs_backup::S3Options {
            bucket: b.bucket.clone(),
            path: b.path.to_string_lossy().into_owned(),
            region: b.region.clone(),
            endpoint: b.endpoint.clone(),
            access_key_id: b.access_key_id.clone(),
            secret_access_key: b.secret_access_key.clone(),
            force_path_style: b.force_path_style,
        })),
    }
}

/// The URL other nodes reach this node's proxy at: `proxy.addr`, with
/// the host of `advertise_url` when the address names no host (`:8080`,
/// `0.0.0.0:8080`).
fn proxy_url(config: &Config, advertise_url: &str) -> Option<String> {
    let addr = &config.proxy.addr;
    if config.proxy.target.is_empty() || addr.is_empty() {
        return None;
    }
    let (host, port) = addr.rsplit_once(':')?;
    let host = if host.is_empty() || host == "0.0.0.0" || host == "[::]" {
        let uri: hyper::Uri = advertise_url.parse().ok()?;
        uri.host()?.to_owned()
    } else {
        host.to_owned()
    };
    Some(format!("http://{host}:{port}"))
}

/// Binds `proxy.addr` and serves the proxy until `stop`.
fn start_proxy(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    store: Arc<Store>,
    token: Option<String>,
    node: &Node,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let p = &config.proxy;
    let addr = listen_addr(&p.addr);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&addr))
        .with_context(|| format!("proxy.addr {addr}: cannot listen"))?;
    tracing::info!(addr = ?listener.local_addr().ok(), target = %p.target, db = %p.db, forward = p.forward, "proxy listening");
    let opts = litefs_proxy::ProxyOptions {
        target: p.target.clone(),
        db: p.db.clone(),
        max_lag: p.max_lag,
        debug: p.debug,
        primary_redirect_timeout: p.primary_redirect_timeout,
        passthrough: p.passthrough.clone(),
        always_forward: p.always_forward.clone(),
        forward: p.forward,
        timeouts: litefs_proxy::Timeouts {
            read: p.read_timeout,
            read_header: p.read_header_timeout,
            write: p.write_timeout,
            idle: p.idle_timeout,
        },
    };
    let find: litefs_proxy::FindPrimaryProxy = Arc::new(move |primary: PrimaryInfo| {
        let token = token.clone();
        Box::pin(async move { primary_proxy_url(&primary.advertise_url, token.as_deref()).await })
    });
    let proxy = Arc::new(litefs_proxy::Proxy::new(store, opts, Some(find)));
    let stats = proxy.stats();
    node.add_extra_metrics(Arc::new(move || stats.exposition()));
    Ok(runtime.spawn(async move {
        if let Err(e) = litefs_proxy::serve(listener, proxy, stop).await {
            tracing::error!(error = %e, "proxy failed");
        }
    }))
}

/// The primary's proxy URL, from its `/info`.
async fn primary_proxy_url(api: &str, token: Option<&str>) -> Option<String> {
    let r = litefs_http::client::request(
        api,
        hyper::Method::GET,
        "/info",
        bytes::Bytes::new(),
        token,
        std::time::Duration::from_secs(5),
    )
    .await
    .map_err(|e| tracing::warn!(primary = api, error = %e, "cannot ask the primary for its proxy"))
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v.get("proxyURL")?.as_str().map(str::to_owned)
}

/// The leaser of `lease.type`.
fn leaser(config: &Config, hostname: &str, url: &str) -> anyhow::Result<Arc<dyn Leaser>> {
    let lease = &config.lease;
    Ok(match lease.kind {
        Some(LeaseType::Static) | None => Arc::new(StaticLeaser::new(
            litefs_lease::PrimaryInfo {
                hostname: hostname.to_owned(),
                advertise_url: url.to_owned(),
            },
            lease.candidate,
        )),
        Some(LeaseType::Consul) => {
            let mut o = ConsulOptions::new(&lease.consul.url, &lease.consul.key, hostname, url);
            o.ttl = lease.consul.ttl;
            o.lock_delay = lease.consul.lock_delay;
            o.candidate = lease.candidate;
            Arc::new(ConsulLeaser::new(o).context("lease.consul")?)
        }
    })
}

impl Running {
    /// Binds the API, starts serving it and starts the election loop
    /// (which follows the primary, or becomes it).
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
        let addr = listen_addr(&config.http.addr);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&addr))
            .with_context(|| format!("http.addr {addr}: cannot listen"))?;
        let local = listener.local_addr().ok();
        tracing::info!(addr = ?local, "API listening");
        let (hostname, url) = identity(config, local.map(|a| a.port()));
        let leaser = leaser(config, &hostname, &url)?;
        litefs_http::set_debug_endpoints(config.http.debug);
        let node = Arc::new(
            Node::new(
                store.clone(),
                fence,
                &config.data.dir,
                NodeOptions {
                    node_id,
                    hostname: hostname.clone(),
                    auth_token: auth_token(config),
                    databases: config.lease.databases.clone(),
                    max_body: 0,
                    promote: config.lease.promote,
                    proxy_url: proxy_url(config, &url),
                },
            )
            .context("cluster ID")?,
        );
        // Two stop signals: the election stops first (a primary hands off
        // over its streams), then the server.
        // A replica's SQLite clients take the primary's halt lock through it.
        store
            .role()
            .set_halt_remote(Arc::new(litefs_http::HaltClient::new(
                node.clone(),
                runtime.handle().clone(),
            )));
        let (stop, rx) = watch::channel(false);
        let (stop_server, server_rx) = watch::channel(false);
        let failed = Arc::new(AtomicBool::new(false));
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let n2 = node.clone();
        let s1 = stopped(server_rx.clone());
        let server = runtime.spawn(async move {
            if let Err(e) = litefs_http::serve(listener, n2, s1).await {
                tracing::error!(error = %e, "API server failed");
            }
        });
        let proxy = if config.proxy.target.is_empty() {
            None
        } else {
            let token = auth_token(config);
            Some(start_proxy(
                &runtime,
                config,
                store.clone(),
                token,
                &node,
                stopped(server_rx),
            )?)
        };
        tracing::info!(lease = leaser.kind(), hostname = %hostname, advertise_url = %url, candidate = leaser.is_candidate(), "starting the election");
        let election = Election::new(
            node.clone(),
            leaser,
            ElectionOptions {
                reconnect_delay: config.lease.reconnect_delay,
                demote_delay: config.lease.demote_delay,
                before_primary: restore_on_start(config, &store, &node),
            },
            rx,
        );
        let parked = election.parked_writers();
        let f2 = failed.clone();
        let mut tasks = Vec::new();
        tasks.push(runtime.spawn(async move {
            if let Err(e) = election.run().await {
                tracing::error!(error = %e, "stopping: this node cannot join the cluster");
                f2.store(true, Ordering::Release);
            }
        }));
        Ok(Running {
            runtime,
            stop,
            stop_server,
            election: tasks,
            proxy,
            server,
            failed,
            parked,
            node,
        })
    }

    /// Adds Prometheus text to `/metrics` (the backup's position).
    pub(crate) fn add_metrics(&self, f: litefs_http::ExtraMetrics) {
        self.node.add_extra_metrics(f);
    }

    /// Adds a member to `/info` (the backup's position).
    pub(crate) fn add_info(&self, key: &str, f: litefs_http::ExtraInfo) {
        self.node.add_extra_info(key, f);
    }

    /// Whether the node hit a condition it cannot run with (it belongs to
    /// another cluster): the caller stops it.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Stops the election (a primary hands off or releases its lease) and
    /// the API. Returns the WAL write locks a node that stepped down holds:
    /// drop them only once the mount is gone.
    pub(crate) fn stop(self) -> ParkedWriters {
        let _ = self.stop.send(true);
        let Running {
            runtime,
            election,
            server,
            proxy,
            stop_server,
            parked,
            ..
        } = self;
        runtime.block_on(async {
            for t in election {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(15), t).await;
            }
            let _ = stop_server.send(true);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
            if let Some(p) = proxy {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p).await;
            }
        });
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        parked
    }
}
