//! The one place that starts child processes.
//!
//! A child is a fresh execution of this same binary (`/proc/self/exe` on Linux, so a rebuilt
//! or moved binary still works). Its command line is built from scratch, never forwarded: empty
//! for an application (whose `main` calls [`init`](crate::init) first), or the arguments that
//! make libtest run only the `test_support!()` helper in a test binary. It learns who it is
//! from one environment variable (process name, depth, log level).
//!
//! Its connection to the parent is one end of a socket pair, inherited as its standard input:
//! there is no name anyone could connect to, and nothing to bind or accept. The secret key
//! comes first on that socket, ahead of any frame, so it appears on no command line and in no
//! environment. A [`Process`](crate::Process)'s one call follows at once, so the child runs it
//! as soon as it is up, on its main thread and with blocking reads and writes. The
//! child opens with a hello that proves the key; if it exits, or sends no hello within the
//! start-up timeout, the caller gets an error, never a hang.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::current::{self, ProcessInfo};
use crate::error::{Error, ErrorKind, ExitStatus, Result};
use crate::transport::{Connection, OutFrame};

/// The environment variable that tells a re-executed binary it is a child.
pub(crate) const BOOTSTRAP_ENV: &str = "MULTIPROC_BOOTSTRAP";

/// How deep processes may nest before spawning is refused as runaway recursion.
pub(crate) const MAX_DEPTH: u32 = 16;

/// The default time a child has to start and connect back.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Set by [`init`](crate::init); spawning without it (or test support) would run the
/// application's `main` again in the child.
pub(crate) static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// What a child needs to know about itself; travels hex-encoded in [`BOOTSTRAP_ENV`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: ProcessInfo,
    pub(crate) depth: u32,
    pub(crate) log_level: u8,
    pub(crate) max_frame_len: u64,
    /// Stall before connecting back; lets tests exercise the start-up timeout.
    pub(crate) stall: bool,
    /// A [`Process`](crate::Process): one call follows the key; the child runs it and exits.
    pub(crate) one_call: bool,
    /// Started by the parent's main thread, which ends only with the parent (see the child's
    /// `watch_parent`).
    pub(crate) spawned_by_main_thread: bool,
}

impl Bootstrap {
    pub(crate) fn encode(&self) -> String {
        let bytes = postcard::to_stdvec(self).expect("a bootstrap always serializes");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn decode(hex: &str) -> Option<Self> {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect();
        postcard::from_bytes(&bytes?).ok()
    }
}

/// The `test_support!()` helper test of a test binary.
#[doc(hidden)]
#[derive(Debug)]
pub struct TestHarness {
    module_path: &'static str,
}

impl TestHarness {
    #[doc(hidden)]
    pub const fn new(module_path: &'static str) -> Self {
        TestHarness { module_path }
    }

    /// The helper's test name as libtest knows it: the module path without the crate name.
    fn test_name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_, rest)) => format!("{rest}::__multiproc_child"),
            None => "__multiproc_child".to_string(),
        }
    }
}

inventory::collect!(TestHarness);

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
    let harness = inventory::iter::<TestHarness>.into_iter().next();
    if !INIT_CALLED.load(Ordering::SeqCst) && harness.is_none() {
        return Err(Error::invalid_state(
            "multiproc::init() was not called: start main with #[multiproc::main] or call \
             multiproc::init() first (in tests: add multiproc::test_support!(); to the test file)",
        ));
    }

    let (ours, inherited) = crate::transport::child_pair()?;
    let bootstrap = Bootstrap {
        name: spec.name.clone(),
        identity: spec.identity.clone(),
        daemon: spec.daemon,
        parent: current::current_process(),
        depth: this.depth + 1,
        log_level: crate::logging::inherited_level(),
        max_frame_len: spec.max_frame_len as u64,
        stall: spec.stall,
        one_call: first_call.is_some(),
        spawned_by_main_thread: is_main_thread(),
    };
    let mut command = tokio::process::Command::new(executable());
    command
        .env(BOOTSTRAP_ENV, bootstrap.encode())
        .stdin(Stdio::from(inherited))
        .kill_on_drop(false);
    if let Some(harness) = harness {
        command.args([
            &harness.test_name(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        if !output_shown() {
            command.stdout(Stdio::null());
        }
    }
    let spawned = command.spawn();
    // The command holds our copy of the child's end; only the child may keep it open, so
    // that its death is the end of the stream.
    drop(command);
    let mut child =
        spawned.map_err(|error| Error::io(&format!("starting {}", spec.name), error))?;
    let pid = child.id().expect("a child that was just spawned has a pid");
    current::remember_child(
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
        let started = {
            let hello = tokio::time::timeout(
                spec.start_timeout,
                crate::transport::await_child(&mut connection, pid, spec.max_frame_len),
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
        };
        started.map(|()| connection)
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
            current::forget_child(pid);
            Err(error.with_pid(pid))
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

/// Whether the test runner shows the test's output (nextest always runs with `--nocapture`).
fn output_shown() -> bool {
    std::env::args().any(|arg| arg == "--nocapture" || arg == "--show-output")
}
