//! [`Process`]: one function, or one [`Run`] value, in a child process of its own.
//!
//! The Rust form of Python's `multiprocessing.Process`. A process is built with
//! [`Process::new`] (a `#[worker]` function and its arguments) or [`Process::from_run`] (a
//! value of yours that implements [`Run`]), configured with [`name`](ProcessBuilder::name),
//! [`daemon`](ProcessBuilder::daemon) and the options below, and started with
//! [`start`](ProcessBuilder::start).
//! [`join`](Process::join) waits for it and hands back what the function returned.
//!
//! ```no_run
//! use multiproc::{worker, Process};
//!
//! #[worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[multiproc::main]
//! async fn main() -> multiproc::Result<()> {
//!     let p = Process::new(square, (7,)).name("squarer").start().await?;
//!     println!("{} has pid {:?}", p.name(), p.pid());
//!     assert_eq!(p.join().await?, 49);
//!     assert_eq!(p.exitcode(), Some(0));
//!     Ok(())
//! }
//! ```
//!
//! A process starts once: [`start`](ProcessBuilder::start) consumes the builder, so starting
//! twice, or joining a process that was never started, does not compile (Python raises at
//! run time):
//!
//! ```compile_fail
//! # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
//! # async fn demo() -> multiproc::Result<()> {
//! let builder = multiproc::Process::new(square, (7,));
//! let p = builder.start().await?;
//! let q = builder.start().await?; // error: use of moved value
//! # Ok(()) }
//! ```
//!
//! ```compile_fail
//! # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
//! # async fn demo() -> multiproc::Result<()> {
//! let builder = multiproc::Process::new(square, (7,));
//! builder.join().await?; // error: a builder has no join
//! # Ok(()) }
//! ```
//!
//! # Shaping the child
//!
//! As with `std::process::Command`, the builder sets the child's environment
//! ([`env`](ProcessBuilder::env), [`envs`](ProcessBuilder::envs),
//! [`env_remove`](ProcessBuilder::env_remove), [`env_clear`](ProcessBuilder::env_clear)), its
//! working directory ([`current_dir`](ProcessBuilder::current_dir)), and where its
//! [`stdout`](ProcessBuilder::stdout) and [`stderr`](ProcessBuilder::stderr) go: inherited
//! (the default), discarded, to a file, or to this process as a stream of lines tagged with
//! the child's name and pid ([`Stdio::Lines`](crate::Stdio::Lines), read with
//! [`take_output`](Process::take_output); see the [`output`](crate::output) module).
//!
//! ```no_run
//! use futures::StreamExt;
//! use multiproc::{worker, Process, Stdio};
//!
//! #[worker]
//! fn report() { println!("{}", std::env::var("GREETING").unwrap_or_default()) }
//!
//! # async fn demo() -> multiproc::Result<()> {
//! let p = Process::new(report, ())
//!     .env_clear()
//!     .env("GREETING", "hello")
//!     .current_dir("/tmp")
//!     .stdout(Stdio::Lines)
//!     .start()
//!     .await?;
//! let mut lines = p.take_output().expect("stdout is piped");
//! assert_eq!(lines.next().await.map(|line| line.line).as_deref(), Some("hello"));
//! p.join().await?;
//! # Ok(()) }
//! ```
//!
//! # Dropping the handle
//!
//! By default, dropping every handle to a process leaves the child running, as dropping a
//! `std::process::Child` does: the crate still reaps it when it exits, and when this process
//! exits normally it is joined (or terminated, if it is a daemon; see below).
//! [`kill_on_drop(true)`](ProcessBuilder::kill_on_drop) makes the drop of the last handle
//! kill the child (`SIGKILL`) instead, as tokio's `Command::kill_on_drop` does.
//!
//! # Exit codes
//!
//! [`exitcode`](Process::exitcode) follows Python's table: `None` until the child has been
//! reaped; `0` after a normal return; `N` after `std::process::exit(N)`; `1` after a panic
//! (whose message and location, with the process name, go to the child's stderr and to
//! `join`'s error); `-N` when ended by signal `N`: `-15` after [`terminate`](Process::terminate),
//! `-9` after [`kill`](Process::kill), `-6` for `abort`, `-11` for a segmentation fault.
//!
//! # Daemons and exit
//!
//! When the process that started them exits normally, daemon children are terminated and the
//! others are joined, as in Python. A daemon may not start children of its own. When the
//! parent dies abruptly (even `SIGKILL`), every child it started exits: at once if the
//! parent's main thread started it, within about 100 ms otherwise.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::current;
use crate::error::{Error, Result};
use crate::output::OutputLines;
use crate::protocol::ToChild;
use crate::protocol::{decode, encode};
use crate::registry::{self, RUN_HINT, WORKER_HINT};
use crate::spawn::{self, ChildConfig, ChildSpec, DEFAULT_START_TIMEOUT, child_config_methods};
use crate::supervisor::{CallReply, FIRST_CALL_ID, Supervised};
use crate::transport::{DEFAULT_MAX_FRAME_LEN, OutFrame, check_payload_len};
use crate::worker::{Run, Value, Worker, worker_name};

