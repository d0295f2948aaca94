//! Handles to results on their way: [`AsyncResult`] (one call, [`Pool::apply_async`]) and
//! [`MapResult`] (a whole map, [`Pool::map_async`]), Python's `AsyncResult` and
//! `MapResult`.
//!
//! Both are futures of the result, and both answer Python's questions without taking it:
//! `ready()` (is it in?), `successful()` (did it succeed? `None` while it is not in, where
//! Python raises `ValueError`), `wait()` and `wait_timeout()` (wait for it, and leave it in
//! the handle), `get_timeout()` (take it, waiting at most so long). Each owns what it needs,
//! its pool included, so it can be stored, moved to another task, or outlive the code that
//! made it.
//!
//! [`Pool::apply_async`]: super::Pool::apply_async
//! [`Pool::map_async`]: super::Pool::map_async

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::error::{Error, Result};
use crate::worker::Value;

use super::Pool;
use super::scheduler::Control;

/// A result on its way to a handle, arriving as an `R` that becomes the handle's `T`: the
/// state that [`AsyncResult`] and [`MapResult`] share.
struct Arrival<R, T> {
    state: State<R, T>,
    /// Turns what arrives into the result: decoding, for a call's bytes.
    convert: fn(R) -> Result<T>,
}

enum State<R, T> {
    Waiting(oneshot::Receiver<Result<R>>),
    /// Arrived and not taken yet: what `successful` and `wait` leave in place.
    Arrived(Result<T>),
    /// Taken by an await; remembers for `successful` whether it was a value.
    Taken {
        successful: bool,
    },
}

impl<R, T> Arrival<R, T> {
    fn new(receiver: oneshot::Receiver<Result<R>>, convert: fn(R) -> Result<T>) -> Self {
        Arrival {
            state: State::Waiting(receiver),
            convert,
        }
    }

    fn failed(error: Error, convert: fn(R) -> Result<T>) -> Self {
        Arrival {
            state: State::Arrived(Err(error)),
            convert,
        }
    }

    fn ready(&self) -> bool {
        match &self.state {
            State::Waiting(receiver) => !receiver.is_empty() || receiver.is_terminated(),
            State::Arrived(_) | State::Taken { .. } => true,
        }
    }

    /// Ends the wait with `error`, unless the result is already in.
    fn fail(&mut self, error: Error) {
        if !self.ready() {
            self.state = State::Arrived(Err(error));
        }
    }

    /// Moves the result into the handle once it has arrived; ready at once if it has.
    fn poll_arrived(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let State::Waiting(receiver) = &mut self.state {
            // A sender dropped unanswered means the pool was terminated.
            let reply = ready!(Pin::new(receiver).poll(cx)).unwrap_or_else(|_| Err(cancelled()));
            self.state = State::Arrived(reply.and_then(self.convert));
        }
        Poll::Ready(())
    }

    fn successful(&mut self) -> Option<bool> {
        if let State::Waiting(receiver) = &mut self.state {
            match receiver.try_recv() {
                Ok(reply) => self.state = State::Arrived(reply.and_then(self.convert)),
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.state = State::Arrived(Err(cancelled()));
                }
            }
        }
        match &self.state {
            State::Waiting(_) => None,
            State::Arrived(result) => Some(result.is_ok()),
            State::Taken { successful } => Some(*successful),
        }
    }

    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        ready!(self.poll_arrived(cx));
        let result = match std::mem::replace(&mut self.state, State::Taken { successful: false }) {
            State::Arrived(result) => result,
            State::Taken { successful } => {
                self.state = State::Taken { successful };
                return Poll::Ready(Err(Error::invalid_state(
                    "a result handle polled after it gave its result",
                )));
            }
            State::Waiting(_) => unreachable!("poll_arrived ended the wait"),
        };
        self.state = State::Taken {
            successful: result.is_ok(),
        };
        Poll::Ready(result)
    }

    async fn wait_timeout(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, poll_fn(|cx| self.poll_arrived(cx)))
            .await
            .is_ok()
    }

    async fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        match tokio::time::timeout(timeout, poll_fn(|cx| self.poll_take(cx))).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::timeout(format!(
                "the result did not arrive within {timeout:?}; the work goes on"
            ))),
        }
    }
}

