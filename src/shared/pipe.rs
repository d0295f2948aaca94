//! [`pipe`]: a duplex pair of typed connections between two processes.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
                return;
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
        let [first, second] = &mut self.ends;
        take_parked(&mut first.receivers, conn, id, |r| r)
            .or_else(|| take_parked(&mut second.receivers, conn, id, |r| r))
    }

    fn disconnected(&mut self, conn: ConnId) {
        for end in 0..2 {
            self.ends[end].receivers.retain(|r| r.caller.conn != conn);
            if self.ends[end].users.remove(&conn) {
                self.close(end);
            }
        }
    }

    fn drain(&mut self) -> Vec<Request> {
        let [first, second] = &mut self.ends;
        first
            .receivers
            .drain(..)
            .chain(second.receivers.drain(..))
            .collect()
    }
}

/// A duplex pair of connected ends: Python's `multiprocessing.Pipe()`.
///
/// What one end [`send`](PipeEnd::send)s, the other [`recv`](PipeEnd::recv)s, in order. Pass
/// an end to a worker as an argument; the pipe lives in the process that called `pipe`.
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

/// One end of a [`pipe`].
///
/// Not `Clone`: an end belongs to one process at a time. Sending it to a worker moves it there.
/// An end closes when [`close`](Self::close)d, when it is dropped after being used, or when a
/// process that used it exits (even by `SIGKILL`); then the other end's `recv` drains what
/// was sent and then fails with an end-of-file [`Closed`](crate::ErrorKind::Closed) error, and
/// its `send` fails the same way.
pub struct PipeEnd<T> {
    handle: Handle,
    end: u8,
    used: AtomicBool,
    _items: PhantomData<fn(T) -> T>,
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
            _items: PhantomData,
        }
    }

    fn describe(&self) -> String {
        format!("pipe {} end {}", self.handle.object, self.end)
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
        let bytes = encode(&item, &format!("an item for {}", self.describe()))?;
        let reply = self
            .ask(PipeOp::Send { end: self.end }, vec![bytes], None)
            .await?;
        match reply.outcome {
            Ok(_) => Ok(()),
            Err(Failure::Closed) => Err(self.end_of_file()),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    async fn recv_inner(&self, timeout: Option<Duration>) -> Result<T> {
        let reply = self
            .ask(PipeOp::Recv { end: self.end }, Vec::new(), timeout)
            .await?;
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
}