/// A process that has not started yet: returned by [`Process::new`] and
/// [`Process::from_run`], configured with its methods, started with [`start`](Self::start).
#[must_use = "a process does nothing until it is started"]
pub struct ProcessBuilder<T> {
    job: Result<FirstCall>,
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    start_timeout: Duration,
    max_frame_len: usize,
    stall: bool,
    child: ChildConfig,
    kill_on_drop: bool,
    _output: PhantomData<fn() -> T>,
}

struct FirstCall {
    worker: &'static str,
    payload: Vec<u8>,
}

/// A started child process running one worker call. See the [module docs](self).
///
/// Cheap to clone: clones are handles to the same process. `T` is what the worker returns.
pub struct Process<T> {
    inner: Arc<Inner>,
    _output: PhantomData<fn() -> T>,
}

impl<T> Clone for Process<T> {
    fn clone(&self) -> Self {
        Process {
            inner: self.inner.clone(),
            _output: PhantomData,
        }
    }
}

struct Inner {
    name: String,
    daemon: bool,
    supervised: Supervised,
    reply: tokio::sync::Mutex<ReplySlot>,
    /// The child's lines, until [`Process::take_output`] takes them.
    output: Mutex<Option<OutputLines>>,
    kill_on_drop: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.kill_on_drop {
            self.supervised.signal(libc::SIGKILL);
        }
    }
}

enum ReplySlot {
    Waiting(oneshot::Receiver<CallReply>),
    Arrived(CallReply),
}

impl Process<()> {
    /// A process that will run `worker(args)`. Nothing starts until
    /// [`start`](ProcessBuilder::start).
    ///
    /// Takes the next number of this process's counter for its default name (`Process-N`),
    /// as every construction does in Python, named or not, started or not.
    #[allow(clippy::new_ret_no_self)] // Python's `Process(...)`, started by the builder
    pub fn new<W, M>(worker: W, args: W::Args) -> ProcessBuilder<W::Output>
    where
        W: Worker<M>,
    {
        let _ = worker;
        let job =
            registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT).and_then(|worker| {
                Ok(FirstCall {
                    worker,
                    payload: encode(&args, &format!("the arguments of `{worker}`"))?,
                })
            });
        ProcessBuilder::with_job(job, "Process")
    }

    /// A process that will run `value.run()` in the child: the analogue of subclassing
    /// Python's `Process`. The implementation must carry `#[multiproc::process]`.
    ///
    /// Named after its type, as Python names an instance of a subclass: `Worker-N` for a type
    /// `Worker` (generic parameters left out), `N` taken from the same counter as `Process-N`.
    pub fn from_run<R: Run>(value: R) -> ProcessBuilder<R::Output> {
        let job =
            registry::ensure_registered(std::any::type_name::<R>(), RUN_HINT).and_then(|worker| {
                Ok(FirstCall {
                    worker,
                    payload: encode(&value, &format!("the `{worker}` value"))?,
                })
            });
        ProcessBuilder::with_job(job, type_name_alone::<R>())
    }
}

/// The name of `T` without its path or generic parameters (`Worker` for
/// `mycrate::jobs::Worker<u64>`), as Python's `type(self).__name__`.
fn type_name_alone<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
}

impl<T: Value> ProcessBuilder<T> {
    /// `kind` starts the default name: `Process`, or the type of a [`Run`] value.
    fn with_job(job: Result<FirstCall>, kind: &str) -> Self {
        let identity = current::next_identity();
        ProcessBuilder {
            job,
            name: current::default_name(kind, &identity),
            identity,
            daemon: current::this().daemon,
            start_timeout: DEFAULT_START_TIMEOUT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            stall: false,
            child: ChildConfig::default(),
            kill_on_drop: false,
            _output: PhantomData,
        }
    }

