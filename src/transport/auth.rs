//! Proving the secret key.
//!
//! The main process draws a random 32-byte key, like Python's `authkey`, and every process it
//! starts inherits it as the first bytes on its connection to the parent (its standard input,
//! at start), never its command line or environment; the keys of the TCP managers the parent
//! reached follow it (with what it trusts to reach those served with TLS), so a child can use
//! their proxies as Python's children can. That socket pair has no name anyone could squat,
//! so the child answers with a [`Hello`] carrying the key, which the parent compares in
//! constant time, with the child's pid.
//!
//! Every connection to a *named* socket (a hub, a manager, locally or over TCP) instead opens
//! with a mutual challenge, as Python 3.12's `multiprocessing.connection` does
//! (`deliver_challenge` and `answer_challenge`), so that the key never crosses the wire and a
//! process squatting a name a handle points to learns nothing:
//!
//! 1. the listener sends `#CHALLENGE#{sha256}` + 40 random bytes; the client answers
//!    `{sha256}` + HMAC-SHA256(key, `{sha256}` + nonce) and, in the same write, challenges
//!    the listener the same way;
//! 2. the listener checks the answer and replies `#WELCOME#` or `#FAILURE#`, then, only if the
//!    client proved the key, answers the client's challenge;
//! 3. the client checks that answer and replies `#WELCOME#` or `#FAILURE#`.
//!
//! The client sends no request before the listener has proven the key, and the listener
//! answers no challenge before the client has proven it, so a peer without the key cannot
//! make a listener compute proofs for it. What remains, as in Python, is a relay: a squatter
//! passing a real listener's challenge to a client and the client's answer back. On a local
//! socket the same-user check below leaves that to processes that could read the key from
//! memory anyway; over TCP, serve the manager with TLS ([`tls`](super::tls)), inside which
//! this handshake then runs and whose certificate check leaves a relay nothing to relay, or
//! tunnel an untrusted network.
//! Each message is a 4-byte big-endian length and its bytes, as in
//! Python's `Connection`; a length over 256 bytes is refused before anything is allocated.
//! Answers are compared in constant time. On a named local socket each side also checks that
//! the other runs as the same user, before the handshake. See [`client_handshake`] and
//! [`server_handshake`].

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Hello, KEY_LEN, Key, TlsTrust};

static KEY: OnceLock<Key> = OnceLock::new();

/// This process's [`Hello`] to its parent.
pub(crate) fn hello() -> Hello {
    Hello {
        key: *process_key(),
        pid: std::process::id(),
    }
}

/// This process tree's key: inherited from the parent, or drawn at random in the main process.
pub(crate) fn process_key() -> &'static Key {
    KEY.get_or_init(random_bytes)
}

/// Sets the key inherited from the parent. Called once, by a child, before anything connects.
pub(crate) fn inherit_key(key: Key) {
    let _ = KEY.set(key);
}

/// How this process reaches one TCP manager: its key and, for one served with TLS, what to
/// trust (when it can be handed to a child).
type PeerCredentials = (Vec<u8>, Option<TlsTrust>);

/// The credentials of TCP managers this process reached (or inherited), by address.
static PEER_KEYS: Mutex<BTreeMap<String, PeerCredentials>> = Mutex::new(BTreeMap::new());

/// The most bytes of peer keys handed to a child: the handover is written into a socket the
/// child has not started reading, so it must fit the socket's buffer.
const MAX_PEER_KEYS_LEN: usize = 64 * 1024;

/// Remembers the key that proved itself to the manager at `peer` (and, for a manager served
/// with TLS, what this process trusts there), so that children started from now on can reach
/// it too, as Python hands its authkey to the processes it starts.
pub(crate) fn remember_peer_key(peer: String, key: Vec<u8>, tls: Option<TlsTrust>) {
    PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(peer, (key, tls));
}

/// The key for the manager at `peer`, if this process reached it or inherited its key.
pub(crate) fn peer_key(peer: &str) -> Option<Vec<u8>> {
    peer_credentials(peer).map(|(key, _)| key)
}

