//! Queues and synchronisation primitives shared between processes.
//!
//! Python coordinates processes with `multiprocessing.Queue`, `JoinableQueue`, `Lock`,
//! `Event`, `Semaphore`, ..., and shares data with `Value`, `Array` and `SharedMemory`; these
//! are the async Rust equivalents: [`Queue`], [`JoinableQueue`], [`pipe`] and
//! [`pipe_one_way`], [`Event`], [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Condition`] and [`Barrier`]; [`SharedValue`], [`SharedArray`], [`RawValue`],
//! [`RawArray`], [`AtomicValue`] and [`SharedMemory`].
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
//! **In shared memory.** The state of a [`Lock`], [`RLock`], [`Event`], [`Semaphore`] and
//! [`BoundedSemaphore`] made by `new` lives in a 64-byte cell of shared memory (an anonymous
//! `memfd` arena, see `shm/`) that every process holding a handle maps. Taking a free lock or
//! permit, giving it back with nobody waiting, `is_set`, `set` and `clear` are one atomic
//! operation: no message, no system call, in whichever process. Only waiting needs the
//! creator: a process that finds the object taken spins a few microseconds, then parks at the
//! **hub** of the process that created it (below), after marking the cell so that the next
//! release rings that hub. A lock word names its holder's process (pid and start time, so a
//! reused pid is not mistaken for it); a waiter that has waited a slice (200 ms) looks whether
//! the holder died and, if so, takes the lock or the permits back and tells the next taker.
//! After the creator exits, the objects keep working between the processes that hold them:
//! waiters then look every few milliseconds instead of parking.
//!
//! A [`Condition`] built on such a lock ([`Condition::with_lock`]) keeps its sleepers in
//! shared memory too; only a wait parks at the hub.
//!
//! **Served by a hub.** Queues, pipes, conditions made by [`Condition::new`], barriers, and
//! every object a [`Manager`](crate::Manager) hosts (which must work across machines), live
//! in the hub of the process that created them: a small server that the first object creation starts,
//! listening on a random abstract-namespace socket and serving from a dedicated thread (so
//! objects stay served while that process's own runtime is blocked by a sync worker, or after
//! a `#[tokio::test]` runtime has ended). A handle is the pair (hub socket name, object id),
//! plus its cell for an object in shared memory: it is `Clone + Serialize + Deserialize`, and
//! a child that receives one as a worker argument reaches the same object.
//!
//! In the creating process, operations take the hub's mutex directly: no socket, no task
//! switch. Any other process opens **one** authenticated connection per hub it talks to
//! (proving the process tree's key, like every connection of this crate) and multiplexes all
//! its requests over it, whatever task or runtime they come from.
//!
//! # Data in shared memory
//!
//! [`SharedValue`], [`SharedArray`], [`RawValue`], [`RawArray`], [`AtomicValue`] and
//! [`SharedMemory`] keep a user's plain data in shared memory, as Python's `Value`, `Array`,
//! `RawValue`, `RawArray` and `shared_memory` do: a read or a write is a memory access in
//! whichever process, and a worker reads an array in place, with no copy through a socket.
//! Their locks are [`Lock`]s in shared memory, as above; an [`AtomicValue`] needs none.
//!
//! What still takes a round trip to the creating process's hub, and why: waiting for a lock
//! (or an event, a permit) that is taken, because a tokio task cannot sleep on a futex
//! without a thread of its own per waiter, while a socket wakes it like any other I/O and a
//! dropped future simply stops waiting; releasing or setting what some process waits for
//! (one message, sent without waiting for an answer); and every object served by a hub.
//!
//! The memory is a `memfd` (an anonymous file with no name in `/dev/shm`), mode 0600: the
//! kernel frees it when the last process that holds it lets go, even if the whole tree is
//! `SIGKILL`ed, so there is nothing to `unlink` and nothing to leak. A handle names it by
//! processes that hold it (pid and descriptor) and the random token in its name; a receiver
//! opens it through `/proc/<pid>/fd/<n>`, which the kernel allows to the same user only, and
//! checks the token, the owner and the length. So a handle of anything in shared memory
//! (these types, and a lock, event or semaphore made by `new`) opens only on the same machine
//! while one of the processes it names still holds the memory. Anywhere else (another
//! machine, through a TCP manager or the cluster, or once they have all exited) it fails to
//! deserialize with [`NotFound`](crate::ErrorKind::NotFound), saying why; there is no
//! fallback through a socket (memory that cannot be mapped has nothing to offer but copies;
//! across machines, use the manager's own `lock()`, `event()`, `value()`, ...).
//!
//! # What is different from Python
//!
//! - A [`Queue::put`] returns once the item is held (in a ring of shared memory the queue's
//!   hub reads, for an unbounded queue of another process; at the hub otherwise): a child may
//!   exit, or be killed, right after it without losing the item, joining a child never waits
//!   for a consumer, and an item that fails to serialize is an error from `put` itself.
//! - A bounded queue applies backpressure at the hub, to producers in every process.
//! - A process killed during a `put` or `get` breaks only its own connection.
//! - A [`Lock`] or [`Semaphore`] held by a process that dies is released on its behalf, and
//!   the next acquirer is told through [`LockGuard::owner_died`] (like `EOWNERDEAD`). Python's
//!   stay locked forever.
//! - Methods are async even where they are one atomic operation (`is_set`, `is_locked`,
//!   `value`), so that a manager's objects, served by a hub, have the same API. Those that
//!   ask a hub (`len`, `try_get`, ...) are a round trip in a process other than the creator.
//! - Objects served by a hub live as long as the process that created them. After it exits,
//!   operations fail with a [`Closed`](crate::ErrorKind::Closed) error instead of hanging.
//!   Objects in shared memory go on working between the processes that remain.
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
pub(crate) mod put_ring;
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
