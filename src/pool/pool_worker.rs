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
use std::time::{Duration, Instant};

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
    /// How fast it answers, which sets how many calls it may hold.
    pace: Pace,
}

/// The calls a worker holds at first, and always at least: one running, the rest already
/// sent, so that the next call is in the child's socket when it finishes one.
pub(crate) const WINDOW: usize = 4;

/// The most calls a worker of very quick calls may hold.
pub(crate) const MAX_WINDOW: usize = 32;

/// About how much work a worker's window holds once its pace is known: enough quick calls
/// that the child answers a batch per wake-up instead of one, few enough that a map's last
/// calls do not wait behind one worker while another idles.
const WINDOW_WORK: Duration = Duration::from_millis(1);

/// The time between a busy worker's answers, averaged.
#[derive(Debug, Default)]
struct Pace {
    /// Exponentially weighted mean, in nanoseconds; 0 until measured.
    mean_nanos: u64,
    /// When the last answer came, while the worker had more calls to answer.
    last_answer: Option<Instant>,
}

impl PoolWorker {
    pub(crate) fn new(supervised: Supervised) -> Self {
        PoolWorker {
            supervised,
            in_flight: 0,
            assigned_items: 0,
            retiring: false,
            send_failed: false,
            pace: Pace::default(),
        }
    }

    /// Whether this worker may be sent another call now.
    pub(crate) fn can_take(&self) -> bool {
        // A child that died fails every call at once; sending more before its exit is noticed
        // would fail calls that never ran.
        !self.retiring
            && !self.send_failed
            && self.in_flight < self.window()
            && !self.supervised.is_failed()
    }

    /// How many calls this worker may hold: [`WINDOW`], or more for a worker whose calls
    /// are quick, up to about [`WINDOW_WORK`] of them.
    pub(crate) fn window(&self) -> usize {
        window_for(self.pace.mean_nanos)
    }

    /// Counts one answered call; call before `in_flight` is decremented for it.
    pub(crate) fn answered(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.pace.last_answer {
            let gap = now
                .duration_since(last)
                .as_nanos()
                .min(u128::from(u64::MAX)) as u64;
            let mean = &mut self.pace.mean_nanos;
            *mean = if *mean == 0 {
                gap.max(1)
            } else {
                (*mean * 7 + gap) / 8
            }
            .max(1);
        }
        // The gap to the next answer is a call's duration only if the worker is busy now.
        self.pace.last_answer = (self.in_flight > 1).then_some(now);
    }
}

/// The window of a worker whose answers come `mean_nanos` apart (0: not measured yet).
fn window_for(mean_nanos: u64) -> usize {
    match mean_nanos {
        0 => WINDOW,
        mean => ((WINDOW_WORK.as_nanos() as u64 / mean) as usize).clamp(WINDOW, MAX_WINDOW),
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
        config: config.child.clone(),
    };
    let spawned = spawn::spawn(&spec).await?;
    let supervised = Supervised::start_tracked(spawned, spec.name);
    if let Some(initializer) = &config.initializer {
        let outcome = match supervised.call(initializer.worker, initializer.payload.clone(), false)
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_about_a_millisecond_of_work_within_bounds() {
        assert_eq!(window_for(0), WINDOW);
        assert_eq!(window_for(10_000), 100.min(MAX_WINDOW));
        assert_eq!(window_for(100_000), 10);
        assert_eq!(window_for(50_000_000), WINDOW);
        assert_eq!(window_for(1), MAX_WINDOW);
    }
}
