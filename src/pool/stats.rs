//! [`PoolStats`]: what a pool is doing, for a service to export as health metrics.
//!
//! [`Pool::stats`](super::Pool::stats) reads the counts the scheduler keeps as it works, and
//! asks each worker's progress page which call it runs; nothing is sent to a child, so
//! reading them is cheap enough for a metrics scrape.
//!
//! Counts are in **tasks**, as [`max_tasks_per_child`](super::PoolBuilder::max_tasks_per_child)
//! counts them: one item of a `map`, `starmap` or `imap`, or one `apply`. A chunk of a `map` is
//! one call to a worker but counts as its items.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A snapshot of a pool's work and workers; returned by [`Pool::stats`](super::Pool::stats).
///
/// ```no_run
/// # async fn demo(pool: multiproc::Pool) {
/// let stats = pool.stats();
/// println!(
///     "{} queued, {} running, {} done, {} failed, {} restarts",
///     stats.queued, stats.running, stats.completed, stats.failed, stats.restarts
/// );
/// for worker in &stats.workers {
///     if let Some(call) = &worker.running {
///         println!("{} (pid {}) runs {} for {:?}", worker.name, worker.pid, call.function, call.elapsed);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks submitted and not yet sent to a worker (calls of a dead worker that it had not
    /// run, waiting to be sent again, included).
    pub queued: usize,
    /// Tasks sent to a worker and not answered yet: each worker runs one call at a time and
    /// holds a few more already sent, so that it never waits for the next.
    pub running: usize,
    /// Tasks that returned a value, since the pool started.
    pub completed: u64,
    /// Tasks that ended in an error, since the pool started: a panic (one item of a chunk
    /// counts alone), a worker's death, a deadline, a cancel, a result that could not be sent.
    pub failed: u64,
    /// Workers started to replace one that ended unexpectedly (crashed, killed, or stopped
    /// past a deadline or by a cancel), since the pool started. Workers replaced after
    /// [`max_tasks_per_child`](super::PoolBuilder::max_tasks_per_child) are not counted.
    pub restarts: u64,
    /// The workers now serving calls (one retiring under `max_tasks_per_child` included until
    /// it leaves), oldest first.
    pub workers: Vec<WorkerStats>,
}

/// One worker of a [`PoolStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker's process id.
    pub pid: u32,
    /// Its process name (`"PoolWorker-3"`).
    pub name: String,
    /// The call it is running, if any; `None` between calls, and on a system without `/proc`,
    /// where a worker cannot report which call it runs.
    pub running: Option<RunningCall>,
}

/// The call a worker is running; see [`WorkerStats::running`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunningCall {
    /// The `#[worker]` function, by its registered path (`"mycrate::jobs::square"`).
    pub function: String,
    /// How long it has been running.
    pub elapsed: Duration,
}
