//! [`Pool`]: a fixed number of worker processes that run `#[worker]` calls, Python's
//! `multiprocessing.Pool` with futures.
//!
//! ```no_run
//! use multiproc::{worker, Pool};
//!
//! #[worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[worker]
//! fn add(a: u64, b: u64) -> u64 { a + b }
//!
//! #[multiproc::main]
//! async fn main() -> multiproc::Result<()> {
//!     let pool = Pool::builder().processes(4).build().await?;
//!     let squares: Vec<u64> = pool.map(square, 0..100_000u64).await?;   // ordered
//!     let sums = pool.starmap(add, vec![(1, 2), (3, 4)]).await?;         // [3, 7]
//!     let nine = pool.apply(square, (3,)).await?;
//!     pool.close();
//!     pool.join().await?;
//!     # let _ = (squares, sums, nine);
//!     Ok(())
//! }
//! ```
//!
//! # Operations
//!
//! | Python | multiproc | result |
//! |---|---|---|
//! | `pool.map(f, xs)` | [`pool.map(f, xs).await`](Pool::map) | `Vec`, in input order |
//! | `pool.starmap(f, pairs)` | [`pool.starmap(f, tuples).await`](Pool::starmap) | `Vec`, in input order |
//! | `pool.apply(f, args)` | [`pool.apply(f, args).await`](Pool::apply) | one result |
//! | `pool.apply_async(f, args)` | [`pool.apply_async(f, args)`](Pool::apply_async) | an [`AsyncResult`] future |
//! | `pool.map_async(f, xs)` | [`pool.map_async(f, xs)`](Pool::map_async) | a `'static` [`MapResult`] future of the `Vec` |
//! | `pool.starmap_async(f, pairs)` | [`pool.starmap_async(f, tuples)`](Pool::starmap_async) | a `'static` [`MapResult`] future |
//! | `pool.imap(f, xs)` | [`pool.imap(f, xs)`](Pool::imap) | a [`Stream`](futures::Stream), in input order |
//! | `pool.imap_unordered(f, xs)` | [`pool.imap_unordered(f, xs)`](Pool::imap_unordered) | a `Stream`, in completion order |
//!
//! # Chunks
//!
//! `map` and `starmap` send their input in chunks, one call per chunk, so small tasks do not
//! pay a message each. The default chunk size is `ceil(n / (4 × processes))`, computed from
//! the *configured* number of processes (never from how many happen to be alive, which made
//! Python's chunk size vary, and once divide by zero, while workers were being replaced).
//! [`chunksize`](Map::chunksize) overrides it. Each item of a chunk runs on its own: one
//! item's panic fails that item, not its chunk.
//!
//! `imap` and `imap_unordered` pull their input lazily, an iterator or a
//! [`Stream`](futures::Stream), and keep at most `2 × processes` chunks in flight, so a
//! ten-million-item input runs in bounded memory.
//!
//! # Scheduling
//!
//! The pool is `Clone`, and any number of tokio tasks may use it at once. Each operation's
//! calls queue as a group, and groups take turns, so a big `map` does not starve a concurrent
//! `apply`. Each worker holds a few calls at once (the next ones are already in its socket when
//! it finishes one), which hides the round trip behind small tasks.
//!
//! # Faults
//!
//! Where Python's pool hangs, this one answers:
//!
//! - A task that panics fails with a [`Panic`](crate::ErrorKind::Panic) error carrying the
//!   message and location, and the worker's backtrace when `RUST_BACKTRACE` is set (see
//!   [`PanicInfo::backtrace`](crate::PanicInfo::backtrace)); the worker carries on.
//! - A worker that dies (killed, `std::process::exit`, a crash) fails only the call it was
//!   running, with a [`WorkerDied`](crate::ErrorKind::WorkerDied) error naming its pid, exit
//!   status and the function; it is replaced at once and the pool keeps its size. The calls it
//!   held but had not started are sent to the other workers, ahead of newer work, and complete
//!   normally; so is a call that could not be written to it because it had just died. See
//!   [`Pool`] for the exact rule. [`Closed`](crate::ErrorKind::Closed) only ever means that the
//!   pool was closed.
//! - A task that runs past its deadline fails with a [`Timeout`](crate::ErrorKind::Timeout)
//!   error naming its function, and its worker is killed (`SIGKILL`) and replaced; nothing else
//!   is affected. See "Deadlines and cancelling" below.
//! - A result that fails to serialize, or a call or result larger than
//!   [`max_frame_len`](PoolBuilder::max_frame_len), fails that call only.
//! - An initializer that always fails makes [`build`](PoolBuilder::build) (or the calls
//!   already queued) fail with its error after ten start attempts with back-off, instead of
//!   respawning in a loop.
//!
//! # Deadlines and cancelling
//!
//! Python's pool cannot stop a task once it runs; this one can, by killing the worker
//! process that runs it (a thread cannot be stopped safely, a process can):
//!
//! - [`Apply::timeout`] gives one call a deadline, [`Map::timeout_per_task`] and
//!   [`Imap::timeout_per_task`] each task of a map, and
//!   [`PoolBuilder::task_timeout`] every task by default. A deadline counts from the moment
//!   the worker starts the call, not from when it was queued. A `map` sends its tasks in
//!   chunks: a chunk of `n` items may run `n` deadlines, and past that each of its items
//!   fails with `Timeout` (use `chunksize(1)` for a deadline exactly per task).
//! - [`AsyncResult::cancel`] withdraws a call that has not started (queued in the pool, or
//!   already sent to a worker: the worker skips it), and stops one that runs.
//! - Stopping a call kills its worker, which is replaced; the calls it held but had not
//!   started go to the other workers. Dropping never stops a running call, so a `select!` or
//!   an early return never costs a worker: dropping an [`AsyncResult`] (or an `apply`'s
//!   future) withdraws its call if it has not started, and dropping a `map` withdraws the
//!   chunks not sent yet; a running call finishes and its result is discarded.
//!
//! # On a cluster
//!
//! With the `nats` feature, `Pool::connect(url).build()` gives a pool of this same type whose
//! calls run on the worker nodes of a NATS JetStream cluster, with the same operations,
//! chunking, errors and shutdown; see the `cluster` module. Deadlines and
//! [`AsyncResult::cancel`] of a running call are the local pool's: a node runs each task to
//! its end, so a call with a deadline is refused with an
//! [`InvalidInput`](crate::ErrorKind::InvalidInput) error (cancelling withdraws a call not yet
//! published).
//!
//! # Shutting down
//!
//! [`close`](Pool::close) refuses new work; [`join`](Pool::join) then waits until everything
//! submitted has run and the workers have exited. [`terminate`](Pool::terminate) cancels
//! everything at once: every pending call fails with a [`Cancelled`](crate::ErrorKind::Cancelled)
//! error, and the workers are stopped. Dropping the last handle to a pool (including the
//! handles held by [`AsyncResult`]s and streams) stops its workers too; no worker outlives its
//! pool.

