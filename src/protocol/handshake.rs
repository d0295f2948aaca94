//! The frames that open a connection, before any call or request.
//!
//! A child first learns who it is from its [`Bootstrap`], in an environment variable. Its
//! connection to its parent is a socket pair nobody else can reach: the parent
//! writes the key on it first (see [`transport::auth`](crate::transport::auth)), and the
//! child answers with a [`Hello`] that proves it and says which process it is. A named socket
//! or a TCP connection opens instead with the mutual challenge of `transport::auth`, whose
//! messages are raw bytes as in Python's `multiprocessing.connection`; a TCP manager then
//! sends its [`Welcome`]. A child also inherits what its parent trusts to reach managers
//! served with TLS ([`TlsTrust`]), beside their keys.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::ObjectId;
use crate::current::ProcessInfo;

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

/// What a process trusts and presents to reach a manager served with TLS, in the form a
/// child inherits it (see [`transport::tls`](crate::transport::tls)): all DER, as the user's
/// PEM files held it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TlsTrust {
    /// The certificates of the CAs the manager's certificate must chain to.
    pub(crate) roots: Vec<ByteBuf>,
    /// The name the manager's certificate must carry; `None`: the IP address connected to.
    pub(crate) server_name: Option<String>,
    /// The client certificate chain and its private key, for a manager that asks for one.
    pub(crate) client_cert: Option<(Vec<ByteBuf>, ByteBuf)>,
}

impl std::fmt::Debug for TlsTrust {
    /// Everything but the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTrust")
            .field("roots", &self.roots.len())
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

/// What a child needs to know about itself; travels hex-encoded in [`BOOTSTRAP_ENV`](crate::bootstrap::BOOTSTRAP_ENV).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: ProcessInfo,
    pub(crate) depth: u32,
    pub(crate) log_level: u8,
    /// The level from which the child sends its `tracing` events to its parent; 0: it does not.
    pub(crate) forward_level: u8,
    pub(crate) max_frame_len: u64,
    /// Stall before connecting back; lets tests exercise the start-up timeout.
    pub(crate) stall: bool,
    /// A [`Process`](crate::Process): one call follows the key; the child runs it and exits.
    pub(crate) one_call: bool,
    /// Started by the parent's main thread, which ends only with the parent (see the child's
    /// `watch_parent`).
    pub(crate) spawned_by_main_thread: bool,
}

impl Bootstrap {
    pub(crate) fn encode(&self) -> String {
        let bytes = postcard::to_stdvec(self).expect("a bootstrap always serializes");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn decode(hex: &str) -> Option<Self> {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect();
        postcard::from_bytes(&bytes?).ok()
    }
}
