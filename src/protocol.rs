//! The messages parents and children exchange, one per frame header.
//!
//! After the [`Hello`](crate::transport::Hello) that opens every connection, a parent sends
//! [`ToChild`] headers and a child answers with [`FromChild`]. Arguments and results travel in
//! the frame's payload, already encoded; the headers stay small.

use serde::{Deserialize, Serialize};

use crate::error::RemoteError;

/// A parent's request to its child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToChild {
    /// Run a registered worker. The payload holds the postcard-encoded arguments: one argument
    /// tuple, or with `batch` a `Vec` of them, answered by a `Vec` of per-item outcomes.
    Call {
        id: u64,
        worker: String,
        batch: bool,
    },
    /// Finish the call in progress, then exit with code 0.
    Shutdown,
}

/// A child's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FromChild {
    /// The call `id` finished. On `Ok` the payload holds the encoded result.
    Done {
        id: u64,
        outcome: Result<(), RemoteError>,
    },
}

/// Encodes a value for a frame's payload; `what` names it in the error.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> crate::Result<Vec<u8>> {
    // Sized first, so a large value (a byte buffer of megabytes) is written once into a buffer
    // of the right size rather than copied through every doubling of a growing one.
    let encoded = postcard::experimental::serialized_size(value)
        .and_then(|size| postcard::to_extend(value, Vec::with_capacity(size)));
    encoded.map_err(|source| crate::Error::serialization(what, source))
}

/// Decodes a frame's payload; `what` names it in the error.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> crate::Result<T> {
    postcard::from_bytes(bytes).map_err(|source| crate::Error::serialization(what, source))
}
