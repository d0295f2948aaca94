//! The manager's TCP front: Python's mutual HMAC challenge, then hub frames.
//!
//! Local connections prove the process tree's key ([`transport::auth`](crate::transport::auth));
//! a TCP peer may be another machine with no common ancestor, so both sides prove a key given
//! by the user, as Python 3.12+ does (`multiprocessing.connection.deliver_challenge` and
//! `answer_challenge`):
//!
//! 1. the server sends `#CHALLENGE#{sha256}` + 40 random bytes; the client answers
//!    `{sha256}` + HMAC-SHA256(key, `{sha256}` + nonce); the server replies `#WELCOME#` or
//!    `#FAILURE#`;
//! 2. the client challenges the server the same way.
//!
//! Each message is a 4-byte big-endian length and its bytes, as in Python's `Connection`; a
//! length over 256 bytes is refused before anything is allocated, and the whole handshake
//! must finish within [`HANDSHAKE_TIMEOUT`]. Nothing after it is read from a peer that failed.
//! The key never crosses the wire; a nonce is never reused. Once both sides are proven, the
//! server sends the store's object id and its run, and the connection carries ordinary hub
//! frames.
//!
//! # Runs
//!
//! A server's address outlives the server: a manager stopped and served again at the same
//! address (by another process, or the same one) is a new *run*, with objects of its own,
//! whose ids may be those of the earlier run's (another process numbers its objects afresh).
//! So each [`serve`] draws a random 64-bit run, and a TCP manager's hub name carries it:
//! `tcp://127.0.0.1:50000/run-<16 hex digits>`. A process keeps one connection per address,
//! which knows the run it reached; a handle naming another run is refused before anything is
//! sent (see `client::link`), so a proxy of an earlier run never reaches an object of the run
//! now serving.
//!
//! The authkey is the whole trust boundary, as in Python: an authenticated peer can address
//! any object of the serving process's hub (as any process of the local tree can) and can ask
//! `update` to run any one-argument `#[worker]` registered in the server's binary. Unlike
//! Python's pickle, nothing a peer sends can run code that is not already registered there.
//! The connection is not encrypted: over an untrusted network, tunnel it (SSH, WireGuard).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::error::{Error, ErrorKind, Result};
use crate::shared::hub::{Hub, runtime};
use crate::shared::wire::ObjectId;
use crate::transport::auth::{keys_match, random_bytes};
use crate::transport::{DEFAULT_MAX_FRAME_LEN, FrameReader, FrameWriter};

/// How long a peer has to complete the whole handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest handshake message accepted, as in Python.
const MAX_MESSAGE_LEN: usize = 256;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const SHA256: &[u8] = b"{sha256}";
const NONCE_LEN: usize = 40;

/// The first frame after the handshake: which object of the server's hub is the store, and
/// which run of the manager at this address the client reached.
#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    store: ObjectId,
    run: u64,
}

fn auth_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Auth, message)
}

async fn send_message<S: AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> Result<()> {
    let mut bytes = (message.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(message);
    stream
        .write_all(&bytes)
        .await
        .map_err(|error| auth_error(format!("the handshake failed to write: {error}")))
}

async fn recv_message<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|error| auth_error(format!("the peer closed during the handshake ({error})")))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(auth_error(format!(
            "a handshake message of {len} bytes exceeds the limit of {MAX_MESSAGE_LEN}"
        )));
    }
    let mut message = vec![0u8; len];
    stream
        .read_exact(&mut message)
        .await
        .map_err(|error| auth_error(format!("the peer closed during the handshake ({error})")))?;
    Ok(message)
}

/// `{sha256}` + HMAC-SHA256(key, message).
fn response(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    let mut out = SHA256.to_vec();
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// Challenges the peer to prove `key`.
async fn deliver_challenge<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &[u8],
) -> Result<()> {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let mut message = SHA256.to_vec();
    message.extend_from_slice(&nonce);
    send_message(stream, &[CHALLENGE, &message].concat()).await?;
    let answer = recv_message(stream).await?;
    if keys_match(&answer, &response(key, &message)) {
        send_message(stream, WELCOME).await
    } else {
        // Best effort: the peer learns why before the connection closes.
        let _ = send_message(stream, FAILURE).await;
        Err(auth_error(
            "the peer did not prove the authkey (wrong key or not a multiproc manager)",
        ))
    }
}