/// What this process trusts to reach the manager at `peer` over TLS, if it reached it with a
/// configuration that can be handed down, or inherited one.
pub(crate) fn peer_tls(peer: &str) -> Option<TlsTrust> {
    peer_credentials(peer).and_then(|(_, tls)| tls)
}

fn peer_credentials(peer: &str) -> Option<PeerCredentials> {
    PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .get(peer)
        .cloned()
}

/// What a child inherits, first thing on its connection: this process's key, then the
/// credentials of the managers it reached (a length, then their postcard encoding).
pub(crate) fn handover() -> Vec<u8> {
    let peers = PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    let mut encoded = postcard::to_stdvec(&peers).expect("strings and bytes always encode");
    if encoded.len() > MAX_PEER_KEYS_LEN {
        tracing::warn!(target: "multiproc", "too many manager keys to hand to a child; it gets none");
        encoded =
            postcard::to_stdvec(&BTreeMap::<String, PeerCredentials>::new()).expect("encodes");
    }
    let mut bytes = process_key().to_vec();
    bytes.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&encoded);
    bytes
}

/// Reads a [`handover`] exactly (nothing after it) and adopts the keys it carries.
pub(crate) fn receive_handover(input: &mut impl Read) -> std::io::Result<()> {
    let mut key = [0u8; KEY_LEN];
    input.read_exact(&mut key)?;
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_PEER_KEYS_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "an oversized handover",
        ));
    }
    let mut encoded = vec![0u8; len];
    input.read_exact(&mut encoded)?;
    let peers: BTreeMap<String, PeerCredentials> = postcard::from_bytes(&encoded)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
    inherit_key(key);
    for (peer, (key, tls)) in peers {
        remember_peer_key(peer, key, tls);
    }
    Ok(())
}

/// Random bytes from the operating system. Opens no file, so a handshake still gets its
/// nonce while the process is out of descriptors (`EMFILE`).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // getentropy fills at most 256 bytes per call, never fewer than asked.
    for chunk in bytes.chunks_mut(256) {
        // SAFETY: the pointer and length describe `chunk`, which is live and writable.
        let done = unsafe { libc::getentropy(chunk.as_mut_ptr().cast(), chunk.len()) };
        assert_eq!(done, 0, "getentropy: {}", std::io::Error::last_os_error());
    }
    bytes
}

/// Compares two keys in time independent of where they differ.
pub(crate) fn keys_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a peer's hello against this process's key.
pub(crate) fn verify(hello: &Hello) -> Result<()> {
    if keys_match(&hello.key, process_key()) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Auth,
            format!(
                "process {} presented a wrong key; the connection was refused",
                hello.pid
            ),
        )
        .with_pid(hello.pid))
    }
}

/// The effective user id of this process.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// How long a peer has to complete the whole [handshake](self), on a named socket or over TCP.
/// A silent peer holds nothing longer than this, and never delays anyone else: every
/// handshake runs in its own task (see [`Handshakes`](super::accept::Handshakes)).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest handshake message accepted, as in Python.
const MAX_MESSAGE_LEN: usize = 256;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// What a listener that speaks TLS says, in the clear, to a peer that said nothing: a client
/// without TLS, waiting for a challenge that would otherwise never come.
const TLS_REQUIRED: &[u8] = b"#TLS-REQUIRED#";
const SHA256: &[u8] = b"{sha256}";
const NONCE_LEN: usize = 40;
/// The shortest nonce accepted in a peer's challenge, as Python's legacy 20-byte one.
const MIN_NONCE_LEN: usize = 20;

fn auth_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Auth, message)
}

