//! Proving the secret key.
//!
//! The main process draws a random 32-byte key, like Python's `authkey`, and every process it
//! starts inherits it as the first bytes on its connection to the parent (its standard input,
//! at start), never its command line or environment; the keys of the TCP managers the parent
//! reached follow it, so a child can use their proxies as Python's children can. Every connection opens with a [`Hello`]
//! frame carrying the key; the receiving side reads it with a 256-byte limit, compares it in
//! constant time, and checks the peer (on a named socket, the same user; for a child, its pid)
//! before it reads anything else.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The length of the secret key in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// A secret key shared by a tree of processes.
pub(crate) type Key = [u8; KEY_LEN];

static KEY: OnceLock<Key> = OnceLock::new();

/// The first frame of every connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) key: Key,
    pub(crate) pid: u32,
}

impl Hello {
    pub(crate) fn new() -> Self {
        Hello {
            key: *process_key(),
            pid: std::process::id(),
        }
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

/// The keys of TCP managers this process reached (or inherited), by address.
static PEER_KEYS: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());

/// The most bytes of peer keys handed to a child: the handover is written into a socket the
/// child has not started reading, so it must fit the socket's buffer.
const MAX_PEER_KEYS_LEN: usize = 64 * 1024;

/// Remembers the key that proved itself to the manager at `peer`, so that children started
/// from now on can reach it too, as Python hands its authkey to the processes it starts.
pub(crate) fn remember_peer_key(peer: String, key: Vec<u8>) {
    PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(peer, key);
}

/// The key for the manager at `peer`, if this process reached it or inherited its key.
pub(crate) fn peer_key(peer: &str) -> Option<Vec<u8>> {
    PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .get(peer)
        .cloned()
}

/// What a child inherits, first thing on its connection: this process's key, then the keys
/// of the managers it reached (a length, then their postcard encoding).
pub(crate) fn handover() -> Vec<u8> {
    let peers: Vec<(String, Vec<u8>)> = PEER_KEYS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .iter()
        .map(|(peer, key)| (peer.clone(), key.clone()))
        .collect();
    let mut encoded = postcard::to_stdvec(&peers).expect("strings and bytes always encode");
    if encoded.len() > MAX_PEER_KEYS_LEN {
        tracing::warn!(target: "multiproc", "too many manager keys to hand to a child; it gets none");
        encoded = postcard::to_stdvec(&Vec::<(String, Vec<u8>)>::new()).expect("encodes");
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
    let peers: Vec<(String, Vec<u8>)> = postcard::from_bytes(&encoded)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
    inherit_key(key);
    for (peer, key) in peers {
        remember_peer_key(peer, key);
    }
    Ok(())
}

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
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