    /// Sets the process name (default `Process-N`, or `Worker-N` for a [`Run`] type `Worker`
    /// started with [`Process::from_run`]). Names carry no meaning and need not be
    /// unique.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the process a daemon (default: the creating process's own flag). A daemon is
    /// terminated, not joined, when its parent exits, and may not start children.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// How long the child has to start and prove the key (default 10 s); past it, `start`
    /// fails with a [`Spawn`](crate::ErrorKind::Spawn) error and the child is killed.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The largest frame (arguments or result, encoded) either side accepts; default 256 MiB.
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    child_config_methods!("the child");

    /// Whether dropping the last handle to the started [`Process`] kills the child
    /// (`SIGKILL`), as tokio's `Command::kill_on_drop`. Default `false`: the child runs on,
    /// is reaped when it exits, and is joined (terminated, for a daemon) when this process
    /// exits normally. Either way, it exits if this process dies.
    pub fn kill_on_drop(mut self, kill_on_drop: bool) -> Self {
        self.kill_on_drop = kill_on_drop;
        self
    }

    /// Makes the child hang before it says hello, so that tests can exercise the start-up
    /// timeout. Not for production use.
    #[doc(hidden)]
    pub fn stall_at_start_for_tests(mut self) -> Self {
        self.stall = true;
        self
    }

    /// Starts the child process and sends it its call.
    ///
    /// # Errors
    ///
    /// - [`UnknownWorker`](crate::ErrorKind::UnknownWorker) if the function has no `#[worker]`.
    /// - [`Serialization`](crate::ErrorKind::Serialization) if the arguments fail to serialize.
    /// - [`FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if they exceed the frame limit.
    /// - [`InvalidState`](crate::ErrorKind::InvalidState) if the current process is a daemon.
    /// - [`Spawn`](crate::ErrorKind::Spawn) if the child exits or hangs during start-up.
    /// - [`Io`](crate::ErrorKind::Io) if it cannot be started: a
    ///   [`current_dir`](Self::current_dir) that does not exist, say.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped while the child is starting, the child is
    /// killed and reaped, and the builder is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo() -> multiproc::Result<()> {
    /// let p = multiproc::Process::new(square, (7,)).name("squarer").start().await?;
    /// assert_eq!(p.name(), "squarer");
    /// # Ok(()) }
    /// ```
    pub async fn start(mut self) -> Result<Process<T>> {
        let job = self.job?;
        check_payload_len(
            job.payload.len(),
            self.max_frame_len,
            &format!("the arguments of `{}`", job.worker),
        )?;
        let output = self.child.pipe_lines();
        let spec = ChildSpec {
            name: self.name.clone(),
            identity: self.identity,
            daemon: self.daemon,
            stop_at_exit: self.daemon,
            start_timeout: self.start_timeout,
            max_frame_len: self.max_frame_len,
            stall: self.stall,
            config: Arc::new(self.child),
        };
        // The call travels with the key, so the child runs it as soon as it is up (and it
        // cannot be lost if this runtime ends right after `start`).
        let call = ToChild::Call {
            id: FIRST_CALL_ID,
            worker: job.worker.to_string(),
            batch: false,
        };
        let call = OutFrame::new(&call, job.payload, self.max_frame_len)?;
        let spawned = spawn::spawn_with_call(&spec, Some(call)).await?;
        let (supervised, receiver) = Supervised::start_with_call(spawned, spec.name, job.worker);
        Ok(Process {
            inner: Arc::new(Inner {
                name: self.name,
                daemon: self.daemon,
                supervised,
                reply: tokio::sync::Mutex::new(ReplySlot::Waiting(receiver)),
                output: Mutex::new(output),
                kill_on_drop: self.kill_on_drop,
            }),
            _output: PhantomData,
        })
    }
}

