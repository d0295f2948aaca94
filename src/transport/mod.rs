//! The one way bytes cross processes: local sockets carrying [frames](frame).
//!
//! On Linux a listener binds a random name in the abstract socket namespace (no file to clean
//! up, nothing left behind by a crash); elsewhere on Unix, a short path under the temporary
//! directory. The name holds the pid and 64 random bits, so it cannot be guessed, and every
//! connection must still prove the key ([`auth`]) before anything else is read from it.
//!
//! A connection is split into a [`FrameReader`] owned by one task and a [`FrameWriter`] that
//! any task can clone. A frame is written by the thread that sends it while the socket keeps
//! up, so a call costs no hop through another task; the writer's task takes over, and
//! coalesces, only while the socket is busy.

pub(crate) mod auth;
pub(crate) mod frame;

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
pub(crate) use frame::{FrameReader, FrameWriter, InFrame, OutFrame, check_payload_len};

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
    /// Connections from another user, from a pid other than `expected_pid`, with a wrong key
    /// or a malformed hello are dropped and logged; accepting goes on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection accepted but not yet authenticated is dropped.
    pub(crate) async fn accept(
        &self,
        expected_pid: Option<u32>,
        handshake_timeout: Duration,
        max_frame_len: usize,
    ) -> Result<Connection> {
        loop {
            let stream = self
                .inner
                .accept()
                .await
                .map_err(|error| Error::io(&format!("accepting on {}", self.name), error))?;
            match authenticate(stream, expected_pid, handshake_timeout, max_frame_len).await {
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
    expected_pid: Option<u32>,
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
    if let (Some(expected), Some(actual)) = (expected_pid, kernel_pid)
        && expected != actual
    {
        return Err(Error::new(
            ErrorKind::Auth,
            format!("expected a connection from pid {expected}, not {actual}"),
        ));
    }
    let mut connection = split(stream, kernel_pid.unwrap_or(0), HANDSHAKE_MAX_FRAME_LEN);
    let hello: Hello = match tokio::time::timeout(handshake_timeout, connection.reader.read()).await
    {
        Ok(Ok(Some(frame))) => frame.header()?,
        Ok(Ok(None)) => {
            return Err(Error::new(
                ErrorKind::Auth,
                "the peer closed before its hello",
            ));
        }
        Ok(Err(error)) => return Err(Error::new(ErrorKind::Auth, format!("a bad hello: {error}"))),
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Auth,
                "the peer sent no hello in time",
            ));
        }
    };
    auth::verify(&hello)?;
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
        let refused = tokio::time::timeout(
            Duration::from_millis(500),
            listener.accept(None, HANDSHAKE, 1024),
        )
        .await;
        assert!(
            refused.is_err(),
            "a connection with a wrong key was accepted"
        );
        assert!(matches!(impostor.await.unwrap(), Ok(None) | Err(_)));

        let honest = tokio::spawn(async move { connect(&name, 1024).await.map(|c| c.peer_pid) });
        let accepted = tokio::time::timeout(HANDSHAKE, listener.accept(None, HANDSHAKE, 1024))
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
        let refused = tokio::time::timeout(
            Duration::from_millis(500),
            listener.accept(None, HANDSHAKE, 1024),
        )
        .await;
        assert!(refused.is_err(), "an oversized hello was accepted");
    }
}
