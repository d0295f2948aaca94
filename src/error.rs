//! The one error type of the crate.
//!
//! Every fallible operation in `multiproc` returns [`Result<T>`](crate::Result), whose error is
//! [`Error`]. Like [`std::io::Error`], an `Error` is inspected through predicates
//! ([`is_timeout`](Error::is_timeout), [`is_worker_died`](Error::is_worker_died),
//! [`is_panic`](Error::is_panic), ...) or through its [`kind`](Error::kind), and its `Display`
//! says what happened, to which process or task, and what the caller can do about it.
//!
//! Errors that happen in a child process travel back as data: a panic carries its message and
//! source location ([`PanicInfo`]); a worker that died carries its pid and [`ExitStatus`]. No
//! error type of the user's is ever rebuilt from bytes, so an error can always be delivered
//! (Python's pool hangs when it cannot unpickle an exception).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A specialized `Result` whose error is [`multiproc::Error`](Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a child process ended, as the operating system reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitStatus {
    /// The process exited on its own with this code (`std::process::exit(code)` or a return).
    Code(i32),
    /// The process was ended by this signal (9 for `SIGKILL`, 15 for `SIGTERM`, ...).
    Signal(i32),
}

impl ExitStatus {
    /// The exit status in Python's convention: `N` for an exit with code `N`, `-N` for
    /// signal `N`.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => -signal,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    pub(crate) fn from_std(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal} ({})", signal_name(*signal)),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// A panic that happened in a child process: its message, where it was raised and, when the
/// child had `RUST_BACKTRACE` set, its backtrace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicInfo {
    /// The panic message (`"attempt to divide by zero"`, or what `panic!` was given).
    pub message: String,
    /// `file:line:column` of the panic, when the panic hook saw it.
    pub location: Option<String>,
    /// The name of the process that panicked (`"Process-1"`, `"PoolWorker-3"`).
    pub process: String,
    backtrace: Option<String>,
}

impl PanicInfo {
    /// A panic of the current process.
    pub(crate) fn new(
        message: String,
        location: Option<String>,
        backtrace: Option<String>,
    ) -> Self {
        PanicInfo {
            message,
            location,
            process: crate::current::current_process().name,
            backtrace,
        }
    }

    /// The child's stack when it panicked, printed as std prints a backtrace, if the child
    /// captured one: a child captures one when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) is
    /// set in its environment, which it inherits from its parent's, as
    /// [`Backtrace::capture`](std::backtrace::Backtrace::capture) decides. As std's panic
    /// hook does, it shows the frames from the panic down to the worker function (the frames
    /// of multiproc's dispatcher and of the runtime are left out) unless the variable is
    /// `full`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn boom() { panic!("boom") }
    /// # async fn demo() {
    /// // SAFETY: no other thread reads the environment yet.
    /// unsafe { std::env::set_var("RUST_BACKTRACE", "1") };
    /// let child = multiproc::Process::new(boom, ()).start().await.unwrap();
    /// let error = child.join().await.unwrap_err();
    /// let backtrace = error.panic_info().and_then(|panic| panic.backtrace());
    /// assert!(backtrace.unwrap().contains("boom"));
    /// # }
    /// ```
    pub fn backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }

    /// The backtrace as std's hook prints it after the message: `\nstack backtrace:\n` and
    /// the frames; empty without a backtrace.
    pub(crate) fn backtrace_section(&self) -> String {
        self.backtrace().map_or_else(String::new, |backtrace| {
            format!("\nstack backtrace:\n{}", backtrace.trim_end())
        })
    }

    /// `Process-1 panicked at src/main.rs:3:5: boom`, without the backtrace.
    fn summary(&self) -> String {
        match &self.location {
            Some(location) => format!("{} panicked at {location}: {}", self.process, self.message),
            None => format!("{} panicked: {}", self.process, self.message),
        }
    }
}

impl fmt::Display for PanicInfo {
    /// The summary line, then the backtrace, if any, under `stack backtrace:` as std prints
    /// it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.summary(), self.backtrace_section())
    }
}

