//! [`Barrier`]: a meeting point for a fixed number of parties, across processes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::queue::expect_started;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::hub::{Answer, BarrierOp, Failure, Op};
use crate::registry::{self, WORKER_HINT};
use crate::worker::{Worker, worker_name};

/// A barrier's state on its hub.
struct BarrierState {
    parties: usize,
    arrived: VecDeque<Request>,
    broken: bool,
    /// The registered name of the `#[worker]` that the last party of each round runs before
    /// anyone is released.
    action: Option<String>,
    /// The connection of the party running the action now; the first `parties - 1` waits of
    /// `arrived` wait for it.
    acting: Option<ConnId>,
}

impl BarrierState {
    fn break_for_everyone(&mut self) {
        self.broken = true;
        self.acting = None;
        for waiter in self.arrived.drain(..) {
            let _ = waiter.answer(Reply::failed(Failure::BrokenBarrier));
        }
    }

    /// Once a round is full: releases it, or first hands its action to its last party.
    fn start_round(&mut self) {
        if self.acting.is_some() || self.arrived.len() < self.parties {
            return;
        }
        let Some(action) = &self.action else {
            return self.release(self.parties);
        };
        let last = self.arrived.remove(self.parties - 1).expect("a full round");
        let conn = last.caller.conn;
        let run_action = Reply {
            outcome: Ok(Answer::RunAction),
            items: vec![action.clone().into_bytes()],
        };
        match last.answer(run_action) {
            Ok(()) => self.acting = Some(conn),
            // Nobody is left to run it; a party gave up.
            Err(_) => self.break_for_everyone(),
        }
    }

    /// Lets the first `count` waits through, with their indices in arrival order.
    fn release(&mut self, count: usize) {
        for (index, waiter) in self.arrived.drain(..count).enumerate() {
            let _ = waiter.answer(Reply::ok(Answer::Count(index as u64)));
        }
    }

