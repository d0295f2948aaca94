//! Parking for objects whose state is in shared memory: a process that must wait for a lock
//! word or an event flag to change parks here, at the hub of the process that created the
//! object, like a futex whose queue is kept by a server.
//!
//! A waiter first marks the word ([`WAITERS`](crate::shm::owner::WAITERS)), then parks with
//! the word it saw (`Park { expect }`). The hub checks the word while it holds its own lock:
//! if it has changed, the waiter is answered at once; otherwise it is parked. Whoever changes
//! the word and finds the mark sends `Wake` after the change. Since the hub applies a park and
//! a wake one after the other, a wake can never fall between a waiter's check and its
//! parking: either the park sees the new word, or the wake finds the waiter parked.
//!
//! Waking one waiter clears the mark with the release that rang; if others stay parked, the
//! hub sets it again, so the next release rings again. A wake that reaches a waiter who has
//! just stopped waiting is passed on (see [`undo_of`](crate::protocol::hub::undo_of)), and
//! waiters park for a bounded slice and look again, so no wake is ever lost for long.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::{self, Handle, Timer};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use crate::error::Result;
use crate::protocol::hub::{Answer, Failure, Op, WaitersOp};
use crate::shm::owner::WAITERS;
use crate::shm::segment::Segment;

/// The waiters of one cell, held by the hub of the cell's creator.
pub(crate) struct Waiters {
    /// The cell's segment (kept mapped) and the offset of its word.
    segment: Segment,
    offset: usize,
    parked: VecDeque<Request>,
}

impl Waiters {
    /// The waiters of the word at `offset` in `segment`.
    pub(crate) fn new(segment: Segment, offset: usize) -> Self {
        Waiters {
            segment,
            offset,
            parked: VecDeque::new(),
        }
    }

    fn word(&self) -> &AtomicU64 {
        self.segment.at(self.offset)
    }

    fn wake(&mut self, all: bool) {
        while let Some(waiter) = self.parked.pop_front() {
            if waiter.answer(Reply::ok(Answer::Woken)).is_ok() && !all {
                break;
            }
        }
        if !self.parked.is_empty() {
            self.word().fetch_or(WAITERS, Ordering::AcqRel);
        }
    }
}

impl Object for Waiters {
    fn call(&mut self, request: Request, op: Op, _items: Items) {
        let Op::Waiters(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol(
                "not a shared-memory object".into(),
            )));
            return;
        };
        match op {
            WaitersOp::Park { expect } => {
                if self.word().load(Ordering::Acquire) == expect {
                    self.parked.push_back(request);
                } else {
                    let _ = request.answer(Reply::ok(Answer::Woken));
                }
            }
            WaitersOp::Wake { all } => {
                self.wake(all);
                let _ = request.answer(Reply::ok(Answer::Done));
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        take_parked(&mut self.parked, conn, id, |r| r)
    }

    fn disconnected(&mut self, conn: ConnId) {
        // What a dead process held is in the cell, not here: every waiter looks at the word
        // again now, sees the dead holder if it was that process, and takes the lock back.
        self.parked.retain(|r| r.caller.conn != conn);
        self.wake(true);
    }

    fn drain(&mut self) -> Vec<Request> {
        self.parked.drain(..).collect()
    }
}

/// How long a waiter stays parked before it looks at the cell again: the bound on a lost
/// wake, and how often a lock's waiter checks that its holder is alive.
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(200);

/// How long a waiter sleeps between looks once the hub is gone (its process exited): the
/// cell still works, by polling.
const POLL_WITHOUT_HUB: Duration = Duration::from_millis(5);

/// Parks at `handle`'s hub while the word is `expect`, for at most `slice`. Returns early when
/// woken or when the word changed; after the hub's process has exited, sleeps a little
/// instead, so that waiting still works between the processes that remain.
///
/// # Cancel safety
///
/// Cancel safe: a wake that reaches a cancelled park is passed to the next waiter.
pub(crate) async fn park(handle: &Handle, expect: u64, slice: Duration, what: &str) -> Result<()> {
    match client::ask(handle, Op::Waiters(WaitersOp::Park { expect }), Some(slice)).await {
        Ok(Ok(_) | Err(Failure::Cancelled)) => Ok(()),
        Ok(Err(Failure::Closed | Failure::Gone(_) | Failure::NoSuchObject)) => {
            Timer::after(slice.min(POLL_WITHOUT_HUB)).await;
            Ok(())
        }
        Err(error) if error.is_closed() => {
            Timer::after(slice.min(POLL_WITHOUT_HUB)).await;
            Ok(())
        }
        Ok(Err(failure)) => Err(failure.into_error(what)),
        Err(error) => Err(error),
    }
}

/// Rings `handle`'s hub after a change that a parked waiter must see, without waiting.
pub(crate) fn wake(handle: &Handle, all: bool) {
    client::send_now(handle, Op::Waiters(WaitersOp::Wake { all }));
}

/// The time left before `deadline`, cut to one [`PARK_SLICE`]; `None` once it has passed.
pub(crate) fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(PARK_SLICE),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(PARK_SLICE))
        }
    }
}
