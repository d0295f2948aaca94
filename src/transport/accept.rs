//! Accepting connections without letting any peer hold up another.
//!
//! A listener (a hub's named socket, a manager's TCP front) hands each accepted connection to
//! its own task for the [handshake](super::auth), so that a peer that connects and says
//! nothing delays nobody: the next connection is accepted at once. At most
//! [`MAX_PENDING_HANDSHAKES`] handshakes are in progress on one listener; when one more
//! arrives, the *oldest* is dropped (its connection closed) rather than the newcomer refused.
//! A legitimate peer completes its handshake in well under a millisecond on a local socket,
//! while a flood of silent peers lives until [`HANDSHAKE_TIMEOUT`](super::auth::HANDSHAKE_TIMEOUT):
//! dropping the oldest sheds the flood and lets a newcomer through, where refusing newcomers
//! would lock every legitimate client out for as long as the flood goes on. The bound is
//! large enough that a burst of legitimate peers (a pool's workers all reaching a queue at
//! once) is never shed, and small enough to leave most of a default 1024-descriptor limit to
//! the connections being served.
//!
//! An accept that fails (out of descriptors, most likely: `EMFILE`) is retried as soon as a
//! handshake ends (which frees a descriptor) or after [`ACCEPT_RETRY`], forever: the
//! connections already open keep being served, and once a flood of connections ends, the
//! ones it left in the backlog are drained at the pace handshakes fail, not one retry period
//! per descriptor.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The most handshakes in progress at once on one listener.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 256;

/// The longest a listener waits before accepting again after an accept failed.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The handshakes in progress on one listener, oldest first. Dropping it drops them all.
#[derive(Debug, Default)]
pub(crate) struct Handshakes {
    pending: VecDeque<AbortHandle>,
    /// Notified whenever a handshake ends, however it ends.
    ended: Arc<Notify>,
    /// Whether the last accept failed: only the first failure of a run is worth a warning.
    failing: bool,
}

impl Handshakes {
    /// Runs `handshake` in its own task on the current runtime, first dropping the oldest
    /// handshake in progress if [`MAX_PENDING_HANDSHAKES`] already are. `handshake` should
    /// hand a connection it authenticated to a task of its own and return, so that serving
    /// it is not counted as a handshake in progress.
    pub(crate) fn start(&mut self, handshake: impl Future<Output = ()> + Send + 'static) {
        self.pending.retain(|task| !task.is_finished());
        if self.pending.len() >= MAX_PENDING_HANDSHAKES
            && let Some(oldest) = self.pending.pop_front()
        {
            tracing::debug!(target: "multiproc", "{MAX_PENDING_HANDSHAKES} handshakes in progress: the oldest is dropped");
            oldest.abort();
        }
        self.failing = false;
        let ended = NotifyOnDrop(self.ended.clone());
        let task = tokio::spawn(async move {
            let _ended = ended;
            handshake.await;
        });
        self.pending.push_back(task.abort_handle());
    }

    /// Waits, after an accept on `listener` failed with `error`, until a handshake ends or
    /// [`ACCEPT_RETRY`] has passed: an accept that failed for want of descriptors fails again
    /// at once, as long as the peer waits in the backlog.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn back_off(&mut self, listener: &str, error: &std::io::Error) {
        if !self.failing {
            tracing::warn!(target: "multiproc", "accepting on {listener} failed (retrying): {error}");
        }
        self.failing = true;
        tokio::select! {
            () = tokio::time::sleep(ACCEPT_RETRY) => {}
            () = self.ended.notified() => {}
        }
    }
}

/// Notifies its `Notify` when dropped: when the task holding it ends, or is aborted.
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl Drop for Handshakes {
    fn drop(&mut self) {
        for task in self.pending.drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_handshake_too_many_drops_the_oldest() {
        let mut handshakes = Handshakes::default();
        let mut alive = Vec::new();
        for _ in 0..=MAX_PENDING_HANDSHAKES {
            // Each handshake holds a sender until it ends; a closed receiver means it ended.
            let (holding, alive_while) = tokio::sync::oneshot::channel::<()>();
            handshakes.start(async move {
                let _holding = holding;
                std::future::pending::<()>().await
            });
            alive.push(alive_while);
        }
        let (oldest, rest) = alive.split_first_mut().unwrap();
        tokio::time::timeout(Duration::from_secs(10), oldest)
            .await
            .expect("the oldest handshake was not dropped")
            .unwrap_err();
        assert!(rest.iter_mut().all(|alive| {
            alive
                .try_recv()
                .is_err_and(|error| error == tokio::sync::oneshot::error::TryRecvError::Empty)
        }));
        drop(handshakes);
    }
}