    fn action_done(&mut self, request: Request, ok: bool) {
        let acting = self.acting == Some(request.caller.conn);
        if !(acting && ok) {
            // A failed action breaks the barrier; one that ended after an abort or a reset
            // finds its round broken already.
            if acting {
                self.break_for_everyone();
            }
            let _ = request.answer(Reply::failed(Failure::BrokenBarrier));
            return;
        }
        self.acting = None;
        let last = self.parties - 1;
        self.release(last);
        let _ = request.answer(Reply::ok(Answer::Count(last as u64)));
        // Waits that arrived while the action ran make the next round.
        self.start_round();
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
                self.start_round();
            }
            BarrierOp::ActionDone { ok } => self.action_done(request, ok),
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
                let waiting = self.arrived.len() + usize::from(self.acting.is_some());
                let _ = request.answer(Reply::ok(Answer::Count(waiting as u64)));
            }
            BarrierOp::IsBroken => {
                let _ = request.answer(Reply::ok(Answer::Flag(self.broken)));
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
        if self.acting == Some(conn) || self.arrived.iter().any(|r| r.caller.conn == conn) {
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
/// until [`reset`](Self::reset); [`is_broken`](Self::is_broken) tells.
///
/// # An action
///
/// [`with_action`](Self::with_action) is Python's `Barrier(parties, action=f)`: the last
/// party to arrive in each round runs `f`, in its own process, before any party is released,
/// and its wait then returns the last index, `parties - 1`. A closure cannot cross to another
/// process, so the action is a [`#[worker]`](crate::worker) function of no arguments (plain
/// or `async`), found by name in whichever process arrives last, as Python finds a pickled
/// function by name. It runs on a blocking thread, so it may take its time. If it panics, or
/// the process running it dies or gives up its wait, the barrier breaks: every party's wait
/// fails with [`is_broken_barrier`](crate::Error::is_broken_barrier), the runner's carrying
/// the panic.
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
    state_with_action(parties, None)
}

fn state_with_action(parties: usize, action: Option<&str>) -> Box<dyn Object> {
    Box::new(BarrierState {
        parties,
        arrived: VecDeque::new(),
        broken: false,
        action: action.map(str::to_string),
        acting: None,
    })
}

impl Barrier {
    /// A barrier for `parties` waiters, served by this process.
    ///
    /// # Panics
    ///
    /// If `parties` is 0, or this process's hub cannot bind its socket.
    pub fn new(parties: usize) -> Self {
        Self::create(parties, None)
    }

    /// A barrier for `parties` waiters whose last party in each round runs `action` before
    /// anyone is released: Python's `Barrier(parties, action=action)`. See
    /// ["An action"](Self#an-action).
    ///
    /// # Panics
    ///
    /// If `parties` is 0, `action` is not a `#[worker]`, or this process's hub cannot bind
    /// its socket.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// #[multiproc::worker]
    /// fn all_arrived() { println!("everyone is here") }
    ///
    /// # async fn demo() -> multiproc::Result<()> {
    /// let barrier = multiproc::Barrier::with_action(2, all_arrived);
    /// # Ok(()) }
    /// ```
    pub fn with_action<W: Worker<M, Args = ()>, M>(parties: usize, action: W) -> Self {
        let _ = action;
        let name = registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT)
            .unwrap_or_else(|error| panic!("a barrier's action: {error}"));
        Self::create(parties, Some(name))
    }

    fn create(parties: usize, action: Option<&str>) -> Self {
        assert!(parties > 0, "a barrier needs at least one party");
        let handle = expect_started(Handle::create(state_with_action(parties, action)));
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
        self.outcome(client::ask(&self.handle, Op::Barrier(op), timeout).await?)
    }

    async fn wait_inner(&self, timeout: Option<Duration>) -> Result<usize> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let reply = client::call(
            &self.handle,
            Op::Barrier(BarrierOp::Wait),
            Vec::new(),
            timeout,
        )
        .await?;
        match self.outcome(reply.outcome)? {
            Answer::Count(index) => Ok(index as usize),
            Answer::RunAction => self.run_action(reply.items, deadline).await,
            _ => Err(Failure::Protocol("no index".into()).into_error(&self.describe())),
        }
    }

    /// As the last party of a round: runs the action named in `payload`, then lets everyone
    /// through (or breaks the barrier if the action failed, or the deadline passed).
    async fn run_action(&self, payload: Items, deadline: Option<Instant>) -> Result<usize> {
        let mut unfinished = BreakUnlessDone(Some(self.handle.clone()));
        let ran = run_action(payload).await;
        unfinished.0 = None;
        let remaining = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let ok = ran.is_ok() && remaining != Some(Duration::ZERO);
        let released = self.ask(BarrierOp::ActionDone { ok }, remaining).await;
        if let Err(error) = ran {
            let message = format!("{}: its action failed: {error}", self.describe());
            return Err(Error::new(ErrorKind::BrokenBarrier, message).with_source(error));
        }
        match released? {
            Answer::Count(index) => Ok(index as usize),
            _ => Err(Failure::Protocol("no index".into()).into_error(&self.describe())),
        }
    }

    fn outcome(&self, outcome: std::result::Result<Answer, Failure>) -> Result<Answer> {
        match outcome {
            Ok(answer) => Ok(answer),
            Err(Failure::Cancelled) => Err(Failure::BrokenBarrier.into_error(&self.describe())),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Waits until every party waits; returns this party's index in `0..parties`. At a
    /// barrier with an [action](Self#an-action), the last party runs it first, and gets
    /// `parties - 1`.
    ///
    /// # Errors
    ///
    /// [`is_broken_barrier`](crate::Error::is_broken_barrier) if the barrier is or becomes
    /// broken (for the party whose action panicked, the error carries the panic);
    /// [`is_closed`](crate::Error::is_closed) if its process has exited.
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
    /// through first). The party that runs a barrier's [action](Self#an-action) waits for the
    /// action to end, however long it takes; if it ended past the deadline, the barrier
    /// breaks and this wait fails as broken.
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

    /// Whether the barrier is broken (Python's `Barrier.broken`): a wait timed out or was
    /// given up, a waiting process died, an action failed, or [`abort`](Self::abort) was
    /// called, and [`reset`](Self::reset) has not been since.
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
    /// if barrier.is_broken().await? {
    ///     barrier.reset().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn is_broken(&self) -> Result<bool> {
        match self.ask(BarrierOp::IsBroken, None).await? {
            Answer::Flag(broken) => Ok(broken),
            _ => Err(Failure::Protocol("no flag".into()).into_error(&self.describe())),
        }
    }
}

/// Breaks the barrier if dropped armed: the wait that runs a round's action was dropped
/// before the action ended, so nobody would release the others.
struct BreakUnlessDone(Option<Handle>);

impl Drop for BreakUnlessDone {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            client::send_now(&handle, Op::Barrier(BarrierOp::ActionDone { ok: false }));
        }
    }
}

/// Runs the `#[worker]` named in `payload`, with no arguments, on a blocking thread, on a
/// runtime of its own there.
async fn run_action(payload: Items) -> Result<()> {
    let name = payload
        .into_iter()
        .next()
        .and_then(|name| String::from_utf8(name).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                "a barrier's action came without a name",
            )
        })?;
    let registered = registry::lookup(&name).ok_or_else(|| {
        Error::new(
            ErrorKind::UnknownWorker,
            format!("the barrier's action `{name}` is not registered in this process"),
        )
    })?;
    let no_arguments = crate::protocol::encode(&(), "a barrier action's arguments")?;
    let ran = tokio::task::spawn_blocking(move || {
        // A plain `fn` is done at the first poll; an `async fn` may need timers and sockets.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::io("starting a runtime for a barrier's action", error))?;
        let outcome = runtime.block_on((registered.dispatch)(&no_arguments, false));
        outcome.map(drop).map_err(|error| error.into_error())
    })
    .await;
    ran.unwrap_or_else(|error| Err(Error::cancelled(format!("a barrier's action: {error}"))))
}
