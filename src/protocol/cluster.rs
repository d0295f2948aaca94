//! The cluster's messages (feature `nats`): what a node publishes about itself and in answer
//! to a task. A task itself travels as a batch of one call ([`call`](super::call)), with its
//! id, reply subject and worker in NATS headers.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// What a node announces in its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeInfo {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) slots: usize,
    pub(crate) fingerprint: String,
    pub(crate) workers: Vec<String>,
    /// The labels it offers to tasks' needs.
    pub(crate) labels: Vec<String>,
    /// The resources it offers, with their total amounts.
    pub(crate) resources: Vec<(String, u64)>,
    /// Its work so far.
    pub(crate) load: NodeLoad,
    /// Milliseconds since the Unix epoch when the heartbeat was written.
    pub(crate) at_ms: u64,
}

/// What a node's heartbeat says of its work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodeLoad {
    pub(crate) in_flight: usize,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) retries: u64,
    pub(crate) give_ups: u64,
    pub(crate) restarts: u64,
    /// Milliseconds of tasks run, in all.
    pub(crate) task_ms: u64,
}

/// The answer to a task, as a node publishes it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The encoded reply of the batch call: one `Result<Output, RemoteError>` per item.
    Done(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Every delivery crashed; the task was removed after `attempts` deliveries.
    GaveUp { attempts: u64, last: String },
    /// The task cannot run (unknown worker, undecodable, result too large).
    Failed { kind: FailKind, message: String },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum FailKind {
    UnknownWorker,
    Serialization,
    TooLarge,
    Other,
}

impl FailKind {
    pub(crate) fn of(error: &Error) -> FailKind {
        match error.kind() {
            ErrorKind::UnknownWorker => FailKind::UnknownWorker,
            ErrorKind::Serialization => FailKind::Serialization,
            ErrorKind::FrameTooLarge => FailKind::TooLarge,
            _ => FailKind::Other,
        }
    }

    pub(crate) fn kind(self) -> ErrorKind {
        match self {
            FailKind::UnknownWorker => ErrorKind::UnknownWorker,
            FailKind::Serialization => ErrorKind::Serialization,
            FailKind::TooLarge => ErrorKind::FrameTooLarge,
            FailKind::Other => ErrorKind::Protocol,
        }
    }
}

/// The arguments of the cluster's internal worker `with_task`: a task, and the batch call it
/// is. Borrowed from the frame when decoded, so the batch is not copied again.
#[derive(Serialize, Deserialize)]
pub(crate) struct WithTask<'a> {
    pub(crate) task: &'a str,
    pub(crate) worker: &'a str,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: &'a [u8],
}

impl<'a> WithTask<'a> {
    /// Decodes `payload` without copying the batch it carries.
    pub(crate) fn decode(payload: &'a [u8]) -> crate::Result<Self> {
        postcard::from_bytes(payload).map_err(|source| Error::serialization("a task", source))
    }
}
