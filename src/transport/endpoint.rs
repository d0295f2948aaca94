//! Sockets at an address the user chose ([`Address`]): a local socket name or a TCP address,
//! for the listeners and clients of `multiproc::connection`.
//!
//! Where every other socket of the crate proves the process tree's key, these prove a key the
//! user gives, so that processes with no common ancestor can meet, with the same mutual
//! challenge ([`auth`]) within [`HANDSHAKE_TIMEOUT`]; on a local socket each side also checks
//! that the other runs as the same user. A listener authenticates each connection in a task
//! of its own ([`Handshakes`]), so a silent or wrong peer delays nobody, and hands on only
//! those that proved the key. A connection's frames are then read by a task of its own into a
//! channel ([`Framed`]), so a caller can ask whether a frame is waiting without taking it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::accept::Handshakes;
use super::auth::HANDSHAKE_TIMEOUT;
use super::{FrameReader, FrameWriter, InFrame, Listener, tcp};
use crate::error::{Error, ErrorKind, Result};

/// Where a [`Listener`](crate::connection::Listener) listens and a
/// [`client`](crate::connection::client) connects to: Python's `multiprocessing.connection`
/// addresses.
///
/// Written as text (`Display` and `FromStr`), a local name is `local:NAME` and a TCP address
/// is `HOST:PORT`, so an address can travel on a command line or in a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A local socket, for processes of the same user on this machine (Python's
    /// `AF_UNIX`): in the abstract namespace on Linux (no file, nothing left behind), a
    /// path under the temporary directory on other Unix systems.
    Local(String),
    /// A TCP address (Python's `AF_INET`); port 0 binds any free port.
    Tcp(SocketAddr),
}

impl Address {
    /// A fresh local name nobody can guess (Python's `Listener()` with no address picks one
    /// the same way).
    pub fn random_local() -> Self {
        Address::Local(super::random_name())
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Local(name) => write!(f, "local:{name}"),
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        if let Some(name) = text.strip_prefix("local:") {
            return Ok(Address::Local(name.to_string()));
        }
        text.parse().map(Address::Tcp).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("`{text}` is neither `local:NAME` nor a TCP `HOST:PORT` address"),
            )
        })
    }
}

/// How many frames a connection's reader takes ahead of the caller before it stops reading
/// (and the peer's writes then wait).
const READ_AHEAD: usize = 16;

/// An authenticated connection: frames arriving through a reader task, and a writer.
#[derive(Debug)]
pub(crate) struct Framed {
    /// Each frame, then the error that ended the reading if one did; closed at end of file.
    pub(crate) frames: mpsc::Receiver<Result<InFrame>>,
    pub(crate) writer: FrameWriter,
    pub(crate) reading: ReadingTask,
}

/// The task reading a connection's frames; stopped when dropped.
#[derive(Debug)]
pub(crate) struct ReadingTask(AbortHandle);

impl Drop for ReadingTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Framed {
    fn start<R: AsyncRead + Unpin + Send + 'static>(
        reader: FrameReader<R>,
        writer: FrameWriter,
    ) -> Self {
        let (sender, frames) = mpsc::channel(READ_AHEAD);
        let reading = tokio::spawn(read_frames(reader, sender)).abort_handle();
        Framed {
            frames,
            writer,
            reading: ReadingTask(reading),
        }
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    frames: mpsc::Sender<Result<InFrame>>,
) {
    loop {
        let frame = reader.read().await.transpose().map(|frame| {
            // A socket that fails to read (reset by a peer that exited with unread data)
            // is a connection gone, as an end of file is.
            frame.map_err(|error| match error.kind() {
                ErrorKind::Io => Error::closed(format!("the connection was lost: {error}")),
                _ => error,
            })
        });
        let ended = !matches!(frame, Some(Ok(_)));
        if let Some(frame) = frame
            && frames.send(frame).await.is_err()
        {
            return;
        }
        if ended {
            return;
        }
    }
}

/// A socket bound at an [`Address`].
#[derive(Debug)]
pub(crate) struct Bound {
    socket: Socket,
    address: Address,
}

