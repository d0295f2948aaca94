//! [`pipe`]: a duplex pair of typed connections between two processes, and
//! [`pipe_one_way`], a receiving end and a sending end.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::{self, Handle};
use super::hub::{ConnId, Items, LOCAL, Object, Reply, Request, take_parked};
use super::queue::expect_started;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::hub::{Answer, Failure, Op, PipeOp};
use crate::protocol::{decode, encode};

/// One end's state on the hub: what was sent to it and who waits to receive.
#[derive(Default)]
struct EndState {
    inbox: VecDeque<Vec<u8>>,
    receivers: VecDeque<Request>,
    /// Polls waiting until a `recv` would not wait.
    pollers: VecDeque<Request>,
    closed: bool,
    /// Processes that used this end; the end closes when one of them exits.
    users: HashSet<ConnId>,
}

/// A pipe's state on its hub.
#[derive(Default)]
struct PipeState {
    ends: [EndState; 2],
}

impl PipeState {
    /// Whether a `recv` on `end` would not wait: an item is there, or end of file.
    fn readable(&self, end: usize) -> bool {
        let this = &self.ends[end];
        !this.inbox.is_empty() || this.closed || self.ends[1 - end].closed
    }

    fn deliver(&mut self, end: usize) {
        let peer_closed = self.ends[1 - end].closed;
        let this = &mut self.ends[end];
        while let Some(receiver) = this.receivers.pop_front() {
            if let Some(item) = this.inbox.pop_front() {
                if let Err(reply) = receiver.answer(Reply::items(vec![item])) {
                    for item in reply.items.into_iter().rev() {
                        this.inbox.push_front(item);
                    }
                }
            } else if peer_closed || this.closed {
                let _ = receiver.answer(Reply::failed(Failure::Closed));
            } else {
                this.receivers.push_front(receiver);
                break;
            }
        }
        if self.readable(end) {
            for poller in self.ends[end].pollers.drain(..) {
                let _ = poller.answer(Reply::ok(Answer::Flag(true)));
            }
        }
    }

    fn close(&mut self, end: usize) {
        self.ends[end].closed = true;
        self.deliver(end);
        self.deliver(1 - end);
    }
}

impl Object for PipeState {
    fn call(&mut self, request: Request, op: Op, items: Items) {
        let Op::Pipe(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not a pipe".into())));
            return;
        };
        let end = match op {
            PipeOp::Send { end }
            | PipeOp::Recv { end }
            | PipeOp::Poll { end, .. }
            | PipeOp::Unrecv { end }
            | PipeOp::Close { end } => usize::from(end.min(1)),
        };
        if request.caller.conn != LOCAL {
            self.ends[end].users.insert(request.caller.conn);
        }
        match op {
            PipeOp::Send { .. } => {
                if self.ends[end].closed || self.ends[1 - end].closed {
                    let _ = request.answer(Reply::failed(Failure::Closed));
                    return;
                }
                self.ends[1 - end].inbox.extend(items);
                let _ = request.answer(Reply::ok(Answer::Done));
                self.deliver(1 - end);
            }
            PipeOp::Recv { .. } => {
                self.ends[end].receivers.push_back(request);
                self.deliver(end);
            }
            PipeOp::Poll { wait, .. } => {
                if wait && !self.readable(end) {
                    self.ends[end].pollers.push_back(request);
                } else {
                    let _ = request.answer(Reply::ok(Answer::Flag(self.readable(end))));
                }
            }
            PipeOp::Unrecv { .. } => {
                for item in items.into_iter().rev() {
                    self.ends[end].inbox.push_front(item);
                }
                self.deliver(end);
            }
            PipeOp::Close { .. } => {
                self.close(end);
                let _ = request.answer(Reply::ok(Answer::Done));
            }
        }
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        self.ends.iter_mut().find_map(|end| {
            take_parked(&mut end.receivers, conn, id, |r| r)
                .or_else(|| take_parked(&mut end.pollers, conn, id, |r| r))
        })
    }

    fn disconnected(&mut self, conn: ConnId) {
        for end in 0..2 {
            self.ends[end].receivers.retain(|r| r.caller.conn != conn);
            self.ends[end].pollers.retain(|r| r.caller.conn != conn);
            if self.ends[end].users.remove(&conn) {
                self.close(end);
            }
        }
    }

