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
//!
//! The caller shapes the child with a [`ChildConfig`], as with `std::process::Command`: its
//! environment, working directory, and where its stdout and stderr go (see
//! [`output`](crate::output)). The builders of `Process`, `Pool` and `Manager` share its
//! methods ([`child_config_methods!`]). Whatever the caller does to the environment, even
//! `env_clear`, the bootstrap variable is set last, so it always reaches the child; and the
//! key is never in the environment in the first place.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::bootstrap::{BOOTSTRAP_ENV, Bootstrap, INIT_CALLED, MAX_DEPTH};
use crate::current::{self, ProcessInfo};
use crate::error::{Error, ErrorKind, ExitStatus, Result};
use crate::output::{self, LineSink, OutputLines, StdStream};
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
    /// What the caller set: environment, working directory, stdout and stderr.
    pub(crate) config: Arc<ChildConfig>,
}

/// How the caller shaped a child, as with `std::process::Command`: set on a builder with the
/// methods of [`child_config_methods!`], applied by [`spawn`] to each child started with it
/// (every worker of a pool, replacements included).
#[derive(Debug, Default)]
pub(crate) struct ChildConfig {
    /// The changes to the inherited environment, in the order they were asked for, as
    /// `std::process::Command` records them (so an `env_clear` forgets earlier `env` calls).
    env: Vec<EnvChange>,
    current_dir: Option<PathBuf>,
    /// `None`: the default, which in a test binary may differ from `Inherit` (see
    /// [`test_harness`]).
    stdout: Option<output::Stdio>,
    stderr: Option<output::Stdio>,
    /// Where the lines go when stdout or stderr is [`Lines`](output::Stdio::Lines).
    lines: Option<LineSink>,
}

#[derive(Debug)]
enum EnvChange {
    Set(OsString, OsString),
    Remove(OsString),
    Clear,
}

impl ChildConfig {
    pub(crate) fn env(&mut self, key: &OsStr, value: &OsStr) {
        self.env.push(EnvChange::Set(key.into(), value.into()));
    }

    pub(crate) fn env_remove(&mut self, key: &OsStr) {
        self.env.push(EnvChange::Remove(key.into()));
    }

    pub(crate) fn env_clear(&mut self) {
        self.env.push(EnvChange::Clear);
    }

    pub(crate) fn current_dir(&mut self, dir: &Path) {
        self.current_dir = Some(dir.into());
    }

    pub(crate) fn stdout(&mut self, stdio: output::Stdio) {
        self.stdout = Some(stdio);
    }

    pub(crate) fn stderr(&mut self, stdio: output::Stdio) {
        self.stderr = Some(stdio);
    }

    /// The stream of the children's lines, if stdout or stderr is
    /// [`Lines`](output::Stdio::Lines); call once, before the config is shared.
    pub(crate) fn pipe_lines(&mut self) -> Option<OutputLines> {
        let piped = |stdio: &Option<output::Stdio>| matches!(stdio, Some(output::Stdio::Lines));
        if !piped(&self.stdout) && !piped(&self.stderr) {
            return None;
        }
        let (sink, lines) = output::channel();
        self.lines = Some(sink);
        Some(lines)
    }