/// The listener's side of the [handshake](self): proves that the peer on `stream` knows
/// `key`, then proves it to the peer. Nothing after the handshake has been read from `stream`
/// when it returns.
///
/// # Errors
///
/// [`ErrorKind::Auth`] when the peer does not prove the key, sends a malformed or oversized
/// message, closes, or refuses this side's proof.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; drop it.
pub(crate) async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &[u8],
) -> Result<()> {
    let ours = Challenge::new();
    send_message(stream, &ours.message()).await?;
    let answer = recv_message(stream).await?;
    if !ours.is_answered_by(key, &answer) {
        // Best effort: the peer learns why before the connection closes.
        let _ = send_message(stream, FAILURE).await;
        return Err(auth_error(
            "the peer did not prove the key (a wrong key, or not a multiproc process)",
        ));
    }
    send_message(stream, WELCOME).await?;
    let theirs = recv_message(stream).await?;
    send_message(stream, &response(key, challenged_bytes(&theirs)?)).await?;
    match recv_message(stream).await?.as_slice() {
        WELCOME => Ok(()),
        FAILURE => Err(auth_error("the peer refused this side's proof of the key")),
        _ => Err(auth_error("the peer answered the handshake with nonsense")),
    }
}

/// [`server_handshake`] within [`HANDSHAKE_TIMEOUT`]: a peer that has not completed it by
/// then is refused.
///
/// # Errors
///
/// As [`server_handshake`]; [`ErrorKind::Auth`] too for a peer too slow.
///
/// # Cancel safety
///
/// Not cancel safe, as [`server_handshake`].
pub(crate) async fn server_handshake_in_time<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &[u8],
) -> Result<()> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, server_handshake(stream, key))
        .await
        .map_err(|_| {
            auth_error(format!(
                "the peer did not complete the handshake within {HANDSHAKE_TIMEOUT:?}"
            ))
        })?
}

/// The connecting side of the [handshake](self): proves `key` to the listener on `stream`,
/// and makes it prove the key back before returning, so that the caller sends nothing to a
/// listener that does not know it. Nothing after the handshake has been read from `stream`.
///
/// # Errors
///
/// [`ErrorKind::Auth`] when the listener refuses this side's proof (the keys differ), does
/// not prove the key, sends a malformed or oversized message, or closes.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; drop it.
pub(crate) async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &[u8],
) -> Result<()> {
    let theirs = recv_message(stream).await?;
    if theirs == TLS_REQUIRED {
        return Err(auth_error(
            "the listener speaks TLS, and this side does not: a manager served with \
             Manager::serve_tls is reached with Manager::connect_tls",
        ));
    }
    let answer = response(key, challenged_bytes(&theirs)?);
    let ours = Challenge::new();
    // The answer and our own challenge in one write: one round trip fewer, and the
    // challenge reveals nothing.
    send_messages(stream, &[&answer, &ours.message()]).await?;
    match recv_message(stream).await?.as_slice() {
        WELCOME => {}
        FAILURE => {
            return Err(auth_error(
                "the listener refused our key: the keys differ (for a manager, connect with \
                 the authkey it was served with)",
            ));
        }
        _ => {
            return Err(auth_error(
                "the listener answered the handshake with nonsense",
            ));
        }
    }
    let proof = recv_message(stream).await?;
    if !ours.is_answered_by(key, &proof) {
        let _ = send_message(stream, FAILURE).await;
        return Err(auth_error(
            "the listener did not prove the key: it is not the process the name or address \
             belonged to, or it was served with another key",
        ));
    }
    send_message(stream, WELCOME).await
}

/// A challenge sent to a peer: `{sha256}` and a fresh nonce.
struct Challenge {
    /// What the peer must MAC: the digest's name and the nonce.
    challenged: Vec<u8>,
}

impl Challenge {
    fn new() -> Self {
        let nonce: [u8; NONCE_LEN] = random_bytes();
        Challenge {
            challenged: [SHA256, &nonce].concat(),
        }
    }

    fn message(&self) -> Vec<u8> {
        [CHALLENGE, &self.challenged].concat()
    }

    /// Whether `answer` is `{sha256}` + HMAC-SHA256(`key`, the challenge), compared in
    /// constant time.
    fn is_answered_by(&self, key: &[u8], answer: &[u8]) -> bool {
        let Some(digest) = answer.strip_prefix(SHA256) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&self.challenged);
        mac.verify_slice(digest).is_ok()
    }
}