    fn drain(&mut self) -> Vec<Request> {
        self.ends
            .iter_mut()
            .flat_map(|end| end.receivers.drain(..).chain(end.pollers.drain(..)))
            .collect()
    }
}

/// A duplex pair of connected ends: Python's `multiprocessing.Pipe()`.
///
/// What one end [`send`](PipeEnd::send)s, the other [`recv`](PipeEnd::recv)s, in order. Pass
/// an end to a worker as an argument; the pipe lives in the process that called `pipe`. For
/// Python's `Pipe(duplex=False)`, see [`pipe_one_way`].
///
/// # Panics
///
/// If this process's hub cannot bind its socket.
///
/// ```no_run
/// use multiproc::{pipe, worker, PipeEnd, Process};
///
/// #[worker]
/// async fn greet(end: PipeEnd<String>) {
///     end.send("hello".into()).await.unwrap();
/// }
///
/// #[multiproc::main]
/// async fn main() -> multiproc::Result<()> {
///     let (here, there) = pipe();
///     let p = Process::new(greet, (there,)).start().await?;
///     assert_eq!(here.recv().await?, "hello");
///     p.join().await?;
///     // The child's end closed when it exited: end of file, not a hang.
///     assert!(here.recv().await.unwrap_err().is_closed());
///     Ok(())
/// }
/// ```
pub fn pipe<T: Serialize + DeserializeOwned + Send + 'static>() -> (PipeEnd<T>, PipeEnd<T>) {
    let handle = expect_started(Handle::create(Box::<PipeState>::default()));
    (PipeEnd::new(handle.clone(), 0), PipeEnd::new(handle, 1))
}

/// A one-way pipe: Python's `Pipe(duplex=False)`, which returns `(r, w)`: a
/// [`PipeReceiver`] that can only receive and a [`PipeSender`] that can only send, in that
/// order. Sending on the receiving end does not compile.
///
/// # Panics
///
/// If this process's hub cannot bind its socket.
///
/// ```no_run
/// use multiproc::{pipe_one_way, worker, PipeSender, Process};
///
/// #[worker]
/// async fn report(results: PipeSender<u64>) {
///     results.send(42).await.unwrap();
/// }
///
/// #[multiproc::main]
/// async fn main() -> multiproc::Result<()> {
///     let (results, sender) = pipe_one_way();
///     let p = Process::new(report, (sender,)).start().await?;
///     assert_eq!(results.recv().await?, 42);
///     p.join().await?;
///     Ok(())
/// }
/// ```
///
/// The receiving end has no `send`:
///
/// ```compile_fail
/// # async fn demo() {
/// let (results, _sender) = multiproc::pipe_one_way::<u64>();
/// results.send(1).await;
/// # }
/// ```
pub fn pipe_one_way<T: Serialize + DeserializeOwned + Send + 'static>()
-> (PipeReceiver<T>, PipeSender<T>) {
    let (receiving, sending) = pipe();
    (PipeReceiver { end: receiving }, PipeSender { end: sending })
}

/// How many items a [`Sink`](futures::Sink) sends per request.
const SINK_BATCH: usize = 512;

/// One end of a [`pipe`].
///
/// Not `Clone`: an end belongs to one process at a time. Sending it to a worker moves it there.
/// An end closes when [`close`](Self::close)d, when it is dropped after being used, or when a
/// process that used it exits (even by `SIGKILL`); then the other end's `recv` drains what
/// was sent and then fails with an end-of-file [`Closed`](crate::ErrorKind::Closed) error, and
/// its `send` fails the same way.
///
/// As a [`Stream`](futures::Stream) it yields what the other end sends until end of file. As
/// a [`Sink`](futures::Sink) it sends items in batches; its `flush` returns once the pipe's
/// hub holds every item sent, and its `close` closes the end (the other end sees end of file
/// once it has received everything).
pub struct PipeEnd<T> {
    handle: Handle,
    end: u8,
    used: AtomicBool,
    // Behind a mutex only to make the end `Sync` (a boxed future is not); the Stream and
    // Sink reach it through `get_mut`, without locking.
    streaming: std::sync::Mutex<Streaming>,
    _items: PhantomData<fn(T) -> T>,
}