    /// Applies the environment, directory and output to `command`, after the test harness
    /// (an explicit choice overrides the harness's default) and before the bootstrap
    /// variable (which nothing here may remove).
    fn apply(&self, command: &mut tokio::process::Command) -> Result<()> {
        for change in &self.env {
            match change {
                EnvChange::Set(key, value) => command.env(key, value),
                EnvChange::Remove(key) => command.env_remove(key),
                EnvChange::Clear => command.env_clear(),
            };
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if let Some(stdout) = &self.stdout {
            command.stdout(stdout.to_std()?);
        }
        if let Some(stderr) = &self.stderr {
            command.stderr(stderr.to_std()?);
        }
        Ok(())
    }

    /// Starts reading the pipes of a child whose stdout or stderr is `Lines`.
    fn read_lines(&self, child: &mut tokio::process::Child, name: &str, pid: u32) {
        let Some(sink) = &self.lines else { return };
        if let Some(stdout) = child.stdout.take() {
            let in_test = test_harness::harness().is_some();
            sink.read(stdout, name.to_string(), pid, StdStream::Stdout, in_test);
        }
        if let Some(stderr) = child.stderr.take() {
            sink.read(stderr, name.to_string(), pid, StdStream::Stderr, false);
        }
    }
}

/// The builder methods that shape a child ([`ChildConfig`]), for a builder with a
/// `child: ChildConfig` field; `$whom` says whom they shape, in the docs ("the child",
/// "every worker").
macro_rules! child_config_methods {
    ($whom:literal) => {
        #[doc = concat!("Sets the environment variable `key` to `value` for ", $whom, ", as")]
        /// [`std::process::Command::env`]. By default a child inherits this process's
        /// environment.
        pub fn env(mut self, key: impl AsRef<std::ffi::OsStr>, value: impl AsRef<std::ffi::OsStr>) -> Self {
            self.child.env(key.as_ref(), value.as_ref());
            self
        }

        #[doc = concat!("Sets several environment variables for ", $whom, ", as")]
        /// [`std::process::Command::envs`].
        pub fn envs<I, K, V>(mut self, vars: I) -> Self
        where
            I: IntoIterator<Item = (K, V)>,
            K: AsRef<std::ffi::OsStr>,
            V: AsRef<std::ffi::OsStr>,
        {
            for (key, value) in vars {
                self.child.env(key.as_ref(), value.as_ref());
            }
            self
        }

        #[doc = concat!("Removes the environment variable `key` from what ", $whom, " inherits, as")]
        /// [`std::process::Command::env_remove`].
        pub fn env_remove(mut self, key: impl AsRef<std::ffi::OsStr>) -> Self {
            self.child.env_remove(key.as_ref());
            self
        }

        #[doc = concat!("Clears the environment ", $whom, " inherits, as")]
        /// [`std::process::Command::env_clear`]: only the variables set after this call
        /// reach the child. The crate's own start-up still works: what a child needs to
        /// know it is a child travels in a variable that is set after yours and removed by
        /// the child as it starts, and the key is handed over on a socket, never in the
        /// environment.
        pub fn env_clear(mut self) -> Self {
            self.child.env_clear();
            self
        }

        #[doc = concat!("Sets the working directory of ", $whom, ", as")]
        /// [`std::process::Command::current_dir`]; by default, this process's. A directory
        /// that does not exist makes the start fail with an [`Io`](crate::ErrorKind::Io)
        /// error.
        pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
            self.child.current_dir(dir.as_ref());
            self
        }

        #[doc = concat!("Where the standard output of ", $whom, " goes: inherited by default;")]
        /// see [`Stdio`](crate::Stdio) (a [`File`](std::fs::File) converts into one).
        pub fn stdout(mut self, stdout: impl Into<$crate::Stdio>) -> Self {
            self.child.stdout(stdout.into());
            self
        }

        #[doc = concat!("Where the standard error of ", $whom, " goes: inherited by default;")]
        /// see [`Stdio`](crate::Stdio) (a [`File`](std::fs::File) converts into one). Panic
        /// messages and the output of `log_to_stderr` go there too.
        pub fn stderr(mut self, stderr: impl Into<$crate::Stdio>) -> Self {
            self.child.stderr(stderr.into());
            self
        }
    };
}
pub(crate) use child_config_methods;

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
    let mut command = child_command(spec, first_call.is_some())?;
    command.stdin(Stdio::from(inherited));
    let spawned = command.spawn();
    // The command holds our copy of the child's end; only the child may keep it open, so
    // that its death is the end of the stream.
    drop(command);
    let mut child =
        spawned.map_err(|error| Error::io(&format!("starting {}", spec.name), error))?;
    let pid = child.id().expect("a child that was just spawned has a pid");
    spec.config.read_lines(&mut child, &spec.name, pid);
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

/// This binary, run again with the caller's configuration and the child's [`Bootstrap`] in
/// its environment.
fn child_command(spec: &ChildSpec, one_call: bool) -> Result<tokio::process::Command> {
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
    // The handles decide when a child is stopped (`Process::kill_on_drop`, a pool's drop),
    // never tokio's `Child`.
    command.kill_on_drop(false);
    if let Some(harness) = test_harness::harness() {
        harness.configure(&mut command);
    }
    spec.config.apply(&mut command)?;
    command.env(BOOTSTRAP_ENV, bootstrap.encode());
    Ok(command)
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