mod builder;
pub(crate) mod map;
#[cfg(feature = "nats")]
pub(crate) mod needs;
mod pool_worker;
mod result;
mod scheduler;
mod stats;

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use builder::PoolBuilder;
pub use map::{Imap, Map};
#[cfg(feature = "nats")]
pub use needs::Needs;
pub use result::{AsyncResult, MapResult};
pub use stats::{PoolStats, RunningCall, WorkerStats};

use crate::error::{Error, Result};
use crate::output::OutputLines;
use crate::protocol::encode;
use crate::registry::{self, WORKER_HINT};
use crate::supervisor::CallReply;
use crate::worker::{Value, Worker, worker_name};
use builder::Config;
pub(crate) use scheduler::{Command, Job};

use scheduler::{Control, Dispatch, Scheduler};

/// A pool of worker processes. See the [module docs](self).
///
/// Cheap to clone: clones are handles to the same pool.
///
/// # When a worker dies
///
/// Each worker holds a few calls at once, already sent, and runs them **one at a time, in the
/// order they were sent**, whether the worker function is a plain `fn` or an `async fn` (an
/// `async fn`'s call is awaited to its end before the next one starts; a chunk of a `map` is
/// one call, whose items run one after the other). As it starts a call, the worker writes the
/// call's id into a page of memory it shares with the pool (no system call, nothing on the
/// socket), so when it dies the pool knows which call was running:
///
/// - **the running call** fails with [`WorkerDied`](crate::ErrorKind::WorkerDied), naming the
///   worker, its pid, its exit code or signal, and the function;
/// - **every other call it held** is sent again, to the other workers, ahead of newer work
///   and in its original order, and completes normally: those it had not started, and those
///   it had finished but whose result had not left it yet (the results of very quick calls
///   are sent in batches), which therefore run a second time;
/// - **a call written to it just as it died** is sent to another worker, never failed.
///
/// So one death costs exactly one call (none if the worker was between calls), and within
/// a `map` only the chunk that was running fails. On a system without `/proc`, where the
/// page cannot be shared, the oldest call the worker had not answered is taken for the
/// running one.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    shared: Arc<PoolState>,
    commands: mpsc::UnboundedSender<Command>,
    next_group: AtomicU64,
}

