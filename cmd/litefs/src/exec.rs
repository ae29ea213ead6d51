//! `exec` and `litefs mount -- CMD`: the application as the node's child,
//! as LiteFS runs it. The commands start once the node is the primary or
//! has caught up with one (unless `skip-sync`); all but the last must
//! succeed in turn; the last is the application: SIGINT and SIGTERM are
//! passed on to it, and when it exits the node stops with its exit code.
//! Every command gets SIGTERM if the node dies without stopping it (a
//! SIGKILL, a crash): an application never outlives its node.

use crate::config::Config;
use anyhow::{bail, Context};
use litefs_store::{Store, LAG_UNKNOWN_MS};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// One command: its words, and how it was written (for messages).
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    argv: Vec<String>,
    shown: String,
}

/// The commands to run on this node: `-- CMD` if given, else the `exec`
/// entries this node qualifies for (`if-candidate` ones only on a
/// candidate), each split into words shell-style (no shell runs them).
pub(crate) fn plan(config: &Config, override_cmd: &[String]) -> anyhow::Result<Vec<Cmd>> {
    if !override_cmd.is_empty() {
        return Ok(vec![Cmd {
            argv: override_cmd.to_vec(),
            shown: override_cmd.join(" "),
        }]);
    }
    let mut out = Vec::new();
    for (i, e) in config.exec.iter().enumerate() {
        if e.if_candidate && !config.lease.candidate {
            continue;
        }
        let argv = shlex::split(&e.cmd)
            .with_context(|| format!("exec[{i}].cmd {:?}: unbalanced quotes", e.cmd))?;
        if argv.is_empty() {
            bail!("exec[{i}].cmd is empty");
        }
        out.push(Cmd {
            argv,
            shown: e.cmd.clone(),
        });
    }
    Ok(out)
}

/// What the starter thread reports.
pub(crate) enum Started {
    /// The commands before it succeeded: start the application. It is
    /// spawned by the thread that polls [`App`] (the node's main thread),
    /// because its death signal fires when the thread that spawned it ends.
    Ready(Cmd),
    /// A command before it failed.
    Failed(String),
}

/// Starts the commands on a thread once the node is ready; the receiver
/// gets the application (or why it did not start). `cancel` stops the
/// wait (the node is stopping).
pub(crate) fn start(
    store: Arc<Store>,
    cmds: Vec<Cmd>,
    skip_sync: bool,
    cancel: Arc<AtomicBool>,
) -> Receiver<Started> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("litefs-exec".into())
        .spawn(move || {
            if !wait_ready(&store, skip_sync, &cancel) {
                return;
            }
            let _ = tx.send(run(cmds, &cancel));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the exec thread");
    }
    rx
}

/// Waits until this node is the primary or has caught up with one; false
/// if cancelled first.
fn wait_ready(store: &Store, skip_sync: bool, cancel: &AtomicBool) -> bool {
    let role = store.role();
    let mut logged = false;
    while !cancel.load(Ordering::Acquire) {
        if skip_sync || role.is_primary() || role.lag_ms() != LAG_UNKNOWN_MS {
            return true;
        }
        if !logged {
            tracing::info!("exec: waiting until this node is the primary or in sync with it");
            logged = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn run(mut cmds: Vec<Cmd>, cancel: &AtomicBool) -> Started {
    let Some(app) = cmds.pop() else {
        return Started::Failed("nothing to run".into());
    };
    for c in cmds {
        if cancel.load(Ordering::Acquire) {
            return Started::Failed("stopping".into());
        }
        tracing::info!(cmd = %c.shown, "exec: running");
        match command(&c).status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Started::Failed(format!("exec: `{}` failed: {}", c.shown, describe(s)))
            }
            Err(e) => return Started::Failed(format!("exec: cannot run `{}`: {e}", c.shown)),
        }
    }
    Started::Ready(app)
}

/// The command, set to get SIGTERM when the thread that spawns it ends:
/// with the whole process when that is the main thread, so a node killed
/// by SIGKILL or a crash does not leave its application running, orphaned,
/// on a mount that is gone.
fn command(c: &Cmd) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&c.argv[0]);
    cmd.args(&c.argv[1..]);
    let parent = std::process::id();
    // SAFETY: the hook runs in the child between fork and exec and only
    // makes async-signal-safe system calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The node died before the death signal was armed.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd
}

/// `exit code N` or `killed by signal N`.
pub(crate) fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// The exit code the node ends with when the application ended with `s`
/// (a signal `N` gives `128 + N`, as shells report it).
pub(crate) fn exit_code(s: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
        _ => 1,
    }
}

/// The application's side of the node's wait loop.
pub(crate) struct App {
    rx: Option<Receiver<Started>>,
    child: Option<(Child, Cmd)>,
}

/// What the application did since the last look.
pub(crate) enum AppEvent {
    /// Nothing new.
    Running,
    /// It ended (or never started): the node stops with this code.
    Ended(u8),
}

impl App {
    /// Watches what [`start`] reports (`None`: no application).
    pub(crate) fn new(rx: Option<Receiver<Started>>) -> App {
        App { rx, child: None }
    }

    /// Whether an application is running now.
    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Passes a signal on to the application.
    pub(crate) fn signal(&self, sig: i32) {
        if let Some((child, cmd)) = &self.child {
            tracing::info!(cmd = %cmd.shown, signal = sig, "passing the signal to the application");
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: plain kill(2) on our own child's PID.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// Checks on the application without blocking; starts it once the
    /// commands before it succeeded. Call it from the main thread (see
    /// [`Started::Ready`]).
    pub(crate) fn poll(&mut self) -> AppEvent {
        if let Some(rx) = &self.rx {
            match rx.try_recv() {
                Ok(Started::Ready(cmd)) => {
                    self.rx = None;
                    tracing::info!(cmd = %cmd.shown, "exec: starting the application");
                    match command(&cmd).spawn() {
                        Ok(child) => self.child = Some((child, cmd)),
                        Err(e) => {
                            let why = format!("exec: cannot start `{}`: {e}", cmd.shown);
                            tracing::error!(reason = %why, "the application did not start; stopping");
                            return AppEvent::Ended(1);
                        }
                    }
                }
                Ok(Started::Failed(why)) => {
                    tracing::error!(reason = %why, "the application did not start; stopping");
                    self.rx = None;
                    return AppEvent::Ended(1);
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.rx = None,
            }
        }
        if let Some((child, cmd)) = &mut self.child {
            match child.try_wait() {
                Ok(Some(s)) => {
                    tracing::info!(cmd = %cmd.shown, status = %describe(s), "the application exited; stopping");
                    self.child = None;
                    return AppEvent::Ended(exit_code(s));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot check on the application; stopping");
                    self.child = None;
                    return AppEvent::Ended(1);
                }
            }
        }
        AppEvent::Running
    }
}
