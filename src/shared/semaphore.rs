//! [`Semaphore`] and [`BoundedSemaphore`]: counters of permits shared between processes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::lock::{Held, acquire};
use super::queue::expect_started;
use super::waiters::{self, Waiters};
use crate::error::{Error, Result};
use crate::protocol::hub::{Answer, Failure, Op, SemaphoreOp};
use crate::shm::arena::Cell;
use crate::shm::segment::SHAREABLE;
use crate::shm::semaphore_cell::{SemaphoreCell, Take};

/// A semaphore's state on its hub.
struct SemaphoreState {
    value: u64,
    /// For a bounded semaphore, the initial value it may not be released above.
    bound: Option<u64>,
    /// Permits held per connection, so a dead process's permits come back.
    held: HashMap<ConnId, u64>,
    owner_died: bool,
    waiters: VecDeque<Request>,
}

impl SemaphoreState {
    fn grant(&mut self, request: Request) -> bool {
        let conn = request.caller.conn;
        let owner_died = std::mem::take(&mut self.owner_died);
        if request
            .answer(Reply::ok(Answer::Acquired { owner_died }))
            .is_ok()
        {
            self.value -= 1;
            *self.held.entry(conn).or_default() += 1;
            true
        } else {
            self.owner_died = owner_died;
            false
        }
    }

    fn hand_over(&mut self) {
        while self.value > 0
            && let Some(waiter) = self.waiters.pop_front()
        {
            if waiter.replier.is_waiting() {
                self.grant(waiter);
            }
        }
    }

    fn forget_one(&mut self, conn: ConnId) {
        // A permit may be released by another process than the one that took it (as in
        // Python); then any holder's count goes down, so a later death returns no extra.
        let conn = if self.held.get(&conn).is_some_and(|n| *n > 0) {
            Some(conn)
        } else {
            self.held.iter().find(|(_, n)| **n > 0).map(|(c, _)| *c)
        };
        if let Some(conn) = conn
            && let Some(count) = self.held.get_mut(&conn)
        {
            *count -= 1;
        }
    }
}

impl Object for SemaphoreState {
    fn call(&mut self, request: Request, op: Op, _items: Items) {
        let Op::Semaphore(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not a semaphore".into())));
            return;
        };
        match op {
            SemaphoreOp::Acquire { wait } => {
                if wait {
                    // Through the queue even when a permit is free, so a waiter whose
                    // cancellation is still on its way cannot hold back the ones behind it.
                    self.waiters.push_back(request);
                    self.hand_over();
                } else if self.value > 0 && self.waiters.is_empty() {
                    self.grant(request);
                } else {
                    let _ = request.answer(Reply::ok(Answer::Flag(false)));
                }
            }
            SemaphoreOp::Release => {
                if self.bound.is_some_and(|bound| self.value >= bound) {
                    let _ = request.answer(Reply::failed(Failure::InvalidState(
                        "a bounded semaphore released more times than it was acquired".into(),
                    )));
                    return;
                }
                self.value += 1;
                self.forget_one(request.caller.conn);
                let _ = request.answer(Reply::ok(Answer::Done));
                self.hand_over();
            }
            SemaphoreOp::Value => {
                let _ = request.answer(Reply::ok(Answer::Count(self.value)));
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        take_parked(&mut self.waiters, conn, id, |r| r)
    }

    fn disconnected(&mut self, conn: ConnId) {
        self.waiters.retain(|r| r.caller.conn != conn);
        if let Some(count) = self.held.remove(&conn)
            && count > 0
        {
            self.value += count;
            self.owner_died = true;
            self.hand_over();
        }
    }

    fn drain(&mut self) -> Vec<Request> {
        self.waiters.drain(..).collect()
    }
}

/// Holds one permit of a [`Semaphore`] or [`BoundedSemaphore`] until dropped.
#[derive(Debug)]
#[must_use = "the permit is released as soon as it is dropped"]
pub struct SemaphorePermit {
    grant: PermitGrant,
}

/// A permit of a semaphore in shared memory, or of one served by a hub (a manager's).
#[derive(Debug)]
enum PermitGrant {
    Memory {
        semaphore: MemorySemaphore,
        owner_died: bool,
        armed: bool,
    },
    Hub(Held),
}

impl SemaphorePermit {
    /// Whether a process died holding permits, which were given back on its behalf (like
    /// `EOWNERDEAD`).
    pub fn owner_died(&self) -> bool {
        match &self.grant {
            PermitGrant::Memory { owner_died, .. } => *owner_died,
            PermitGrant::Hub(held) => held.owner_died(),
        }
    }

    /// Keeps the permit taken after the guard is gone; give it back with `release`.
    pub fn forget(mut self) {
        match &mut self.grant {
            PermitGrant::Memory { armed, .. } => *armed = false,
            PermitGrant::Hub(held) => {
                held.disarm();
            }
        }
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        match &mut self.grant {
            PermitGrant::Memory {
                semaphore, armed, ..
            } => {
                if std::mem::take(armed) {
                    // A bounded semaphore released past its bound by someone else meanwhile
                    // is left as it is.
                    let _ = semaphore.release_permit();
                }
            }
            PermitGrant::Hub(held) => held.release_with(Op::Semaphore(SemaphoreOp::Release)),
        }
    }
}

/// A semaphore in shared memory and the hub where its waiters park.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemorySemaphore {
    cell: Cell<SemaphoreCell>,
    handle: Handle,
}

impl MemorySemaphore {
    fn new(permits: u64, bounded: bool) -> Result<Self> {
        let cell = Cell::<SemaphoreCell>::new()?;
        cell.init(permits, bounded);
        let (segment, offset) = cell.place();
        let handle = Handle::create(Box::new(Waiters::new(segment.clone(), offset)))?;
        Ok(MemorySemaphore { cell, handle })
    }