impl<T> Process<T> {
    /// The process name: `Process-N` (`Worker-N` for a [`Run`] type `Worker`) unless set with
    /// [`name`](ProcessBuilder::name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.inner.daemon
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.supervised.pid()
    }

    /// True until the child has been reaped.
    pub fn is_alive(&self) -> bool {
        self.inner.supervised.exit_status().is_none()
    }

    /// The exit code in Python's convention (see the [module docs](self)); `None` until the
    /// child has been reaped.
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(crate::ExitStatus::exitcode)
    }

    /// How the child ended; `None` until it has been reaped.
    pub fn exit_status(&self) -> Option<crate::ExitStatus> {
        self.inner.supervised.exit_status()
    }

    /// Sends `SIGTERM`. The exit code becomes `-15` once the child has been reaped, unless it
    /// had already finished. Does nothing to a child that has already been reaped.
    pub fn terminate(&self) {
        self.inner.supervised.signal(libc::SIGTERM);
    }

    /// Sends `SIGKILL`; the exit code becomes `-9`. Otherwise as [`terminate`](Self::terminate).
    pub fn kill(&self) {
        self.inner.supervised.signal(libc::SIGKILL);
    }

    /// The lines the child writes to a stream set to [`Stdio::Lines`](crate::Stdio::Lines),
    /// tagged with its name and pid; see the [`output`](crate::output) module. Returns them
    /// once, to the first caller of any clone of this handle: `None` afterwards, and when
    /// neither stdout nor stderr was set to `Lines`.
    pub fn take_output(&self) -> Option<OutputLines> {
        self.inner.output.lock().expect("output lock").take()
    }
}

impl<T: Value> Process<T> {
    /// Waits for the child to finish and returns what its worker returned.
    ///
    /// May be called any number of times, from any number of tasks; each gets the result.
    ///
    /// # Errors
    ///
    /// - [`Panic`](crate::ErrorKind::Panic) if the worker panicked (message and location in
    ///   [`panic_info`](Error::panic_info)).
    /// - [`WorkerDied`](crate::ErrorKind::WorkerDied) if the child ended without returning:
    ///   killed, terminated, or `std::process::exit`; the error carries the exit status.
    /// - [`Serialization`](crate::ErrorKind::Serialization) if the result failed to serialize
    ///   in the child or to deserialize here.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the child running, and a later `join` works.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo() -> multiproc::Result<()> {
    /// let p = multiproc::Process::new(square, (4,)).start().await?;
    /// assert_eq!(p.join().await?, 16);
    /// assert_eq!(p.join().await?, 16); // joining again gives the same result
    /// # Ok(()) }
    /// ```
    pub async fn join(&self) -> Result<T> {
        let supervised = &self.inner.supervised;
        supervised.wait().await;
        let mut slot = self.inner.reply.lock().await;
        if let ReplySlot::Waiting(receiver) = &mut *slot {
            let reply = receiver.await.unwrap_or_else(|_| {
                Err(Error::worker_died(
                    supervised.name(),
                    supervised.pid(),
                    supervised.exit_status(),
                    "running its worker",
                ))
            });
            *slot = ReplySlot::Arrived(reply);
        }
        match &*slot {
            ReplySlot::Arrived(Ok(bytes)) => {
                decode(bytes, &format!("the result of {}", self.name()))
            }
            ReplySlot::Arrived(Err(error)) => Err(error.clone()),
            ReplySlot::Waiting(_) => unreachable!("the reply was just stored"),
        }
    }

    /// Waits at most `timeout` for the child to finish: `Ok(None)` if it is still running
    /// then, otherwise as [`join`](Self::join).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// # async fn demo() -> multiproc::Result<()> {
    /// let p = multiproc::Process::new(sleep_ms, (5_000,)).start().await?;
    /// assert!(p.join_timeout(Duration::from_millis(100)).await?.is_none());
    /// p.terminate();
    /// # Ok(()) }
    /// ```
    pub async fn join_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        match tokio::time::timeout(timeout, self.inner.supervised.wait()).await {
            Ok(_) => self.join().await.map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl<T> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.exit_status() {
            None => "started".to_string(),
            Some(status) => format!("stopped exitcode={}", status.exitcode()),
        };
        f.debug_struct("Process")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .field("state", &state)
            .finish()
    }
}

impl<T> fmt::Debug for ProcessBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("child", &self.child)
            .field("kill_on_drop", &self.kill_on_drop)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::type_name_alone;

    #[test]
    fn a_type_is_named_without_its_path_or_parameters() {
        assert_eq!(type_name_alone::<std::time::Duration>(), "Duration");
        assert_eq!(type_name_alone::<Vec<std::string::String>>(), "Vec");
        assert_eq!(type_name_alone::<u64>(), "u64");
    }
}