/// What a peer's challenge asks us to MAC: its digest's name and its nonce.
fn challenged_bytes(challenge: &[u8]) -> Result<&[u8]> {
    let challenged = challenge
        .strip_prefix(CHALLENGE)
        .ok_or_else(|| auth_error("the peer sent no challenge"))?;
    if !challenged.starts_with(SHA256) || challenged.len() < SHA256.len() + MIN_NONCE_LEN {
        return Err(auth_error(
            "the peer's challenge is not {sha256} with a nonce",
        ));
    }
    Ok(challenged)
}

/// `{sha256}` + HMAC-SHA256(key, challenged).
fn response(key: &[u8], challenged: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(challenged);
    [SHA256, &mac.finalize().into_bytes()].concat()
}

async fn send_message<S: AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> Result<()> {
    send_messages(stream, &[message]).await
}

/// `messages`, each after its length.
fn framed(messages: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 * MAX_MESSAGE_LEN);
    for message in messages {
        bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
        bytes.extend_from_slice(message);
    }
    bytes
}

/// The notice a listener that speaks TLS gives a peer that did not start TLS, framed as a
/// handshake message, so that a client without TLS fails saying why (see [`client_handshake`]).
pub(crate) fn tls_required_notice() -> Vec<u8> {
    framed(&[TLS_REQUIRED])
}

/// What a peer that knows `key` says in a handshake, framed, for the fuzz targets' seeds: to a
/// listener, an answer (to a challenge it cannot know), its own challenge and its welcome; to
/// a connecting client, a challenge, the welcome and a proof.
#[cfg(feature = "fuzzing")]
pub(crate) fn peer_messages(key: &[u8], to_listener: bool) -> Vec<u8> {
    let challenge = Challenge::new();
    let proof = response(key, &challenge.challenged);
    if to_listener {
        framed(&[&proof, &challenge.message(), WELCOME])
    } else {
        framed(&[&challenge.message(), WELCOME, &proof])
    }
}

/// Writes `messages`, each after its length, in one write.
async fn send_messages<S: AsyncWrite + Unpin>(stream: &mut S, messages: &[&[u8]]) -> Result<()> {
    let failed =
        |error: std::io::Error| auth_error(format!("the handshake failed to write: {error}"));
    stream.write_all(&framed(messages)).await.map_err(failed)?;
    // A TLS stream holds what is written until flushed; a bare socket has nothing to flush.
    stream.flush().await.map_err(failed)
}

/// Reads one message, refusing a length over [`MAX_MESSAGE_LEN`] before reading its bytes.
async fn recv_message<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>> {
    let closed = |error: std::io::Error| {
        auth_error(format!("the peer closed during the handshake ({error})"))
    };
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(closed)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(auth_error(format!(
            "a handshake message of {len} bytes exceeds the limit of {MAX_MESSAGE_LEN}"
        )));
    }
    let mut message = vec![0u8; len];
    stream.read_exact(&mut message).await.map_err(closed)?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    async fn handshake(client_key: &[u8], server_key: &[u8]) -> (Result<()>, Result<()>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let both = async {
            tokio::join!(
                client_handshake(&mut client, client_key),
                server_handshake(&mut server, server_key)
            )
        };
        tokio::time::timeout(LIMIT, both).await.unwrap()
    }

    #[tokio::test]
    async fn the_same_key_is_proven_both_ways() {
        let (client, server) = handshake(b"secret", b"secret").await;
        client.unwrap();
        server.unwrap();
    }

    #[tokio::test]
    async fn different_keys_fail_on_both_sides() {
        let (client, server) = handshake(b"secret", b"another").await;
        assert_eq!(client.unwrap_err().kind(), ErrorKind::Auth);
        assert_eq!(server.unwrap_err().kind(), ErrorKind::Auth);
    }
}
