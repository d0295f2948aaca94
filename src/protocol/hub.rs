//! The hub's messages: one [`HubRequest`] header per request frame, one [`HubReply`] per
//! answer. Items travel in the frame's payload, already encoded; headers stay small.
//!
//! Every object type owns one variant of [`Op`]; adding a type adds a variant here and a file
//! that implements [`Object`](crate::shared::hub::Object).

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

pub(crate) use super::ObjectId;

/// A request from a client to a hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum HubRequest {
    /// Apply `op` to `object`; answered by a [`HubReply`] with the same `id`.
    Call {
        id: u64,
        object: ObjectId,
        task: u64,
        op: Op,
    },
    /// The caller gave up on request `id` (a timeout or a dropped future). A request still
    /// waiting is answered with [`Failure::Cancelled`]; one already answered is left alone.
    Cancel { id: u64, object: ObjectId },
    /// Answered with [`Answer::Done`] once everything sent before it has been applied: lets a
    /// process that is about to exit make sure its releases arrived.
    Sync { id: u64 },
}

/// The answer to one [`HubRequest::Call`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HubReply {
    pub(crate) id: u64,
    pub(crate) outcome: Result<Answer, Failure>,
}

/// What a request did. Items, when there are any, are in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// Done; nothing to report.
    Done,
    /// A yes/no answer (`is_set`, a wait that may time out).
    Flag(bool),
    /// A number (a length, a barrier index, a semaphore value).
    Count(u64),
    /// One item, in the payload.
    Item,
    /// Several items, in the payload as a postcard `Vec` of byte strings.
    Items,
    /// A lock or semaphore was granted; `owner_died` when the previous holder's process died
    /// while holding it and the hub released it on its behalf.
    Acquired { owner_died: bool },
    /// A parked waiter of a cell in shared memory may try again: the cell changed, or a
    /// wake was passed to it.
    Woken,
    /// A queue's bound (`None`: unbounded) and its length at the same moment.
    Capacity { capacity: Option<u64>, len: u64 },
    /// The caller is the last party at a barrier: it runs the barrier's action, named in the
    /// payload, before anyone is released.
    RunAction,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Empty,
    Full,
    Closed,
    Cancelled,
    BrokenBarrier,
    InvalidState(String),
    NoSuchObject,
    Protocol(String),
    /// The object was retired from its hub (its manager shut down); says why.
    Gone(String),
}

impl Failure {
    /// The error a caller sees; `what` names the object (`"queue 3"`).
    pub(crate) fn into_error(self, what: &str) -> Error {
        match self {
            Failure::Empty => Error::new(ErrorKind::Empty, format!("{what} is empty")),
            Failure::Full => Error::new(ErrorKind::Full, format!("{what} is full")),
            Failure::Closed => Error::closed(format!("{what} is closed")),
            Failure::Cancelled => Error::timeout(format!("{what}: the wait timed out")),
            Failure::BrokenBarrier => Error::new(
                ErrorKind::BrokenBarrier,
                format!(
                    "{what} is broken (a wait timed out or it was aborted); reset it to reuse it"
                ),
            ),
            Failure::InvalidState(message) => Error::invalid_state(format!("{what}: {message}")),
            Failure::NoSuchObject => Error::closed(format!(
                "{what} no longer exists in the process that serves it"
            )),
            Failure::Protocol(message) => {
                Error::new(ErrorKind::Protocol, format!("{what}: {message}"))
            }
            Failure::Gone(reason) => Error::closed(format!("{what}: {reason}")),
        }
    }
}