/// Answers the peer's challenge with `key`.
async fn answer_challenge<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &[u8],
) -> Result<()> {
    let challenge = recv_message(stream).await?;
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(auth_error("the peer sent no challenge"));
    };
    if !message.starts_with(SHA256) || message.len() < SHA256.len() + 20 {
        return Err(auth_error(
            "the peer's challenge is not {sha256} with a nonce",
        ));
    }
    send_message(stream, &response(key, message)).await?;
    match recv_message(stream).await?.as_slice() {
        WELCOME => Ok(()),
        FAILURE => Err(auth_error(
            "the manager refused our authkey: the keys differ; connect with the authkey it was served with",
        )),
        _ => Err(auth_error("the peer answered the handshake with nonsense")),
    }
}

/// A TCP front serving one store, and the connections it accepted.
#[derive(Debug)]
pub(crate) struct TcpFront {
    pub(crate) local_addr: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    /// The task that owns the listener: the address is free again once it has ended.
    accepting: Mutex<Option<JoinHandle<()>>>,
    hub: Arc<Hub>,
    store: ObjectId,
}

impl TcpFront {
    /// Retires the store and every object it hosts, so that their proxies fail in every
    /// process, this one included (whose proxies reach the hub directly, not through the
    /// front); then stops accepting and drops every connection: their clients' calls fail as
    /// closed.
    pub(crate) fn stop(&self) {
        let addr = self.local_addr;
        self.hub.retire(
            self.store,
            &format!(
                "it belonged to the manager served at {addr}, which has been shut down; \
                 its objects went with it"
            ),
        );
        for task in self.tasks.lock().expect("front tasks poisoned").drain(..) {
            task.abort();
        }
    }

    /// [Stops](Self::stop), and returns once the listening socket is closed, so that the
    /// address can be served again.
    pub(crate) async fn stop_and_wait(&self) {
        self.stop();
        let accepting = self.accepting.lock().expect("front tasks poisoned").take();
        if let Some(accepting) = accepting {
            // Aborted: it ends as soon as the shared runtime drops it, with its listener.
            let _ = accepting.await;
        }
    }
}

/// Listens on `addr` and serves `store` of this process's `hub` to every client that proves
/// `key`.
pub(crate) async fn serve(
    addr: SocketAddr,
    key: Vec<u8>,
    hub: Arc<Hub>,
    store: ObjectId,
) -> Result<TcpFront> {
    // Bound and served on the shared runtime, so the front outlives the caller's runtime as
    // the hub does.
    let listener = runtime()
        .spawn(async move { TcpListener::bind(addr).await })
        .await
        .map_err(|_| Error::closed("the shared-objects runtime stopped"))?
        .map_err(|error| Error::io(&format!("binding {addr}"), error))?;
    let local_addr = listener
        .local_addr()
        .map_err(|error| Error::io("reading the bound address", error))?;
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let key: Arc<[u8]> = key.into();
    let run = u64::from_le_bytes(random_bytes());
    let front_hub = hub.clone();
    let accepting = {
        let tasks = tasks.clone();
        runtime().spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(target: "multiproc", "the manager stopped accepting on {local_addr}: {error}");
                        return;
                    }
                };
                // Each peer is handshaken in its own task: a slow or hostile peer delays
                // nobody else.
                let (key, hub, welcome) = (key.clone(), hub.clone(), Welcome { store, run });
                let served = tokio::spawn(serve_peer(stream, peer, key, hub, welcome));
                let mut tasks = tasks.lock().expect("front tasks poisoned");
                tasks.retain(|task: &AbortHandle| !task.is_finished());
                tasks.push(served.abort_handle());
            }
        })
    };
    tasks
        .lock()
        .expect("front tasks poisoned")
        .push(accepting.abort_handle());
    Ok(TcpFront {
        local_addr,
        tasks,
        accepting: Mutex::new(Some(accepting)),
        hub: front_hub,
        store,
    })
}

async fn serve_peer(
    mut stream: TcpStream,
    peer: SocketAddr,
    key: Arc<[u8]>,
    hub: Arc<Hub>,
    welcome: Welcome,
) {
    let _ = stream.set_nodelay(true);
    keep_alive(&stream);
    let handshake = async {
        deliver_challenge(&mut stream, &key).await?;
        answer_challenge(&mut stream, &key).await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(target: "multiproc", "the manager refused {peer}: {error}");
            return;
        }
        Err(_) => {
            tracing::warn!(target: "multiproc", "the manager refused {peer}: the handshake timed out");
            return;
        }
    }
    let (read, write) = stream.into_split();
    let (writer, _writer_task) = FrameWriter::spawn(write, DEFAULT_MAX_FRAME_LEN);
    if writer.send(&welcome, Vec::new()).is_err() {
        return;
    }
    let reader = FrameReader::new(read, DEFAULT_MAX_FRAME_LEN);
    hub.serve_stream(reader, writer, 0).await;
}