/// The requests of an end used as a `Stream` or a `Sink`.
#[derive(Default)]
struct Streaming {
    receiving: Option<BoxFuture<'static, Result<Reply>>>,
    batch: Items,
    sending: Option<BoxFuture<'static, Result<Reply>>>,
    closing: Option<BoxFuture<'static, Result<Reply>>>,
}

impl<T> fmt::Debug for PipeEnd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeEnd")
            .field("hub", &self.handle.hub)
            .field("object", &self.handle.object)
            .field("end", &self.end)
            .finish()
    }
}

impl<T> Serialize for PipeEnd<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.handle, self.end).serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for PipeEnd<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (handle, end) = <(Handle, u8)>::deserialize(deserializer)?;
        Ok(PipeEnd::new(handle, end))
    }
}

impl<T> Drop for PipeEnd<T> {
    fn drop(&mut self) {
        // An end that was only handed on (serialized into a worker's arguments) is not
        // closed by the copy left behind.
        if self.used.load(Ordering::Relaxed) {
            client::send_later(
                self.handle.clone(),
                Op::Pipe(PipeOp::Close { end: self.end }),
                Vec::new(),
            );
        }
    }
}

impl<T> PipeEnd<T> {
    fn new(handle: Handle, end: u8) -> Self {
        PipeEnd {
            handle,
            end,
            used: AtomicBool::new(false),
            streaming: Default::default(),
            _items: PhantomData,
        }
    }

    fn describe(&self) -> String {
        format!("pipe {} end {}", self.handle.object, self.end)
    }

