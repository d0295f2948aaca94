//! The one way bytes cross processes: local sockets carrying [frames](frame).
//!
//! A child reaches its parent through a socket pair made before it is spawned ([`child_pair`]):
//! no name, nothing to bind or accept, and nobody else can reach it. Everything else (the hub
//! that serves queues and locks, a manager) listens on a random name: on Linux in the abstract
//! socket namespace (no file to clean up, nothing left behind by a crash); elsewhere on Unix, a
//! short path under the temporary directory. The name holds the pid and 64 random bits, so it
//! cannot be guessed. Either way, both ends of every connection prove the key to each other
//! ([`auth`]) before anything else is sent or read, and each is accepted in its own task
//! ([`accept`]), so a silent peer delays nobody.
//!
//! A connection is split into a [`FrameReader`] owned by one task and a [`FrameWriter`] that
//! any task can clone. A frame is written by the thread that sends it while the socket keeps
//! up, so a call costs no hop through another task; the writer's task takes over, and
//! coalesces, only while the socket is busy.

pub(crate) mod accept;
pub(crate) mod auth;
pub(crate) mod endpoint;
pub(crate) mod frame;
mod pair;
pub(crate) mod tcp;
pub(crate) mod tls;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use interprocess::local_socket::tokio::{Listener as IpcListener, Stream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::{Listener as _, Stream as _};
use interprocess::local_socket::{GenericNamespaced, ListenerOptions, Name, ToNsName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::Hello;
pub use frame::DEFAULT_MAX_FRAME_LEN;
pub(crate) use frame::{
    Burst, FrameReader, FrameWriter, InFrame, OutFrame, check_payload_len, read_frame_blocking,
};
pub(crate) use pair::{
    await_child, child_pair, greet_parent, hand_over, inherited, take_parent_socket,
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

/// A fresh socket name: this process's pid and 64 random bits, so it cannot be guessed.
pub(crate) fn random_name() -> String {
    let random: [u8; 8] = auth::random_bytes();
    format!(
        "multiproc-{}-{}.sock",
        std::process::id(),
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The pid of the process that bound the socket named `name` by [`random_name`].
pub(crate) fn pid_in_name(name: &str) -> Option<u32> {
    name.strip_prefix("multiproc-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl Listener {
    /// Binds a new listener under a fresh random name.
    pub(crate) fn bind() -> Result<Self> {
        Self::bind_named(random_name())
    }

    /// Binds a listener under `name`, chosen by the user (see [`endpoint`]).
    pub(crate) fn bind_named(name: String) -> Result<Self> {
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

    /// Accepts the next connection, not yet authenticated: hand it to [`authenticate`], in a
    /// task of its own (see [`accept`]).
    ///
    /// # Errors
    ///
    /// The accept's own, most likely running out of descriptors; retry after
    /// [`Handshakes::back_off`](accept::Handshakes::back_off).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn accept(&self) -> std::io::Result<Stream> {
        self.inner.accept().await
    }
}

/// Checks that the peer on a named socket runs as this process's user, and returns its pid
/// as the kernel knows it (0 if it does not say).
fn check_same_user(stream: &Stream) -> Result<u32> {
    let creds = stream
        .peer_creds()
        .map_err(|error| Error::io("reading the peer's credentials", error))?;
    if creds
        .euid()
        .is_some_and(|peer_uid| peer_uid != auth::current_uid())
    {
        return Err(Error::new(ErrorKind::Auth, "the peer runs as another user"));
    }
    Ok(creds.pid().map_or(0, |pid| pid as u32))
}

/// The listener's side of a connection [accepted](Listener::accept): checks the peer's user,
/// makes it prove the key and proves it back ([`auth::server_handshake`]), all within
/// [`auth::HANDSHAKE_TIMEOUT`]. Nothing else is read from a peer that fails.
///
/// # Errors
///
/// [`ErrorKind::Auth`] for a peer of another user, one that fails the handshake or does not
/// complete it in time.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; it is dropped.
pub(crate) async fn authenticate(stream: Stream, max_frame_len: usize) -> Result<Connection> {
    authenticate_with(stream, auth::process_key(), max_frame_len).await
}

/// As [`authenticate`], proving `key` rather than the process tree's.
pub(crate) async fn authenticate_with(
    mut stream: Stream,
    key: &[u8],
    max_frame_len: usize,
) -> Result<Connection> {
    let peer_pid = check_same_user(&stream)?;
    auth::server_handshake_in_time(&mut stream, key).await?;
    Ok(split(stream, peer_pid, max_frame_len))
}

/// Registers a connected Unix socket with the runtime, as a local-socket stream.
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

/// Connects to `name`, checks that its listener runs as this process's user, and proves the
/// key both ways ([`auth::client_handshake`]) before returning: nothing is sent to a listener
/// that cannot prove the key.
///
/// # Errors
///
/// [`ErrorKind::Io`] when nothing listens on `name`; [`ErrorKind::Auth`] when the listener
/// runs as another user or fails the handshake; [`ErrorKind::Timeout`] when it does not
/// complete the handshake within [`auth::HANDSHAKE_TIMEOUT`].
///
/// # Cancel safety
///
/// Cancel safe: nothing has been sent that needs undoing.
pub(crate) async fn connect(name: &str, max_frame_len: usize) -> Result<Connection> {
    connect_with(name, auth::process_key(), max_frame_len).await
}

/// As [`connect`], proving `key` rather than the process tree's.
pub(crate) async fn connect_with(
    name: &str,
    key: &[u8],
    max_frame_len: usize,
) -> Result<Connection> {
    let mut stream = Stream::connect(socket_name(name)?)
        .await
        .map_err(|error| Error::io(&format!("connecting to {name}"), error))?;
    let peer_pid = check_same_user(&stream).map_err(|error| on_connecting(name, error))?;
    tokio::time::timeout(
        auth::HANDSHAKE_TIMEOUT,
        auth::client_handshake(&mut stream, key),
    )
    .await
    .map_err(|_| {
        Error::timeout(format!(
            "the listener on {name} did not complete the handshake within {:?}",
            auth::HANDSHAKE_TIMEOUT
        ))
    })?
    .map_err(|error| on_connecting(name, error))?;
    Ok(split(stream, peer_pid, max_frame_len))
}

/// `error`, saying which name it happened on.
fn on_connecting(name: &str, error: Error) -> Error {
    Error::new(
        error.kind(),
        format!("connecting to {name}: {}", error.message()),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    async fn write_message(stream: &mut Stream, message: &[u8]) {
        let mut bytes = (message.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(message);
        stream.write_all(&bytes).await.unwrap();
    }

    /// Reads one handshake message, appending its raw bytes to `seen`.
    async fn read_message(stream: &mut Stream, seen: &mut Vec<u8>) -> Vec<u8> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.unwrap();
        let mut message = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut message).await.unwrap();
        seen.extend_from_slice(&len);
        seen.extend_from_slice(&message);
        message
    }

    /// Awaits `attempt`, which must fail with an [`ErrorKind::Auth`] error.
    async fn assert_refused<T: std::fmt::Debug>(attempt: impl Future<Output = Result<T>>) {
        let error = tokio::time::timeout(LIMIT, attempt)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_before_anything_else_is_read() {
        let listener = Listener::bind().unwrap();
        let name = listener.name().to_string();
        let impostor = tokio::spawn({
            let name = name.clone();
            async move {
                let mut stream = Stream::connect(socket_name(&name).unwrap()).await.unwrap();
                let refused =
                    auth::client_handshake(&mut stream, &[7u8; crate::protocol::KEY_LEN]).await;
                // Whatever follows is never read.
                let _ = stream.write_all(b"a request that must never be read").await;
                refused
            }
        });
        let stream = listener.accept().await.unwrap();
        assert_refused(authenticate(stream, 1024)).await;
        let told = tokio::time::timeout(LIMIT, impostor)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(told.kind(), ErrorKind::Auth, "{told}");

        let honest = tokio::spawn(async move { connect(&name, 1024).await.map(|c| c.peer_pid) });
        let stream = listener.accept().await.unwrap();
        let accepted = tokio::time::timeout(LIMIT, authenticate(stream, 1024))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(accepted.peer_pid, std::process::id());
        let connected = tokio::time::timeout(LIMIT, honest).await.unwrap().unwrap();
        assert_eq!(connected.unwrap(), std::process::id());
    }

    #[tokio::test]
    async fn the_client_never_sends_the_key_and_refuses_a_listener_that_cannot_prove_it() {
        // A process squatting the name a handle points to: it challenges, welcomes whatever
        // answer it gets, and cannot answer the client's challenge.
        let squatter = Listener::bind().unwrap();
        let name = squatter.name().to_string();
        let received = tokio::spawn(async move {
            let mut stream = squatter.accept().await.unwrap();
            let mut seen = Vec::new();
            write_message(
                &mut stream,
                &[b"#CHALLENGE#{sha256}".as_slice(), &[7u8; 40]].concat(),
            )
            .await;
            read_message(&mut stream, &mut seen).await;
            let theirs = read_message(&mut stream, &mut seen).await;
            assert!(theirs.starts_with(b"#CHALLENGE#{sha256}"));
            write_message(&mut stream, b"#WELCOME#").await;
            write_message(&mut stream, &[b"{sha256}".as_slice(), &[0u8; 32]].concat()).await;
            // Everything else the client sends, until it hangs up.
            stream.read_to_end(&mut seen).await.unwrap();
            seen
        });
        assert_refused(connect(&name, 1024)).await;
        let seen = tokio::time::timeout(LIMIT, received)
            .await
            .unwrap()
            .unwrap();
        let key = auth::process_key();
        assert!(
            !seen.windows(key.len()).any(|window| window == key),
            "the client sent the key to a listener that could not prove it"
        );
        assert!(
            seen.ends_with(&[&9u32.to_be_bytes(), b"#FAILURE#".as_slice()].concat()),
            "the client sent something after refusing the listener"
        );
    }

    #[tokio::test]
    async fn an_oversized_handshake_message_is_refused_without_reading_it() {
        let listener = Listener::bind().unwrap();
        let name = listener.name().to_string();
        tokio::spawn(async move {
            let mut stream = Stream::connect(socket_name(&name).unwrap()).await.unwrap();
            read_message(&mut stream, &mut Vec::new()).await;
            stream.write_all(&100_000u32.to_be_bytes()).await.unwrap();
            tokio::time::sleep(LIMIT).await;
        });
        let stream = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        assert_refused(authenticate(stream, 1024)).await;
        assert!(started.elapsed() < auth::HANDSHAKE_TIMEOUT);
    }
}