/// What runs a pool's jobs: this machine's child processes ([`LocalBackend`]), or another
/// part of the crate that builds a [`Pool`] with [`Pool::with_backend`] (the cluster, with
/// feature `nats`). The handles' side (refusing work once closed, `join` only after `close`,
/// the result types) is the pool's, the same for every backend; a backend serves the jobs and
/// the [`Command`]s.
pub(crate) trait Backend: Send + Sync + 'static {
    /// How many calls the backend runs at once: [`Pool::processes`].
    fn slots(&self) -> usize;

    /// Takes one caller operation's jobs. By default they travel to the backend's command
    /// loop as a [`Command::Submit`], in order with its `Join` and `Terminate`.
    fn submit(
        &self,
        group: u64,
        jobs: Vec<Job>,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Result<()> {
        commands
            .send(Command::Submit { group, jobs })
            .map_err(|_| Error::closed("the pool's scheduler has stopped"))
    }

    /// What the backend is doing, for [`Pool::stats`]; by default nothing is known.
    fn stats(&self) -> PoolStats {
        PoolStats::default()
    }

    /// The backend itself, so that the part of the crate that built it can reach it again
    /// from a [`Pool`] ([`Pool::backend`]).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A scheduler of local child processes, with the configuration it was built with, and the
/// dispatch that the handles submit to directly, bypassing the command loop.
struct LocalBackend {
    config: Arc<Config>,
    dispatch: Arc<Dispatch>,
    /// The workers' lines, until [`Pool::take_output`] takes them.
    output: Mutex<Option<OutputLines>>,
}

impl Backend for LocalBackend {
    fn slots(&self) -> usize {
        self.config.processes
    }

    fn submit(&self, group: u64, jobs: Vec<Job>, _: &mpsc::UnboundedSender<Command>) -> Result<()> {
        self.dispatch.submit(group, jobs);
        Ok(())
    }

    fn stats(&self) -> PoolStats {
        self.dispatch.stats()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// State the pool's handles and its scheduler both read.
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    closed: AtomicBool,
    broken: Mutex<Option<Error>>,
    pids: Mutex<Vec<u32>>,
}

impl PoolState {
    pub(crate) fn broken(&self) -> Option<Error> {
        self.broken.lock().expect("pool lock").clone()
    }

    pub(crate) fn set_broken(&self, error: Error) {
        *self.broken.lock().expect("pool lock") = Some(error);
    }

    pub(crate) fn set_pids(&self, pids: Vec<u32>) {
        *self.pids.lock().expect("pool lock") = pids;
    }
}

impl Pool {
    /// A builder for a pool; see [`PoolBuilder`].
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// A pool of [`cpu_count()`](crate::cpu_count) workers, with no initializer.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in effect: dropping the future drops the pool, whose workers stop.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let pool = multiproc::Pool::new().await?;
    /// assert_eq!(pool.processes(), multiproc::cpu_count());
    /// # Ok(()) }
    /// ```
    pub async fn new() -> Result<Pool> {
        PoolBuilder::new().build().await
    }

    pub(crate) async fn start(config: Arc<Config>, output: Option<OutputLines>) -> Result<Pool> {
        let shared = Arc::new(PoolState::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        let (ready, is_ready) = oneshot::channel();
        let (scheduler, dispatch) = Scheduler::new(config.clone(), shared.clone(), receiver, ready);
        tokio::spawn(scheduler.run());
        let output = Mutex::new(output);
        let backend = LocalBackend {
            config,
            dispatch,
            output,
        };
        let pool = Pool::with_backend(backend, shared, commands);
        is_ready
            .await
            .unwrap_or_else(|_| Err(Error::cancelled("the pool's scheduler stopped")))?;
        Ok(pool)
    }

    /// A pool whose jobs `backend` runs, and whose commands it reads from the receiver of
    /// `commands`.
    pub(crate) fn with_backend(
        backend: impl Backend,
        shared: Arc<PoolState>,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                backend: Box::new(backend),
                shared,
                commands,
                next_group: AtomicU64::new(0),
            }),
        }
    }

    /// The backend of this pool, if it is a `B`.
    pub(crate) fn backend<B: Backend>(&self) -> Option<&B> {
        self.inner.backend.as_any().downcast_ref()
    }

    /// The number of worker processes the pool keeps, as configured. For a pool on a
    /// cluster (`Pool::connect`, feature `nats`): the slots of the live nodes of this build,
    /// as last read (every second), and at least 1.
    pub fn processes(&self) -> usize {
        self.inner.backend.slots()
    }

    /// The pids of the workers now serving calls (not those retiring or starting). Changes as
    /// workers are replaced. Empty for a pool on a cluster.
    pub fn pids(&self) -> Vec<u32> {
        self.inner.shared.pids.lock().expect("pool lock").clone()
    }

    /// The lines the workers write to a stream set to [`Stdio::Lines`](crate::Stdio::Lines)
    /// on the [builder](PoolBuilder::stdout), merged, each tagged with its worker's name and
    /// pid (in order per worker and stream); see the [`output`](crate::output) module.
    /// Returns them once, to the first caller of any clone of this handle: `None`
    /// afterwards, when neither stdout nor stderr was set to `Lines`, and for a pool on a
    /// cluster. The stream ends once the pool is gone and its workers have exited.
    pub fn take_output(&self) -> Option<OutputLines> {
        let local = self.backend::<LocalBackend>()?;
        local.output.lock().expect("pool lock").take()
    }

    /// What the pool is doing: tasks queued and running, tasks completed and failed and
    /// workers restarted since it started, and each worker's pid and the function it runs. A
    /// snapshot for a service to export as health metrics; see [`PoolStats`] for what each
    /// count means. Reading it sends nothing to the workers.
    ///
    /// A pool on a cluster (`Pool::connect`, feature `nats`) counts its own items: `queued`
    /// are held back by its submission window, `running` are published and not answered
    /// (waiting on the server or running on a node), `completed` and `failed` by the answer
    /// of their task (the items of a chunk that came back count as completed, even one that
    /// panicked); `restarts` sums the live nodes' child restarts; `workers` is empty. The
    /// cluster's own figures (queue depth, each node's work) are in `Pool::cluster_stats`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// pool.map(square, 0..100u64).await?;
    /// let stats = pool.stats();
    /// assert_eq!(stats.completed, 100);
    /// assert_eq!((stats.queued, stats.running), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.inner.backend.stats()
    }

    /// Whether [`close`](Self::close) or [`terminate`](Self::terminate) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::SeqCst)
    }

    /// Refuses new work: later calls fail with a [`Closed`](crate::ErrorKind::Closed) error.
    /// Work already submitted still runs; [`join`](Self::join) waits for it.
    pub fn close(&self) {
        self.inner.shared.closed.store(true, Ordering::SeqCst);
    }

    /// Waits until all work submitted before [`close`](Self::close) has run and the workers
    /// have exited.
    ///
    /// # Errors
    ///
    /// - [`InvalidState`](crate::ErrorKind::InvalidState) if the pool was not closed first
    ///   (as Python's `ValueError("Pool is still running")`).
    /// - [`Cancelled`](crate::ErrorKind::Cancelled) if the pool is terminated meanwhile.
    /// - The pool's start error if it gave up starting workers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops nothing; the workers exit when the work is done.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let pending = pool.apply_async(square, (3,));
    /// pool.close();
    /// pool.join().await?;
    /// assert_eq!(pending.await?, 9);
    /// # Ok(()) }
    /// ```
    pub async fn join(&self) -> Result<()> {
        if !self.is_closed() {
            return Err(Error::invalid_state(
                "join() on a pool that is still running; call close() or terminate() first",
            ));
        }
        let (joiner, joined) = oneshot::channel();
        self.command(Command::Join(joiner))?;
        joined
            .await
            .unwrap_or_else(|_| Err(Error::cancelled("the pool's scheduler stopped")))
    }

    /// Stops the pool at once: every queued or running call fails with a
    /// [`Cancelled`](crate::ErrorKind::Cancelled) error, and the workers are sent `SIGTERM`
    /// (`SIGKILL` a second later if need be). Returns once every worker has exited.
    ///
    /// # Errors
    ///
    /// None so far; the `Result` leaves room for a failure to stop a worker.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: once called, termination goes on even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let pending = pool.apply_async(sleep_ms, (60_000,));
    /// pool.terminate().await?;
    /// assert!(pending.await.unwrap_err().is_cancelled());
    /// # Ok(()) }
    /// ```
    pub async fn terminate(&self) -> Result<()> {
        self.close();
        let (done, terminated) = oneshot::channel();
        if self.command(Command::Terminate(done)).is_ok() {
            let _ = terminated.await;
        }
        Ok(())
    }

    /// Runs `worker(args)` in a worker and returns its result. The returned [`Apply`] is a
    /// future; [`timeout`](Apply::timeout) gives the call a deadline, and
    /// [`submit`](Apply::submit) queues it at once and returns a handle that can cancel it.
    ///
    /// # Errors
    ///
    /// - [`Panic`](crate::ErrorKind::Panic) if the worker panicked.
    /// - [`WorkerDied`](crate::ErrorKind::WorkerDied) if its process died while running it.
    /// - [`Timeout`](crate::ErrorKind::Timeout) if it ran past its deadline.
    /// - [`Closed`](crate::ErrorKind::Closed) if the pool is closed;
    ///   [`Cancelled`](crate::ErrorKind::Cancelled) if it is terminated before the call ends.
    /// - [`UnknownWorker`](crate::ErrorKind::UnknownWorker),
    ///   [`Serialization`](crate::ErrorKind::Serialization),
    ///   [`FrameTooLarge`](crate::ErrorKind::FrameTooLarge) for a call that cannot be sent or
    ///   a result that cannot come back.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before the call starts withdraws it; once started,
    /// the call runs to its end (or its deadline) and its result is discarded. Either way no
    /// other caller is affected. To stop a running call, use [`AsyncResult::cancel`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// assert_eq!(pool.apply(square, (5,)).await?, 25);
    /// assert_eq!(pool.apply(square, (5,)).timeout(Duration::from_secs(1)).await?, 25);
    /// # Ok(()) }
    /// ```
    pub fn apply<W: Worker<M>, M>(&self, worker: W, args: W::Args) -> Apply<'_, W, M> {
        let _ = worker;
        Apply {
            pool: self,
            args,
            timeout: None,
            #[cfg(feature = "nats")]
            needs: None,
            _worker: PhantomData,
        }
    }

    /// Queues `worker(args)` and returns a handle to its result at once (Python's
    /// `apply_async`); the same as `pool.apply(worker, args).submit()`. The handle is a
    /// future; [`ready`](AsyncResult::ready) tells without waiting whether the result is in,
    /// and [`cancel`](AsyncResult::cancel) withdraws or stops the call.
    ///
    /// Errors (as for [`apply`](Self::apply)) come out of the handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let handles: Vec<_> = (0..10).map(|x| pool.apply_async(square, (x,))).collect();
    /// for (x, handle) in handles.into_iter().enumerate() {
    ///     assert_eq!(handle.await?, (x * x) as u64);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn apply_async<W: Worker<M>, M>(&self, worker: W, args: W::Args) -> AsyncResult<W::Output> {
        self.apply(worker, args).submit()
    }

    /// Runs `worker` on every item of `inputs`, in chunks, and returns the results in input
    /// order. `worker` takes one argument; see [`starmap`](Self::starmap) for more. The
    /// returned [`Map`] is a future; [`chunksize`](Map::chunksize) sets the chunk size.
    ///
    /// All items run even if some fail; the result is then the error of the first failed
    /// item (in input order), carrying that item's panic message, or the error of the worker
    /// that died holding it. Chunks are encoded as they are sent, a few per worker ahead, so
    /// a map of large values does not hold an encoded copy of all of them.
    ///
    /// # Errors
    ///
    /// As [`apply`](Self::apply), for the first item that failed: a
    /// [`WorkerDied`](crate::ErrorKind::WorkerDied) error fails the items of the one chunk
    /// that was running, and a [`Timeout`](crate::ErrorKind::Timeout) those of a chunk past
    /// its deadline (see [`Map::timeout_per_task`]). An item that fails to serialize ends the
    /// map at once with a [`Serialization`](crate::ErrorKind::Serialization) error (chunks
    /// sent before it may still run).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future withdraws the chunks not yet sent; chunks already
    /// sent run to their end and their results are discarded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let squares = pool.map(square, 0..100_000u64).await?;
    /// assert_eq!(squares[3], 9);
    /// let squares = pool.map(square, vec![1, 2, 3]).chunksize(1).await?;
    /// assert_eq!(squares, [1, 4, 9]);
    /// # Ok(()) }
    /// ```
    pub fn map<W, M, T, I>(&self, worker: W, inputs: I) -> Map<'_, W, M, T>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
    {
        Map::new(self, worker, inputs.into_iter().collect())
    }

    /// Like [`map`](Self::map), for a worker of several arguments: each item is the tuple of
    /// one call's arguments.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    ///
    /// As [`map`](Self::map).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn add(a: u64, b: u64) -> u64 { a + b }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).await?, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<W, M, I>(&self, worker: W, inputs: I) -> Map<'_, W, M, W::Args>
    where
        W: Worker<M>,
        I: IntoIterator<Item = W::Args>,
    {
        Map::new(self, worker, inputs.into_iter().collect())
    }

    /// Starts `worker` on every item of `inputs` and returns a handle to the results at once
    /// (Python's `map_async`); the same as `pool.map(worker, inputs).submit()`. Unlike the
    /// [`Map`] future, the [`MapResult`] handle borrows nothing: store it, move it to another
    /// task, ask it [`ready`](MapResult::ready) or [`successful`](MapResult::successful), and
    /// await it when you need the results. The map runs in a tokio task meanwhile.
    ///
    /// Errors (as for [`map`](Self::map)) come out of the handle.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let squares = pool.map_async(square, 0..100u64);
    /// let task = tokio::spawn(squares);
    /// assert_eq!(task.await.unwrap()?[9], 81);
    /// # Ok(()) }
    /// ```
    pub fn map_async<W, M, T, I>(&self, worker: W, inputs: I) -> MapResult<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        M: 'static,
        T: Value,
        I: IntoIterator<Item = T>,
    {
        self.map(worker, inputs).submit()
    }

    /// Like [`map_async`](Self::map_async), for a worker of several arguments (Python's
    /// `starmap_async`): each item is the tuple of one call's arguments.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn add(a: u64, b: u64) -> u64 { a + b }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let sums = pool.starmap_async(add, vec![(1, 2), (3, 4)]);
    /// assert_eq!(sums.await?, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn starmap_async<W, M, I>(&self, worker: W, inputs: I) -> MapResult<W::Output>
    where
        W: Worker<M>,
        M: 'static,
        I: IntoIterator<Item = W::Args>,
    {
        self.starmap(worker, inputs).submit()
    }

    /// Runs `worker` over a lazy input, yielding results in input order as a
    /// [`Stream`](futures::Stream) of `Result`s, one per item (Python's `imap`).
    ///
    /// The input is pulled only as chunks are sent, at most `2 × processes` chunks ahead of
    /// the consumer, so an endless iterator works and memory stays bounded. The default chunk
    /// size comes from the iterator's size hint (as for `map`, at most 1024); without one it
    /// is 1. Set it with [`Imap::chunksize`] before the first poll.
    ///
    /// An item that fails yields its error in its place, and the stream goes on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// use futures::StreamExt;
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut squares = pool.imap(square, 0..u64::MAX).chunksize(256);
    /// while let Some(square) = squares.next().await {
    ///     if square? > 1_000_000 { break }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn imap<W, M, T, I>(&self, worker: W, inputs: I) -> Imap<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Imap::from_iter(self, worker, inputs.into_iter(), true)
    }

    /// Like [`imap`](Self::imap), yielding results as they complete rather than in input
    /// order (Python's `imap_unordered`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// use futures::StreamExt;
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let total: u64 = pool
    ///     .imap_unordered(square, 0..1_000u64)
    ///     .map(|square| square.unwrap())
    ///     .fold(0, |sum, square| async move { sum + square })
    ///     .await;
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<W, M, T, I>(&self, worker: W, inputs: I) -> Imap<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Imap::from_iter(self, worker, inputs.into_iter(), false)
    }

    /// Like [`imap`](Self::imap), pulling the input from a [`Stream`](futures::Stream) (a
    /// channel, a file read line by line): a chunk is sent as soon as its items are ready or
    /// the window has room, whichever comes later.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// use futures::StreamExt;
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let inputs = futures::stream::iter(0..100u64);
    /// let squares: Vec<_> = pool.imap_stream(square, inputs, true).collect().await;
    /// # Ok(()) }
    /// ```
    pub fn imap_stream<W, M, T, S>(&self, worker: W, inputs: S, ordered: bool) -> Imap<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        S: futures::Stream<Item = T> + Send + 'static,
    {
        Imap::from_stream(self, worker, inputs, ordered)
    }

    pub(crate) fn new_group(&self) -> u64 {
        self.inner.next_group.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands jobs to the backend, unless the pool refuses work.
    pub(crate) fn submit(&self, group: u64, jobs: Vec<Job>) -> Result<()> {
        if self.is_closed() {
            return Err(Error::closed(
                "the pool is closed and accepts no more work; build a new pool",
            ));
        }
        if let Some(error) = self.inner.shared.broken() {
            return Err(error);
        }
        // Only a local pool can kill the process that runs an overdue call.
        let local = self.backend::<LocalBackend>().is_some();
        #[cfg(feature = "nats")]
        if local && jobs.iter().any(|job| job.needs.is_some()) {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                "needs (labels, resources) are for a pool on a cluster (Pool::connect); this \
                 pool is local",
            ));
        }
        if !local && jobs.iter().any(|job| job.task_timeout.is_some()) {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                "a deadline needs a local pool: this pool's workers run on other machines, \
                 where an overdue call cannot be stopped",
            ));
        }
        self.inner.backend.submit(group, jobs, &self.inner.commands)
    }

    fn command(&self, command: Command) -> Result<()> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| Error::closed("the pool's scheduler has stopped"))
    }
}

