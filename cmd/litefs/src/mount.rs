//! `litefs mount`: load the config, recover the store, mount, serve until a
//! signal, unmount.

use crate::config::Config;
use anyhow::{bail, Context};
use litefs_store::{Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flags of `litefs mount` (LiteFS's, plus `-demo`).
#[derive(Debug, clap::Args)]
pub(crate) struct MountArgs {
    /// Config file path (default: ./litefs.yml, ~/litefs.yml, /etc/litefs.yml).
    #[arg(long = "config")]
    config: Option<PathBuf>,
    /// Do not expand environment variables in the config.
    #[arg(long = "no-expand-env")]
    no_expand_env: bool,
    /// Leave the mount in place on exit (accepted for LiteFS compatibility).
    #[arg(long = "skip-unmount")]
    skip_unmount: bool,
    /// Log every FUSE request.
    #[arg(long = "fuse.debug")]
    fuse_debug: bool,
    /// Debug logging.
    #[arg(long = "debug")]
    debug: bool,
    /// Accepted for LiteFS compatibility (trace log to stdout).
    #[arg(long = "tracing")]
    tracing: bool,
    /// Run with the embedded default config: a static primary with its data
    /// and mount under ./litefs-demo (no config file needed).
    #[arg(long = "demo")]
    demo: bool,
    /// Command to run once mounted (overrides `exec`).
    #[arg(last = true)]
    cmd: Vec<String>,
}

pub(crate) fn run(args: MountArgs) -> anyhow::Result<ExitCode> {
    let config = if args.demo {
        let base = std::env::current_dir()
            .context("current directory")?
            .join("litefs-demo");
        std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
        Config::embedded_default(&base)
    } else {
        let path = crate::config::find_config(args.config.as_deref())?;
        Config::load(&path, !args.no_expand_env)?
    };
    config.validate()?;
    config.check_dirs()?;
    crate::logging::init(&config, args.debug || args.fuse_debug);
    let cmds = crate::exec::plan(&config, &args.cmd)?;

    let data = &config.data.dir;
    std::fs::create_dir_all(data).with_context(|| format!("create data.dir {}", data.display()))?;
    check_backup_path(&config)?;
    clear_stale_mount(&config.fuse.dir)?;
    std::fs::create_dir_all(&config.fuse.dir)
        .with_context(|| format!("create fuse.dir {}", config.fuse.dir.display()))?;

    let node_id = node_id();
    let opts = StoreOptions {
        compress: config.data.compress,
        node_id,
    };
    let started = std::time::Instant::now();
    let store = Arc::new(
        Store::open(data, opts).with_context(|| format!("open data.dir {}", data.display()))?,
    );
    tracing::info!(
        dbs = store.dbs().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store recovered"
    );

    crate::node::init_role(&config, &store)?;

    let mount_opts = litefs_fuse::MountOptions {
        allow_other: config.fuse.allow_other,
        passthrough: config.fuse.passthrough,
        capture_interval: config.fuse.capture_interval,
        ..Default::default()
    };
    // Catch SIGINT and SIGTERM before the mount exists: one that arrives
    // while the node is still starting must unmount cleanly once it can,
    // not kill the process and leave a dead mount behind.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("install signal handlers")?;
    let mounted = litefs_fuse::mount(store.clone(), &config.fuse.dir, &mount_opts)
        .with_context(|| format!("mount {}", config.fuse.dir.display()))?;
    tracing::info!(
        dir = %config.fuse.dir.display(),
        primary = store.role().is_primary(),
        lease = config.lease.kind.map_or("", |k| k.as_str()),
        backup = config.backup.kind.as_str(),
        "mounted"
    );
    let running = crate::node::Running::start(&config, store.clone(), mounted.fence(), node_id)?;
    let backup = spawn_backup(&config, store.clone(), mounted.fence(), &running)?;

    let stop = Arc::new(AtomicBool::new(false));
    let retention = spawn_retention(
        store.clone(),
        config.data.retention,
        config.data.retention_monitor_interval,
        stop.clone(),
    );

    let cancel_exec = Arc::new(AtomicBool::new(false));
    let mut app =
        crate::exec::App::new((!cmds.is_empty()).then(|| {
            crate::exec::start(store.clone(), cmds, config.skip_sync, cancel_exec.clone())
        }));
    let why = wait_for_signal_or_unmount(&mounted, &running, signals, &mut app);
    cancel_exec.store(true, Ordering::Release);
    stop.store(true, Ordering::Relaxed);
    // Held until the mount is gone: a node that stepped down keeps its WAL
    // writers out to the end.
    // The backup's last sync first, while this node may still be primary.
    if let Some((stop_backup, thread)) = backup {
        stop_backup.store(true, Ordering::Release);
        let _ = thread.join();
    }
    let parked = running.stop();
    if why == Stop::Failed {
        mounted.unmount().context("unmount")?;
        let _ = retention.join();
        store.save_checksums();
        return Ok(ExitCode::FAILURE);
    }
    let code = match why {
        Stop::App(code) => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    };
    if why == Stop::Unmounted {
        // Nothing can reach the databases any more; finish what capture
        // has queued and say why we stop.
        tracing::error!(dir = %config.fuse.dir.display(), "the mount was removed from outside (fusermount3 -u or umount); exiting");
        drop(mounted);
        let _ = retention.join();
        store.save_checksums();
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("unmounting");
    if args.skip_unmount {
        std::mem::forget(mounted);
    } else {
        mounted.unmount().context("unmount")?;
        // Nothing can write any more: a fast, verified next start.
        store.save_checksums();
    }
    let _ = retention.join();
    drop(parked);
    Ok(code)
}

/// A random node ID per start, as LiteFS does.
fn node_id() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return std::process::id() as u64;
    }
    u64::from_ne_bytes(b)
}

/// A FUSE mount whose daemon died leaves the directory answering ENOTCONN;
/// detach it so we can mount again, or say exactly how to.
fn clear_stale_mount(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(dir = %dir.display(), "stale mount from a previous run; detaching it");
            let ok = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                bail!("fuse.dir {} is a stale mount; run `fusermount3 -u -z {}` (or `umount -l`) and start again", dir.display(), dir.display());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Why `litefs mount` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGINT or SIGTERM (with no application running).
    Signal,
    /// The application exited with this code.
    App(u8),
    /// The mount was removed from outside.
    Unmounted,
    /// The node cannot run (logged where it happened).
    Failed,
}

/// Waits for SIGINT/SIGTERM (passed on to the application while one runs,
/// and then for it to exit), for the application to exit, for the mount
/// to disappear, or for the node to fail.
fn wait_for_signal_or_unmount(
    mounted: &litefs_fuse::Mounted,
    running: &crate::node::Running,
    mut signals: signal_hook::iterator::Signals,
    app: &mut crate::exec::App,
) -> Stop {
    loop {
        for sig in signals.pending() {
            if !app.running() {
                tracing::info!(signal = sig, "signal received");
                return Stop::Signal;
            }
            app.signal(sig);
        }
        if let crate::exec::AppEvent::Ended(code) = app.poll() {
            return Stop::App(code);
        }
        if !mounted.is_serving() {
            return Stop::Unmounted;
        }
        if running.failed() {
            return Stop::Failed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes sure `backup.path` (with `backup.type: file`) is a writable
/// directory, before anything is mounted.
fn check_backup_path(config: &Config) -> anyhow::Result<()> {
    if config.backup.kind != crate::config::BackupType::File {
        return Ok(());
    }
    let path = &config.backup.path;
    std::fs::create_dir_all(path)
        .with_context(|| format!("backup.path {}: cannot create it", path.display()))?;
    let probe = path.join(".litefs-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("backup.path {}: not writable", path.display()))?;
    Ok(())
}

/// Starts the continuous backup (`backup.type: file`); `None` without one.
#[allow(clippy::type_complexity)]
fn spawn_backup(
    config: &Config,
    store: Arc<Store>,
    fence: Arc<dyn litefs_store::Fence>,
    running: &crate::node::Running,
) -> anyhow::Result<Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>> {
    use crate::config::BackupType;
    if config.backup.kind == BackupType::LitefsCloud {
        tracing::warn!(
            "backup.type litefs-cloud is not supported (LiteFS Cloud is gone); no backup is made"
        );
    }
    let Some(target) = crate::node::backup_target(config) else {
        return Ok(None);
    };
    let path = target.describe();
    let backup = Arc::new(litefs_backup::Backup::new(
        store,
        fence,
        litefs_backup::BackupOptions {
            target,
            interval: config.backup.sync_interval.max(Duration::from_millis(10)),
            levels: config.backup.levels.iter().map(|l| l.interval).collect(),
            snapshot_interval: config.backup.snapshot.interval,
            retention: config.backup.snapshot.retention,
            l0_retention: config.backup.l0_retention,
        },
    ));
    let b2 = backup.clone();
    running.add_metrics(Arc::new(move || b2.exposition()));
    let b3 = backup.clone();
    running.add_info("backup", Arc::new(move || b3.info()));
    tracing::info!(backup = %path, interval_ms = config.backup.sync_interval.as_millis() as u64, "backup on (Litestream 0.5 layout)");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("litefs-backup".into())
        .spawn(move || backup.run(&s2))
        .context("start the backup thread")?;
    Ok(Some((stop, thread)))
}

fn spawn_retention(
    store: Arc<Store>,
    retention: Duration,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let every = every.max(Duration::from_millis(100));
        let mut next = std::time::Instant::now() + every;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if std::time::Instant::now() < next {
                continue;
            }
            next = std::time::Instant::now() + every;
            for db in store.dbs() {
                match db.enforce_retention(retention) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(db = db.name(), removed = n, "retention"),
                    Err(e) => tracing::error!(db = db.name(), error = %e, "retention failed"),
                }
            }
        }
    })
}