/// An operation on one object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Op {
    Queue(QueueOp),
    Event(EventOp),
    Lock(LockOp),
    Semaphore(SemaphoreOp),
    Condition(ConditionOp),
    Barrier(BarrierOp),
    Pipe(PipeOp),
    Waiters(WaitersOp),
    /// An operation on one of a [`Manager`](crate::Manager)'s dicts, lists, namespaces or
    /// values, all held by one store object (see `crate::manager::store`).
    Manager(crate::protocol::store::StoreOp),
    /// [Retires](crate::shared::hub::Hub::retire) the object, whatever its type, and those it owns,
    /// with this reason: how a manager's owner ends the store that lives in another process.
    Retire(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum QueueOp {
    /// Put the items of the payload (a `Vec` of byte strings), waiting for room.
    Put {
        wait: bool,
    },
    /// Take one item, or with `max` up to `max` items (at least one), waiting for one.
    Get {
        wait: bool,
        max: Option<u32>,
    },
    /// Give back items a dropped `get` had already taken, to the front of the queue.
    Unget,
    /// The payload's one item is the handle of a ring (`shm/ring.rs`) through which this
    /// connection's process will put items; the hub maps it and reads it before every
    /// request. Refused (and the process keeps putting by request) where it cannot be mapped.
    AttachRing,
    /// A ring of this queue holds records and a getter waits: read them now.
    RingRung,
    Len,
    /// The queue's bound and length, answered with [`Answer::Capacity`].
    Capacity,
    Close,
    TaskDone,
    Join,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum EventOp {
    Set,
    Clear,
    IsSet,
    Wait,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LockOp {
    Acquire { wait: bool },
    Release,
    IsLocked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum SemaphoreOp {
    Acquire { wait: bool },
    Release,
    Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ConditionOp {
    Acquire {
        wait: bool,
    },
    Release,
    /// Release the lock, wait for a notification, take the lock back.
    Wait,
    Notify {
        n: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum BarrierOp {
    /// Wait for the other parties. The last to arrive at a barrier with an action is answered
    /// [`Answer::RunAction`] instead, with the action's registered name in the payload, and
    /// the others stay parked until it sends [`ActionDone`](BarrierOp::ActionDone).
    Wait,
    Abort,
    Reset,
    Waiting,
    IsBroken,
    /// The action asked for by [`Answer::RunAction`] ran (`ok`) or failed; answered with the
    /// sender's index once the others are released.
    ActionDone {
        ok: bool,
    },
}

/// Which end of a pipe a request is about: 0 or 1.
pub(crate) type PipeSide = u8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum PipeOp {
    /// Send the payload's items from `end` to the other end.
    Send { end: PipeSide },
    /// Receive one item sent to `end`, waiting for one.
    Recv { end: PipeSide },
    /// Whether `end` has an item to receive, or end of file (a `recv` would not wait);
    /// with `wait`, answered once it has. Answered with [`Answer::Flag`].
    Poll { end: PipeSide, wait: bool },
    /// Give back items a dropped `recv` had taken.
    Unrecv { end: PipeSide },
    /// `end` will send and receive no more: the other end sees end of file once drained.
    Close { end: PipeSide },
}

/// Waiting for a cell in shared memory (a lock word, an event flag) to change, at the hub of
/// the process that created it. See `shared/waiters.rs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WaitersOp {
    /// Park until woken, unless the cell's word is no longer `expect`.
    Park { expect: u64 },
    /// Wake one parked waiter, or all of them.
    Wake { all: bool },
}

/// The request that undoes what a request's answer granted, for an answer nobody is left to
/// receive: taken items go back to the queue, a granted lock or permit is released.
pub(crate) fn undo_of(op: &Op) -> Option<Op> {
    match op {
        Op::Queue(QueueOp::Get { .. }) => Some(Op::Queue(QueueOp::Unget)),
        Op::Lock(LockOp::Acquire { .. }) => Some(Op::Lock(LockOp::Release)),
        Op::Semaphore(SemaphoreOp::Acquire { .. }) => Some(Op::Semaphore(SemaphoreOp::Release)),
        // A wait's guard gives up the lock while it waits, so a notified waiter's grant that
        // nobody receives is released here, not by the guard.
        Op::Condition(ConditionOp::Acquire { .. } | ConditionOp::Wait) => {
            Some(Op::Condition(ConditionOp::Release))
        }
        Op::Pipe(PipeOp::Recv { end }) => Some(Op::Pipe(PipeOp::Unrecv { end: *end })),
        // A wake that reached a waiter who stopped waiting goes on to the next one.
        Op::Waiters(WaitersOp::Park { .. }) => Some(Op::Waiters(WaitersOp::Wake { all: false })),
        // A barrier's action that nobody is left to run breaks the barrier.
        Op::Barrier(BarrierOp::Wait) => Some(Op::Barrier(BarrierOp::ActionDone { ok: false })),
        _ => None,
    }
}

/// Whether an answer granted something [`undo_of`] must give back.
pub(crate) fn grants(outcome: &Result<Answer, Failure>) -> bool {
    matches!(
        outcome,
        Ok(Answer::Items | Answer::Acquired { .. } | Answer::Woken | Answer::RunAction)
    )
}
