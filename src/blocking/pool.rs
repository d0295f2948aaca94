//! [`Pool`], [`PoolBuilder`], [`AsyncResult`] and [`Imap`] in blocking form.

use std::time::Duration;

use futures::StreamExt;

use super::{blocking_forms, wait, wrapper};
use crate::error::Result;
use crate::pool::{Apply, Map};
use crate::worker::{Value, Worker};

wrapper! {
    /// A builder for a [`Pool`]: the blocking twin of [`crate::PoolBuilder`], whose docs say
    /// what each option does.
    ///
    /// Options this type does not forward (newer ones, say) are set on the async builder,
    /// which converts: `blocking::PoolBuilder::from(multiproc::Pool::builder().processes(2))`.
    #[must_use = "a builder does nothing until built"]
    PoolBuilder wraps crate::PoolBuilder
}

wrapper! {
    /// A pool of worker processes: the blocking twin of [`crate::Pool`], whose docs say how
    /// calls are spread, and what happens when a worker dies or a call hangs.
    ///
    /// Cheap to clone: clones share the pool, whose workers stop once the last clone is
    /// dropped.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::blocking::Pool;
    ///
    /// #[multiproc::worker]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// fn main() -> multiproc::Result<()> {
    ///     multiproc::init();
    ///     let pool = Pool::builder().processes(4).build()?;
    ///     assert_eq!(pool.map(square, 0..10u64)?[3], 9);
    ///     assert_eq!(pool.apply(square, (5,))?, 25);
    ///     // Python's `chunksize=1`, and a deadline per task:
    ///     let squares = pool.map_with(square, vec![1, 2, 3], |map| {
    ///         map.chunksize(1).timeout_per_task(Duration::from_secs(5))
    ///     })?;
    ///     for square in pool.imap(square, 0..1_000u64) {
    ///         if square? > 100 { break }
    ///     }
    ///     pool.close();
    ///     pool.join()
    /// }
    /// ```
    Pool wraps crate::Pool, clone
}

wrapper! {
    /// The result of [`Pool::apply_async`]: the blocking twin of [`crate::AsyncResult`].
    ///
    /// [`get`](Self::get) waits for it; dropping the handle withdraws a call that has not
    /// started, as the async handle's drop does.
    #[must_use = "dropping the handle withdraws the call"]
    AsyncResult<T> wraps crate::AsyncResult<T>
}

wrapper! {
    /// The results of [`Pool::imap`] or [`Pool::imap_unordered`]: an [`Iterator`] of one
    /// `Result` per input item, the blocking twin of [`crate::Imap`].
    ///
    /// Each call to `next` blocks until the next result is in, and panics in an async context
    /// (see the [module docs](crate::blocking#panics)).
    #[must_use = "iterators do nothing unless iterated"]
    Imap<T> wraps crate::Imap<T>
}

impl PoolBuilder {
    /// The number of worker processes. As [`crate::PoolBuilder::processes`].
    pub fn processes(self, processes: usize) -> Self {
        self.inner.processes(processes).into()
    }

    /// A function each worker runs once when it starts. As
    /// [`crate::PoolBuilder::initializer`].
    pub fn initializer<W: Worker<M>, M>(self, initializer: W, args: W::Args) -> Self {
        self.inner.initializer(initializer, args).into()
    }

    /// Replaces each worker after this many tasks. As
    /// [`crate::PoolBuilder::max_tasks_per_child`].
    pub fn max_tasks_per_child(self, tasks: usize) -> Self {
        self.inner.max_tasks_per_child(tasks).into()
    }

    /// How long each worker has to start. As [`crate::PoolBuilder::start_timeout`].
    pub fn start_timeout(self, timeout: Duration) -> Self {
        self.inner.start_timeout(timeout).into()
    }

    /// The largest frame either side accepts. As [`crate::PoolBuilder::max_frame_len`].
    pub fn max_frame_len(self, bytes: usize) -> Self {
        self.inner.max_frame_len(bytes).into()
    }

    /// A deadline for every call. As [`crate::PoolBuilder::task_timeout`].
    pub fn task_timeout(self, timeout: Duration) -> Self {
        self.inner.task_timeout(timeout).into()
    }

    /// Starts the workers; returns once the pool serves.
    ///
    /// The blocking form of [`crate::PoolBuilder::build`].
    ///
    /// # Errors
    ///
    /// As [`crate::PoolBuilder::build`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn setup(offset: u64) {}
    /// # fn demo() -> multiproc::Result<()> {
    /// let pool = multiproc::blocking::Pool::builder()
    ///     .processes(4)
    ///     .initializer(setup, (1_000,))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<Pool> {
        wait(self.inner.build()).map(Pool::from)
    }
}

