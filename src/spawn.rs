//! The one place that starts child processes.
//!
//! A child is a fresh execution of this same binary (`/proc/self/exe` on Linux, so a rebuilt
//! or moved binary still works). Its command line is built from scratch, never forwarded: empty
//! for an application (whose `main` calls [`init`](crate::init) first), or the arguments that
//! make libtest run only the `test_support!()` helper in a test binary. It learns who it is
//! from one environment variable (the [`bootstrap`](crate::bootstrap) contract).
//!
//! Its connection to the parent is one end of a socket pair, inherited as its standard input:
//! there is no name anyone could connect to, and nothing to bind or accept. The secret key
//! comes first on that socket, ahead of any frame, so it appears on no command line and in no
//! environment. A [`Process`](crate::Process)'s one call follows at once, so the child runs it
//! as soon as it is up, on its main thread and with blocking reads and writes. The
//! child opens with a hello that proves the key; if it exits, or sends no hello within the
//! start-up timeout, the caller gets an error, never a hang.

use std::process::Stdio;
use std::time::Duration;

use crate::bootstrap::{BOOTSTRAP_ENV, Bootstrap, INIT_CALLED, MAX_DEPTH};
use crate::current::{self, ProcessInfo};
use crate::error::{Error, ErrorKind, ExitStatus, Result};
use crate::transport::{Connection, OutFrame};
use crate::{reaper, test_harness};

/// The default time a child has to start and connect back.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start one child.
#[derive(Debug, Clone)]
pub(crate) struct ChildSpec {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// Terminated rather than joined when this process exits (daemons, pool workers).
    pub(crate) stop_at_exit: bool,
    pub(crate) start_timeout: Duration,
    pub(crate) max_frame_len: usize,
    pub(crate) stall: bool,
}

/// A started, connected, authenticated child.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) connection: Connection,
}

/// Starts a child and waits until it has connected and proved the key.
pub(crate) async fn spawn(spec: &ChildSpec) -> Result<Spawned> {
    spawn_with_call(spec, None).await
}

/// Starts a child whose one call travels on its standard input right after the key, so it
/// can run as soon as the child is up; the child exits once it has answered it.
pub(crate) async fn spawn_with_call(
    spec: &ChildSpec,
    first_call: Option<OutFrame>,
) -> Result<Spawned> {
    check_may_spawn(spec)?;
    let (ours, inherited) = crate::transport::child_pair()?;
    let mut command = child_command(spec, first_call.is_some());
    command.stdin(Stdio::from(inherited));
    let spawned = command.spawn();
    // The command holds our copy of the child's end; only the child may keep it open, so
    // that its death is the end of the stream.
    drop(command);
    let mut child =
        spawned.map_err(|error| Error::io(&format!("starting {}", spec.name), error))?;
    let pid = child.id().expect("a child that was just spawned has a pid");
    reaper::remember_child(
        ProcessInfo {
            name: spec.name.clone(),
            pid,
            daemon: spec.daemon,
        },
        spec.stop_at_exit,
    );
    let outcome = async {
        // The key goes out while the child is still being loaded.
        let mut connection = crate::transport::hand_over(ours, spec.max_frame_len)?;
        if let Some(call) = first_call {
            connection.writer.send_frame(call)?;
        }
        await_hello(spec, &mut child, pid, &mut connection).await?;
        Ok::<_, Error>(connection)
    }
    .await;
    match outcome {
        Ok(connection) => Ok(Spawned {
            child,
            pid,
            connection,
        }),
        Err(error) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            reaper::forget_child(pid);
            Err(error.with_pid(pid))
        }
    }
}

