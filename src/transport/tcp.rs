//! TCP sockets: the only ones that may reach another machine (a manager served with
//! [`Manager::serve`](crate::Manager::serve), reached with
//! [`Manager::connect`](crate::Manager::connect)).
//!
//! Every TCP connection, accepted or made, gets `TCP_NODELAY` (frames are small and each
//! waits for an answer) and keepalive probes. A peer that vanishes without closing the
//! connection (a host that lost power, a cut network) is then noticed within about
//! [`KEEPALIVE_IDLE`] + [`KEEPALIVE_INTERVAL`] x [`KEEPALIVE_PROBES`] instead of never: on
//! the client, waiting calls fail as closed; on the server, what the peer held is released.
//! On Linux the same bound also limits how long sent data may stay unacknowledged
//! (`TCP_USER_TIMEOUT`), so a peer that stops reading is dropped too.
//!
//! Both ends then prove the key with [`auth`]'s handshake before anything else
//! is read: on the bare socket, or inside TLS ([`tls`]) for a manager served with
//! it. [`connect_authenticated`] and [`authenticate`] do either and return frames.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsStream;

use super::tls::{self, TlsClientConfig, TlsServerConfig};
use super::{FrameReader, FrameWriter, auth};
use crate::error::{Error, Result};

/// How long a connection may be idle before TCP probes the peer.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// The time between two probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How many probes go unanswered before the connection is dropped.
const KEEPALIVE_PROBES: u32 = 3;

/// Listens on `addr`.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| Error::io(&format!("binding {addr}"), error))
}

/// Connects to `addr`, with the options every connection gets.
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| Error::io(&format!("connecting to {addr}"), error))?;
    configure(&stream);
    Ok(stream)
}

/// Connects to `addr`, starts TLS with `tls` if given, and proves `key` both ways
/// ([`auth::client_handshake`]): nothing is sent to a listener that cannot prove it (nor,
/// with TLS, to one without a certificate `tls` trusts). Returns the connection split into
/// frames.
///
/// # Errors
///
/// [`Io`](crate::ErrorKind::Io) when nothing listens at `addr`;
/// [`Auth`](crate::ErrorKind::Auth) when the listener refuses `key` or cannot prove it, or
/// the TLS handshake fails (see [`tls::connect`]).
///
/// # Cancel safety
///
/// Cancel safe: nothing has been sent that needs undoing.
pub(crate) async fn connect_authenticated(
    addr: SocketAddr,
    key: &[u8],
    max_frame_len: usize,
    tls: Option<&TlsClientConfig>,
) -> Result<(FrameReader<TcpReader>, FrameWriter)> {
    let mut stream = connect(addr).await?;
    let Some(tls) = tls else {
        auth::client_handshake(&mut stream, key).await?;
        return Ok(split(stream, max_frame_len));
    };
    let mut stream = tls::connect(stream, addr, tls).await?;
    auth::client_handshake(&mut stream, key)
        .await
        .map_err(|error| tls::key_proof_failed(&addr.to_string(), error))?;
    Ok(split_tls(stream.into(), max_frame_len))
}

/// The listener's side of an [accepted](accept) connection: starts TLS with `tls` if given,
/// then makes the peer prove `key` and proves it back ([`auth::server_handshake`]), each
/// within [`auth::HANDSHAKE_TIMEOUT`]. Returns the connection split into frames.
///
/// # Errors
///
/// [`Auth`](crate::ErrorKind::Auth) when the peer does not prove `key`, refuses this side's
/// proof, fails the TLS handshake (see [`tls::accept`]) or does not complete either in time.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; it is dropped.
pub(crate) async fn authenticate(
    mut stream: TcpStream,
    key: &[u8],
    max_frame_len: usize,
    tls: Option<&TlsServerConfig>,
) -> Result<(FrameReader<TcpReader>, FrameWriter)> {
    let Some(tls) = tls else {
        auth::server_handshake_in_time(&mut stream, key).await?;
        return Ok(split(stream, max_frame_len));
    };
    let mut stream = tls::accept(stream, tls).await?;
    auth::server_handshake_in_time(&mut stream, key)
        .await
        .map_err(|error| tls::key_proof_failed("the peer", error))?;
    Ok(split_tls(stream.into(), max_frame_len))
}

/// The reading half of an authenticated TCP connection, bare or inside TLS.
#[derive(Debug)]
pub(crate) enum TcpReader {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for TcpReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            TcpReader::Plain(read) => Pin::new(read).poll_read(cx, buf),
            TcpReader::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

/// An authenticated bare stream, as frames.
fn split(stream: TcpStream, max_frame_len: usize) -> (FrameReader<TcpReader>, FrameWriter) {
    let (read, write) = stream.into_split();
    frames(TcpReader::Plain(read), write, max_frame_len)
}

/// An authenticated TLS stream, as frames. Its halves share the TLS session behind a lock
/// held only while one of them is polled.
fn split_tls(
    stream: TlsStream<TcpStream>,
    max_frame_len: usize,
) -> (FrameReader<TcpReader>, FrameWriter) {
    let (read, write) = tokio::io::split(stream);
    frames(TcpReader::Tls(read), write, max_frame_len)
}

fn frames(
    read: TcpReader,
    write: impl AsyncWrite + Unpin + Send + 'static,
    max_frame_len: usize,
) -> (FrameReader<TcpReader>, FrameWriter) {
    let (writer, _writer_task) = FrameWriter::spawn(write, max_frame_len);
    (FrameReader::new(read, max_frame_len), writer)
}

/// Accepts the next connection, with the options every connection gets.
///
/// # Cancel safety
///
/// Cancel safe, as [`TcpListener::accept`].
pub(crate) async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    configure(&stream);
    Ok((stream, peer))
}

/// Turns on `TCP_NODELAY` and keepalive (see the module docs). Best effort: a socket that
/// refuses an option keeps working, only without it.
fn configure(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let socket = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(error) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(target: "multiproc", "keepalive on a TCP connection: {error}");
    }
    #[cfg(target_os = "linux")]
    if let Err(error) =
        socket.set_tcp_user_timeout(Some(KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES))
    {
        tracing::debug!(target: "multiproc", "TCP_USER_TIMEOUT on a TCP connection: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_probe_a_silent_peer_both_ways() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (made, accepted) = tokio::join!(connect(addr), accept(&listener));
        for stream in [made.unwrap(), accepted.unwrap().0] {
            let socket = SockRef::from(&stream);
            assert!(stream.nodelay().unwrap());
            assert!(socket.keepalive().unwrap());
            assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
            assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
            #[cfg(target_os = "linux")]
            assert_eq!(
                socket.tcp_user_timeout().unwrap(),
                Some(Duration::from_secs(8))
            );
        }
    }
}
