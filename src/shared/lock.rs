//! [`Lock`] and [`RLock`]: mutual exclusion between processes, released on behalf of a
//! holder that dies.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::{self, Handle, Link};
use super::hub::{Caller, ConnId, Items, Object, Reply, Request, take_parked};
use super::queue::expect_started;
use super::waiters::{self, Waiters};
use crate::error::{Error, Result};
use crate::protocol::hub::{Answer, Failure, LockOp, Op};
use crate::shm::arena::Cell;
use crate::shm::lock_cell::{Attempt, LockCell, NotReleased};
use crate::shm::segment::SHAREABLE;

/// A lock's state on its hub; `recursive` for an [`RLock`]. Also the lock inside a
/// [`Condition`](super::Condition).
pub(crate) struct LockState {
    recursive: bool,
    holder: Option<Caller>,
    depth: u32,
    /// The last holder died holding the lock; the next acquirer is told.
    owner_died: bool,
    waiters: VecDeque<Request>,
}

impl LockState {
    pub(crate) fn new(recursive: bool) -> Self {
        LockState {
            recursive,
            holder: None,
            depth: 0,
            owner_died: false,
            waiters: VecDeque::new(),
        }
    }

    /// Whether `caller` holds the lock.
    pub(crate) fn is_held_by(&self, caller: Caller) -> bool {
        self.holder == Some(caller)
    }

    /// Grants the lock to `request` if it is free, else parks it (or, without `wait`, answers
    /// that it is taken).
    pub(crate) fn acquire(&mut self, request: Request, wait: bool) {
        match self.holder {
            None => {
                if self.grant(request).is_err() {
                    self.hand_over();
                }
            }
            Some(holder) if self.recursive && holder == request.caller => {
                self.depth += 1;
                let _ = request.answer(Reply::ok(Answer::Acquired { owner_died: false }));
            }
            Some(_) if wait => self.waiters.push_back(request),
            Some(_) => {
                let _ = request.answer(Reply::ok(Answer::Flag(false)));
            }
        }
    }

