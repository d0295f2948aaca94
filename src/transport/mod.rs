//! The one way bytes cross processes: local sockets carrying [frames](frame).
//!
//! A child reaches its parent through a socket pair made before it is spawned ([`child_pair`]):
//! no name, nothing to bind or accept, and nobody else can reach it. Everything else (the hub
//! that serves queues and locks, a manager) listens on a random name: on Linux in the abstract
//! socket namespace (no file to clean up, nothing left behind by a crash); elsewhere on Unix, a
//! short path under the temporary directory. The name holds the pid and 64 random bits, so it
//! cannot be guessed. Either way, every connection must prove the key ([`auth`]) before
//! anything else is read from it.
//!
//! A connection is split into a [`FrameReader`] owned by one task and a [`FrameWriter`] that
//! any task can clone. A frame is written by the thread that sends it while the socket keeps
//! up, so a call costs no hop through another task; the writer's task takes over, and
//! coalesces, only while the socket is busy.

pub(crate) mod auth;
pub(crate) mod buffers;
pub(crate) mod frame;

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use interprocess::local_socket::tokio::{Listener as IpcListener, Stream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::{Listener as _, Stream as _};
use interprocess::local_socket::{GenericNamespaced, ListenerOptions, Name, ToNsName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, ErrorKind, Result};
pub(crate) use auth::Hello;
pub use frame::DEFAULT_MAX_FRAME_LEN;
use frame::HANDSHAKE_MAX_FRAME_LEN;
pub(crate) use frame::{
    Burst, FrameReader, FrameWriter, InFrame, OutFrame, check_payload_len, read_frame_blocking,
};

/// One half of a shared socket; reads and writes go to the same stream.
#[derive(Debug, Clone)]
pub(crate) struct SharedStream(Arc<Stream>);

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut &*self.0).poll_shutdown(cx)
    }
}

impl frame::TryWrite for SharedStream {
    fn try_write_vectored(&self, buffers: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        match &*self.0 {
            Stream::UdSocket(stream) => stream.inner().try_write_vectored(buffers),
        }
    }
}

/// An authenticated connection, split into its reader and writer.
pub(crate) struct Connection {
    pub(crate) reader: FrameReader<SharedStream>,
    pub(crate) writer: FrameWriter,
    pub(crate) writer_task: tokio::task::JoinHandle<()>,
    /// The peer's pid, as it announced itself and as the kernel confirmed.
    pub(crate) peer_pid: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer_pid", &self.peer_pid)
            .finish()
    }
}

fn split(stream: Stream, peer_pid: u32, max_frame_len: usize) -> Connection {
    let shared = SharedStream(Arc::new(stream));
    let reader = FrameReader::new(shared.clone(), max_frame_len);
    let (writer, writer_task) = FrameWriter::spawn_direct(shared, max_frame_len);
    Connection {
        reader,
        writer,
        writer_task,
        peer_pid,
    }
}

fn socket_name(printable: &str) -> Result<Name<'static>> {
    printable
        .to_string()
        .to_ns_name::<GenericNamespaced>()
        .map_err(|error| Error::io(&format!("naming socket {printable}"), error))
}

/// A bound listener with a random name.
#[derive(Debug)]
pub(crate) struct Listener {
    inner: IpcListener,
    name: String,
}

impl Listener {
    /// Binds a new listener under a fresh random name.
    pub(crate) fn bind() -> Result<Self> {
        let random: [u8; 8] = auth::random_bytes();
        let name = format!(
            "multiproc-{}-{}.sock",
            std::process::id(),
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let inner = ListenerOptions::new()
            .name(socket_name(&name)?)
            .create_tokio()
            .map_err(|error| Error::io(&format!("binding socket {name}"), error))?;
        Ok(Listener { inner, name })
    }

    /// The name peers connect to.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Accepts the next connection that proves the key within `handshake_timeout`.
    ///
    /// Connections from another user, with a wrong key or a malformed hello are dropped and
    /// logged; accepting goes on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection accepted but not yet authenticated is dropped.
    pub(crate) async fn accept(
        &self,
        handshake_timeout: Duration,
        max_frame_len: usize,
    ) -> Result<Connection> {
        loop {
            let stream = self
                .inner
                .accept()
                .await
                .map_err(|error| Error::io(&format!("accepting on {}", self.name), error))?;
            match authenticate(stream, handshake_timeout, max_frame_len).await {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    tracing::warn!(target: "multiproc", "refused a connection on {}: {error}", self.name)
                }
            }
        }
    }
}

