//! The frames that open a connection, before any call or request.
//!
//! A child's connection to its parent is a socket pair nobody else can reach: the parent
//! writes the key on it first (see [`transport::auth`](crate::transport::auth)), and the
//! child answers with a [`Hello`] that proves it and says which process it is. A named socket
//! or a TCP connection opens instead with the mutual challenge of `transport::auth`, whose
//! messages are raw bytes as in Python's `multiprocessing.connection`; a TCP manager then
//! sends its [`Welcome`].

use serde::{Deserialize, Serialize};

use super::ObjectId;

/// The length of the secret key in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// A secret key shared by a tree of processes.
pub(crate) type Key = [u8; KEY_LEN];

/// The first frame a child sends its parent on their socket pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) key: Key,
    pub(crate) pid: u32,
}

/// The first frame a TCP manager sends a client that passed the challenge: the store's object
/// id, and which run of the manager at this address the client reached.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Welcome {
    pub(crate) store: ObjectId,
    pub(crate) run: u64,
}
