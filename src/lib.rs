//! Python's `multiprocessing` for async Rust.
//!
//! Mark a function with [`#[worker]`](worker) and run it in child processes, re-executed
//! copies of your own binary, so CPU-bound work leaves the async runtime without blocking it:
//!
//! ```no_run
//! use multiproc::{worker, Process};
//!
//! #[worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[multiproc::main]
//! async fn main() -> multiproc::Result<()> {
//!     let p = Process::new(square, (7,)).start().await?;
//!     assert_eq!(p.join().await?, 49);
//!     Ok(())
//! }
//! ```
//!
//! Every call that waits returns a future, every failure is a typed [`Error`], and no failure
//! of a child (a panic, a `SIGKILL`, an `exit`, a hang at start-up) leaves the caller waiting
//! forever.
//!
//! A synchronous program, or a plain `fn` worker (which runs with no runtime), uses the
//! [`blocking`] module instead: the same types under the same names, whose waiting methods
//! block the calling thread, as `reqwest::blocking` does for reqwest:
//!
//! ```no_run
//! use multiproc::blocking::{Pool, Process, Queue};
//! use multiproc::worker;
//!
//! #[worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[worker]
//! fn produce(q: Queue<String>) {
//!     q.put("hello from a child".into()).unwrap();
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     multiproc::init();
//!     let q = Queue::new();
//!     Process::new(produce, (q.clone(),)).start()?.join()?;
//!     println!("{}", q.get()?);
//!     let pool = Pool::builder().processes(2).build()?;
//!     assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
//!     Ok(())
//! }
//! ```
//!
//! # Python's names, here
//!
//! | Python `multiprocessing` | multiproc |
//! |---|---|
//! | `Process(target=f, args=(1,)).start()` | [`Process::new(f, (1,)).start().await`](Process::new) |
//! | subclass `Process`, override `run` | [`Run`] + `#[multiproc::process]`, [`Process::from_run`] |
//! | `Pool(4).map(f, xs)` | [`Pool::builder().processes(4).build().await?.map(f, xs).await`](Pool) |
//! | `pool.apply_async(f, args)`, `pool.map_async(f, xs)`, `pool.starmap_async(f, xs)` | [`Pool::apply_async`], [`Pool::map_async`], [`Pool::starmap_async`]: handles that borrow nothing ([`AsyncResult`], [`MapResult`]) |
//! | `AsyncResult.ready()`, `.successful()`, `.wait(timeout)`, `.get(timeout)` | [`ready`](AsyncResult::ready), [`successful`](AsyncResult::successful) (`None` where Python raises `ValueError`), [`wait`](AsyncResult::wait) / [`wait_timeout`](AsyncResult::wait_timeout), [`get_timeout`](AsyncResult::get_timeout) |
//! | `Queue`, `JoinableQueue`, `Pipe` | [`Queue`], [`JoinableQueue`], [`pipe`] |
//! | `Pipe(duplex=False)`, `conn.poll(timeout)` | [`pipe_one_way`] (a [`PipeReceiver`] with no `send`, a [`PipeSender`] with no `recv`), [`end.poll(timeout)`](PipeEnd::poll); ends are also a `Stream` and a `Sink` |
//! | `q.qsize()`, `q.empty()`, `q.full()`, `maxsize` | [`q.len()`](Queue::len), [`q.is_empty()`](Queue::is_empty), [`q.full()`](Queue::full) (`false` when unbounded, as in Python), [`q.capacity()`](Queue::capacity) |
//! | `Event`, `Lock`, `RLock`, `Semaphore`, `Condition`, `Barrier` | [`Event`], [`Lock`], [`RLock`], [`Semaphore`], [`Condition`], [`Barrier`] |
//! | `Condition(lock)` | [`Condition::with_lock(&lock)`](Condition::with_lock), [`Condition::with_rlock`] |
//! | `Barrier(n, action=f)`, `barrier.broken` | [`Barrier::with_action(n, f)`](Barrier::with_action) (`f` a `#[worker]` of no arguments, run by the last party to arrive), [`barrier.is_broken()`](Barrier::is_broken) |
//! | `Value('Q', 0)`, `v.get_lock()`, `with v.get_lock(): v.value += 1`, `v.value` | [`SharedValue::new(0u64)?`](SharedValue::new), [`v.get_lock()`](SharedValue::get_lock), [`*v.lock().await? += 1`](SharedValue::lock), [`v.get().await?`](SharedValue::get) / [`v.set(x)`](SharedValue::set): any [`bytemuck::Pod`] type |
//! | `Array('d', n)`, `RawValue(...)`, `RawArray(...)` | [`SharedArray::<f64>::new(n)?`](SharedArray::new) ([`lock`](SharedArray::lock) gives a `&mut [f64]`), [`RawValue`], [`RawArray`] (copies without a lock, `unsafe` slices) |
//! | (a counter in a `Value`, under its lock) | [`AtomicValue::new(0u64)?`](AtomicValue::new): an `AtomicU64` in shared memory, `fetch_add` without a lock |
//! | `shared_memory.SharedMemory(create=True, size=n)`, `SharedMemory(name=...)`, `buf` | [`SharedMemory::new(n)?`](SharedMemory::new), [`SharedMemory::open(&name)?`](SharedMemory::open), [`shm.lock().await?`](SharedMemory::lock) (`&mut [u8]` under its lock), [`read_at`](SharedMemory::read_at) / [`write_at`](SharedMemory::write_at), [`atomics`](SharedMemory::atomics), `unsafe` [`as_mut_slice`](SharedMemory::as_mut_slice) |
//! | `shm.close()`, `shm.unlink()` | drop the handle; nothing to unlink: the kernel frees the memory with its last user (see [`SharedMemory`]) |
//! | `BaseManager(address, authkey).get_server()`, `.connect()` | [`Manager::serve`], [`Manager::connect`]; with TLS (Python has none): [`Manager::serve_tls`], [`Manager::connect_tls`] with a [`TlsServerConfig`] and a [`TlsClientConfig`] read from PEM |
//! | `multiprocessing.connection`: `Listener`, `Client`, `wait` | [`connection::Listener`], [`connection::client`], [`connection::wait`]: typed messages between processes that share only an address (local or TCP) and a key |
//! | `current_process()`, `active_children()` | [`current_process`], [`active_children`] |
//! | set `os.environ` or `os.chdir` before `start()` | `.env(k, v)`, `.env_remove(k)`, `.env_clear()`, `.current_dir(d)` on [`ProcessBuilder`], [`PoolBuilder`] (every worker) and [`ManagerBuilder`] |
//! | redirect `sys.stdout` / `sys.stderr` in the child | `.stdout(s)`, `.stderr(s)` on the same builders, with [`Stdio`]: inherit, null, a file, or [`Stdio::Lines`], a stream of [`OutputLine`]s tagged with the child's name and pid (see [`output`]) |
//! | `log_to_stderr()` | [`log_to_stderr`] |
//! | a `QueueHandler` in each worker and a `QueueListener` in the parent | [`forward_tracing`]: children's `tracing` events reach the parent's subscriber |
//! | a manager's proxies `incref` / `decref` their object | [`DictProxy`], [`ListProxy`], [`Namespace`], [`ValueProxy`] are references, counted per connection: an object is freed with its last proxy in any process, or when the processes holding it die; a proxy serialized to another process lends its reference until received (see [`manager`](manager#how-long-objects-live)) |
//! | (nothing public: `manager._debug_info()`, `_number_of_objects()`) | [`Manager::stats`] gives a [`ManagerStats`]: objects alive by kind, references, clients |
//! | (nothing public: `pool._cache`, `pool._pool`) | [`Pool::stats`] gives a [`PoolStats`]: tasks queued, running, done, failed; restarts; what each worker runs |
//! | the same, in a synchronous program: `p.join()`, `q.get()`, `pool.map(f, xs)` | [`blocking`]: `p.join()?`, `q.get()?`, `pool.map(f, xs)?` (with [a table of its own](blocking#pythons-names-here)) |
//! | exceptions | one [`Error`] with predicates: [`is_worker_died`](Error::is_worker_died), [`is_panic`](Error::is_panic), ... |
//!
//! # How it works
//!
//! - **Registration.** `#[worker]` leaves your function untouched and registers it, through
//!   [`inventory`](https://docs.rs/inventory), under its path (`mycrate::jobs::square`).
//!   Parent and child are the same binary, so the same name finds the same code; nothing but
//!   names and serde-encoded values ever crosses between processes.
//! - **Start-up.** A child is `/proc/self/exe` started again with a command line built from
//!   scratch. [`init`] (called first by [`#[multiproc::main]`](main)) recognizes it from an
//!   environment variable and diverts it to serving calls, so the child never runs your `main`.
//!   A [`Process`] child runs its one call on its main thread: a plain `fn` with no runtime at
//!   all, an `async fn` on a single-threaded tokio runtime. A pool worker serves its calls on a
//!   single-threaded runtime.
//! - **Transport.** A child talks to its parent over one end of a Unix socket pair that it
//!   inherits as its standard input (then moved aside: its standard input is `/dev/null`, as
//!   in Python); a socket pair has no name, so nobody else can reach it. Queues, locks and
//!   managers are served on local sockets with random names (the abstract namespace on Linux).
//!   Messages are length-prefixed frames with a size limit, encoded with postcard, which is
//!   not self-describing: serde attributes such as `untagged`, `flatten` and
//!   `skip_serializing_if` fail at run time (see [`Value`] for what each one does).
//! - **Security.** The main process draws a random 32-byte key and hands it to each child as
//!   the first bytes on that socket, never on a command line or in the environment. Every
//!   connection to a named socket, a TCP manager or a [`connection::Listener`] (with the key
//!   its user gave) opens with a mutual HMAC-SHA256 challenge (Python 3.12's), so the key
//!   never crosses a socket and a client sends nothing to a listener that cannot prove it;
//!   on a named socket the peer's uid is checked too. A manager served with
//!   [`Manager::serve_tls`] runs that challenge, and everything after it, inside TLS. Each
//!   handshake runs in its own task, so a peer that connects and says nothing delays nobody.
//! - **Faults.** A parent task per child reads its replies and reaps it. A pool worker writes
//!   the id of each call it starts into a page it shares with its parent, so when it dies only
//!   the call it was running fails (with its pid and exit status); the others run on other
//!   workers. A call past its deadline is stopped by killing its worker. A child exits when
//!   its parent dies, even if the parent was `SIGKILL`ed: at once if the parent's main thread
//!   started it, within about 100 ms otherwise.
//! - **Layout.** Each concept has one module, and imports only go down: messages in
//!   `protocol/`, sockets in `transport/`, a child's life in `bootstrap`, `spawn`, `reaper`
//!   and `supervisor`, then shared objects, `Process` and `Pool`, then `Manager` and the
//!   cluster, and last [`blocking`], which wraps them. The repository's `ARCHITECTURE.md`
//!   lists the layers and follows one `pool.map` call through them, file by file.
//!
//! # Testing your own crate
//!
//! Integration tests spawn real children under both `cargo test` and `cargo nextest run`.
//! Add one line to each test file that starts processes:
//!
//! ```ignore
//! multiproc::test_support!();
//!
//! #[multiproc::worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[tokio::test]
//! async fn squares_in_a_child() {
//!     let p = multiproc::Process::new(square, (3,)).start().await.unwrap();
//!     assert_eq!(p.join().await.unwrap(), 9);
//! }
//! ```
//!
//! The macro adds a test named `__multiproc_child`. In the test binary it passes at once; in
//! a child, the binary is started as `<test binary> __multiproc_child --exact`, so libtest runs
//! only that helper, which calls [`init`] and serves the child's calls. No test body runs in a
//! child. The child's stdout is discarded unless the runner shows output (`--nocapture`, as
//! nextest always passes) or the builder's `stdout` says otherwise; its stderr is inherited.
//!
//! # Platform support
//!
//! Linux is the tier-one platform: abstract-namespace sockets and `/proc/self/exe`. Other
//! Unix systems are expected to work, with socket files under the temporary directory, but
//! are not tested. Windows is not supported.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[allow(unused_extern_crates)]
extern crate self as multiproc;