fn cancelled() -> Error {
    super::cancelled()
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async) (or
/// [`Apply::submit`](super::Apply::submit)): a future of the call's result.
///
/// [`cancel`](Self::cancel) withdraws the call if it has not started, and stops it (killing
/// its worker, which is replaced) if it has. Dropping the handle only withdraws a call that
/// has not started: a running call finishes and its result is discarded, as dropping a
/// tokio `JoinHandle` detaches its task. Stopping a call costs a worker, so it is never done
/// implicitly, by a `select!` or an early return. The handle keeps its pool alive.
///
/// Python's `AsyncResult` methods: [`ready`](Self::ready), [`successful`](Self::successful),
/// [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout) leave the result in the
/// handle; awaiting the handle, or [`get_timeout`](Self::get_timeout), takes it.
#[must_use = "dropping the handle withdraws the call"]
pub struct AsyncResult<T> {
    arrival: Arrival<Vec<u8>, T>,
    control: Arc<Control>,
    _pool: Pool,
}

impl<T: Value> AsyncResult<T> {
    pub(super) fn new(
        submitted: Result<oneshot::Receiver<Result<Vec<u8>>>>,
        control: Arc<Control>,
        pool: Pool,
    ) -> Self {
        let convert = |bytes: Vec<u8>| crate::protocol::decode(&bytes, "the result of a pool call");
        AsyncResult {
            arrival: match submitted {
                Ok(reply) => Arrival::new(reply, convert),
                Err(error) => Arrival::failed(error, convert),
            },
            control,
            _pool: pool,
        }
    }
}

impl<T> AsyncResult<T> {
    /// Whether the result (or the call's error) has arrived, so awaiting the handle would not
    /// wait. Python's `AsyncResult.ready()`.
    pub fn ready(&self) -> bool {
        self.arrival.ready()
    }

    /// Whether the call succeeded: `Some(true)` if it returned a value, `Some(false)` if it
    /// failed (panicked, its worker died, it was cancelled, ...), and `None` if its result
    /// has not arrived yet (where Python's `AsyncResult.successful()` raises `ValueError`).
    /// Does not take the result, and still answers after the handle was awaited through
    /// `&mut`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(square, (3,));
    /// pending.wait().await;
    /// assert_eq!(pending.successful(), Some(true));
    /// assert_eq!(pending.await?, 9);
    /// # Ok(()) }
    /// ```
    pub fn successful(&mut self) -> Option<bool> {
        self.arrival.successful()
    }

    /// Waits until the result (or the call's error) has arrived, and leaves it in the handle.
    /// Python's `AsyncResult.wait()`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the result is kept in the handle whenever it arrives.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(square, (3,));
    /// pending.wait().await;
    /// assert!(pending.ready());
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) {
        poll_fn(|cx| self.arrival.poll_arrived(cx)).await
    }

    /// Waits at most `timeout` for the result to arrive, and leaves it in the handle; returns
    /// whether it arrived. Python's `AsyncResult.wait(timeout)`, which returns `None` and
    /// leaves the caller to ask `ready()`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the result is kept in the handle whenever it arrives.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(sleep_ms, (500,));
    /// assert!(!pending.wait_timeout(Duration::from_millis(10)).await);
    /// assert!(pending.wait_timeout(Duration::from_secs(5)).await);
    /// assert_eq!(pending.await?, 500);
    /// # Ok(()) }
    /// ```
    pub async fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.arrival.wait_timeout(timeout).await
    }

    /// Waits at most `timeout` for the result, and takes it. Python's
    /// `AsyncResult.get(timeout)`: on a timeout the call goes on, and the handle can be
    /// awaited (or asked again) later.
    ///
    /// # Errors
    ///
    /// [`Timeout`](crate::ErrorKind::Timeout) if the result has not arrived in time; otherwise
    /// as awaiting the handle.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the result is kept for the next wait.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(sleep_ms, (500,));
    /// assert!(pending.get_timeout(Duration::from_millis(10)).await.unwrap_err().is_timeout());
    /// assert_eq!(pending.get_timeout(Duration::from_secs(5)).await?, 500);
    /// # Ok(()) }
    /// ```
    pub async fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.arrival.get_timeout(timeout).await
    }

    /// Cancels the call: one still queued, or sent to a worker that has not started it, is
    /// withdrawn and never runs; one running is stopped by killing its worker, which the pool
    /// replaces (the calls that worker held but had not started go to other workers). Awaiting
    /// the handle then gives a [`Cancelled`](crate::ErrorKind::Cancelled) error, unless the
    /// result had already arrived, which it then gives. Cancelling twice does nothing more.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn sleep_ms(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut pending = pool.apply_async(sleep_ms, (60_000,));
    /// pending.cancel();
    /// assert!(pending.await.unwrap_err().is_cancelled());
    /// # Ok(()) }
    /// ```
    pub fn cancel(&mut self) {
        if self.ready() {
            return;
        }
        self.arrival.fail(Error::cancelled(
            "the call was cancelled through its AsyncResult",
        ));
        // A queued call is skipped; a sent one is withdrawn from its worker, or stopped there.
        if let Some((supervised, id)) = self.control.cancel() {
            supervised.stop_call(
                id,
                Error::cancelled("the call was cancelled through its AsyncResult"),
            );
        }
    }
}

impl<T> Drop for AsyncResult<T> {
    /// Withdraws the call if it has not started; a running call is left to finish.
    fn drop(&mut self) {
        if self.ready() {
            return;
        }
        if let Some((supervised, id)) = self.control.cancel() {
            supervised.withdraw_call(id);
        }
    }
}

