//! Connections between any processes, related or not: Python's
//! `multiprocessing.connection` (`Listener`, `Client`, `wait`).
//!
//! A [`Listener`] listens at an [`Address`], a local socket name or a TCP address; a
//! [`client`] connects to it; each side then holds a [`Connection`] that sends and receives
//! typed messages. The two processes need no common ancestor: they share only the address and
//! an *authkey*, which both prove to each other with the mutual HMAC-SHA256 challenge every
//! socket of the crate uses (Python 3.12's `deliver_challenge` and `answer_challenge`), so
//! the key never crosses the wire and neither side sends a message to a peer that has not
//! proven it. A local socket is for processes of the same user (each side checks); TCP
//! reaches other users and machines, unencrypted (tunnel an untrusted network).
//!
//! ```no_run
//! use multiproc::connection::{client, Address, Connection, Listener};
//!
//! # async fn demo() -> multiproc::Result<()> {
//! // In one process:
//! let listener: Listener<String> = Listener::bind(Address::random_local(), b"secret").await?;
//! let address = listener.address().to_string(); // `local:...`: give it to the other side
//! let conn = listener.accept().await?;
//! assert_eq!(conn.recv().await?, "hello");
//!
//! // In another, which knows the address and the key:
//! let conn: Connection<String> = client(&address.parse()?, b"secret").await?;
//! conn.send("hello".to_string()).await?;
//! # Ok(()) }
//! ```
//!
//! # Typed messages
//!
//! A `Connection<S, R>` sends `S` and receives `R`; `Connection<T>` sends and receives `T`.
//! So a service reads requests and writes responses with a `Listener<Response, Request>`,
//! and its clients hold a `Connection<Request, Response>`. Messages travel as postcard in
//! length-prefixed frames, in order, up to 256 MiB each.
//!
//! # Compared with Python
//!
//! | Python | multiproc |
//! |---|---|
//! | `Listener(address, authkey=key)` | [`Listener::bind(address, key).await`](Listener::bind) |
//! | `listener.accept()` | [`listener.accept().await`](Listener::accept): the next peer that proved the key |
//! | `listener.address` | [`listener.address()`](Listener::address), with the actual port of a TCP port 0 |
//! | `Client(address, authkey=key)` | [`client(address, key).await`](client) |
//! | `conn.send(obj)`, `conn.recv()` | [`conn.send(item).await`](Connection::send), [`conn.recv().await`](Connection::recv) |
//! | `conn.poll(timeout)` | [`conn.poll(timeout).await`](Connection::poll) |
//! | `wait(connections, timeout)` | [`wait(&connections).await`](wait), [`wait_timeout`]: the indices of those ready |
//! | `listener.close()` | [`listener.close().await`](Listener::close), or drop it |
//! | `conn.close()` | drop it |
//!
//! Where Python's `accept` raises `AuthenticationError` when a peer fails the handshake, and
//! a peer that connects and says nothing blocks it, a `Listener` authenticates each peer in a
//! task of its own, at most 256 at once: a peer that fails is logged and dropped, and
//! `accept` returns the next one that proved the key.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::protocol::{decode, encode};
use crate::transport::endpoint::{self, Bound, Framed, ReadingTask};
use crate::transport::{FrameWriter, InFrame};

pub use crate::transport::endpoint::Address;

/// Listens at an [`Address`] for [`client`]s that prove its authkey: Python's
/// `multiprocessing.connection.Listener`. Each accepted connection is a
/// [`Connection<S, R>`](Connection): it sends `S` and receives `R`.
///
/// Dropping the listener stops listening, as [`close`](Self::close) does without waiting;
/// the connections it accepted live on.
pub struct Listener<S, R = S> {
    address: Address,
    accepted: Mutex<mpsc::UnboundedReceiver<Framed>>,
    serving: JoinHandle<()>,
    _messages: PhantomData<fn(S) -> R>,
}

impl<S, R> Listener<S, R> {
    /// Listens at `address` (a [`SocketAddr`](std::net::SocketAddr) converts into one), for
    /// clients that prove `authkey`. Starts at once, in a task on the current runtime.
    ///
    /// # Errors
    ///
    /// [`Io`](crate::ErrorKind::Io) if the address is taken or cannot be bound.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled bind leaves nothing listening.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// use std::net::SocketAddr;
    /// use multiproc::connection::Listener;
    ///
    /// let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    /// let listener: Listener<u64> = Listener::bind(any_port, b"key").await?;
    /// println!("listening at {}", listener.address());
    /// # Ok(()) }
    /// ```
    pub async fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<Self> {
        let bound = Bound::bind(&address.into()).await?;
        let address = bound.address().clone();
        let (sender, accepted) = mpsc::unbounded_channel();
        let serving = tokio::spawn(bound.serve(Arc::from(authkey), sender));
        Ok(Listener {
            address,
            accepted: Mutex::new(accepted),
            serving,
            _messages: PhantomData,
        })
    }

