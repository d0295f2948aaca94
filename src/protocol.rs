//! The messages parents and children exchange, one per frame header.
//!
//! After the [`Hello`](crate::transport::Hello) that opens a child's connection to its
//! parent, a parent sends [`ToChild`] headers and a child answers with [`FromChild`].
//! Arguments and results travel in the frame's payload, already encoded; the headers stay
//! small.

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
    /// Report the start of each call in the parent's progress page, open in the parent as
    /// descriptor `fd` (see `pool::progress`). Sent before the first call, if at all.
    Track { fd: i32 },
}

/// A child's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FromChild {
    /// The call `id` finished. On `Ok` the payload holds the encoded result.
    Done {
        id: u64,
        outcome: Result<(), RemoteError>,
    },
    /// The child could not open the progress page of [`ToChild::Track`]: the parent cannot
    /// tell from it which call runs.
    Untracked,
}

/// The reply to a batch call: one result per item of the batch, in order. When every item
/// succeeded (the common case) it is the plain list of values, which encodes and decodes
/// without a tag per item.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BatchResults<T> {
    /// Every item succeeded.
    AllOk(Vec<T>),
    /// Some item failed: each item's outcome.
    Each(Vec<Result<T, RemoteError>>),
}

impl<T: Serialize> BatchResults<T> {
    pub(crate) fn encode(&self, what: &str) -> crate::Result<Vec<u8>> {
        match self {
            BatchResults::AllOk(values) => encode_list(self, values.first(), values.len(), what),
            BatchResults::Each(_) => encode(self, what),
        }
    }
}

/// The most memory reserved ahead for a batch's results: the count of a batch of zero-sized
/// arguments (a worker that takes none) costs no bytes to announce, so it alone must not
/// decide an allocation; results beyond this grow as they come.
const MAX_RESERVED_RESULTS_BYTES: usize = 1024 * 1024;

impl<T> BatchResults<T> {
    pub(crate) fn with_capacity(items: usize) -> Self {
        let at_most = MAX_RESERVED_RESULTS_BYTES / std::mem::size_of::<T>().max(1);
        BatchResults::AllOk(Vec::with_capacity(items.min(at_most)))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            BatchResults::AllOk(values) => values.len(),
            BatchResults::Each(outcomes) => outcomes.len(),
        }
    }

    /// Adds the next item's value.
    pub(crate) fn push_ok(&mut self, value: T) {
        match self {
            BatchResults::AllOk(values) => values.push(value),
            BatchResults::Each(outcomes) => outcomes.push(Ok(value)),
        }
    }

    /// Adds the next item's outcome.
    pub(crate) fn push(&mut self, outcome: Result<T, RemoteError>) {
        match outcome {
            Ok(value) => self.push_ok(value),
            Err(error) => {
                if let BatchResults::AllOk(values) = self {
                    *self =
                        BatchResults::Each(std::mem::take(values).into_iter().map(Ok).collect());
                }
                if let BatchResults::Each(outcomes) = self {
                    outcomes.push(Err(error));
                }
            }
        }
    }
}

/// Encodes a value for a frame's payload; `what` names it in the error.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> crate::Result<Vec<u8>> {
    // Sized first, so a large value (a byte buffer of megabytes) is written once into a buffer
    // of the right size rather than copied through every doubling of a growing one.
    let encoded = postcard::experimental::serialized_size(value).and_then(|size| {
        postcard::to_extend(value, crate::transport::buffers::with_capacity(size))
    });
    encoded.map_err(|source| crate::Error::serialization(what, source))
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
    let first_len = match first.map(postcard::experimental::serialized_size) {
        Some(Ok(len)) if len < LARGE_ITEM => len,
        _ => return encode(list, what),
    };
    postcard::to_extend(list, Vec::with_capacity(first_len * items + first_len + 16))
        .map_err(|source| crate::Error::serialization(what, source))
}

/// Decodes a frame's payload; `what` names it in the error.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> crate::Result<T> {
    postcard::from_bytes(bytes).map_err(|source| crate::Error::serialization(what, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_results_stay_a_plain_list_until_an_item_fails() {
        let mut results = BatchResults::with_capacity(3);
        results.push_ok(1u64);
        results.push(Ok(2));
        assert!(matches!(&results, BatchResults::AllOk(values) if values == &[1, 2]));
        results.push(Err(RemoteError::UnknownWorker("gone".into())));
        results.push_ok(4);
        let BatchResults::Each(outcomes) = &results else {
            panic!("a failed item makes the results one outcome per item");
        };
        assert_eq!(outcomes.len(), 4);
        assert!(matches!(outcomes[..], [Ok(1), Ok(2), Err(_), Ok(4)]));
        let decoded: BatchResults<u64> =
            decode(&results.encode("results").unwrap(), "results").unwrap();
        assert_eq!(decoded.len(), 4);
    }

    /// Found by the fuzz target `child_calls`: these bytes, as the payload of a batch for a
    /// worker that takes no arguments, announce 2^35 - 1 items at no cost, and the child
    /// reserved room for as many results and aborted.
    #[test]
    fn a_batch_count_alone_reserves_no_memory() {
        const CRASH: [u8; 6] = [0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
        let (count, _) = postcard::take_from_bytes::<u64>(&CRASH).unwrap();
        assert_eq!(count, (1 << 35) - 1);
        let BatchResults::AllOk(values) = BatchResults::<u64>::with_capacity(count as usize) else {
            unreachable!("a batch starts as a plain list");
        };
        assert!(values.capacity() <= MAX_RESERVED_RESULTS_BYTES / 8);
    }

    #[test]
    fn a_list_of_small_items_encodes_as_encode_does() {
        let items: Vec<u64> = (0..1000).map(|n| n * 1_000_003).collect();
        assert_eq!(
            encode_list(&items, items.first(), items.len(), "items").unwrap(),
            encode(&items, "items").unwrap()
        );
        let large = vec![vec![7u8; 10_000]; 3];
        assert_eq!(
            encode_list(&large, large.first(), large.len(), "items").unwrap(),
            encode(&large, "items").unwrap()
        );
    }
}