impl Pool {
    /// A builder for a pool; see [`PoolBuilder`].
    pub fn builder() -> PoolBuilder {
        crate::Pool::builder().into()
    }

    /// A pool of [`cpu_count()`](crate::cpu_count) workers, with no initializer.
    ///
    /// The blocking form of [`crate::Pool::new`].
    ///
    /// # Errors
    ///
    /// As [`crate::PoolBuilder::build`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let pool = multiproc::blocking::Pool::new()?;
    /// assert_eq!(pool.processes(), multiproc::cpu_count());
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn new() -> Result<Pool> {
        Self::builder().build()
    }

    /// The number of worker processes the pool keeps. As [`crate::Pool::processes`].
    pub fn processes(&self) -> usize {
        self.inner.processes()
    }

    /// The pids of the workers now serving calls. As [`crate::Pool::pids`].
    pub fn pids(&self) -> Vec<u32> {
        self.inner.pids()
    }

    /// Whether [`close`](Self::close) or [`terminate`](Self::terminate) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Refuses new work; work already submitted still runs. As [`crate::Pool::close`].
    pub fn close(&self) {
        self.inner.close();
    }

    blocking_forms! {
        "crate::Pool", "# fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {";
        /// Waits until all work submitted before [`close`](Self::close) has run and the
        /// workers have exited.
        fn join(&self) -> Result<()> = "pool.close();\npool.join()?;";
        /// Stops the pool at once, failing every queued or running call; returns once every
        /// worker has exited.
        fn terminate(&self) -> Result<()> = "pool.terminate()?;";
    }

    /// Runs `worker(args)` in a worker and returns its result (Python's `pool.apply`).
    ///
    /// The blocking form of [`crate::Pool::apply`]; [`apply_with`](Self::apply_with) sets a
    /// deadline.
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::apply`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// assert_eq!(pool.apply(square, (5,))?, 25);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn apply<W: Worker<M>, M>(&self, worker: W, args: W::Args) -> Result<W::Output> {
        self.apply_with(worker, args, |apply| apply)
    }

    /// As [`apply`](Self::apply), with the call configured by `configure`, which receives
    /// the async [`Apply`](crate::Apply) (its options: [`timeout`](crate::Apply::timeout)).
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::apply`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let nine = pool.apply_with(square, (3,), |apply| apply.timeout(Duration::from_secs(1)))?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn apply_with<W, M, F>(&self, worker: W, args: W::Args, configure: F) -> Result<W::Output>
    where
        W: Worker<M>,
        F: for<'p> FnOnce(Apply<'p, W, M>) -> Apply<'p, W, M>,
    {
        wait(configure(self.inner.apply(worker, args)).submit())
    }

    /// Queues `worker(args)` and returns a handle to its result at once (Python's
    /// `apply_async`); [`AsyncResult::get`] waits for it. As [`crate::Pool::apply_async`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let pending: Vec<_> = (0..10).map(|x| pool.apply_async(square, (x,))).collect();
    /// for (x, result) in pending.into_iter().enumerate() {
    ///     assert_eq!(result.get()?, (x * x) as u64);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn apply_async<W: Worker<M>, M>(&self, worker: W, args: W::Args) -> AsyncResult<W::Output> {
        self.inner.apply_async(worker, args).into()
    }

    /// Runs `worker` on every item of `inputs`, in chunks, and returns the results in input
    /// order (Python's `pool.map`).
    ///
    /// The blocking form of [`crate::Pool::map`]; [`map_with`](Self::map_with) sets the
    /// chunk size or a deadline per task.
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::map`]: the error of the first item that failed.
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let squares = pool.map(square, 0..100_000u64)?;
    /// assert_eq!(squares[3], 9);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn map<W, M, T, I>(&self, worker: W, inputs: I) -> Result<Vec<W::Output>>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
    {
        self.map_with(worker, inputs, |map| map)
    }

    /// As [`map`](Self::map), with the map configured by `configure`, which receives the
    /// async [`Map`](crate::Map) (its options: [`chunksize`](crate::Map::chunksize),
    /// [`timeout_per_task`](crate::Map::timeout_per_task)).
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::map`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let squares = pool.map_with(square, vec![1, 2, 3], |map| map.chunksize(1))?;
    /// assert_eq!(squares, [1, 4, 9]);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn map_with<W, M, T, I, F>(
        &self,
        worker: W,
        inputs: I,
        configure: F,
    ) -> Result<Vec<W::Output>>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
        F: for<'p> FnOnce(Map<'p, W, M, T>) -> Map<'p, W, M, T>,
    {
        wait(configure(self.inner.map(worker, inputs)).into_future())
    }

    /// Like [`map`](Self::map), for a worker of several arguments: each item is the tuple of
    /// one call's arguments (Python's `starmap`).
    ///
    /// The blocking form of [`crate::Pool::starmap`].
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::map`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn add(a: u64, b: u64) -> u64 { a + b }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn starmap<W, M, I>(&self, worker: W, inputs: I) -> Result<Vec<W::Output>>
    where
        W: Worker<M>,
        I: IntoIterator<Item = W::Args>,
    {
        self.starmap_with(worker, inputs, |map| map)
    }

    /// As [`starmap`](Self::starmap), configured as [`map_with`](Self::map_with) is.
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::map`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn add(a: u64, b: u64) -> u64 { a + b }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let sums = pool.starmap_with(add, vec![(1, 2), (3, 4)], |map| map.chunksize(1))?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn starmap_with<W, M, I, F>(
        &self,
        worker: W,
        inputs: I,
        configure: F,
    ) -> Result<Vec<W::Output>>
    where
        W: Worker<M>,
        I: IntoIterator<Item = W::Args>,
        F: for<'p> FnOnce(Map<'p, W, M, W::Args>) -> Map<'p, W, M, W::Args>,
    {
        wait(configure(self.inner.starmap(worker, inputs)).into_future())
    }

    /// Runs `worker` over a lazy input, yielding results in input order (Python's `imap`):
    /// an [`Iterator`] that pulls the input only as chunks are sent. As [`crate::Pool::imap`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// for square in pool.imap(square, 0..u64::MAX).chunksize(256) {
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
        self.inner.imap(worker, inputs).into()
    }

    /// Like [`imap`](Self::imap), yielding results as they complete (Python's
    /// `imap_unordered`). As [`crate::Pool::imap_unordered`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let total: u64 = pool.imap_unordered(square, 0..1_000u64).map(Result::unwrap).sum();
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<W, M, T, I>(&self, worker: W, inputs: I) -> Imap<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        self.inner.imap_unordered(worker, inputs).into()
    }
}

