//! [`Condition`]: wait for a notification under a lock, across processes.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::lock::{Held, LockState, acquire};
use super::queue::expect_started;
use crate::error::{Error, Result};
use crate::protocol::hub::{Answer, ConditionOp, Failure, Op};

/// A condition's state on its hub: its lock and the requests sleeping in `wait`.
struct ConditionState {
    lock: LockState,
    sleepers: VecDeque<Request>,
}

/// A notified sleeper waits for the lock under this id, which no request uses, so a timeout
/// that crosses the notification cannot withdraw it: it returns `true` with the lock.
const NOTIFIED: u64 = 0;

impl Object for ConditionState {
    fn call(&mut self, request: Request, op: Op, _items: Items) {
        let Op::Condition(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not a condition".into())));
            return;
        };
        match op {
            ConditionOp::Acquire { wait } => self.lock.acquire(request, wait),
            ConditionOp::Release => {
                let reply = match self.lock.release(request.caller) {
                    Ok(()) => Reply::ok(Answer::Done),
                    Err(failure) => Reply::failed(failure),
                };
                let _ = request.answer(reply);
            }
            ConditionOp::Wait => {
                if !self.lock.is_held_by(request.caller) {
                    let _ = request.answer(Reply::failed(Failure::InvalidState(
                        "wait without holding the condition's lock".into(),
                    )));
                    return;
                }
                self.lock.release_fully();
                self.sleepers.push_back(request);
            }
            ConditionOp::Notify { n } => {
                if !self.lock.is_held_by(request.caller) {
                    let _ = request.answer(Reply::failed(Failure::InvalidState(
                        "notify without holding the condition's lock".into(),
                    )));
                    return;
                }
                let mut woken = 0;
                while woken < n
                    && let Some(mut sleeper) = self.sleepers.pop_front()
                {
                    if sleeper.replier.is_waiting() {
                        sleeper.id = NOTIFIED;
                        self.lock.acquire(sleeper, true);
                        woken += 1;
                    }
                }
                let _ = request.answer(Reply::ok(Answer::Done));
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        take_parked(&mut self.sleepers, conn, id, |r| r).or_else(|| self.lock.cancel(conn, id))
    }

    fn disconnected(&mut self, conn: ConnId) {
        self.sleepers.retain(|r| r.caller.conn != conn);
        self.lock.disconnected(conn);
    }

    fn drain(&mut self) -> Vec<Request> {
        let mut parked: Vec<Request> = self.sleepers.drain(..).collect();
        parked.extend(self.lock.drain());
        parked
    }
}

/// A condition variable shared between processes: Python's `multiprocessing.Condition`.
///
/// A condition has its own lock, taken with [`acquire`](Self::acquire); the returned
/// [`ConditionGuard`] can [`wait`](ConditionGuard::wait) (release the lock, sleep until
/// notified, take the lock back) and [`notify`](ConditionGuard::notify). Only the task holding
/// the lock may wait or notify: anything else is an
/// [`InvalidState`](crate::ErrorKind::InvalidState) error. The lock is recursive for its owner
/// (process and tokio task), like Python's default `RLock`; a `wait` releases it completely and
/// gives it back at depth 1. If its holder's process dies, the lock is released and the next
/// guard reports [`owner_died`](ConditionGuard::owner_died).
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let ready = multiproc::Condition::new();
/// let mut guard = ready.acquire().await?;
/// let notified = guard.wait_timeout(std::time::Duration::from_secs(1)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Condition {
    handle: Handle,
}

/// Holds a [`Condition`]'s lock until dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard {
    held: Held,
    handle: Handle,
}

fn describe(handle: &Handle) -> String {
    format!("condition {}", handle.object)
}

async fn notify(handle: &Handle, n: u64, task: u64) -> Result<()> {
    let reply = client::call_as(
        handle,
        Op::Condition(ConditionOp::Notify { n }),
        Vec::new(),
        None,
        task,
    )
    .await?;
    reply
        .outcome
        .map(drop)
        .map_err(|failure| failure.into_error(&describe(handle)))
}

/// A new condition's state, with its own unlocked lock, for whichever hub will hold it.
pub(crate) fn state() -> Box<dyn Object> {
    Box::new(ConditionState {
        lock: LockState::new(true),
        sleepers: VecDeque::new(),
    })
}

impl Condition {
    /// A condition with its own unlocked lock, served by this process.
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket.
    #[allow(clippy::new_without_default)] // creating a condition starts a server
    pub fn new() -> Self {
        let handle = expect_started(Handle::create(state()));
        Condition { handle }
    }