pub mod blocking;
mod bootstrap;
mod buffers;
mod child;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod cluster;
pub mod connection;
mod current;
mod error;
// Entry points for the fuzz targets under `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
mod logging;
pub mod manager;
pub mod output;
mod panic;
pub mod pool;
pub mod process;
mod progress;
mod protocol;
mod reaper;
mod registry;
pub mod shared;
mod shm;
mod spawn;
mod supervisor;
mod test_harness;
mod transport;
mod worker;

pub use async_trait::async_trait;
/// The plain-data traits a [`SharedValue`] or [`SharedArray`] needs of its type (`Pod`), for
/// deriving them on your own `repr(C)` types without a dependency of your own:
/// `#[derive(Clone, Copy, multiproc::bytemuck::Pod, multiproc::bytemuck::Zeroable)]` with
/// `#[bytemuck(crate = "multiproc::bytemuck")]`.
pub use bytemuck;
pub use child::init;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use cluster::{Node, NodeBuilder, RemotePoolBuilder};
pub use current::{ProcessInfo, cpu_count, current_process, parent_process};
pub use error::{Error, ErrorKind, ExitStatus, PanicInfo, Result};
pub use logging::forward_tracing;
#[cfg(feature = "log-to-stderr")]
pub use logging::log_to_stderr;
pub use manager::{
    DictProxy, ListProxy, Manager, ManagerBuilder, ManagerStats, Namespace, SHUTDOWN_GRACE,
    TlsClientConfig, TlsServerConfig, ValueProxy,
};
pub use output::{OutputLine, OutputLines, StdStream, Stdio};
pub use pool::{Apply, AsyncResult, Imap, Map, MapResult, Pool, PoolBuilder};
pub use pool::{PoolStats, RunningCall, WorkerStats};
pub use process::{Process, ProcessBuilder};
pub use reaper::active_children;
pub use shared::{
    AtomicPrimitive, AtomicValue, Barrier, BoundedSemaphore, Condition, ConditionGuard, Event,
    JoinableQueue, Lock, LockGuard, PipeEnd, PipeReceiver, PipeSender, Queue, RLock, RLockGuard,
    RawArray, RawValue, Semaphore, SemaphorePermit, SharedArray, SharedGuard, SharedMemory,
    SharedValue, pipe, pipe_one_way,
};
pub use spawn::DEFAULT_START_TIMEOUT;
pub use transport::DEFAULT_MAX_FRAME_LEN;
pub use worker::{Run, Value, Worker};