impl Job {
    /// A job and the receiver of its reply.
    pub(crate) fn new(
        worker: &'static str,
        payload: Vec<u8>,
        batch: bool,
        items: usize,
    ) -> (Job, oneshot::Receiver<CallReply>) {
        let (reply, receiver) = oneshot::channel();
        (
            Job {
                worker,
                payload,
                batch,
                items,
                reply,
                task_timeout: None,
                control: None,
                span: crate::logging::call_span(),
                #[cfg(feature = "nats")]
                needs: None,
            },
            receiver,
        )
    }
}

/// The reply to one job; a reply channel dropped unanswered means the pool was terminated.
pub(crate) async fn reply(receiver: oneshot::Receiver<CallReply>) -> CallReply {
    receiver.await.unwrap_or_else(|_| Err(cancelled()))
}

fn cancelled() -> Error {
    Error::cancelled("the pool was terminated before this call finished")
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("pids", &self.pids())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The pending result of [`Pool::apply`]: await it, after setting a deadline if you like, or
/// [`submit`](Self::submit) it for a handle.
#[must_use = "an apply does nothing until awaited or submitted"]
pub struct Apply<'a, W: Worker<M>, M> {
    pool: &'a Pool,
    args: W::Args,
    timeout: Option<Duration>,
    #[cfg(feature = "nats")]
    needs: Option<Needs>,
    _worker: PhantomData<fn() -> (W, M)>,
}