/// What went wrong, without the context. Returned by [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A deadline passed before the operation completed.
    Timeout,
    /// The child process running the call ended before answering.
    WorkerDied,
    /// The worker function panicked.
    Panic,
    /// The call was cancelled (pool terminated, handle dropped) before it produced a result.
    Cancelled,
    /// The pool, queue, pipe or manager is closed and accepts no more work.
    Closed,
    /// A value could not be serialized or deserialized.
    Serialization,
    /// A peer failed to prove that it holds the secret key, or (TLS) a certificate the other
    /// side trusts.
    Auth,
    /// No `#[worker]` or `#[multiproc::process]` is registered under the function's name.
    UnknownWorker,
    /// No live node of a cluster can serve what a task needs (a label no node has, more of a
    /// resource than any node has); feature `nats`, see `multiproc::cluster::Needs`.
    Infeasible,
    /// A frame was larger than the configured maximum.
    FrameTooLarge,
    /// A child process could not be started, or did not connect back in time.
    Spawn,
    /// The operation is not valid in the object's current state (start twice, join before
    /// start, release an unlocked lock, ...).
    InvalidState,
    /// A queue had no item to give within the time allowed.
    Empty,
    /// A bounded queue had no room for the item within the time allowed.
    Full,
    /// A barrier was broken by a timeout or an abort.
    BrokenBarrier,
    /// The process holding a lock or semaphore died; it was released on its behalf.
    OwnerDied,
    /// A value was not found (a missing key on a manager), or a shared memory segment could
    /// not be opened here (no process holding it is left on this machine).
    NotFound,
    /// The object belongs to another user (a shared memory segment opened by name).
    PermissionDenied,
    /// An argument was invalid (a pool of 0 processes, ...).
    InvalidInput,
    /// The peer broke the protocol.
    Protocol,
    /// An operating-system I/O error.
    Io,
}

/// The error type of every `multiproc` operation.
///
/// Cheap to clone; a single failure (a worker's death) can be reported to many callers.
///
/// An `Error` is `Serialize + Deserialize`, so a `#[worker]` may return `multiproc::Result<T>`
/// (for example after using a [`Queue`](crate::Queue)). It travels as its kind, message, pid,
/// exit status and panic details; the underlying `source` error stays behind.
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "ErrorData", from = "ErrorData")]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    pid: Option<u32>,
    status: Option<ExitStatus>,
    panic: Option<PanicInfo>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

thread_local! {
    /// The error the last refusal of a `Deserialize` impl on this thread carried (see
    /// [`Error::refuse`]).
    static REFUSAL: std::cell::RefCell<Option<Error>> = const { std::cell::RefCell::new(None) };
}

impl Error {
    /// A new error of `kind` with a message saying what happened and what the caller can do.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                pid: None,
                status: None,
                panic: None,
                source: None,
            }),
        }
    }

    fn with(self, edit: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            kind: shared.kind,
            message: shared.message.clone(),
            pid: shared.pid,
            status: shared.status,
            panic: shared.panic.clone(),
            source: shared.source.clone(),
        });
        edit(&mut inner);
        Error {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn with_source(
        self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.with(|inner| inner.source = Some(Arc::new(source)))
    }

    pub(crate) fn with_pid(self, pid: u32) -> Self {
        self.with(|inner| inner.pid = Some(pid))
    }

    /// A child process died before answering.
    pub(crate) fn worker_died(
        process: &str,
        pid: u32,
        status: Option<ExitStatus>,
        doing: &str,
    ) -> Self {
        let how = match status {
            Some(status) => format!("ended with {status}"),
            None => "closed its connection".to_string(),
        };
        Error::new(
            ErrorKind::WorkerDied,
            format!("{process} (pid {pid}) {how} while {doing}"),
        )
        .with(|inner| {
            inner.pid = Some(pid);
            inner.status = status;
        })
    }

    pub(crate) fn panicked(panic: PanicInfo) -> Self {
        Error::new(ErrorKind::Panic, panic.summary()).with(|inner| inner.panic = Some(panic))
    }

    pub(crate) fn serialization(what: &str, source: postcard::Error) -> Self {
        Error::new(
            ErrorKind::Serialization,
            format!("could not serialize or deserialize {what}: {source}"),
        )
        .with_source(source)
    }

    /// The serde error with which a `Deserialize` impl refuses a value, for this error (a
    /// shared-memory handle that cannot be mapped here). postcard keeps no message of a
    /// custom error, so the error is kept aside for [`decoding`](Self::decoding) to report,
    /// with its kind.
    pub(crate) fn refuse<E: serde::de::Error>(self) -> E {
        let custom = E::custom(&self);
        REFUSAL.with(|refusal| refusal.replace(Some(self)));
        custom
    }

    /// Forgets a refusal made outside of [`decoding`](Self::decoding)'s watch (a value
    /// deserialized by other means), so that it is never reported for a later failure.
    pub(crate) fn forget_refusal() {
        REFUSAL.with(|refusal| drop(refusal.take()));
    }

    /// The error for `what` whose decoding failed with `source`: the error a `Deserialize`
    /// impl [refused](Self::refuse) it with, if it did, else a serialization error.
    pub(crate) fn decoding(what: &str, source: postcard::Error) -> Self {
        let refusal = REFUSAL.with(|refusal| refusal.take());
        match refusal {
            Some(refusal) if source == postcard::Error::SerdeDeCustom => Error::new(
                refusal.kind(),
                format!("could not deserialize {what}: {}", refusal.message()),
            ),
            _ => Error::serialization(what, source),
        }
    }

    pub(crate) fn io(doing: &str, source: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{doing}: {source}")).with_source(source)
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidState, message)
    }

    pub(crate) fn closed(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Closed, message)
    }

    #[allow(dead_code)] // the pool and queues use it
    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    pub(crate) fn cancelled(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Cancelled, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The pid of the process the error is about, when there is one.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid
    }

    /// How the process ended, for [`is_worker_died`](Self::is_worker_died) errors whose exit
    /// status could be collected.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.status
    }

    /// The panic's message and location, for [`is_panic`](Self::is_panic) errors.
    pub fn panic_info(&self) -> Option<&PanicInfo> {
        self.inner.panic.as_ref()
    }

    /// A deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// The child process running the call died; see [`pid`](Self::pid) and
    /// [`exit_status`](Self::exit_status).
    pub fn is_worker_died(&self) -> bool {
        self.kind() == ErrorKind::WorkerDied
    }

    /// The worker panicked; see [`panic_info`](Self::panic_info).
    pub fn is_panic(&self) -> bool {
        self.kind() == ErrorKind::Panic
    }

    /// The call was cancelled before it produced a result.
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ErrorKind::Cancelled
    }

    /// The object is closed.
    pub fn is_closed(&self) -> bool {
        self.kind() == ErrorKind::Closed
    }

    /// A value failed to serialize or deserialize.
    pub fn is_serialization(&self) -> bool {
        self.kind() == ErrorKind::Serialization
    }

    /// A peer failed authentication.
    pub fn is_auth(&self) -> bool {
        self.kind() == ErrorKind::Auth
    }

    /// The function is not registered with `#[worker]` (or `#[multiproc::process]`).
    pub fn is_unknown_worker(&self) -> bool {
        self.kind() == ErrorKind::UnknownWorker
    }

    /// A queue was empty.
    pub fn is_empty(&self) -> bool {
        self.kind() == ErrorKind::Empty
    }

    /// A bounded queue was full.
    pub fn is_full(&self) -> bool {
        self.kind() == ErrorKind::Full
    }

    /// A barrier was broken.
    pub fn is_broken_barrier(&self) -> bool {
        self.kind() == ErrorKind::BrokenBarrier
    }

    /// The previous owner of a lock or semaphore died while holding it.
    pub fn is_owner_died(&self) -> bool {
        self.kind() == ErrorKind::OwnerDied
    }
}

