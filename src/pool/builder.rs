//! [`PoolBuilder`]: the size, initializer and limits of a [`Pool`], and how its workers are
//! shaped (environment, working directory, output), checked before anything starts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::encode;
use crate::registry::{self, WORKER_HINT};
use crate::spawn::{ChildConfig, DEFAULT_START_TIMEOUT, child_config_methods};
use crate::transport::DEFAULT_MAX_FRAME_LEN;
use crate::worker::{Worker, worker_name};

use super::Pool;

/// Everything the scheduler and the workers need to know, fixed at [`build`](PoolBuilder::build).
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) initializer: Option<Initializer>,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) start_timeout: Duration,
    pub(crate) max_frame_len: usize,
    pub(crate) task_timeout: Option<Duration>,
    /// Every worker's environment, directory and output, replacements' too.
    pub(crate) child: Arc<ChildConfig>,
}

/// The initializer's registered name and its encoded arguments, sent to every new worker.
#[derive(Debug)]
pub(crate) struct Initializer {
    pub(crate) worker: &'static str,
    pub(crate) payload: Vec<u8>,
}

/// Configures a [`Pool`]; returned by [`Pool::builder`].
///
/// ```no_run
/// # #[multiproc::worker] fn setup(level: u32) {}
/// # async fn demo() -> multiproc::Result<()> {
/// let pool = multiproc::Pool::builder()
///     .processes(4)
///     .initializer(setup, (3,))
///     .max_tasks_per_child(1_000)
///     .env("RAYON_NUM_THREADS", "1")
///     .stderr(multiproc::Stdio::Lines)
///     .build()
///     .await?;
/// let mut errors = pool.take_output().expect("stderr is piped"); // every worker's lines
/// # Ok(()) }
/// ```
///
/// The environment, working directory and output options apply to every worker, and to
/// every replacement of a worker that died or retired, as with `std::process::Command`; a
/// pool's [`Stdio::Lines`](crate::Stdio::Lines) merges the lines of all its workers into the
/// one stream of [`Pool::take_output`].
#[must_use = "a pool starts only when built"]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<Initializer>>,
    max_tasks_per_child: Option<usize>,
    start_timeout: Duration,
    max_frame_len: usize,
    task_timeout: Option<Duration>,
    child: ChildConfig,
}

impl PoolBuilder {
    pub(crate) fn new() -> Self {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            task_timeout: None,
            child: ChildConfig::default(),
        }
    }

    /// The number of worker processes the pool keeps; default [`cpu_count()`](crate::cpu_count).
    /// Must be at least 1.
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// A `#[worker]` function run once in every worker before its first task, replacements
    /// included (Python's `initializer` and `initargs`). A worker whose initializer panics is
    /// killed and started again, with back-off; after ten failed starts in a row the pool
    /// gives up and reports the initializer's error. What the initializer returns is ignored.
    pub fn initializer<W: Worker<M>, M>(mut self, initializer: W, args: W::Args) -> Self {
        let _ = initializer;
        self.initializer = Some(
            registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT).and_then(|worker| {
                Ok(Initializer {
                    worker,
                    payload: encode(&args, &format!("the arguments of initializer `{worker}`"))?,
                })
            }),
        );
        self
    }

    /// Replaces a worker once it has been given `tasks` tasks, to bound the memory a leaky
    /// task can hold on to (Python's `maxtasksperchild`). Must be at least 1; default: never.
    ///
    /// **A task is one item**: one element of a `map`, `starmap` or `imap` input, or one
    /// `apply`. (Python counts a whole chunk as one task.) A worker is given no new call once
    /// it has been given `tasks` items; a chunk is never split, so with chunks of `c` items a
    /// worker runs at most `tasks + c - 1` items. Its replacement starts at that moment, while
    /// the old worker finishes the calls it holds and then exits, so no queued work waits on
    /// it and the pool keeps its size.
    pub fn max_tasks_per_child(mut self, tasks: usize) -> Self {
        self.max_tasks_per_child = Some(tasks);
        self
    }

    /// How long each worker has to start and prove the key (default 10 s). A worker that does
    /// not make it counts as a failed start.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The largest frame (one call's arguments or one result, encoded) either side accepts;
    /// default 256 MiB. A larger call or result fails for its caller only.
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    /// The default deadline of every task (default: none). A task still running after
    /// `timeout` fails with a [`Timeout`](ErrorKind::Timeout) error naming its function, and
    /// the worker running it is killed and replaced; see [`Pool`]'s "Deadlines". A chunk of a
    /// `map` may run `timeout` times its number of items. [`Apply::timeout`](super::Apply::timeout)
    /// and [`Map::timeout_per_task`](super::Map::timeout_per_task) override it per call.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    child_config_methods!("every worker");

    /// Starts the workers, runs the initializer in each, and returns once all of them are
    /// ready.
    ///
    /// # Errors
    ///
    /// - [`InvalidInput`](ErrorKind::InvalidInput) for 0 processes or a
    ///   `max_tasks_per_child` of 0.
    /// - An [`Io`](ErrorKind::Io) error if no worker can be started (a
    ///   [`current_dir`](Self::current_dir) that does not exist, say), after ten attempts.
    /// - [`UnknownWorker`](ErrorKind::UnknownWorker) or
    ///   [`Serialization`](ErrorKind::Serialization) for an unusable initializer.
    /// - The last start error (a [`Spawn`](ErrorKind::Spawn) error, or the initializer's
    ///   [`Panic`](ErrorKind::Panic)) after ten failed starts in a row.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in effect: dropping the future drops the pool, whose workers stop.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let pool = multiproc::Pool::builder().processes(2).build().await?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn build(mut self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a pool needs at least 1 process; processes(0) was given",
            ));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "max_tasks_per_child must be at least 1; 0 was given",
            ));
        }
        let initializer = self.initializer.transpose()?;
        let output = self.child.pipe_lines();
        let config = Arc::new(Config {
            processes,
            initializer,
            max_tasks_per_child: self.max_tasks_per_child,
            start_timeout: self.start_timeout,
            max_frame_len: self.max_frame_len,
            task_timeout: self.task_timeout,
            child: Arc::new(self.child),
        });
        Pool::start(config, output).await
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field(
                "initializer",
                &self
                    .initializer
                    .as_ref()
                    .map(|i| i.as_ref().map(|i| i.worker).ok()),
            )
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("task_timeout", &self.task_timeout)
            .field("child", &self.child)
            .finish()
    }
}