impl<W: Worker<M>, M> Apply<'_, W, M> {
    /// A deadline for the call, counted from its start in a worker (time queued does not
    /// count): past it the call fails with a [`Timeout`](crate::ErrorKind::Timeout) error
    /// naming the function, and the worker is killed and replaced. Overrides the pool's
    /// [`task_timeout`](PoolBuilder::task_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// On a pool on a cluster (feature `nats`): runs the call only on a node that offers
    /// `needs` (a label such as `"gpu"`, or a [`Needs`] of labels and
    /// resources), instead of the pool's
    /// [`requires`](crate::RemotePoolBuilder::requires). A need no live node can serve fails
    /// the call at once with an [`Infeasible`](crate::ErrorKind::Infeasible) error; on a local
    /// pool, with an [`InvalidInput`](crate::ErrorKind::InvalidInput) error.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn needs(mut self, needs: impl Into<Needs>) -> Self {
        self.needs = Some(needs.into());
        self
    }

    /// Queues the call now and returns a handle to its result (what
    /// [`apply_async`](Pool::apply_async) does).
    pub fn submit(self) -> AsyncResult<W::Output> {
        let Apply {
            pool,
            args,
            timeout,
            #[cfg(feature = "nats")]
            needs,
            ..
        } = self;
        let control = Arc::new(Control::default());
        let submitted =
            registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT).and_then(|name| {
                let payload = encode(&args, &format!("the arguments of `{name}`"))?;
                let (mut job, reply) = Job::new(name, payload, false, 1);
                job.task_timeout = timeout;
                job.control = Some(control.clone());
                #[cfg(feature = "nats")]
                {
                    job.needs = needs;
                }
                pool.submit(pool.new_group(), vec![job])?;
                Ok(reply)
            });
        AsyncResult::new(submitted, control, pool.clone())
    }
}

impl<W: Worker<M>, M> std::future::IntoFuture for Apply<'_, W, M> {
    type Output = Result<W::Output>;
    type IntoFuture = AsyncResult<W::Output>;

    fn into_future(self) -> Self::IntoFuture {
        self.submit()
    }
}

impl<W: Worker<M>, M> fmt::Debug for Apply<'_, W, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Apply")
            .field("worker", &std::any::type_name::<W>())
            .field("timeout", &self.timeout)
            .finish()
    }
}