    /// The address clients connect to: the one bound, with the actual port of a TCP address
    /// of port 0. Python's `Listener.address`.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next client that proved the key. Python's `Listener.accept()`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) if the listener's task has stopped (its runtime
    /// shut down).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection that arrives after a cancelled `accept` waits for the next.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: multiproc::connection::Listener<String>) -> multiproc::Result<()> {
    /// loop {
    ///     let conn = listener.accept().await?;
    ///     tokio::spawn(async move { while let Ok(line) = conn.recv().await { println!("{line}") } });
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> Result<Connection<S, R>> {
        let framed = self.accepted.lock().await.recv().await;
        framed
            .map(Connection::new)
            .ok_or_else(|| Error::closed(format!("the listener at {} stopped", self.address)))
    }
}

impl<S, R> Listener<S, R> {
    /// Stops listening, and returns once the address is free to bind again: Python's
    /// `Listener.close()`. Handshakes in progress are dropped; the connections already
    /// accepted live on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the listener stops all the same, only perhaps a moment later.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(listener: multiproc::connection::Listener<u64>) -> multiproc::Result<()> {
    /// let address = listener.address().clone();
    /// listener.close().await;
    /// let again: multiproc::connection::Listener<u64> =
    ///     multiproc::connection::Listener::bind(address, b"key").await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(mut self) {
        self.serving.abort();
        let _ = (&mut self.serving).await;
    }
}

impl<S, R> Drop for Listener<S, R> {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl<S, R> fmt::Debug for Listener<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .finish()
    }
}

/// Connects to the [`Listener`] at `address`, proving `authkey` and making the listener prove
/// it back before anything is sent: Python's `multiprocessing.connection.Client`. Name the
/// connection's type where it is bound (`let conn: Connection<Request, Response> = ...`;
/// `Connection<T>` for the same type both ways).
///
/// # Errors
///
/// - [`Io`](crate::ErrorKind::Io) if nothing listens at `address`.
/// - [`Auth`](crate::ErrorKind::Auth) if the listener refuses `authkey` (it was given
///   another), cannot prove it, or (at a local address) runs as another user.
/// - [`Timeout`](crate::ErrorKind::Timeout) if the listener does not complete the handshake
///   within 2 seconds.
///
/// # Cancel safety
///
/// Cancel safe: a cancelled connect has sent no message.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(address: multiproc::connection::Address) -> multiproc::Result<()> {
/// use multiproc::connection::{client, Connection};
/// let conn: Connection<u64> = client(&address, b"key").await?;
/// conn.send(7).await?;
/// # Ok(()) }
/// ```
pub async fn client<S, R>(address: &Address, authkey: &[u8]) -> Result<Connection<S, R>> {
    endpoint::connect(address, authkey)
        .await
        .map(Connection::new)
}

/// One end of an authenticated connection, made by [`Listener::accept`] or [`client`]: sends
/// `S`, receives `R`. Python's `multiprocessing.connection.Connection`.
///
/// A task reads what the peer sends as it arrives (a few messages ahead of `recv`), so
/// [`poll`](Self::poll) and [`wait`] can tell whether a message is waiting without taking it.
/// Dropping the connection closes it: the peer's `recv` then gives end of file.
pub struct Connection<S, R = S> {
    inbox: Mutex<Inbox>,
    writer: FrameWriter,
    _reading: ReadingTask,
    _messages: PhantomData<fn(S) -> R>,
}

/// What arrived and was not taken yet.
struct Inbox {
    frames: mpsc::Receiver<Result<InFrame>>,
    /// A frame taken from `frames` to learn that one was there, not yet received.
    peeked: Option<Result<InFrame>>,
}

impl Inbox {
    /// Whether a `recv` would not wait: a frame is there, or the end (end of file, or the
    /// error that ended the reading).
    fn ready_now(&mut self) -> bool {
        if self.peeked.is_some() {
            return true;
        }
        match self.frames.try_recv() {
            Ok(frame) => {
                self.peeked = Some(frame);
                true
            }
            Err(mpsc::error::TryRecvError::Empty) => false,
            Err(mpsc::error::TryRecvError::Disconnected) => true,
        }
    }

    /// Waits until a `recv` would not wait.
    async fn readable(&mut self) {
        if self.peeked.is_none() {
            self.peeked = self.frames.recv().await;
        }
    }

    /// The next frame; `None` at end of file.
    async fn next(&mut self) -> Option<Result<InFrame>> {
        match self.peeked.take() {
            Some(frame) => Some(frame),
            None => self.frames.recv().await,
        }
    }
}

impl<S, R> Connection<S, R> {
    fn new(framed: Framed) -> Self {
        let Framed {
            frames,
            writer,
            reading,
        } = framed;
        Connection {
            inbox: Mutex::new(Inbox {
                frames,
                peeked: None,
            }),
            writer,
            _reading: reading,
            _messages: PhantomData,
        }
    }

    /// Whether a `recv` would not wait now; `false` while another task is receiving.
    fn ready_now(&self) -> bool {
        self.inbox
            .try_lock()
            .is_ok_and(|mut inbox| inbox.ready_now())
    }

