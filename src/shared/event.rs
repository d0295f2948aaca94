//! [`Event`]: a flag that processes can set, clear and wait for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::queue::expect_started;
use super::waiters::{self, Waiters};
use crate::error::Result;
use crate::protocol::hub::{Answer, EventOp, Failure, Op};
use crate::shm::arena::Cell;
use crate::shm::event_cell::EventCell;
use crate::shm::segment::SHAREABLE;

/// An event's state on its hub.
struct EventState {
    set: bool,
    waiters: VecDeque<Request>,
}

impl Object for EventState {
    fn call(&mut self, request: Request, op: Op, _items: Items) {
        let Op::Event(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not an event".into())));
            return;
        };
        match op {
            EventOp::Set => {
                self.set = true;
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.answer(Reply::ok(Answer::Flag(true)));
                }
                let _ = request.answer(Reply::ok(Answer::Done));
            }
            EventOp::Clear => {
                self.set = false;
                let _ = request.answer(Reply::ok(Answer::Done));
            }
            EventOp::IsSet => {
                let _ = request.answer(Reply::ok(Answer::Flag(self.set)));
            }
            EventOp::Wait => {
                if self.set {
                    let _ = request.answer(Reply::ok(Answer::Flag(true)));
                } else {
                    self.waiters.push_back(request);
                }
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        take_parked(&mut self.waiters, conn, id, |r| r)
    }

    fn disconnected(&mut self, conn: ConnId) {
        self.waiters.retain(|r| r.caller.conn != conn);
    }

    fn drain(&mut self) -> Vec<Request> {
        self.waiters.drain(..).collect()
    }
}

/// A flag shared between processes: Python's `multiprocessing.Event`.
///
/// Starts unset. [`set`](Self::set) wakes every waiter, in every process;
/// [`clear`](Self::clear) makes later waits wait again. A handle is `Clone + Serialize +
/// Deserialize`: pass it to a worker.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let ready = multiproc::Event::new();
/// ready.set().await?;
/// assert!(ready.wait_timeout(std::time::Duration::from_secs(1)).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Where waiters park (an event in shared memory), or the event itself (a manager's).
    handle: Handle,
    memory: Option<Cell<EventCell>>,
}

/// A new, unset event's state, for whichever hub will hold it.
pub(crate) fn state() -> Box<dyn Object> {
    Box::new(EventState {
        set: false,
        waiters: VecDeque::new(),
    })
}

impl Event {
    /// An unset event in shared memory; its waiters park at this process's hub.
    ///
    /// # Panics
    ///
    /// If this process cannot create shared memory or bind its hub's socket (out of memory
    /// or descriptors).
    #[allow(clippy::new_without_default)] // creating an event starts a server; keep it explicit
    pub fn new() -> Self {
        if !SHAREABLE {
            let handle = expect_started(Handle::create(state()));
            return Event {
                handle,
                memory: None,
            };
        }
        let cell = expect_started(Cell::<EventCell>::new());
        let (segment, offset) = cell.place();
        let handle = expect_started(Handle::create(Box::new(Waiters::new(
            segment.clone(),
            offset,
        ))));
        Event {
            handle,
            memory: Some(cell),
        }
    }

    /// Waits in shared memory until the flag is set, parking at the hub between looks;
    /// `Ok(false)` once `timeout` has passed.
    async fn wait_in_memory(&self, cell: &EventCell, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if cell.is_set() {
                return Ok(true);
            }
            let Some(slice) = waiters::next_slice(deadline) else {
                return Ok(false);
            };
            let Some(expect) = cell.announce_waiter() else {
                return Ok(true);
            };
            waiters::park(&self.handle, expect, slice, &self.describe()).await?;
        }
    }

    fn describe(&self) -> String {
        format!("event {}", self.handle.object)
    }

    async fn ask(&self, op: EventOp, timeout: Option<Duration>) -> Result<Answer> {
        match client::ask(&self.handle, Op::Event(op), timeout).await? {
            Ok(answer) => Ok(answer),
            Err(Failure::Cancelled) => Ok(Answer::Flag(false)),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// Never for an event made by [`Event::new`], which lives in shared memory. For a
    /// [manager's](crate::Manager::event) event, [`is_closed`](crate::Error::is_closed) once
    /// the manager is gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the flag is set or not.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(event: multiproc::Event) -> multiproc::Result<()> {
    /// event.set().await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self) -> Result<()> {
        if let Some(cell) = &self.memory {
            if cell.set() {
                waiters::wake(&self.handle, true);
            }
            return Ok(());
        }
        self.ask(EventOp::Set, None).await.map(drop)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(event: multiproc::Event) -> multiproc::Result<()> {
    /// event.clear().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<()> {
        if let Some(cell) = &self.memory {
            cell.clear();
            return Ok(());
        }
        self.ask(EventOp::Clear, None).await.map(drop)
    }

    /// Whether the flag is set now.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(event: multiproc::Event) -> multiproc::Result<()> {
    /// if event.is_set().await? { println!("set"); }
    /// # Ok(()) }
    /// ```
    pub async fn is_set(&self) -> Result<bool> {
        if let Some(cell) = &self.memory {
            return Ok(cell.is_set());
        }
        Ok(self.ask(EventOp::IsSet, None).await? == Answer::Flag(true))
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set). A wait on a manager's event never hangs once the manager is
    /// gone; a wait on an event in shared memory goes on after its creator exits, since the
    /// processes that remain may still set it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(event: multiproc::Event) -> multiproc::Result<()> {
    /// event.wait().await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self) -> Result<()> {
        if let Some(cell) = &self.memory {
            return self.wait_in_memory(cell, None).await.map(drop);
        }
        self.ask(EventOp::Wait, None).await.map(drop)
    }

    /// Waits at most `timeout` for the flag; `Ok(true)` if it was set, `Ok(false)` on timeout.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Returns within `timeout` plus about 100 ms whatever the event's process
    /// does (stopped, killed): `Ok(false)` if it did not answer in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(event: multiproc::Event) -> multiproc::Result<()> {
    /// use std::time::Duration;
    /// if !event.wait_timeout(Duration::from_millis(200)).await? { println!("timed out"); }
    /// # Ok(()) }
    /// ```
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        if let Some(cell) = &self.memory {
            return self.wait_in_memory(cell, Some(timeout)).await;
        }
        Ok(self.ask(EventOp::Wait, Some(timeout)).await? == Answer::Flag(true))
    }
}
