//! [`Process`] and [`ProcessBuilder`] in blocking form.

use std::time::Duration;

use super::{wait, wrapper};
use crate::error::Result;
use crate::worker::{Run, Value, Worker};

wrapper! {
    /// A process that has not started yet: the blocking twin of
    /// [`crate::ProcessBuilder`], returned by [`Process::new`] and [`Process::from_run`].
    ///
    /// Options this type does not forward (newer ones, say) are set on the async builder,
    /// which converts: `blocking::ProcessBuilder::from(multiproc::Process::new(f, args).name("x"))`.
    #[must_use = "a process does nothing until it is started"]
    ProcessBuilder<T> wraps crate::ProcessBuilder<T>
}

wrapper! {
    /// A started child process running one worker call: the blocking twin of
    /// [`crate::Process`], whose docs say more (exit codes, daemons).
    ///
    /// Cheap to clone: clones are handles to the same process.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::blocking::Process;
    ///
    /// #[multiproc::worker]
    /// fn slow_square(x: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(200));
    ///     x * x
    /// }
    ///
    /// fn main() -> multiproc::Result<()> {
    ///     multiproc::init();
    ///     let p = Process::new(slow_square, (7,)).name("squarer").start()?;
    ///     assert!(p.join_timeout(Duration::from_millis(10))?.is_none()); // still running
    ///     assert_eq!(p.join()?, 49);
    ///     assert_eq!(p.exitcode(), Some(0));
    ///     Ok(())
    /// }
    /// ```
    Process<T> wraps crate::Process<T>, clone
}

impl Process<()> {
    /// A process that will run `worker(args)`; nothing starts until
    /// [`start`](ProcessBuilder::start). As [`crate::Process::new`].
    #[allow(clippy::new_ret_no_self)] // Python's `Process(...)`, started by the builder
    pub fn new<W, M>(worker: W, args: W::Args) -> ProcessBuilder<W::Output>
    where
        W: Worker<M>,
    {
        crate::Process::new(worker, args).into()
    }

    /// A process that will run `value.run()` in the child. As [`crate::Process::from_run`].
    pub fn from_run<R: Run>(value: R) -> ProcessBuilder<R::Output> {
        crate::Process::from_run(value).into()
    }
}

impl<T: Value> ProcessBuilder<T> {
    /// Sets the process name. As [`crate::ProcessBuilder::name`].
    pub fn name(self, name: impl Into<String>) -> Self {
        self.inner.name(name).into()
    }

    /// Makes the process a daemon. As [`crate::ProcessBuilder::daemon`].
    pub fn daemon(self, daemon: bool) -> Self {
        self.inner.daemon(daemon).into()
    }

    /// How long the child has to start. As [`crate::ProcessBuilder::start_timeout`].
    pub fn start_timeout(self, timeout: Duration) -> Self {
        self.inner.start_timeout(timeout).into()
    }

    /// The largest frame either side accepts. As [`crate::ProcessBuilder::max_frame_len`].
    pub fn max_frame_len(self, bytes: usize) -> Self {
        self.inner.max_frame_len(bytes).into()
    }

    /// Starts the child process and sends it its call; returns once it has started.
    ///
    /// The blocking form of [`crate::ProcessBuilder::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::ProcessBuilder::start`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo() -> multiproc::Result<()> {
    /// let p = multiproc::blocking::Process::new(square, (7,)).name("squarer").start()?;
    /// assert_eq!(p.name(), "squarer");
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn start(self) -> Result<Process<T>> {
        wait(self.inner.start()).map(Process::from)
    }
}

impl<T> Process<T> {
    /// The process name. As [`crate::Process::name`].
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.inner.is_daemon()
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// True until the child has been reaped.
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// The exit code in Python's convention; `None` until the child has been reaped. As
    /// [`crate::Process::exitcode`].
    pub fn exitcode(&self) -> Option<i32> {
        self.inner.exitcode()
    }

    /// How the child ended; `None` until it has been reaped.
    pub fn exit_status(&self) -> Option<crate::ExitStatus> {
        self.inner.exit_status()
    }

    /// Sends `SIGTERM`. As [`crate::Process::terminate`].
    pub fn terminate(&self) {
        self.inner.terminate();
    }

    /// Sends `SIGKILL`. As [`crate::Process::kill`].
    pub fn kill(&self) {
        self.inner.kill();
    }
}

impl<T: Value> Process<T> {
    super::blocking_forms! {
        "crate::Process", "# fn demo(p: multiproc::blocking::Process<u64>) -> multiproc::Result<()> {";
        /// Waits for the child to finish and returns what its worker returned; may be called
        /// again, and gives the same result.
        fn join(&self) -> Result<T> = "assert_eq!(p.join()?, 16);\nassert_eq!(p.join()?, 16); // joining again gives the same result";
        /// Waits at most `timeout` for the child to finish: `Ok(None)` if it is still running
        /// then.
        fn join_timeout(&self, timeout: Duration) -> Result<Option<T>> = "match p.join_timeout(std::time::Duration::from_secs(1))? {\n    Some(square) => println!(\"{square}\"),\n    None => p.terminate(),\n}";
    }
}