    /// Releases one level for `caller`; the next waiter gets the lock once it is free.
    pub(crate) fn release(&mut self, caller: Caller) -> std::result::Result<(), Failure> {
        match self.holder {
            None => Err(Failure::InvalidState("release of an unlocked lock".into())),
            Some(holder) if self.recursive && holder != caller => Err(Failure::InvalidState(
                "release of a recursive lock by a task that does not own it".into(),
            )),
            Some(_) => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.hand_over();
                }
                Ok(())
            }
        }
    }

    /// Releases every level, whoever holds it (a condition's wait).
    pub(crate) fn release_fully(&mut self) {
        self.hand_over();
    }

    fn grant(&mut self, request: Request) -> std::result::Result<(), ()> {
        let caller = request.caller;
        let owner_died = self.owner_died;
        match request.answer(Reply::ok(Answer::Acquired { owner_died })) {
            Ok(()) => {
                self.holder = Some(caller);
                self.depth = 1;
                self.owner_died = false;
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    fn hand_over(&mut self) {
        self.holder = None;
        self.depth = 0;
        while let Some(waiter) = self.waiters.pop_front() {
            if waiter.replier.is_waiting() && self.grant(waiter).is_ok() {
                return;
            }
        }
    }
}

impl Object for LockState {
    fn call(&mut self, request: Request, op: Op, _items: Items) {
        let Op::Lock(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not a lock".into())));
            return;
        };
        match op {
            LockOp::Acquire { wait } => self.acquire(request, wait),
            LockOp::Release => {
                let reply = match self.release(request.caller) {
                    Ok(()) => Reply::ok(Answer::Done),
                    Err(failure) => Reply::failed(failure),
                };
                let _ = request.answer(reply);
            }
            LockOp::IsLocked => {
                let _ = request.answer(Reply::ok(Answer::Flag(self.holder.is_some())));
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        take_parked(&mut self.waiters, conn, id, |r| r)
    }

    fn disconnected(&mut self, conn: ConnId) {
        self.waiters.retain(|r| r.caller.conn != conn);
        if self.holder.is_some_and(|holder| holder.conn == conn) {
            self.owner_died = true;
            self.hand_over();
        }
    }

    fn drain(&mut self) -> Vec<Request> {
        self.waiters.drain(..).collect()
    }
}

/// What an acquire asks and answers, shared by every lock-like handle.
pub(crate) async fn acquire(
    handle: &Handle,
    op: Op,
    timeout: Option<Duration>,
    what: &str,
) -> Result<Option<Held>> {
    let link = client::link(handle).await?;
    let task = client::current_task();
    match client::ask(handle, op, timeout).await? {
        Ok(Answer::Acquired { owner_died }) => Ok(Some(Held {
            link,
            object: handle.object,
            task,
            owner_died,
            release: true,
        })),
        Ok(_) | Err(Failure::Cancelled) => Ok(None),
        Err(failure) => Err(failure.into_error(what)),
    }
}

/// A grant held by a guard: released on drop without waiting (a `Drop` cannot await), in
/// the order of this process's other requests.
#[derive(Debug)]
pub(crate) struct Held {
    link: Link,
    object: u64,
    pub(crate) task: u64,
    owner_died: bool,
    release: bool,
}

impl Held {
    pub(crate) fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Stops the guard from releasing on drop; returns whether it would have.
    pub(crate) fn disarm(&mut self) -> bool {
        std::mem::take(&mut self.release)
    }

    /// Makes the guard release on drop again, after it was [disarmed](Self::disarm).
    pub(crate) fn rearm(&mut self) {
        self.release = true;
    }

    pub(crate) fn release_with(&mut self, op: Op) {
        if std::mem::take(&mut self.release) {
            client::send_and_forget(&self.link, self.object, self.task, op, Vec::new());
        }
    }
}

macro_rules! lock_guard {
    ($guard:ident, $lock:literal) => {
        #[doc = concat!("Holds a [`", $lock, "`] until dropped.")]
        ///
        /// Dropping the guard releases the lock at once: in shared memory, with a message to
        /// the lock's process only if some process waits for it.
        #[derive(Debug)]
        #[must_use = "the lock is released as soon as the guard is dropped"]
        pub struct $guard {
            grant: Grant,
        }

        impl $guard {
            /// Whether the previous holder's process died holding the lock, so it was taken
            /// back on its behalf (like `EOWNERDEAD`): whatever it protected may be
            /// half-updated.
            pub fn owner_died(&self) -> bool {
                self.grant.owner_died()
            }

            /// Keeps the lock held after the guard is gone (Python's `acquire` without
            /// `release`); release it later with the lock's `release`.
            pub fn forget(mut self) {
                self.grant.disarm();
            }
        }

        impl Drop for $guard {
            fn drop(&mut self) {
                self.grant.release();
            }
        }
    };
}

/// What a lock guard holds: a grant of a lock in shared memory, or of one served by a hub (a
/// manager's lock).
#[derive(Debug)]
enum Grant {
    Memory(MemoryGrant),
    Hub(Held),
}

impl Grant {
    fn owner_died(&self) -> bool {
        match self {
            Grant::Memory(grant) => grant.owner_died,
            Grant::Hub(held) => held.owner_died,
        }
    }

    fn disarm(&mut self) {
        match self {
            Grant::Memory(grant) => grant.armed = false,
            Grant::Hub(held) => held.release = false,
        }
    }

    fn release(&mut self) {
        match self {
            Grant::Memory(grant) => grant.release(),
            Grant::Hub(held) => held.release_with(Op::Lock(LockOp::Release)),
        }
    }
}

/// A lock in shared memory and the hub where its waiters park. Clones share one
/// [`LockPlace`], so a guard holds the lock for the cost of a reference count: cloning the
/// hub's name would allocate on every acquire.
#[derive(Debug, Clone)]
pub(crate) struct MemoryLock(Arc<LockPlace>);

/// Where a [`MemoryLock`] is: its cell, and the hub where its waiters park.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LockPlace {
    cell: Cell<LockCell>,
    handle: Handle,
}

impl std::ops::Deref for MemoryLock {
    type Target = LockPlace;

    fn deref(&self) -> &LockPlace {
        &self.0
    }
}

// By hand, as the place itself: serde's impls for `Arc` need its `rc` feature.
impl Serialize for MemoryLock {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MemoryLock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        LockPlace::deserialize(deserializer).map(|place| MemoryLock(Arc::new(place)))
    }
}

/// A held [`MemoryLock`]: the task that took it (for a recursive lock) and whether its last
/// holder had died.
#[derive(Debug)]
pub(crate) struct MemoryGrant {
    lock: MemoryLock,
    task: Option<u64>,
    owner_died: bool,
    armed: bool,
}

impl MemoryGrant {
    pub(crate) fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Gives the lock back, once.
    pub(crate) fn release(&mut self) {
        if std::mem::take(&mut self.armed) {
            // A plain lock someone else released meanwhile is left alone.
            if let Ok(true) = self.lock.cell.release(self.task, true) {
                waiters::wake(&self.lock.handle, false);
            }
        }
    }

    /// Whether the lock is held as this grant says: by this process and, for a recursive
    /// lock, by its task.
    pub(crate) fn is_held(&self) -> bool {
        self.armed && self.lock.cell.is_held_by(self.task)
    }

    /// Gives back every level held (a condition's wait); returns them for [`retake`].
    ///
    /// [`retake`]: Self::retake
    pub(crate) fn release_all(&mut self) -> Result<u64> {
        let (levels, wake) = self.lock.cell.release_all(self.task).map_err(|_| {
            Error::invalid_state("wait on a condition whose lock this task does not hold")
        })?;
        self.armed = false;
        if wake {
            waiters::wake(&self.lock.handle, false);
        }
        Ok(levels)
    }

    /// Takes the lock again after [`release_all`](Self::release_all), with its levels,
    /// waiting as long as it takes.
    pub(crate) async fn retake(&mut self, levels: u64, what: impl Fn() -> String) -> Result<()> {
        let grant = self.lock.take(self.task, true, None, what).await?;
        let mut grant = grant.expect("a waiting take is granted");
        self.lock.cell.restore_depth(levels);
        self.owner_died = grant.owner_died;
        self.armed = true;
        grant.armed = false;
        Ok(())
    }
}

impl MemoryLock {
    /// Whether this process (and, for a recursive lock, `task`) holds the lock.
    pub(crate) fn is_held_by(&self, task: Option<u64>) -> bool {
        self.cell.is_held_by(task)
    }

    /// Takes the lock for a [`Condition`](super::Condition)'s guard, as `task` for a
    /// recursive lock.
    pub(crate) async fn acquire_grant(
        &self,
        task: Option<u64>,
        what: impl Fn() -> String,
    ) -> Result<MemoryGrant> {
        Ok(self
            .take(task, true, None, what)
            .await?
            .expect("a waiting take is granted"))
    }
}

impl MemoryLock {
    /// A free lock whose waiters park at this process's hub.
    fn new() -> Result<Self> {
        Self::in_cell(Cell::<LockCell>::new()?, None)
    }

    /// A lock whose state is `cell` (in a segment of the caller's), its waiters parking at
    /// `waiters`, or at a new object on this process's hub (`None`).
    fn in_cell(cell: Cell<LockCell>, waiters: Option<Handle>) -> Result<Self> {
        let handle = match waiters {
            Some(handle) => handle,
            None => {
                let (segment, offset) = cell.place();
                Handle::create(Box::new(Waiters::new(segment.clone(), offset)))?
            }
        };
        Ok(MemoryLock(Arc::new(LockPlace { cell, handle })))
    }

    /// Takes the lock: at once if it is free (a compare-and-swap), else parked at its hub
    /// until it is released, its holder dies, or `timeout` passes (`None`). Without `wait`,
    /// only tries. `task` is `Some` for a recursive lock. `what` names the lock in an error;
    /// it is called only before parking, so that a free lock is taken without formatting.
    async fn take(
        &self,
        task: Option<u64>,
        wait: bool,
        timeout: Option<Duration>,
        what: impl Fn() -> String,
    ) -> Result<Option<MemoryGrant>> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut parked = false;
        loop {
            let seen = match self.cell.take_spinning(task) {
                Attempt::Taken { owner_died } => return Ok(Some(self.grant(task, owner_died))),
                Attempt::Again => return Ok(Some(self.grant(task, false))),
                Attempt::Held(seen) => seen,
            };
            // A holder found again after a park, or by a try, may have died: look (a read
            // of /proc) only then, not on the first contended look.
            if (parked || !wait) && self.cell.recover_from_dead(seen) {
                continue;
            }
            let Some(slice) = waiters::next_slice(deadline).filter(|_| wait) else {
                return Ok(None);
            };
            let Some(expect) = self.cell.announce_waiter(seen) else {
                continue;
            };
            waiters::park(&self.handle, expect, slice, &what()).await?;
            parked = true;
        }
    }

    fn grant(&self, task: Option<u64>, owner_died: bool) -> MemoryGrant {
        MemoryGrant {
            lock: self.clone(),
            task,
            owner_died,
            armed: true,
        }
    }

    /// Releases on behalf of whoever holds it (a plain lock) or of `task` (a recursive one).
    fn release(&self, task: Option<u64>, what: &str) -> Result<()> {
        match self.cell.release(task, false) {
            Ok(wake) => {
                if wake {
                    waiters::wake(&self.handle, false);
                }
                Ok(())
            }
            Err(NotReleased::NotLocked) => Err(Error::invalid_state(format!(
                "{what}: release of an unlocked lock"
            ))),
            Err(NotReleased::NotOwner) => Err(Error::invalid_state(format!(
                "{what}: release of a recursive lock by a task that does not own it"
            ))),
        }
    }
}

lock_guard!(LockGuard, "Lock");
lock_guard!(RLockGuard, "RLock");

macro_rules! lock_handle {
    ($lock:ident, $guard:ident, $recursive:expr, $noun:literal) => {
        impl $lock {
            #[doc = concat!("An unlocked ", $noun, " in shared memory; its waiters park at this process's hub.")]
            ///
            /// # Panics
            ///
            /// If this process cannot create shared memory or bind its hub's socket (out of
            /// memory or descriptors).
            #[allow(clippy::new_without_default)] // creating a lock starts a server
            pub fn new() -> Self {
                if !SHAREABLE {
                    let state = Box::new(LockState::new($recursive));
                    return $lock { handle: expect_started(Handle::create(state)), memory: None };
                }
                let lock = expect_started(MemoryLock::new());
                $lock { handle: lock.handle.clone(), memory: Some(lock) }
            }

            fn describe(&self) -> String {
                format!("{} {}", $noun, self.handle.object)
            }

            /// The lock in shared memory, with the task that would own it; `None` for a
            /// lock served by a hub.
            pub(crate) fn in_memory(&self) -> Option<(&MemoryLock, Option<u64>)> {
                self.memory.as_ref().map(|lock| (lock, self.owner()))
            }

            fn owner(&self) -> Option<u64> {
                $recursive.then(client::current_task)
            }

            async fn acquire_with(&self, wait: bool, timeout: Option<Duration>) -> Result<Option<$guard>> {
                if let Some(lock) = &self.memory {
                    let grant = lock.take(self.owner(), wait, timeout, || self.describe()).await?;
                    return Ok(grant.map(|grant| $guard { grant: Grant::Memory(grant) }));
                }
                let held = acquire(
                    &self.handle,
                    Op::Lock(LockOp::Acquire { wait }),
                    timeout,
                    &self.describe(),
                )
                .await?;
                Ok(held.map(|held| $guard { grant: Grant::Hub(held) }))
            }

            /// Waits for the lock; the guard releases it when dropped.
            ///
            /// A free lock is taken in shared memory, without a message; a held one is
            /// waited for at its creator's hub, and the waiter that finds it free first takes
            /// it (as with Python's locks, there is no queue). A manager's lock serves its
            /// waiters first come, first served. If the previous holder's process died holding
            /// the lock, it was taken back within a second and the guard's
            /// [`owner_died`]($guard::owner_died) is `true`.
            ///
            /// # Errors
            ///
            /// Never for a lock made by `new`: after its creator exits, its waiters look for
            /// the lock every few milliseconds instead of parking. For a
            /// [manager's](crate::Manager::lock) lock, [`is_closed`](crate::Error::is_closed)
            /// once the manager is gone.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: a cancelled acquire leaves the waiters, and a wake or grant that
            /// crossed the cancellation goes on to the next waiter.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(lock: multiproc::", stringify!($lock), ") -> multiproc::Result<()> {")]
            /// let guard = lock.acquire().await?;
            /// if guard.owner_died() { println!("repairing after a dead holder"); }
            /// drop(guard);
            /// # Ok(()) }
            /// ```
            pub async fn acquire(&self) -> Result<$guard> {
                Ok(self.acquire_with(true, None).await?.expect("a waiting acquire is granted"))
            }

            /// Takes the lock if it is free now; `Ok(None)` if another holder has it.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(lock: multiproc::", stringify!($lock), ") -> multiproc::Result<()> {")]
            /// if let Some(guard) = lock.try_acquire().await? { /* ... */ }
            /// # Ok(()) }
            /// ```
            pub async fn try_acquire(&self) -> Result<Option<$guard>> {
                self.acquire_with(false, None).await
            }

            /// Waits at most `timeout` for the lock; `Ok(None)` on timeout.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe, as [`acquire`](Self::acquire). Returns within `timeout` plus about
            /// 100 ms whatever the lock's process does (stopped, killed); a grant it sends
            /// after that (a stopped process that resumes) is released as soon as it reaches
            /// this process, never kept by nobody.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(lock: multiproc::", stringify!($lock), ") -> multiproc::Result<()> {")]
            /// use std::time::Duration;
            /// match lock.acquire_timeout(Duration::from_millis(100)).await? {
            ///     Some(guard) => { /* ... */ }
            ///     None => println!("busy"),
            /// }
            /// # Ok(()) }
            /// ```
            pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<$guard>> {
                self.acquire_with(true, Some(timeout)).await
            }

            /// Releases a lock whose guard was [`forget`]($guard::forget)-ten.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) if the lock is not
            /// held (or, for an `RLock`, held by another task); the lock is left as it was.
            ///
            /// # Cancel safety
            ///
            /// Not cancel safe: a cancelled release may or may not have released.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(lock: multiproc::", stringify!($lock), ") -> multiproc::Result<()> {")]
            /// lock.acquire().await?.forget();
            /// lock.release().await?;
            /// # Ok(()) }
            /// ```
            pub async fn release(&self) -> Result<()> {
                if let Some(lock) = &self.memory {
                    return lock.release(self.owner(), &self.describe());
                }
                match client::ask(&self.handle, Op::Lock(LockOp::Release), None).await? {
                    Ok(_) => Ok(()),
                    Err(failure) => Err(failure.into_error(&self.describe())),
                }
            }

            /// Whether some holder has the lock now.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(lock: multiproc::", stringify!($lock), ") -> multiproc::Result<()> {")]
            /// println!("locked: {}", lock.is_locked().await?);
            /// # Ok(()) }
            /// ```
            pub async fn is_locked(&self) -> Result<bool> {
                if let Some(lock) = &self.memory {
                    return Ok(lock.cell.is_locked());
                }
                match client::ask(&self.handle, Op::Lock(LockOp::IsLocked), None).await? {
                    Ok(answer) => Ok(answer == Answer::Flag(true)),
                    Err(failure) => Err(failure.into_error(&self.describe())),
                }
            }
        }
    };
}

impl Lock {
    /// The lock whose state is `cell`, a lock word in a segment of the caller's (a
    /// [`SharedMemory`](crate::SharedMemory)'s header), its waiters parking at `waiters` (a
    /// handle an earlier call made), or at a new object on this process's hub (`None`).
    ///
    /// # Errors
    ///
    /// If this process cannot start its hub.
    pub(crate) fn in_cell(cell: Cell<LockCell>, waiters: Option<Handle>) -> Result<Lock> {
        let memory = MemoryLock::in_cell(cell, waiters)?;
        Ok(Lock {
            handle: memory.handle.clone(),
            memory: Some(memory),
        })
    }

    /// Where this lock's waiters park.
    pub(crate) fn waiters(&self) -> &Handle {
        &self.handle
    }
}

/// A lock shared between processes: Python's `multiprocessing.Lock`.
///
/// Not recursive: a second `acquire` by the holder waits. [`acquire`](Self::acquire) returns
/// a [`LockGuard`] that releases the lock when dropped. If the process holding the lock dies
/// (even by `SIGKILL`), the hub releases it and the next acquirer's guard reports
/// [`owner_died`](LockGuard::owner_died), instead of everyone waiting forever.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let lock = multiproc::Lock::new();
/// {
///     let _guard = lock.acquire().await?;
///     // one process at a time here
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lock {
    /// Where waiters park (a lock in shared memory), or the lock itself (a manager's).
    handle: Handle,
    memory: Option<MemoryLock>,
}

/// A recursive lock shared between processes: Python's `multiprocessing.RLock`.
///
/// The task holding it may acquire it again; it is free once every guard is dropped. The
/// owner is the (process, tokio task) that acquired it: only the owner may release it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RLock {
    /// As [`Lock`]'s.
    handle: Handle,
    memory: Option<MemoryLock>,
}

lock_handle!(Lock, LockGuard, false, "lock");
lock_handle!(RLock, RLockGuard, true, "rlock");