    async fn readable(&self) {
        self.inbox.lock().await.readable().await;
    }

    /// Whether a [`recv`](Self::recv) would not wait, waiting at most `timeout` for it to
    /// become so: Python's `Connection.poll(timeout)`. `true` when a message is there, and
    /// also at end of file (where `recv` fails at once). A zero `timeout` asks without
    /// waiting. Takes nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(conn: multiproc::connection::Connection<u64>) -> multiproc::Result<()> {
    /// if conn.poll(std::time::Duration::from_millis(100)).await {
    ///     let n = conn.recv().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn poll(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.readable()).await.is_ok()
    }
}

impl<S: Serialize, R> Connection<S, R> {
    /// Sends `item` to the peer. Returns once the message is written to the socket (so the
    /// process may exit right after without losing it), without waiting for the peer to read
    /// it; messages arrive in the order sent.
    ///
    /// # Errors
    ///
    /// [`Serialization`](crate::ErrorKind::Serialization) if `item` does not serialize
    /// (nothing is sent); [`FrameTooLarge`](crate::ErrorKind::FrameTooLarge) over 256 MiB;
    /// [`Closed`](crate::ErrorKind::Closed) once the connection is broken.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: once encoded, the message is sent whole, even if the wait for its
    /// writing is cancelled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(conn: multiproc::connection::Connection<String>) -> multiproc::Result<()> {
    /// conn.send("hello".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, item: S) -> Result<()> {
        let payload = encode(&item, "a message for a connection")?;
        self.writer.send(&(), payload)?;
        self.writer.written().await
    }
}

impl<S, R: DeserializeOwned> Connection<S, R> {
    /// Receives the next message, waiting for one.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) (end of file) once the peer closed the connection
    /// or its process exited, and everything it sent has been received, or once the
    /// connection was lost (reset);
    /// [`Serialization`](crate::ErrorKind::Serialization) if the message does not decode as
    /// `R` (the connection stays usable).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only by the `recv` that returns it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(conn: multiproc::connection::Connection<String>) -> multiproc::Result<()> {
    /// while let Ok(line) = conn.recv().await {
    ///     println!("{line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<R> {
        match self.inbox.lock().await.next().await {
            Some(frame) => decode(frame?.payload(), "a message from a connection"),
            None => Err(Error::closed(
                "the connection reached end of file: its peer closed it or exited",
            )),
        }
    }

    /// As [`recv`](Self::recv), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Timeout`](crate::ErrorKind::Timeout) if nothing arrived in time; otherwise as
    /// [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(conn: multiproc::connection::Connection<String>) -> multiproc::Result<()> {
    /// let line = conn.recv_timeout(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<R> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .unwrap_or_else(|_| {
                Err(Error::timeout(format!(
                    "no message arrived on the connection within {timeout:?}"
                )))
            })
    }
}

impl<S, R> fmt::Debug for Connection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Waits until at least one of `connections` has a message to receive (or reached end of
/// file), and returns the indices of all those that have: Python's
/// `multiprocessing.connection.wait(connections)`. Returns an empty list at once for no
/// connections. A connection another task is receiving from counts as not ready.
///
/// # Cancel safety
///
/// Cancel safe: it takes no message.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(conns: Vec<multiproc::connection::Connection<String>>) -> multiproc::Result<()> {
/// let all: Vec<_> = conns.iter().collect();
/// for index in multiproc::connection::wait(&all).await {
///     println!("{}", all[index].recv().await?);
/// }
/// # Ok(()) }
/// ```
pub async fn wait<S, R>(connections: &[&Connection<S, R>]) -> Vec<usize> {
    wait_inner(connections, None).await
}

/// As [`wait`], for at most `timeout`: an empty list if none became ready in time. Python's
/// `wait(connections, timeout)`.
///
/// # Cancel safety
///
/// Cancel safe: it takes no message.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(a: multiproc::connection::Connection<u8>, b: multiproc::connection::Connection<u8>) {
/// use std::time::Duration;
/// let ready = multiproc::connection::wait_timeout(&[&a, &b], Duration::from_secs(1)).await;
/// # }
/// ```
pub async fn wait_timeout<S, R>(
    connections: &[&Connection<S, R>],
    timeout: Duration,
) -> Vec<usize> {
    wait_inner(connections, Some(timeout)).await
}

async fn wait_inner<S, R>(
    connections: &[&Connection<S, R>],
    timeout: Option<Duration>,
) -> Vec<usize> {
    let ready = || {
        (0..connections.len())
            .filter(|&index| connections[index].ready_now())
            .collect::<Vec<_>>()
    };
    let now = ready();
    if !now.is_empty() || connections.is_empty() {
        return now;
    }
    let any = select_all(connections.iter().map(|conn| Box::pin(conn.readable())));
    // The waits still pending hold their connections' inboxes: they are dropped at the end
    // of this statement, before `ready` looks.
    let arrived = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, any).await.is_ok(),
        None => {
            any.await;
            true
        }
    };
    if arrived { ready() } else { Vec::new() }
}