    /// Takes a permit: at once if one is free, else parked at the hub until one is released,
    /// a dead holder's permits come back, or `timeout` passes (`None`). Without `wait`, only
    /// tries.
    async fn take(
        &self,
        wait: bool,
        timeout: Option<Duration>,
        what: &str,
    ) -> Result<Option<SemaphorePermit>> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut parked = false;
        loop {
            match self.cell.try_take() {
                Take::Taken { owner_died } => {
                    return Ok(Some(SemaphorePermit {
                        grant: PermitGrant::Memory {
                            semaphore: self.clone(),
                            owner_died,
                            armed: true,
                        },
                    }));
                }
                Take::Empty(_) => {}
            }
            // After a park, or on a try, look for holders that died (reads of /proc).
            if (parked || !wait) && self.cell.recover_from_dead() > 0 {
                waiters::wake(&self.handle, true);
                continue;
            }
            let Some(slice) = waiters::next_slice(deadline).filter(|_| wait) else {
                return Ok(None);
            };
            let Some(expect) = self.cell.announce_waiter() else {
                continue;
            };
            waiters::park(&self.handle, expect, slice, what).await?;
            parked = true;
        }
    }

    /// Gives a permit back; `Err` if a bounded semaphore is full.
    fn release_permit(&self) -> std::result::Result<(), ()> {
        if self.cell.release()? {
            waiters::wake(&self.handle, false);
        }
        Ok(())
    }
}

/// A new semaphore's state with `permits` permits, for whichever hub will hold it; a
/// `bounded` one refuses to be released above `permits`.
pub(crate) fn state(permits: u64, bounded: bool) -> Box<dyn Object> {
    Box::new(SemaphoreState {
        value: permits,
        bound: bounded.then_some(permits),
        held: HashMap::new(),
        owner_died: false,
        waiters: VecDeque::new(),
    })
}

