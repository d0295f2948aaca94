//! Proving the secret key.
//!
//! The main process draws a random 32-byte key, like Python's `authkey`, and every process it
//! starts inherits it as the first bytes on its connection to the parent (its standard input,
//! at start), never its command line or environment. Every connection opens with a [`Hello`]
//! frame carrying the key; the receiving side reads it with a 256-byte limit, compares it in
//! constant time, and checks the peer (on a named socket, the same user; for a child, its pid)
//! before it reads anything else.

use std::io::Read;
use std::sync::OnceLock;

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
