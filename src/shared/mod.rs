//! Queues and synchronisation primitives shared between processes.
//!
//! Python coordinates processes with `multiprocessing.Queue`, `JoinableQueue`, `Lock`,
//! `Event`, `Semaphore`, ...; these are the async Rust equivalents: [`Queue`],
//! [`JoinableQueue`], [`pipe`] and [`pipe_one_way`], [`Event`], [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Condition`] and [`Barrier`].
//!
//! ```no_run
//! use multiproc::{worker, Event, Process, Queue};
//!
//! #[worker]
//! async fn square_all(tasks: Queue<u64>, results: Queue<u64>, ready: Event) {
//!     ready.set().await.expect("the parent is alive");
//!     // `get` fails once the parent closes `tasks` and it is drained.
//!     while let Ok(n) = tasks.get().await {
//!         results.put(n * n).await.expect("the parent is alive");
//!     }
//! }
//!
//! #[multiproc::main]
//! async fn main() -> multiproc::Result<()> {
//!     let (tasks, results, ready) = (Queue::new(), Queue::new(), Event::new());
//!     let p = Process::new(square_all, (tasks.clone(), results.clone(), ready.clone())).start().await?;
//!     ready.wait().await?;
//!     tasks.put_many(1..=3).await?;
//!     tasks.close().await?;
//!     let squares = [results.get().await?, results.get().await?, results.get().await?];
//!     assert_eq!(squares, [1, 4, 9]);
//!     p.join().await?;
//!     Ok(())
//! }
//! ```
//!
//! # How they work
//!
//! Each object lives in the **hub** of the process that created it: a small server that the
//! first object creation starts, listening on a random abstract-namespace socket and serving
//! from a dedicated thread (so objects stay served while that process's own runtime is blocked
//! by a sync worker, or after a `#[tokio::test]` runtime has ended). A handle is the pair
//! (hub socket name, object id): it is `Clone + Serialize + Deserialize`, and a child that
//! receives one as a worker argument reaches the same object.
//!
//! In the creating process, operations take the hub's mutex directly: no socket, no task
//! switch. Any other process opens **one** authenticated connection per hub it talks to
//! (proving the process tree's key, like every connection of this crate) and multiplexes all
//! its requests over it, whatever task or runtime they come from.
//!
//! # What is different from Python
//!
//! - A [`Queue::put`] returns once the hub holds the item: a child may exit right after it
//!   without losing the item, joining a child never waits for a consumer, and an item that
//!   fails to serialize is an error from `put` itself.
//! - A bounded queue applies backpressure at the hub, to producers in every process.
//! - A process killed during a `put` or `get` breaks only its own connection.
//! - A [`Lock`] or [`Semaphore`] held by a process that dies is released by the hub, and the
//!   next acquirer is told through [`LockGuard::owner_died`] (like `EOWNERDEAD`).
//! - Methods that ask the hub are async, including `len`, `is_set` and `try_get`: in a process
//!   other than the creator they are a round trip.
//! - Objects live as long as the process that created them. After it exits, operations fail
//!   with a [`Closed`](crate::ErrorKind::Closed) error instead of hanging.
//! - Every `*_timeout` method returns within its bound plus about 100 ms, even if the
//!   object's process is stopped; what that process grants after the caller gave up (an
//!   item, a lock, a permit) is given back, never kept by nobody.

mod array;
pub(crate) mod barrier;
pub(crate) mod client;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod hub;
pub(crate) mod hub_name;
mod joinable;
pub(crate) mod lock;
mod memory;
mod pipe;
pub(crate) mod queue;
pub(crate) mod semaphore;
mod value;
pub(crate) mod waiters;

pub use array::{RawArray, SharedArray, SharedGuard};
pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use joinable::JoinableQueue;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use memory::SharedMemory;
pub use pipe::{PipeEnd, PipeReceiver, PipeSender, pipe, pipe_one_way};
pub use queue::Queue;
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphorePermit};
pub use value::{AtomicPrimitive, AtomicValue, RawValue, SharedValue};

/// Called by a child once its job is done, before it exits: waits (at most a second) until the
/// hubs it used have applied what it sent, so guards dropped at the end of a worker arrive as
/// releases rather than as the owner's death, and read-ahead items go back to their queue.
pub(crate) fn flush_before_exit() {
    client::flush_connections(std::time::Duration::from_secs(1));
}