    fn streaming_mut(&mut self) -> &mut Streaming {
        self.streaming
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `op` on this end, for a Stream or Sink to poll.
    fn start(&self, op: PipeOp, items: Items) -> BoxFuture<'static, Result<Reply>> {
        self.used.store(true, Ordering::Relaxed);
        let handle = self.handle.clone();
        Box::pin(async move { client::call(&handle, Op::Pipe(op), items, None).await })
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> PipeEnd<T> {
    async fn ask(&self, op: PipeOp, items: Items, timeout: Option<Duration>) -> Result<Reply> {
        self.used.store(true, Ordering::Relaxed);
        client::call(&self.handle, Op::Pipe(op), items, timeout).await
    }

    fn end_of_file(&self) -> Error {
        Error::closed(format!(
            "{}: end of file (the other end is closed or its process exited)",
            self.describe()
        ))
    }

    fn encode_item(&self, item: &T) -> Result<Vec<u8>> {
        encode(item, &format!("an item for {}", self.describe()))
    }

    /// What a `Send` request's reply means.
    fn sent(&self, reply: Result<Reply>) -> Result<()> {
        match reply?.outcome {
            Ok(_) => Ok(()),
            Err(Failure::Closed) => Err(self.end_of_file()),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// The item a `Recv` request's reply holds.
    fn received(&self, reply: Result<Reply>) -> Result<T> {
        let reply = reply?;
        match reply.outcome {
            Ok(_) => {
                let bytes = reply.items.into_iter().next().ok_or_else(|| {
                    Failure::Protocol("a recv answered without an item".into())
                        .into_error(&self.describe())
                })?;
                decode(&bytes, &format!("an item from {}", self.describe()))
            }
            Err(Failure::Closed) => Err(self.end_of_file()),
            Err(Failure::Cancelled) => Err(Error::new(
                ErrorKind::Timeout,
                format!("{}: nothing arrived in time", self.describe()),
            )),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Sends `item` to the other end; returns once the pipe's hub holds it.
    ///
    /// # Errors
    ///
    /// [`is_serialization`](Error::is_serialization) if `item` does not serialize;
    /// [`is_closed`](Error::is_closed) if either end is closed or the pipe's process exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the item was sent or not.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(end: multiproc::PipeEnd<u32>) -> multiproc::Result<()> {
    /// end.send(42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, item: T) -> Result<()> {
        let bytes = self.encode_item(&item)?;
        let reply = self
            .ask(PipeOp::Send { end: self.end }, vec![bytes], None)
            .await;
        self.sent(reply)
    }

    async fn recv_inner(&self, timeout: Option<Duration>) -> Result<T> {
        let reply = self
            .ask(PipeOp::Recv { end: self.end }, Vec::new(), timeout)
            .await;
        self.received(reply)
    }

    /// Receives the next item the other end sent, waiting for one.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) (end of file) once the other end is closed and
    /// everything it sent has been received; [`is_serialization`](Error::is_serialization) if
    /// the item does not decode as `T`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an item taken for a cancelled `recv` goes back to the front.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(end: multiproc::PipeEnd<u32>) -> multiproc::Result<()> {
    /// while let Ok(item) = end.recv().await {
    ///     println!("{item}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<T> {
        self.recv_inner(None).await
    }

    /// As [`recv`](Self::recv), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`is_timeout`](Error::is_timeout) if nothing arrived in time; otherwise as
    /// [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// As [`recv`](Self::recv). Returns within `timeout` plus about 100 ms whatever the pipe's
    /// process does; an item it hands out later goes back to the front.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(end: multiproc::PipeEnd<u32>) -> multiproc::Result<()> {
    /// let item = end.recv_timeout(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.recv_inner(Some(timeout)).await
    }

    /// Whether a [`recv`](Self::recv) would not wait, waiting at most `timeout` for it to
    /// become so: Python's `Connection.poll(timeout)`. `true` when an item is there, and also
    /// at end of file (where `recv` fails at once, as Python's raises `EOFError`). A zero
    /// `timeout` asks without waiting (Python's `poll()`). Takes nothing.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) if the pipe's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(end: multiproc::PipeEnd<u32>) -> multiproc::Result<()> {
    /// use std::time::Duration;
    /// if end.poll(Duration::from_millis(100)).await? {
    ///     let item = end.recv().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn poll(&self, timeout: Duration) -> Result<bool> {
        let wait = !timeout.is_zero();
        let op = PipeOp::Poll {
            end: self.end,
            wait,
        };
        let reply = self.ask(op, Vec::new(), wait.then_some(timeout)).await?;
        match reply.outcome {
            Ok(Answer::Flag(readable)) => Ok(readable),
            Ok(_) => Err(Failure::Protocol("a poll answered without a flag".into())
                .into_error(&self.describe())),
            Err(Failure::Cancelled) => Ok(false),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Closes this end: the other end receives what was already sent, then end of file.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) if the pipe's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(end: multiproc::PipeEnd<u32>) -> multiproc::Result<()> {
    /// end.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        let reply = self
            .ask(PipeOp::Close { end: self.end }, Vec::new(), None)
            .await?;
        self.used.store(false, Ordering::Relaxed);
        reply
            .outcome
            .map(drop)
            .map_err(|failure| failure.into_error(&self.describe()))
    }

    /// Sends the batch, after the one before it is answered.
    fn poll_send_batch(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if let Some(sending) = &mut self.streaming_mut().sending {
                let reply = ready!(sending.as_mut().poll(cx));
                self.streaming_mut().sending = None;
                self.sent(reply)?;
            }
            let batch = std::mem::take(&mut self.streaming_mut().batch);
            if batch.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let sending = self.start(PipeOp::Send { end: self.end }, batch);
            self.streaming_mut().sending = Some(sending);
        }
    }
}

// Nothing is pinned through an end: its futures are boxed.
impl<T> Unpin for PipeEnd<T> {}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Stream for PipeEnd<T> {
    type Item = Result<T>;