/// The data of an [`Error`] as it crosses a process boundary.
#[derive(Clone, Serialize, Deserialize)]
struct ErrorData {
    kind: ErrorKind,
    message: String,
    pid: Option<u32>,
    status: Option<ExitStatus>,
    panic: Option<PanicInfo>,
}

impl From<Error> for ErrorData {
    fn from(error: Error) -> Self {
        ErrorData {
            kind: error.inner.kind,
            message: error.inner.message.clone(),
            pid: error.inner.pid,
            status: error.inner.status,
            panic: error.inner.panic.clone(),
        }
    }
}

impl From<ErrorData> for Error {
    fn from(data: ErrorData) -> Self {
        Error::new(data.kind, data.message).with(|inner| {
            inner.pid = data.pid;
            inner.status = data.status;
            inner.panic = data.panic;
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(pid) = self.inner.pid {
            debug.field("pid", &pid);
        }
        if let Some(status) = self.inner.status {
            debug.field("status", &status);
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl fmt::Display for Error {
    /// The message; for a panic whose child captured a backtrace, the backtrace after it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        match self.panic_info() {
            Some(panic) => f.write_str(&panic.backtrace_section()),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match error.kind() {
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            ErrorKind::Closed | ErrorKind::WorkerDied => std::io::ErrorKind::BrokenPipe,
            ErrorKind::Auth => std::io::ErrorKind::PermissionDenied,
            ErrorKind::InvalidInput => std::io::ErrorKind::InvalidInput,
            ErrorKind::Serialization => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// An error as it travels from a child to its parent: kind and text, never a user type.
/// Not public API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[doc(hidden)]
pub enum RemoteError {
    Panic(PanicInfo),
    UnknownWorker(String),
    Serialization(String),
    TooLarge(String),
    /// The call was withdrawn by its caller before it started; the child skipped it.
    Withdrawn(String),
}

impl RemoteError {
    pub(crate) fn into_error(self) -> Error {
        match self {
            RemoteError::Panic(panic) => Error::panicked(panic),
            RemoteError::UnknownWorker(message) => Error::new(ErrorKind::UnknownWorker, message),
            RemoteError::Serialization(message) => Error::new(ErrorKind::Serialization, message),
            RemoteError::TooLarge(message) => Error::new(ErrorKind::FrameTooLarge, message),
            RemoteError::Withdrawn(message) => Error::cancelled(message),
        }
    }
}
