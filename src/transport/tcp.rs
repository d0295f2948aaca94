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
//! Both ends then prove the key with [`auth`](super::auth)'s handshake before anything else
//! is read; that is the caller's next step, not this module's.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};

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

/// Connects to `addr` and proves `key` both ways ([`auth::client_handshake`]): nothing is
/// sent to a listener that cannot prove it. Returns the connection split into frames.
///
/// # Errors
///
/// [`Io`](crate::ErrorKind::Io) when nothing listens at `addr`;
/// [`Auth`](crate::ErrorKind::Auth) when the listener refuses `key` or cannot prove it.
pub(crate) async fn connect_authenticated(
    addr: SocketAddr,
    key: &[u8],
    max_frame_len: usize,
) -> Result<(FrameReader<OwnedReadHalf>, FrameWriter)> {
    let mut stream = connect(addr).await?;
    auth::client_handshake(&mut stream, key).await?;
    Ok(split(stream, max_frame_len))
}

/// The listener's side of an [accepted](accept) connection: makes the peer prove `key` and
/// proves it back ([`auth::server_handshake`]), within [`auth::HANDSHAKE_TIMEOUT`]. Returns
/// the connection split into frames.
///
/// # Errors
///
/// [`Auth`](crate::ErrorKind::Auth) when the peer does not prove `key`, refuses this side's
/// proof, or does not complete the handshake in time.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; it is dropped.
pub(crate) async fn authenticate(
    mut stream: TcpStream,
    key: &[u8],
    max_frame_len: usize,
) -> Result<(FrameReader<OwnedReadHalf>, FrameWriter)> {
    auth::server_handshake_in_time(&mut stream, key).await?;
    Ok(split(stream, max_frame_len))
}

/// An authenticated stream, as frames.
fn split(stream: TcpStream, max_frame_len: usize) -> (FrameReader<OwnedReadHalf>, FrameWriter) {
    let (read, write) = stream.into_split();
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
