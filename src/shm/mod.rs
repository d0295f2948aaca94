//! Shared memory: segments every process of the tree can map, and the small cells in them
//! that hold the state of locks and events.
//!
//! This is the ground the shared objects of [`shared`](crate::shared) stand on when they
//! can avoid a round trip to the process that created them:
//!
//! - [`segment`]: `memfd` segments, freed by the kernel with their last user, and handles that
//!   map them in another process of the same user through `/proc/<pid>/fd/<n>`;
//! - [`arena`]: 64-byte cells carved out of shared arenas, one cache line each;
//! - [`owner`]: a process named in a lock word (pid and start time), and whether it died;
//! - [`region`]: runs of bytes that hold a user's plain data (values, arrays, the bytes of a
//!   `SharedMemory`), carved from an arena or in a segment of their own, and copies in and out
//!   of them made of atomic words;
//! - [`ring`]: a ring of records from one producer process to a queue's hub, so a `put`
//!   completes in shared memory;
//! - [`lock_cell`], [`event_cell`] and [`semaphore_cell`]: the states of a lock, an event and
//!   a semaphore, changed with one atomic operation when nobody waits.
//!
//! Nothing here waits: a process that must wait for a cell to change parks at the hub of the
//! object's creator (`shared/waiters.rs`), and whoever changes the cell rings that hub only
//! when the cell says someone is parked.

pub(crate) mod arena;
pub(crate) mod condition_cell;
pub(crate) mod event_cell;
pub(crate) mod lock_cell;
pub(crate) mod owner;
pub(crate) mod region;
pub(crate) mod ring;
pub(crate) mod segment;
pub(crate) mod semaphore_cell;