macro_rules! semaphore_handle {
    ($name:ident, $bounded:expr, $noun:literal) => {
        impl $name {
            #[doc = concat!("A ", $noun, " with `permits` permits, in shared memory; its waiters park at this process's hub.")]
            ///
            /// # Panics
            ///
            /// If this process cannot create shared memory or bind its hub's socket (out of
            /// memory or descriptors).
            pub fn new(permits: u64) -> Self {
                if !SHAREABLE {
                    let handle = expect_started(Handle::create(state(permits, $bounded)));
                    return $name { handle, memory: None };
                }
                let semaphore = expect_started(MemorySemaphore::new(permits, $bounded));
                $name { handle: semaphore.handle.clone(), memory: Some(semaphore) }
            }

            fn describe(&self) -> String {
                format!("{} {}", $noun, self.handle.object)
            }

            async fn acquire_with(&self, wait: bool, timeout: Option<Duration>) -> Result<Option<SemaphorePermit>> {
                if let Some(semaphore) = &self.memory {
                    return semaphore.take(wait, timeout, &self.describe()).await;
                }
                let op = Op::Semaphore(SemaphoreOp::Acquire { wait });
                let held = acquire(&self.handle, op, timeout, &self.describe()).await?;
                Ok(held.map(|held| SemaphorePermit { grant: PermitGrant::Hub(held) }))
            }

            /// Waits for a permit; the permit goes back when dropped. A free permit is taken in
            /// shared memory, without a message; otherwise the waiter parks at the creator's
            /// hub (a manager's semaphore serves its waiters first come, first served).
            /// Permits of a process that dies holding them come back within a second, and
            /// the next permit's [`owner_died`](SemaphorePermit::owner_died) is `true`.
            ///
            /// # Errors
            ///
            /// Never for a semaphore made by `new` (after its creator exits, waiters poll).
            /// For a [manager's](crate::Manager::semaphore) semaphore,
            /// [`is_closed`](crate::Error::is_closed) once the manager is gone.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: a permit granted to a cancelled acquire is given back, even when
            /// the grant arrives after the cancellation.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(s: multiproc::", stringify!($name), ") -> multiproc::Result<()> {")]
            /// let _permit = s.acquire().await?;
            /// # Ok(()) }
            /// ```
            pub async fn acquire(&self) -> Result<SemaphorePermit> {
                Ok(self.acquire_with(true, None).await?.expect("a waiting acquire is granted"))
            }

            /// Takes a permit if one is free now; `Ok(None)` otherwise.
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
            #[doc = concat!("# async fn demo(s: multiproc::", stringify!($name), ") -> multiproc::Result<()> {")]
            /// if let Some(_permit) = s.try_acquire().await? { /* ... */ }
            /// # Ok(()) }
            /// ```
            pub async fn try_acquire(&self) -> Result<Option<SemaphorePermit>> {
                self.acquire_with(false, None).await
            }

            /// Waits at most `timeout` for a permit; `Ok(None)` on timeout.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe. Returns within `timeout` plus about 100 ms whatever the
            /// semaphore's process does (stopped, killed); a permit it grants after that (a
            /// stopped process that resumes) is returned as soon as the grant reaches this
            /// process, never kept by nobody.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(s: multiproc::", stringify!($name), ") -> multiproc::Result<()> {")]
            /// let permit = s.acquire_timeout(std::time::Duration::from_millis(50)).await?;
            /// # Ok(()) }
            /// ```
            pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<SemaphorePermit>> {
                self.acquire_with(true, Some(timeout)).await
            }

            /// Adds a permit (Python's `release`).
            ///
            /// # Errors
            ///
            /// For a [`BoundedSemaphore`], [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState)
            /// if that would exceed the initial value; [`is_closed`](crate::Error::is_closed) if
            /// the semaphore's process has exited.
            ///
            /// # Cancel safety
            ///
            /// Not cancel safe: a cancelled release may or may not have added the permit.
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = concat!("# async fn demo(s: multiproc::", stringify!($name), ") -> multiproc::Result<()> {")]
            /// s.acquire().await?.forget();
            /// s.release().await?;
            /// # Ok(()) }
            /// ```
            pub async fn release(&self) -> Result<()> {
                if let Some(semaphore) = &self.memory {
                    return semaphore.release_permit().map_err(|()| {
                        Error::invalid_state(format!(
                            "{}: a bounded semaphore released more times than it was acquired",
                            self.describe()
                        ))
                    });
                }
                match client::ask(&self.handle, Op::Semaphore(SemaphoreOp::Release), None).await? {
                    Ok(_) => Ok(()),
                    Err(failure) => Err(failure.into_error(&self.describe())),
                }
            }

            /// The number of free permits now.
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
            #[doc = concat!("# async fn demo(s: multiproc::", stringify!($name), ") -> multiproc::Result<()> {")]
            /// println!("{} permits free", s.value().await?);
            /// # Ok(()) }
            /// ```
            pub async fn value(&self) -> Result<u64> {
                if let Some(semaphore) = &self.memory {
                    return Ok(semaphore.cell.value());
                }
                match client::ask(&self.handle, Op::Semaphore(SemaphoreOp::Value), None).await? {
                    Ok(Answer::Count(value)) => Ok(value),
                    Ok(_) => Err(Failure::Protocol("no count".into()).into_error(&self.describe())),
                    Err(failure) => Err(failure.into_error(&self.describe())),
                }
            }
        }
    };
}

/// A semaphore shared between processes: Python's `multiprocessing.Semaphore`. `release` may
/// raise the count above its initial value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Semaphore {
    /// Where waiters park (a semaphore in shared memory), or the semaphore itself (a
    /// manager's).
    handle: Handle,
    memory: Option<MemorySemaphore>,
}

/// A semaphore that refuses to be released above its initial value: Python's
/// `multiprocessing.BoundedSemaphore`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    /// As [`Semaphore`]'s.
    handle: Handle,
    memory: Option<MemorySemaphore>,
}

semaphore_handle!(Semaphore, false, "semaphore");
semaphore_handle!(BoundedSemaphore, true, "bounded semaphore");