    /// Yields the next item the other end sent; ends at end of file (or when the pipe's
    /// process has exited).
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = &mut *self;
        if this.streaming_mut().receiving.is_none() {
            let receiving = this.start(PipeOp::Recv { end: this.end }, Vec::new());
            this.streaming_mut().receiving = Some(receiving);
        }
        let receiving = this.streaming_mut().receiving.as_mut().expect("started");
        let reply = ready!(receiving.as_mut().poll(cx));
        this.streaming_mut().receiving = None;
        match this.received(reply) {
            Err(error) if error.is_closed() => Poll::Ready(None),
            item => Poll::Ready(Some(item)),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Sink<T> for PipeEnd<T> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.streaming_mut().batch.len() >= SINK_BATCH {
            return self.poll_send_batch(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: T) -> Result<()> {
        let bytes = self.encode_item(&item)?;
        self.streaming_mut().batch.push(bytes);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_send_batch(cx)
    }

    /// Flushes, then closes this end, as [`close`](PipeEnd::close) does.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        ready!(self.poll_send_batch(cx))?;
        if self.streaming_mut().closing.is_none() {
            let closing = self.start(PipeOp::Close { end: self.end }, Vec::new());
            self.streaming_mut().closing = Some(closing);
        }
        let closing = self.streaming_mut().closing.as_mut().expect("started");
        let reply = ready!(closing.as_mut().poll(cx));
        self.streaming_mut().closing = None;
        reply?
            .outcome
            .map(drop)
            .map_err(|failure| failure.into_error(&self.describe()))
            .into()
    }
}

/// The receiving end of a [`pipe_one_way`]: Python's `r` of `r, w = Pipe(duplex=False)`.
/// It has no `send`. Closes as a [`PipeEnd`] does; a [`Stream`](futures::Stream) of what the
/// sender sends, until end of file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct PipeReceiver<T> {
    end: PipeEnd<T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> PipeReceiver<T> {
    /// Receives the next item the sender sent, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`PipeEnd::recv`]: end of file once the sender is closed and everything it sent
    /// has been received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`PipeEnd::recv`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(results: multiproc::PipeReceiver<u32>) -> multiproc::Result<()> {
    /// let item = results.recv().await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<T> {
        self.end.recv().await
    }

    /// As [`recv`](Self::recv), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`PipeEnd::recv_timeout`].
    ///
    /// # Cancel safety
    ///
    /// As [`PipeEnd::recv_timeout`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(results: multiproc::PipeReceiver<u32>) -> multiproc::Result<()> {
    /// let item = results.recv_timeout(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.end.recv_timeout(timeout).await
    }

    /// Whether a `recv` would not wait, waiting at most `timeout`: Python's
    /// `Connection.poll(timeout)`; see [`PipeEnd::poll`].
    ///
    /// # Errors
    ///
    /// As [`PipeEnd::poll`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(results: multiproc::PipeReceiver<u32>) -> multiproc::Result<()> {
    /// let ready = results.poll(std::time::Duration::ZERO).await?;
    /// # Ok(()) }
    /// ```
    pub async fn poll(&self, timeout: Duration) -> Result<bool> {
        self.end.poll(timeout).await
    }

    /// Closes this end: the sender's later sends fail with end of file.
    ///
    /// # Errors
    ///
    /// As [`PipeEnd::close`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(results: multiproc::PipeReceiver<u32>) -> multiproc::Result<()> {
    /// results.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        self.end.close().await
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Stream for PipeReceiver<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        Pin::new(&mut self.end).poll_next(cx)
    }
}

/// The sending end of a [`pipe_one_way`]: Python's `w` of `r, w = Pipe(duplex=False)`.
/// It has no `recv`. Closes as a [`PipeEnd`] does; a [`Sink`](futures::Sink) that sends in
/// batches, whose `close` closes the end.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct PipeSender<T> {
    end: PipeEnd<T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> PipeSender<T> {
    /// Sends `item` to the receiver; returns once the pipe's hub holds it.
    ///
    /// # Errors
    ///
    /// As [`PipeEnd::send`]: end of file once the receiver is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the item was sent or not.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(results: multiproc::PipeSender<u32>) -> multiproc::Result<()> {
    /// results.send(7).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, item: T) -> Result<()> {
        self.end.send(item).await
    }

    /// Closes this end: the receiver gets what was sent, then end of file.
    ///
    /// # Errors
    ///
    /// As [`PipeEnd::close`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(results: multiproc::PipeSender<u32>) -> multiproc::Result<()> {
    /// results.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        self.end.close().await
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Sink<T> for PipeSender<T> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.end).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: T) -> Result<()> {
        Pin::new(&mut self.end).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.end).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.end).poll_close(cx)
    }
}