async fn authenticate(
    stream: Stream,
    handshake_timeout: Duration,
    max_frame_len: usize,
) -> Result<Connection> {
    let creds = stream
        .peer_creds()
        .map_err(|error| Error::io("reading the peer's credentials", error))?;
    let uid = auth::current_uid();
    if creds.euid().is_some_and(|peer_uid| peer_uid != uid) {
        return Err(Error::new(ErrorKind::Auth, "the peer runs as another user"));
    }
    let kernel_pid = creds.pid().map(|pid| pid as u32);
    let mut connection = split(stream, kernel_pid.unwrap_or(0), HANDSHAKE_MAX_FRAME_LEN);
    let hello = tokio::time::timeout(handshake_timeout, read_hello(&mut connection))
        .await
        .map_err(|_| Error::new(ErrorKind::Auth, "the peer sent no hello in time"))??;
    if kernel_pid.is_some_and(|pid| pid != hello.pid) {
        return Err(Error::new(
            ErrorKind::Auth,
            "the peer's hello names another pid",
        ));
    }
    connection.peer_pid = hello.pid;
    connection.reader.set_max_len(max_frame_len);
    connection.writer.set_max_len(max_frame_len);
    Ok(connection)
}

/// Reads the first frame of a connection, with the handshake's size limit, and checks the key.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled read may have consumed part of the hello.
async fn read_hello(connection: &mut Connection) -> Result<Hello> {
    let hello: Hello = match connection.reader.read().await {
        Ok(Some(frame)) => frame.header()?,
        Ok(None) => {
            return Err(Error::new(
                ErrorKind::Auth,
                "the peer closed before its hello",
            ));
        }
        Err(error) => return Err(Error::new(ErrorKind::Auth, format!("a bad hello: {error}"))),
    };
    auth::verify(&hello)?;
    Ok(hello)
}