impl<T> AsyncResult<T> {
    /// Whether the result has arrived, so [`get`](Self::get) would not wait. As
    /// [`crate::AsyncResult::ready`].
    pub fn ready(&self) -> bool {
        self.inner.ready()
    }

    /// Withdraws the call, or stops it if it runs. As [`crate::AsyncResult::cancel`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(sleep_ms, (60_000,));
    /// pending.cancel();
    /// assert!(pending.get().unwrap_err().is_cancelled());
    /// # Ok(()) }
    /// ```
    pub fn cancel(&mut self) {
        self.inner.cancel();
    }
}

impl<T: Value> AsyncResult<T> {
    /// Waits for the result (Python's `AsyncResult.get()`).
    ///
    /// The blocking form of awaiting a [`crate::AsyncResult`].
    ///
    /// # Errors
    ///
    /// As [`crate::Pool::apply`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let pending = pool.apply_async(square, (3,));
    /// assert_eq!(pending.get()?, 9);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn get(self) -> Result<T> {
        wait(self.inner)
    }

    /// Waits at most `timeout` for the result (Python's `AsyncResult.get(timeout)`); on a
    /// timeout the call goes on, and the handle can be asked again.
    ///
    /// The blocking form of [`crate::AsyncResult::get_timeout`].
    ///
    /// # Errors
    ///
    /// As [`crate::AsyncResult::get_timeout`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # fn demo(pool: multiproc::blocking::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(sleep_ms, (500,));
    /// assert!(pending.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// assert_eq!(pending.get_timeout(Duration::from_secs(5))?, 500);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        wait(self.inner.get_timeout(timeout))
    }
}

impl<T: Value> Imap<T> {
    /// Sends the input in chunks of `items`. As [`crate::Imap::chunksize`].
    pub fn chunksize(self, items: usize) -> Self {
        self.inner.chunksize(items).into()
    }

    /// A deadline for each task. As [`crate::Imap::timeout_per_task`].
    pub fn timeout_per_task(self, timeout: Duration) -> Self {
        self.inner.timeout_per_task(timeout).into()
    }
}

impl<T: Value> Iterator for Imap<T> {
    type Item = Result<T>;

    #[track_caller]
    fn next(&mut self) -> Option<Result<T>> {
        wait(self.inner.next())
    }
}
