//! Calls: what a parent and its child exchange, one per frame header.
//!
//! After the [`Hello`](super::Hello) that opens a child's connection to its parent, a parent
//! sends [`ToChild`] headers and a child answers with [`FromChild`]. Arguments and results
//! travel in the frame's payload, already encoded; the headers stay small. A pool's chunk is a
//! batch: a list of argument tuples, answered by [`BatchResults`]. A cluster carries single
//! calls as batches of one ([`batch_of_one`], [`only_item`]), reading the few bytes it needs
//! of the reply rather than decoding and encoding its value again.

use serde::{Deserialize, Serialize};

use super::{encode, encode_list};
use crate::error::RemoteError;
use crate::logging::ForwardedEvent;

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
    /// descriptor `fd` (see [`progress`](crate::progress)). Sent before the first call, if at all.
    Track { fd: i32 },
}

/// A child's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FromChild {
    /// The call `id` finished. On `Ok` the payload holds the encoded result.
    Done {
        id: u64,
        outcome: Result<(), RemoteError>,
        /// How many items of a batch failed (panicked) inside an `Ok` reply, for the pool's
        /// counts: the parent does not decode the results, whose type it does not know.
        failed_items: u32,
    },
    /// The child could not open the progress page of [`ToChild::Track`]: the parent cannot
    /// tell from it which call runs.
    Untracked,
    /// A `tracing` event of the child's, sent when its parent asked for them (see
    /// [`forward_tracing`](crate::forward_tracing)), with the call it was running, if any.
    Event {
        call: Option<u64>,
        event: ForwardedEvent,
    },
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

/// A single call's encoded arguments as a batch of one: postcard writes a sequence as its
/// length, a varint (1 is the byte 1), followed by its items.
#[cfg(feature = "nats")]
pub(crate) fn batch_of_one(payload: Vec<u8>) -> Vec<u8> {
    let mut batch = Vec::with_capacity(payload.len() + 1);
    batch.push(1);
    batch.extend_from_slice(&payload);
    batch
}

/// The encoded result of the only item of a batch's reply, a
/// [`BatchResults`]: postcard writes its variant (a varint: 0
/// for `AllOk`, 1 for `Each`), the length (a varint), then for `AllOk` the value, and for
/// `Each` the variant of the item's `Result` (0 for `Ok`) and the value or the error.
#[cfg(feature = "nats")]
pub(crate) fn only_item(reply: &[u8]) -> crate::Result<Vec<u8>> {
    use crate::error::{Error, ErrorKind};
    let malformed = |source| Error::serialization("the reply to a call", source);
    let (all_ok, rest) = postcard::take_from_bytes::<u32>(reply).map_err(malformed)?;
    let (len, rest) = postcard::take_from_bytes::<u32>(rest).map_err(malformed)?;
    if len != 1 {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("a call of one item came back with {len} results"),
        ));
    }
    if all_ok == 0 {
        return Ok(rest.to_vec());
    }
    let (variant, rest) = postcard::take_from_bytes::<u32>(rest).map_err(malformed)?;
    match variant {
        0 => Ok(rest.to_vec()),
        _ => Err(super::decode::<RemoteError>(rest, "the error of a call")?.into_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

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

    #[cfg(feature = "nats")]
    #[test]
    fn a_call_travels_as_a_batch_of_one() {
        let args = (7u64, "seven".to_string());
        assert_eq!(
            batch_of_one(encode(&args, "args").unwrap()),
            encode(&vec![args], "batch").unwrap()
        );
    }

    #[cfg(feature = "nats")]
    #[test]
    fn the_only_item_of_a_reply_is_unwrapped() {
        let value = (300u64, "x".to_string());
        let ok = BatchResults::AllOk(vec![value.clone()]);
        assert_eq!(
            only_item(&encode(&ok, "reply").unwrap()).unwrap(),
            encode(&value, "value").unwrap()
        );
        let each_ok = BatchResults::<(u64, String)>::Each(vec![Ok(value.clone())]);
        assert_eq!(
            only_item(&encode(&each_ok, "reply").unwrap()).unwrap(),
            encode(&value, "value").unwrap()
        );
        let failed =
            BatchResults::<u64>::Each(vec![Err(RemoteError::UnknownWorker("gone".into()))]);
        let error = only_item(&encode(&failed, "reply").unwrap()).unwrap_err();
        assert!(error.is_unknown_worker(), "{error}");
        let two = BatchResults::AllOk(vec![1u64, 2]);
        assert!(only_item(&encode(&two, "reply").unwrap()).is_err());
    }
}