/// The two ends of a connection to a child about to be started: ours, and the one the child
/// inherits.
///
/// The two ends are a socket pair: nobody else can reach either of them, and there is no
/// name to guess or to clean up.
pub(crate) fn child_pair() -> Result<(std::os::unix::net::UnixStream, OwnedFd)> {
    // Megabyte arguments and results go through in a few large writes rather than many
    // wake-ups of a writer waiting for room (the default is about 200 KiB).
    const CHILD_SEND_BUFFER: libc::c_int = 2 * 1024 * 1024;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|error| Error::io("creating a socket pair", error))?;
    for end in [ours.as_raw_fd(), theirs.as_raw_fd()] {
        let size: libc::c_int = CHILD_SEND_BUFFER;
        // SAFETY: `end` is an open socket and `size` outlives the call. A failure (or the
        // system's cap, `net.core.wmem_max`) leaves the default, which only costs speed.
        unsafe {
            libc::setsockopt(
                end,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok((ours, OwnedFd::from(theirs)))
}

/// Writes the key on our end of a [`child_pair`] and makes a connection of it. Done once the
/// child is started, while it is still loading: the key comes ahead of any frame, so the
/// child, which gets its end as standard input, reads it first, before it has a runtime.
pub(crate) fn hand_over(
    ours: std::os::unix::net::UnixStream,
    max_frame_len: usize,
) -> Result<Connection> {
    // At most a few dozen kilobytes into an empty socket: this write cannot block.
    (&ours)
        .write_all(&auth::handover())
        .map_err(|error| Error::io("handing over the key", error))?;
    let mut connection = split(adopt(ours)?, 0, HANDSHAKE_MAX_FRAME_LEN);
    connection.writer.set_max_len(max_frame_len);
    Ok(connection)
}

/// Waits for the hello of the child at the other end of a [`hand_over`], and checks its key
/// and that it is the process `pid`.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled read may have consumed part of the hello.
pub(crate) async fn await_child(
    connection: &mut Connection,
    pid: u32,
    max_frame_len: usize,
) -> Result<()> {
    let hello = read_hello(connection).await?;
    if hello.pid != pid {
        return Err(Error::new(
            ErrorKind::Auth,
            format!("expected a hello from pid {pid}, not {}", hello.pid),
        ));
    }
    connection.peer_pid = pid;
    connection.reader.set_max_len(max_frame_len);
    Ok(())
}

/// Sends this child's hello on its end of its [`child_pair`], once the key has been read.
/// Written at once, with a blocking write, before the child has a runtime: the parent learns
/// the child is up while the child gets ready to serve.
pub(crate) fn greet_parent(socket: &std::os::unix::net::UnixStream) -> Result<()> {
    let hello = OutFrame::new(&Hello::new(), Vec::new(), HANDSHAKE_MAX_FRAME_LEN)?;
    // A few dozen bytes into a socket nobody has written to yet: this cannot block.
    hello
        .write_blocking(&mut &*socket)
        .map_err(|error| Error::io("greeting the parent", error))
}

/// The child's end of its [`child_pair`], after [`greet_parent`]: its connection to the parent.
pub(crate) fn inherited(
    socket: std::os::unix::net::UnixStream,
    max_frame_len: usize,
) -> Result<Connection> {
    Ok(split(adopt(socket)?, 0, max_frame_len))
}

fn adopt(socket: std::os::unix::net::UnixStream) -> Result<Stream> {
    socket
        .set_nonblocking(true)
        .map_err(|error| Error::io("preparing a socket", error))?;
    let stream = tokio::net::UnixStream::from_std(socket)
        .map_err(|error| Error::io("registering a socket", error))?;
    Ok(Stream::from(
        interprocess::os::unix::uds_local_socket::tokio::Stream::from(stream),
    ))
}

/// Connects to `name` and proves the key.
///
/// # Cancel safety
///
/// Cancel safe: nothing has been sent that needs undoing.
pub(crate) async fn connect(name: &str, max_frame_len: usize) -> Result<Connection> {
    let stream = Stream::connect(socket_name(name)?)
        .await
        .map_err(|error| Error::io(&format!("connecting to {name}"), error))?;
    let connection = split(stream, 0, max_frame_len);
    connection.writer.send(&Hello::new(), Vec::new())?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_wrong_key_is_refused_before_anything_else_is_read() {
        let listener = Listener::bind().unwrap();
        let name = listener.name().to_string();
        let impostor = tokio::spawn({
            let name = name.clone();
            async move {
                let stream = Stream::connect(socket_name(&name).unwrap()).await.unwrap();
                let connection = split(stream, 0, DEFAULT_MAX_FRAME_LEN);
                let hello = Hello {
                    key: [7u8; auth::KEY_LEN],
                    pid: std::process::id(),
                };
                connection.writer.send(&hello, Vec::new()).unwrap();
                connection
                    .writer
                    .send(&"a request that must never be read", Vec::new())
                    .unwrap();
                let mut reader = connection.reader;
                // The listener drops the connection: the impostor sees the end of the stream.
                tokio::time::timeout(HANDSHAKE, reader.read())
                    .await
                    .unwrap()
            }
        });
        let refused =
            tokio::time::timeout(Duration::from_millis(500), listener.accept(HANDSHAKE, 1024))
                .await;
        assert!(
            refused.is_err(),
            "a connection with a wrong key was accepted"
        );
        assert!(matches!(impostor.await.unwrap(), Ok(None) | Err(_)));

        let honest = tokio::spawn(async move { connect(&name, 1024).await.map(|c| c.peer_pid) });
        let accepted = tokio::time::timeout(HANDSHAKE, listener.accept(HANDSHAKE, 1024))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(accepted.peer_pid, std::process::id());
        assert!(honest.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_oversized_hello_is_refused_without_allocating_it() {
        let listener = Listener::bind().unwrap();
        let name = listener.name().to_string();
        tokio::spawn(async move {
            let stream = Stream::connect(socket_name(&name).unwrap()).await.unwrap();
            let connection = split(stream, 0, DEFAULT_MAX_FRAME_LEN);
            connection
                .writer
                .send(&Hello::new(), vec![0u8; 4096])
                .unwrap();
            tokio::time::sleep(HANDSHAKE).await;
        });
        let refused =
            tokio::time::timeout(Duration::from_millis(500), listener.accept(HANDSHAKE, 1024))
                .await;
        assert!(refused.is_err(), "an oversized hello was accepted");
    }
}
