//! [`Barrier`]: a meeting point for a fixed number of parties, across processes.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::queue::expect_started;
use crate::error::Result;
use crate::protocol::hub::{Answer, BarrierOp, Failure, Op};

/// A barrier's state on its hub.
struct BarrierState {
    parties: usize,
    arrived: VecDeque<Request>,
    broken: bool,
}

impl BarrierState {
    fn break_for_everyone(&mut self) {
        self.broken = true;
        for waiter in self.arrived.drain(..) {
            let _ = waiter.answer(Reply::failed(Failure::BrokenBarrier));
        }
    }
}

impl Object for BarrierState {
    fn call(&mut self, request: Request, op: Op, _items: Items) {
        let Op::Barrier(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not a barrier".into())));
            return;
        };
        match op {
            BarrierOp::Wait => {
                if self.broken {
                    let _ = request.answer(Reply::failed(Failure::BrokenBarrier));
                    return;
                }
                self.arrived.push_back(request);
                if self.arrived.len() == self.parties {
                    for (index, waiter) in self.arrived.drain(..).enumerate() {
                        let _ = waiter.answer(Reply::ok(Answer::Count(index as u64)));
                    }
                }
            }
            BarrierOp::Abort => {
                self.break_for_everyone();
                let _ = request.answer(Reply::ok(Answer::Done));
            }
            BarrierOp::Reset => {
                self.break_for_everyone();
                self.broken = false;
                let _ = request.answer(Reply::ok(Answer::Done));
            }
            BarrierOp::Waiting => {
                let _ = request.answer(Reply::ok(Answer::Count(self.arrived.len() as u64)));
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        // A party that stops waiting (a timeout) breaks the barrier for everyone, as in
        // Python: the others would otherwise wait for it forever.
        let request = take_parked(&mut self.arrived, conn, id, |r| r)?;
        self.break_for_everyone();
        Some(request)
    }

    fn disconnected(&mut self, conn: ConnId) {
        if self.arrived.iter().any(|r| r.caller.conn == conn) {
            self.arrived.retain(|r| r.caller.conn != conn);
            self.break_for_everyone();
        }
    }

    fn drain(&mut self) -> Vec<Request> {
        self.arrived.drain(..).collect()
    }
}

/// A barrier for `parties` tasks in any processes: Python's `multiprocessing.Barrier`.
///
/// Each [`wait`](Self::wait) returns once `parties` waits are pending, with a distinct index
/// in `0..parties` (arrival order); then the barrier is ready for the next round. A wait that
/// times out, an [`abort`](Self::abort), or the death of a waiting process breaks it: every
/// pending and later wait fails with [`is_broken_barrier`](crate::Error::is_broken_barrier)
/// until [`reset`](Self::reset).
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let start_line = multiproc::Barrier::new(3);
/// let index = start_line.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Barrier {
    handle: Handle,
    parties: usize,
}

/// A new barrier's state for `parties` waiters (at least one), for whichever hub will hold
/// it.
pub(crate) fn state(parties: usize) -> Box<dyn Object> {
    Box::new(BarrierState {
        parties,
        arrived: VecDeque::new(),
        broken: false,
    })
}

impl Barrier {
    /// A barrier for `parties` waiters, served by this process.
    ///
    /// # Panics
    ///
    /// If `parties` is 0, or this process's hub cannot bind its socket.
    pub fn new(parties: usize) -> Self {
        assert!(parties > 0, "a barrier needs at least one party");
        let handle = expect_started(Handle::create(state(parties)));
        Barrier { handle, parties }
    }

    /// The number of parties the barrier waits for.
    pub fn parties(&self) -> usize {
        self.parties
    }

    fn describe(&self) -> String {
        format!("barrier {}", self.handle.object)
    }

    async fn ask(&self, op: BarrierOp, timeout: Option<Duration>) -> Result<Answer> {
        match client::ask(&self.handle, Op::Barrier(op), timeout).await? {
            Ok(answer) => Ok(answer),
            Err(Failure::Cancelled) => Err(Failure::BrokenBarrier.into_error(&self.describe())),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    async fn wait_inner(&self, timeout: Option<Duration>) -> Result<usize> {
        match self.ask(BarrierOp::Wait, timeout).await? {
            Answer::Count(index) => Ok(index as usize),
            _ => Err(Failure::Protocol("no index".into()).into_error(&self.describe())),
        }
    }

    /// Waits until every party waits; returns this party's index in `0..parties`.
    ///
    /// # Errors
    ///
    /// [`is_broken_barrier`](crate::Error::is_broken_barrier) if the barrier is or becomes
    /// broken; [`is_closed`](crate::Error::is_closed) if its process has exited.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: cancelling a wait breaks the barrier for the other parties.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(barrier: multiproc::Barrier) -> multiproc::Result<()> {
    /// if barrier.wait().await? == 0 { println!("first through"); }
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self) -> Result<usize> {
        self.wait_inner(None).await
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier for
    /// everyone and fails with [`is_broken_barrier`](crate::Error::is_broken_barrier).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait). Returns within `timeout` plus about 100 ms whatever the
    /// barrier's process does: if it does not answer in time, the wait fails with
    /// [`BrokenBarrier`](crate::ErrorKind::BrokenBarrier), and the barrier breaks for the
    /// other parties once that process reads the cancellation (unless it had let this party
    /// through first).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(barrier: multiproc::Barrier) -> multiproc::Result<()> {
    /// let index = barrier.wait_timeout(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_inner(Some(timeout)).await
    }

    /// Breaks the barrier: pending and later waits fail until [`reset`](Self::reset).
    ///
    /// # Errors
    ///
    /// [`is_closed`](crate::Error::is_closed) if the barrier's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(barrier: multiproc::Barrier) -> multiproc::Result<()> {
    /// barrier.abort().await?;
    /// # Ok(()) }
    /// ```
    pub async fn abort(&self) -> Result<()> {
        self.ask(BarrierOp::Abort, None).await.map(drop)
    }

    /// Makes the barrier usable again; pending waits fail as broken.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(barrier: multiproc::Barrier) -> multiproc::Result<()> {
    /// barrier.reset().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset(&self) -> Result<()> {
        self.ask(BarrierOp::Reset, None).await.map(drop)
    }

    /// How many parties are waiting now.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(barrier: multiproc::Barrier) -> multiproc::Result<()> {
    /// println!("{} waiting", barrier.n_waiting().await?);
    /// # Ok(()) }
    /// ```
    pub async fn n_waiting(&self) -> Result<usize> {
        match self.ask(BarrierOp::Waiting, None).await? {
            Answer::Count(count) => Ok(count as usize),
            _ => Err(Failure::Protocol("no count".into()).into_error(&self.describe())),
        }
    }
}