    /// Takes the condition's lock.
    ///
    /// # Errors
    ///
    /// [`is_closed`](crate::Error::is_closed) if the condition's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a grant that crossed the cancellation is released.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// let guard = condition.acquire().await?;
    /// guard.notify_all().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self) -> Result<ConditionGuard> {
        let op = Op::Condition(ConditionOp::Acquire { wait: true });
        let held = acquire(&self.handle, op, None, &describe(&self.handle))
            .await?
            .expect("a waiting acquire is granted");
        Ok(ConditionGuard {
            held,
            handle: self.handle.clone(),
        })
    }

    /// Wakes up to `n` waiters; the calling task must hold the lock (through a guard it
    /// acquired).
    ///
    /// # Errors
    ///
    /// [`InvalidState`](crate::ErrorKind::InvalidState) if the calling task does not hold
    /// the lock; [`is_closed`](crate::Error::is_closed) if the condition's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled notify may or may not have woken waiters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// let _guard = condition.acquire().await?;
    /// condition.notify(1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify(&self, n: usize) -> Result<()> {
        notify(&self.handle, n as u64, client::current_task()).await
    }

    /// Wakes every waiter; the calling task must hold the lock.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    ///
    /// # Cancel safety
    ///
    /// As [`notify`](Self::notify).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// let _guard = condition.acquire().await?;
    /// condition.notify_all().await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify_all(&self) -> Result<()> {
        notify(&self.handle, u64::MAX, client::current_task()).await
    }
}

impl ConditionGuard {
    /// Whether the previous holder's process died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.held.owner_died()
    }

    async fn wait_inner(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let task = self.held.task;
        let what = describe(&self.handle);
        // The hub takes the lock back for the wait: until it grants it again this guard must
        // not release it, and a grant that reaches nobody is released by the client.
        let armed = self.held.disarm();
        let op = Op::Condition(ConditionOp::Wait);
        let reply = client::call_as(&self.handle, op, Vec::new(), timeout, task).await?;
        let notified = match reply.outcome {
            Ok(_) => true,
            Err(Failure::Cancelled) => {
                // Python waits for the lock however long another holder keeps it; so does
                // this, as long as the hub answers.
                let op = Op::Condition(ConditionOp::Acquire { wait: true });
                let Some(reply) = client::call_while_alive(&self.handle, op, task).await? else {
                    return Err(Error::timeout(format!(
                        "{what}: its process stopped answering, so the lock could not be taken                          back; this guard no longer holds it"
                    )));
                };
                reply.outcome.map_err(|failure| failure.into_error(&what))?;
                false
            }
            Err(failure) => {
                // Refused without waiting: the lock is as it was.
                if armed {
                    self.held.rearm();
                }
                return Err(failure.into_error(&what));
            }
        };
        self.held.rearm();
        Ok(notified)
    }

    /// Releases the lock, sleeps until notified, and takes the lock back.
    ///
    /// # Errors
    ///
    /// [`is_closed`](crate::Error::is_closed) if the condition's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled wait leaves the lock released and this guard no longer
    /// holding it (dropping it releases nothing); drop it and acquire again. A grant of the
    /// lock that arrives after the cancellation is released at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// let mut guard = condition.acquire().await?;
    /// guard.wait().await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) -> Result<()> {
        self.wait_inner(None).await.map(drop)
    }

    /// As [`wait`](Self::wait), for at most `timeout`: `Ok(true)` if notified, `Ok(false)` on
    /// timeout. Either way the lock is held again when it returns: as in Python, taking it
    /// back waits for its holder, however long, as long as the condition's process answers.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); and a [`Timeout`](crate::ErrorKind::Timeout) error if the
    /// condition's process does not answer (stopped) within about 100 ms of `timeout`, or
    /// stops answering while the lock is taken back. Then this guard no longer holds the
    /// lock (dropping it releases nothing), and a grant that arrives later is released.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// let mut guard = condition.acquire().await?;
    /// if !guard.wait_timeout(std::time::Duration::from_millis(100)).await? { println!("timed out"); }
    /// # Ok(()) }
    /// ```
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_inner(Some(timeout)).await
    }

    /// Waits until `predicate` returns `true`, checking it first and after each notification;
    /// with a `timeout`, gives up when it passes. Returns the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition, items: multiproc::Queue<u32>) -> multiproc::Result<()> {
    /// let mut guard = condition.acquire().await?;
    /// let ready = guard.wait_for(|| async { !items.is_empty().await.unwrap_or(true) }, None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_for<F, Fut>(
        &mut self,
        mut predicate: F,
        timeout: Option<Duration>,
    ) -> Result<bool>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if predicate().await {
                return Ok(true);
            }
            match deadline {
                None => self.wait_inner(None).await?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_inner(Some(left)).await?
                }
            };
        }
    }

    /// Wakes up to `n` waiters; they get the lock after this guard releases it.
    ///
    /// # Errors
    ///
    /// [`is_closed`](crate::Error::is_closed) if the condition's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled notify may or may not have woken waiters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// condition.acquire().await?.notify(1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify(&self, n: usize) -> Result<()> {
        notify(&self.handle, n as u64, self.held.task).await
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    ///
    /// # Cancel safety
    ///
    /// As [`notify`](Self::notify).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(condition: multiproc::Condition) -> multiproc::Result<()> {
    /// condition.acquire().await?.notify_all().await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify_all(&self) -> Result<()> {
        notify(&self.handle, u64::MAX, self.held.task).await
    }
}

impl Drop for ConditionGuard {
    fn drop(&mut self) {
        self.held.release_with(Op::Condition(ConditionOp::Release));
    }
}
