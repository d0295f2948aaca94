//! Every message that crosses a process, and its encoding.
//!
//! Everything sent between processes is a [frame](crate::transport::frame): a small header
//! and a payload, both encoded with [postcard](https://docs.rs/postcard). This module holds
//! every header type and the one place values are encoded and decoded, so that nothing
//! outside it parses bytes by hand:
//!
//! - [`call`]: a parent and its child: calls, replies, batches of results.
//! - [`hub`]: what a process asks of the hub that serves its queues, locks and other shared
//!   objects ([`HubRequest`](hub::HubRequest), one [`Op`](hub::Op) per kind of object) and
//!   its answers.
//! - [`store`]: a manager's store operations (dicts, lists, namespaces, values, hosted
//!   objects), carried inside hub requests.
//! - `cluster` (feature `nats`): a node's heartbeat and a task's outcome.
//! - [`handshake`]: what a child is told in its environment ([`Bootstrap`]), and the frames
//!   that open a connection: a child's [`Hello`] on its socket pair,
//!   a TCP manager's [`Welcome`] after the mutual challenge.
//!
//! Postcard is compact and fast, and not self-describing: a value decodes only as the type it
//! was encoded from, so serde attributes that need to look ahead (`untagged`, `flatten`,
//! `skip_serializing_if`) do not work in arguments and results (see [`Value`](crate::Value)).

pub(crate) mod call;
#[cfg(feature = "nats")]
pub(crate) mod cluster;
pub(crate) mod handshake;
pub(crate) mod hub;
pub(crate) mod store;

use serde::Serialize;

pub(crate) use call::{BatchResults, FromChild, ToChild};
pub(crate) use handshake::{Bootstrap, Hello, KEY_LEN, Key, TlsTrust, Welcome};

/// The id of an object (a queue, a lock, a manager's store) in the hub of the process that
/// serves it.
pub(crate) type ObjectId = u64;

/// Encodes a value for a frame's payload; `what` names it in the error.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> crate::Result<Vec<u8>> {
    // Sized first, so a large value (a byte buffer of megabytes) is written once into a buffer
    // of the right size rather than copied through every doubling of a growing one.
    let encoded = serialized_size(value)
        .and_then(|size| postcard::to_extend(value, crate::buffers::with_capacity(size)));
    encoded.map_err(|source| crate::Error::serialization(what, source))
}

thread_local! {
    static SIZING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The encoded size of `value`, found by serializing it into nothing. While it runs,
/// [`is_sizing`] is true on this thread: a value whose serialization has an effect (a
/// manager's proxy lends a reference) skips it, and writes as many bytes.
fn serialized_size<T: Serialize + ?Sized>(value: &T) -> postcard::Result<usize> {
    SIZING.with(|sizing| sizing.set(true));
    let size = postcard::experimental::serialized_size(value);
    SIZING.with(|sizing| sizing.set(false));
    size
}

/// Whether this thread is only sizing a value (see [`encode`]), not writing it out.
pub(crate) fn is_sizing() -> bool {
    SIZING.with(std::cell::Cell::get)
}

/// Items this large are sized exactly before a list of them is encoded (see [`encode_list`]).
const LARGE_ITEM: usize = 4096;

/// Encodes `list`, which holds `items` items of which `first` is the first, as [`encode`]
/// does. A list of small items (a chunk of numbers) is not sized item by item first, which
/// costs about as much as encoding it: its buffer is reserved from the first item's size and
/// grows if need be.
pub(crate) fn encode_list<L: Serialize + ?Sized, T: Serialize>(
    list: &L,
    first: Option<&T>,
    items: usize,
    what: &str,
) -> crate::Result<Vec<u8>> {
    let first_len = match first.map(serialized_size) {
        Some(Ok(len)) if len < LARGE_ITEM => len,
        _ => return encode(list, what),
    };
    postcard::to_extend(list, Vec::with_capacity(first_len * items + first_len + 16))
        .map_err(|source| crate::Error::serialization(what, source))
}

/// Decodes a frame's payload; `what` names it in the error.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> crate::Result<T> {
    crate::Error::forget_refusal();
    postcard::from_bytes(bytes).map_err(|source| crate::Error::decoding(what, source))
}