// The result is moved out of the handle, never borrowed across a poll.
impl<T> Unpin for AsyncResult<T> {}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    /// # Cancel safety
    ///
    /// Polling is cancel safe: a handle may be polled, put aside and awaited later.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.arrival.poll_take(cx)
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

/// The result of [`Pool::map_async`](super::Pool::map_async),
/// [`Pool::starmap_async`](super::Pool::starmap_async) or [`Map::submit`](super::Map::submit):
/// a future of the whole map's results, in input order, that owns what it needs (Python's
/// `MapResult`).
///
/// The map runs in a tokio task from the moment the handle is made, whether or not the
/// handle is polled, so it needs a tokio runtime. It fails as [`Pool::map`](super::Pool::map)
/// does. Dropping the handle before the result is in withdraws the chunks not yet sent;
/// chunks already sent run to their end and their results are discarded. The handle keeps
/// its pool alive.
///
/// [`ready`](Self::ready), [`successful`](Self::successful), [`wait`](Self::wait) and
/// [`wait_timeout`](Self::wait_timeout) leave the result in the handle; awaiting the handle,
/// or [`get_timeout`](Self::get_timeout), takes it.
#[must_use = "dropping the handle withdraws the chunks not yet sent"]
pub struct MapResult<T> {
    arrival: Arrival<Vec<T>, Vec<T>>,
    task: AbortHandle,
}

impl<T: Value> MapResult<T> {
    /// Runs `map` in a task of its own.
    pub(super) fn spawn(map: impl Future<Output = Result<Vec<T>>> + Send + 'static) -> Self {
        let (sender, receiver) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = sender.send(map.await);
        });
        MapResult {
            arrival: Arrival::new(receiver, Ok),
            task: task.abort_handle(),
        }
    }
}

impl<T> MapResult<T> {
    /// Whether the results (or the map's error) have arrived, so awaiting the handle would
    /// not wait. Python's `MapResult.ready()`.
    pub fn ready(&self) -> bool {
        self.arrival.ready()
    }

    /// Whether the map succeeded: `Some(true)` if every item returned a value, `Some(false)`
    /// if one failed, and `None` while the map runs (where Python raises `ValueError`). Does
    /// not take the results.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut squares = pool.map_async(square, 0..10u64);
    /// squares.wait().await;
    /// assert_eq!(squares.successful(), Some(true));
    /// # Ok(()) }
    /// ```
    pub fn successful(&mut self) -> Option<bool> {
        self.arrival.successful()
    }

    /// Waits until the map has finished, and leaves its results in the handle. Python's
    /// `MapResult.wait()`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the map goes on in its task, and its results are kept in the handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut squares = pool.map_async(square, 0..10u64);
    /// squares.wait().await;
    /// assert!(squares.ready());
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) {
        poll_fn(|cx| self.arrival.poll_arrived(cx)).await
    }

    /// Waits at most `timeout` for the map to finish, and leaves its results in the handle;
    /// returns whether it finished. Python's `MapResult.wait(timeout)`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the map goes on in its task, and its results are kept in the handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut squares = pool.map_async(square, 0..10u64);
    /// if squares.wait_timeout(Duration::from_secs(5)).await {
    ///     assert_eq!(squares.await?.len(), 10);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.arrival.wait_timeout(timeout).await
    }

    /// Waits at most `timeout` for the map's results, and takes them. Python's
    /// `MapResult.get(timeout)`: on a timeout the map goes on, and the handle can be awaited
    /// (or asked again) later.
    ///
    /// # Errors
    ///
    /// [`Timeout`](crate::ErrorKind::Timeout) if the map has not finished in time; otherwise
    /// as [`Pool::map`](super::Pool::map).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the map goes on in its task, and its results are kept for the next wait.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let mut squares = pool.map_async(square, 0..10u64);
    /// assert_eq!(squares.get_timeout(Duration::from_secs(5)).await?[3], 9);
    /// # Ok(()) }
    /// ```
    pub async fn get_timeout(&mut self, timeout: Duration) -> Result<Vec<T>> {
        self.arrival.get_timeout(timeout).await
    }
}

impl<T> Drop for MapResult<T> {
    /// Stops the map's task: its chunks not yet sent are withdrawn.
    fn drop(&mut self) {
        self.task.abort();
    }
}

// The results are moved out of the handle, never borrowed across a poll.
impl<T> Unpin for MapResult<T> {}

impl<T> Future for MapResult<T> {
    type Output = Result<Vec<T>>;

    /// # Cancel safety
    ///
    /// Polling is cancel safe: a handle may be polled, put aside and awaited later.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<T>>> {
        self.arrival.poll_take(cx)
    }
}

impl<T> fmt::Debug for MapResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResult")
            .field("ready", &self.ready())
            .finish()
    }
}