/// How long a connection may be idle before TCP probes the peer, the time between probes,
/// and how many go unanswered before the connection is dropped; also the longest sent data
/// may stay unacknowledged. A peer that vanishes without closing the connection (a host that
/// lost power, a cut network) is noticed within about [`KEEPALIVE_IDLE`] +
/// [`KEEPALIVE_INTERVAL`] x [`KEEPALIVE_PROBES`] instead of never: on the client, waiting calls
/// then fail as closed; on the server, what the peer held is released.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_PROBES: u32 = 3;

/// Turns on TCP keepalive (see [`KEEPALIVE_IDLE`]) and bounds unacknowledged data the same way.
/// Best effort: a socket that refuses keeps working, only without the bound.
fn keep_alive(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is an open socket owned by `stream` for the duration of the call, and
        // the option value is a live `c_int` whose size is passed alongside it.
        let done = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done != 0 {
            tracing::debug!(target: "multiproc", "setsockopt({level}, {name}) on a manager connection: {}", std::io::Error::last_os_error());
        }
    };
    let bound = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES;
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        KEEPALIVE_IDLE.as_secs() as libc::c_int,
    );
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        KEEPALIVE_INTERVAL.as_secs() as libc::c_int,
    );
    set(
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        KEEPALIVE_PROBES as libc::c_int,
    );
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        bound.as_millis() as libc::c_int,
    );
}

/// The hub name of the run `run` of the manager reached over TCP at `addr`.
pub(crate) fn hub_name(addr: SocketAddr, run: u64) -> String {
    format!("{TCP_PREFIX}{addr}{RUN_SEPARATOR}{run:016x}")
}

/// What the hub names of TCP managers start with.
pub(crate) const TCP_PREFIX: &str = "tcp://";

/// What separates the address from the run in a TCP manager's hub name.
const RUN_SEPARATOR: &str = "/run-";

/// A TCP manager's hub name taken apart: the address as written in it, and the run, if the
/// name carries a well-formed one. `None` for the name of a local hub.
pub(crate) fn parse_hub_name(hub: &str) -> Option<(&str, Option<u64>)> {
    let rest = hub.strip_prefix(TCP_PREFIX)?;
    Some(match rest.rsplit_once(RUN_SEPARATOR) {
        Some((addr, run)) => (addr, u64::from_str_radix(run, 16).ok()),
        None => (rest, None),
    })
}

/// The key under which a process keeps its one link to the manager at `addr`, whatever run
/// it reaches: a restarted manager replaces the link.
pub(crate) fn link_name(addr: &str) -> String {
    format!("{TCP_PREFIX}{addr}")
}

/// Connects to a manager served at `addr`, proves `key` both ways, and registers the
/// connection as this process's link to that address. Returns the hub's name (address and
/// run) and the store's id.
pub(crate) async fn connect(addr: SocketAddr, key: Vec<u8>) -> Result<(String, ObjectId)> {
    runtime()
        .spawn(async move {
            let attempt = async {
                let mut stream = TcpStream::connect(addr)
                    .await
                    .map_err(|error| Error::io(&format!("connecting to {addr}"), error))?;
                let _ = stream.set_nodelay(true);
                keep_alive(&stream);
                answer_challenge(&mut stream, &key).await?;
                deliver_challenge(&mut stream, &key).await?;
                let (read, write) = stream.into_split();
                let mut reader = FrameReader::new(read, DEFAULT_MAX_FRAME_LEN);
                let welcome: Welcome = match reader.read().await? {
                    Some(frame) => frame.header()?,
                    None => return Err(Error::closed(format!("the manager at {addr} hung up"))),
                };
                let (writer, _writer_task) = FrameWriter::spawn(write, DEFAULT_MAX_FRAME_LEN);
                // Kept under the address alone, so that a proxy of this run received from
                // another process works here too. A reconnect replaces the link.
                crate::shared::client::adopt(
                    link_name(&addr.to_string()),
                    welcome.run,
                    reader,
                    writer,
                );
                crate::transport::auth::remember_peer_key(addr.to_string(), key);
                Ok((hub_name(addr, welcome.run), welcome.store))
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT * 5, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Error::timeout(format!(
                    "connecting to the manager at {addr} timed out"
                ))),
            }
        })
        .await
        .map_err(|_| Error::closed("the shared-objects runtime stopped"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(stream: &TcpStream, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the socket is open and `value`/`len` describe a live `c_int`.
        let done = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
        value
    }

    #[tokio::test]
    async fn manager_connections_probe_a_silent_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        keep_alive(&stream);
        assert_eq!(option(&stream, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(option(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 5);
        assert_eq!(option(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 1);
        assert_eq!(option(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 3);
        assert_eq!(
            option(&stream, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
            8000
        );
    }
}