#[derive(Debug)]
enum Socket {
    Local(Listener),
    Tcp(TcpListener),
}

/// A connection accepted, not yet authenticated.
enum Accepted {
    Local(interprocess::local_socket::tokio::Stream),
    Tcp(TcpStream),
}

impl Bound {
    /// Binds `address`.
    ///
    /// # Errors
    ///
    /// [`Io`](ErrorKind::Io) if the name or address is taken or cannot be bound.
    pub(crate) async fn bind(address: &Address) -> Result<Self> {
        let (socket, address) = match address {
            Address::Local(name) => (
                Socket::Local(Listener::bind_named(name.clone())?),
                address.clone(),
            ),
            Address::Tcp(addr) => {
                let listener = tcp::bind(*addr).await?;
                let bound = listener
                    .local_addr()
                    .map_err(|error| Error::io("reading the bound address", error))?;
                (Socket::Tcp(listener), Address::Tcp(bound))
            }
        };
        Ok(Bound { socket, address })
    }

    /// The address bound, with its actual port for a TCP address of port 0.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// Accepts connections until the task running it is aborted, handing on each whose
    /// peer proved `key`, in the order their handshakes end.
    pub(crate) async fn serve(self, key: Arc<[u8]>, accepted: mpsc::UnboundedSender<Framed>) {
        let mut handshakes = Handshakes::default();
        let name = self.address.to_string();
        loop {
            let stream = match &self.socket {
                Socket::Local(listener) => listener.accept().await.map(Accepted::Local),
                Socket::Tcp(listener) => tcp::accept(listener)
                    .await
                    .map(|(stream, _)| Accepted::Tcp(stream)),
            };
            match stream {
                Ok(stream) => {
                    let (key, accepted, name) = (key.clone(), accepted.clone(), name.clone());
                    handshakes.start(async move {
                        match authenticate(stream, &key).await {
                            Ok(framed) => {
                                let _ = accepted.send(framed);
                            }
                            Err(error) => {
                                tracing::warn!(target: "multiproc", "the listener on {name} refused a peer: {error}");
                            }
                        }
                    });
                }
                Err(error) => handshakes.back_off(&name, &error).await,
            }
        }
    }
}

/// The listener's side of an accepted connection: the peer proves `key`, and this side
/// proves it back.
async fn authenticate(stream: Accepted, key: &[u8]) -> Result<Framed> {
    let max = super::DEFAULT_MAX_FRAME_LEN;
    match stream {
        Accepted::Local(stream) => {
            let connection = super::authenticate_with(stream, key, max).await?;
            // The writer task ends by itself once the writer is dropped.
            drop(connection.writer_task);
            Ok(Framed::start(connection.reader, connection.writer))
        }
        Accepted::Tcp(stream) => {
            let (reader, writer) = tcp::authenticate(stream, key, max, None).await?;
            Ok(Framed::start(reader, writer))
        }
    }
}

/// Connects to `address` and proves `key` both ways before returning: nothing is sent to a
/// listener that cannot prove it.
///
/// # Errors
///
/// [`Io`](ErrorKind::Io) when nothing listens there; [`Auth`](ErrorKind::Auth) when the
/// listener refuses `key`, cannot prove it, or (locally) runs as another user;
/// [`Timeout`](ErrorKind::Timeout) when it does not complete the handshake in time.
pub(crate) async fn connect(address: &Address, key: &[u8]) -> Result<Framed> {
    let max = super::DEFAULT_MAX_FRAME_LEN;
    match address {
        Address::Local(name) => {
            let connection = super::connect_with(name, key, max).await?;
            drop(connection.writer_task);
            Ok(Framed::start(connection.reader, connection.writer))
        }
        Address::Tcp(addr) => {
            let (reader, writer) = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tcp::connect_authenticated(*addr, key, max, None),
            )
            .await
            .map_err(|_| {
                Error::timeout(format!(
                    "the listener at {addr} did not complete the handshake within \
                             {HANDSHAKE_TIMEOUT:?}"
                ))
            })??;
            Ok(Framed::start(reader, writer))
        }
    }
}