/// Refuses to start a child from a daemon, past [`MAX_DEPTH`], or before [`init`](crate::init).
fn check_may_spawn(spec: &ChildSpec) -> Result<()> {
    let this = current::this();
    if this.daemon {
        return Err(Error::invalid_state(format!(
            "{} is a daemon, and daemonic processes are not allowed to have children",
            this.name
        )));
    }
    if this.depth >= MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::Spawn,
            format!(
                "refusing to start {}: processes are already nested {MAX_DEPTH} deep, \
                 which looks like runaway recursion",
                spec.name
            ),
        ));
    }
    if !INIT_CALLED.load(std::sync::atomic::Ordering::SeqCst) && test_harness::harness().is_none() {
        return Err(Error::invalid_state(
            "multiproc::init() was not called: start main with #[multiproc::main] or call \
             multiproc::init() first (in tests: add multiproc::test_support!(); to the test file)",
        ));
    }
    Ok(())
}

/// This binary, run again with the child's [`Bootstrap`] in its environment.
fn child_command(spec: &ChildSpec, one_call: bool) -> tokio::process::Command {
    let this = current::this();
    let bootstrap = Bootstrap {
        name: spec.name.clone(),
        identity: spec.identity.clone(),
        daemon: spec.daemon,
        parent: current::current_process(),
        depth: this.depth + 1,
        log_level: crate::logging::inherited_level(),
        forward_level: crate::logging::forwarded_level(),
        max_frame_len: spec.max_frame_len as u64,
        stall: spec.stall,
        one_call,
        spawned_by_main_thread: is_main_thread(),
    };
    let mut command = tokio::process::Command::new(executable());
    command
        .env(BOOTSTRAP_ENV, bootstrap.encode())
        .kill_on_drop(false);
    if let Some(harness) = test_harness::harness() {
        harness.configure(&mut command);
    }
    command
}

/// Waits for the child's hello, or says how it failed: it exited, or it stayed silent past
/// the start-up timeout.
async fn await_hello(
    spec: &ChildSpec,
    child: &mut tokio::process::Child,
    pid: u32,
    connection: &mut Connection,
) -> Result<()> {
    let hello = tokio::time::timeout(
        spec.start_timeout,
        crate::transport::await_child(connection, pid, spec.max_frame_len),
    );
    tokio::pin!(hello);
    let exited = |status: Option<ExitStatus>| {
        Error::new(
            ErrorKind::Spawn,
            format!(
                "{} (pid {pid}) exited during start-up ({}); does this binary call \
                 multiproc::init() first in main?",
                spec.name,
                status.map_or("status unknown".to_string(), |s| s.to_string()),
            ),
        )
    };
    tokio::select! {
        biased;
        hello = &mut hello => match hello {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                // The stream ended: say how the child did, if it is gone.
                match tokio::time::timeout(Duration::from_millis(250), child.wait()).await {
                    Ok(status) => Err(exited(status.map(ExitStatus::from_std).ok())),
                    Err(_) => Err(error),
                }
            }
            Err(_) => Err(Error::new(
                ErrorKind::Spawn,
                format!(
                    "{} (pid {pid}) did not say hello within {:?}; it was killed",
                    spec.name, spec.start_timeout
                ),
            )),
        },
        status = child.wait() => {
            // A child handed a quick first call may finish it and exit at once; its hello
            // and its reply are still in the socket.
            match tokio::time::timeout(Duration::from_millis(250), &mut hello).await {
                Ok(Ok(Ok(()))) => Ok(()),
                _ => Err(exited(status.map(ExitStatus::from_std).ok())),
            }
        }
    }
}

/// Whether this is the process's main thread. The child is started by the thread that builds
/// its bootstrap: nothing is awaited in between.
#[cfg(target_os = "linux")]
fn is_main_thread() -> bool {
    // SAFETY: gettid and getpid have no preconditions and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Elsewhere no child relies on a parent death signal (Linux's alone), so it does not matter.
#[cfg(not(target_os = "linux"))]
fn is_main_thread() -> bool {
    false
}

fn executable() -> std::path::PathBuf {
    let proc_self = std::path::Path::new("/proc/self/exe");
    if proc_self.exists() {
        proc_self.to_path_buf()
    } else {
        std::env::current_exe().expect("the path of the running executable")
    }
}