/// Registers a function so that child processes can run it.
///
/// `#[worker]` leaves the function as it is (callable locally as ever) and registers it under
/// its path, `std::any::type_name` of the function item (`mycrate::jobs::square`). Parent and
/// child are the same binary, so the name identifies the same code in both; no function
/// pointer or address ever crosses a process boundary. A function passed to a pool or a
/// [`Process`] without `#[worker]`, or a closure (whose name ends in
/// `{{closure}}`), fails at the call site with an [`is_unknown_worker`](crate::Error::is_unknown_worker)
/// error.
///
/// Every function whose arguments and result are serde types implements [`Worker`], so the
/// compiler checks the arguments you pass against the function's signature:
///
/// ```
/// use multiproc::worker;
///
/// #[worker]
/// fn add(a: u64, b: u64) -> u64 { a + b }     // Args = (u64, u64), Output = u64
///
/// #[worker]
/// async fn shout(s: String) -> String { s.to_uppercase() }
///
/// assert_eq!(add(1, 2), 3);                    // still an ordinary function
/// ```
///
/// A worker returning `Result<T, E>` hands its `Err` to the caller as a value, inside the
/// `Ok` of the call: `Result<Result<T, E>, multiproc::Error>`.
///
/// In the child, an `async fn` runs on a single-threaded tokio runtime, so it can await,
/// sleep and spawn tasks. A plain `fn` is called as it is: a [`Process`] runs it on the
/// child's main thread with no tokio runtime at all (which keeps starting a process cheap),
/// so a worker that needs tokio should be an `async fn`. A plain `fn` uses queues, locks,
/// events and manager proxies through their [`blocking`] twins:
///
/// ```
/// #[multiproc::worker]
/// fn report(results: multiproc::blocking::Queue<String>) {
///     results.put("done".into()).unwrap();   // blocks; no runtime needed
/// }
/// ```
///
/// The analogue of subclassing Python's `Process` is a type of yours that implements [`Run`],
/// registered with `#[multiproc::process]`.
pub use multiproc_macros::worker;

/// Registers an `impl Run for T` so that [`Process::from_run`] can start it.
pub use multiproc_macros::process;

/// Turns `async fn main` into a `main` that calls [`init`] first, then runs the body on a
/// multi-threaded tokio runtime.
///
/// ```no_run
/// #[multiproc::main]
/// async fn main() -> multiproc::Result<()> {
///     Ok(())
/// }
/// ```
///
/// On a plain `fn main` (a program using [`blocking`]), it only calls [`init`] first:
///
/// ```no_run
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let q = multiproc::blocking::Queue::<u32>::new();
///     q.put(1)?;
///     Ok(())
/// }
/// ```
pub use multiproc_macros::main;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Used by the macros; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{WorkerEntry, dispatch_run, dispatch_worker, is_plain};
    pub use crate::test_harness::TestHarness;
    pub use inventory;

    /// Runs the body of `#[multiproc::main]`.
    pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("building the tokio runtime")
            .block_on(future)
    }
}
