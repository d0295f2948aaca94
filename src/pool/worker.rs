//! One pool worker: its child process, the calls it holds, and how it is started.
//!
//! A worker is started by [`start`]: the one spawner ([`spawn`](crate::spawn::spawn)) starts
//! the child, a [`Supervised`] takes it over, and the initializer, if any, runs as the
//! worker's first call. Only a worker whose initializer returned is handed to the scheduler,
//! so no task ever runs in a worker that is not initialized, replacements included.
//!
//! The pool's dispatch keeps the bookkeeping here: how many calls the worker holds (its window),
//! how many items it has been given (for `max_tasks_per_child`), and whether it is retiring.

use std::sync::Arc;
use std::time::Duration;

use crate::current;
use crate::error::{Error, Result};
use crate::spawn::{self, ChildSpec};
use crate::supervisor::Supervised;

use super::builder::Config;

/// A started, initialized worker, as the scheduler tracks it.
#[derive(Debug)]
pub(crate) struct PoolWorker {
    pub(crate) supervised: Supervised,
    /// Calls sent and not yet answered.
    pub(crate) in_flight: usize,
    /// Items (map elements, apply calls) given to this worker over its life.
    pub(crate) assigned_items: usize,
    /// No new calls: it reached `max_tasks_per_child`, and leaves once its calls are done.
    pub(crate) retiring: bool,
    /// A call could not be sent: its connection is gone, and its death is about to be noticed.
    pub(crate) send_failed: bool,
}

impl PoolWorker {
    pub(crate) fn new(supervised: Supervised) -> Self {
        PoolWorker {
            supervised,
            in_flight: 0,
            assigned_items: 0,
            retiring: false,
            send_failed: false,
        }
    }

    /// Whether this worker may be sent another call now.
    pub(crate) fn can_take(&self, window: usize) -> bool {
        // A child that died fails every call at once; sending more before its exit is noticed
        // would fail calls that never ran.
        !self.retiring
            && !self.send_failed
            && self.in_flight < window
            && !self.supervised.is_failed()
    }
}

/// The pause before start attempt `attempt` (0-based) after `failures` consecutive failures:
/// none for a healthy pool, then doubling from 10 ms up to 320 ms, so ten failed attempts take
/// well under three seconds and never turn into a tight respawn loop.
pub(crate) fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_millis(10u64 << (n - 1).min(5)),
    }
}

/// Starts one worker, `PoolWorker-N`, after `delay`, and runs the initializer in it.
///
/// # Errors
///
/// The spawn error, or the initializer's error (its child is killed).
///
/// # Cancel safety
///
/// Not cancel safe: a child being spawned when the future is dropped is killed by the
/// spawner, but one whose initializer is running is left to the supervisor, which reaps it
/// once it exits at the end of its connection.
pub(crate) async fn start(config: Arc<Config>, delay: Duration) -> Result<Supervised> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let identity = current::next_identity();
    let spec = ChildSpec {
        name: current::default_name("PoolWorker", &identity),
        identity,
        daemon: true,
        stop_at_exit: true,
        start_timeout: config.start_timeout,
        max_frame_len: config.max_frame_len,
        stall: false,
    };
    let spawned = spawn::spawn(&spec).await?;
    let supervised = Supervised::start(spawned, spec.name);
    if let Some(initializer) = &config.initializer {
        let outcome = match supervised.call(
            initializer.worker,
            initializer.payload.clone(),
            false,
            false,
        ) {
            Ok(reply) => reply.await.unwrap_or_else(|_| {
                Err(Error::worker_died(
                    supervised.name(),
                    supervised.pid(),
                    supervised.exit_status(),
                    "running the pool's initializer",
                ))
            }),
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            supervised.signal(libc::SIGKILL);
            return Err(error);
        }
    }
    Ok(supervised)
}
