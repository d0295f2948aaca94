//! [`Condition`]: wait for a notification under a lock, across processes.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::lock::{Held, Lock, LockState, MemoryGrant, MemoryLock, RLock, acquire};
use super::queue::expect_started;
use super::waiters::{self, Waiters};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::hub::{Answer, ConditionOp, Failure, Op};
use crate::shm::arena::Cell;
use crate::shm::condition_cell::ConditionCell;

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
    /// The condition itself (served by a hub), or where the waiters of one built on a lock
    /// in shared memory park.
    handle: Handle,
    memory: Option<MemoryCondition>,
}

/// A condition built on a lock in shared memory ([`Condition::with_lock`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoryCondition {
    lock: MemoryLock,
    /// Whether the lock is an [`RLock`], owned by a task.
    recursive: bool,
    cell: Cell<ConditionCell>,
}

/// Holds a [`Condition`]'s lock until dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard {
    inner: GuardInner,
    handle: Handle,
}

#[derive(Debug)]
enum GuardInner {
    Hub(Held),
    Memory {
        grant: MemoryGrant,
        condition: MemoryCondition,
    },
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
        Condition {
            handle,
            memory: None,
        }
    }

    /// A condition on an existing [`Lock`] (Python's `Condition(lock)`): acquiring the
    /// condition acquires `lock`, and a wait gives it back while it sleeps. The lock and the
    /// sleepers are in shared memory; only a wait parks at this process's hub.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](ErrorKind::InvalidInput) for a lock served by a hub (a manager's, or
    /// any lock on a system without shared memory between processes): use
    /// [`Manager::condition`](crate::Manager::condition) there.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let lock = multiproc::Lock::new();
    /// let changed = multiproc::Condition::with_lock(&lock)?;
    /// # Ok(()) }
    /// ```
    pub fn with_lock(lock: &Lock) -> Result<Self> {
        Self::on(lock.in_memory().map(|(lock, _)| lock.clone()), false)
    }

    /// A condition on an existing [`RLock`], as [`with_lock`](Self::with_lock): a wait gives
    /// back every level the waiting task holds, and takes them all back.
    ///
    /// # Errors
    ///
    /// As [`with_lock`](Self::with_lock).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let lock = multiproc::RLock::new();
    /// let changed = multiproc::Condition::with_rlock(&lock)?;
    /// # Ok(()) }
    /// ```
    pub fn with_rlock(lock: &RLock) -> Result<Self> {
        Self::on(lock.in_memory().map(|(lock, _)| lock.clone()), true)
    }

    fn on(lock: Option<MemoryLock>, recursive: bool) -> Result<Self> {
        let Some(lock) = lock else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a condition on a lock served by a hub (a manager's) is not supported: use \
                 the manager's own condition()",
            ));
        };
        let cell = Cell::<ConditionCell>::new()?;
        let (segment, offset) = cell.place();
        let handle = Handle::create(Box::new(Waiters::new(segment.clone(), offset)))?;
        Ok(Condition {
            handle,
            memory: Some(MemoryCondition {
                lock,
                recursive,
                cell,
            }),
        })
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
        if let Some(condition) = &self.memory {
            let task = condition.recursive.then(client::current_task);
            let grant = condition
                .lock
                .acquire_grant(task, || describe(&self.handle))
                .await?;
            return Ok(ConditionGuard {
                inner: GuardInner::Memory {
                    grant,
                    condition: condition.clone(),
                },
                handle: self.handle.clone(),
            });
        }
        let op = Op::Condition(ConditionOp::Acquire { wait: true });
        let held = acquire(&self.handle, op, None, &describe(&self.handle))
            .await?
            .expect("a waiting acquire is granted");
        Ok(ConditionGuard {
            inner: GuardInner::Hub(held),
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
        if let Some(condition) = &self.memory {
            let task = condition.recursive.then(client::current_task);
            return condition.notify(condition.lock.is_held_by(task), n as u64, &self.handle);
        }
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
        self.notify(usize::MAX).await
    }
}

impl MemoryCondition {
    /// Notifies up to `n` sleepers if the caller holds the lock (`held`), as Python requires.
    fn notify(&self, held: bool, n: u64, handle: &Handle) -> Result<()> {
        if !held {
            return Err(Error::invalid_state(format!(
                "{}: notify by a task that does not hold its lock",
                describe(handle)
            )));
        }
        if self.cell.notify(n) {
            waiters::wake(handle, true);
        }
        Ok(())
    }

    /// Registers, gives the lock back, waits for a notify (at most until `deadline`), and
    /// takes the lock back. Returns whether it was notified.
    async fn wait(
        &self,
        grant: &mut MemoryGrant,
        handle: &Handle,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        self.cell.register();
        let levels = match grant.release_all() {
            Ok(levels) => levels,
            Err(error) => {
                self.cell.give_up();
                return Err(error);
            }
        };
        let notified = loop {
            if self.cell.take_ticket() {
                break true;
            }
            let Some(slice) = waiters::next_slice(deadline) else {
                break self.cell.give_up();
            };
            let expect = self.cell.announce_waiter();
            if self.cell.take_ticket() {
                break true;
            }
            if let Err(error) = waiters::park(handle, expect, slice, &describe(handle)).await {
                self.cell.give_up();
                grant.retake(levels, || describe(handle)).await?;
                return Err(error);
            }
        };
        grant.retake(levels, || describe(handle)).await?;
        Ok(notified)
    }
}

impl ConditionGuard {
    /// Whether the previous holder's process died holding the lock.
    pub fn owner_died(&self) -> bool {
        match &self.inner {
            GuardInner::Hub(held) => held.owner_died(),
            GuardInner::Memory { grant, .. } => grant.owner_died(),
        }
    }

    async fn wait_inner(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let held = match &mut self.inner {
            GuardInner::Memory { grant, condition } => {
                return condition.wait(grant, &self.handle, timeout).await;
            }
            GuardInner::Hub(held) => held,
        };
        let task = held.task;
        let what = describe(&self.handle);
        // The hub takes the lock back for the wait: until it grants it again this guard must
        // not release it, and a grant that reaches nobody is released by the client.
        let armed = held.disarm();
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
                    held.rearm();
                }
                return Err(failure.into_error(&what));
            }
        };
        held.rearm();
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
        match &self.inner {
            GuardInner::Hub(held) => notify(&self.handle, n as u64, held.task).await,
            GuardInner::Memory { grant, condition } => {
                condition.notify(grant.is_held(), n as u64, &self.handle)
            }
        }
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
        self.notify(usize::MAX).await
    }
}

impl Drop for ConditionGuard {
    fn drop(&mut self) {
        match &mut self.inner {
            GuardInner::Hub(held) => held.release_with(Op::Condition(ConditionOp::Release)),
            GuardInner::Memory { grant, .. } => grant.release(),
        }
    }
}
