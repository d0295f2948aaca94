//! The blocking API: [`Process`], [`Pool`], queues, pipes, locks, events and manager proxies
//! whose waiting operations block the calling thread instead of returning futures.
//!
//! The rest of the crate is async. A plain `fn` worker runs with no tokio runtime, though, and
//! a script ported from Python has a synchronous `main`; this module serves both, as
//! [`reqwest::blocking`](https://docs.rs/reqwest/latest/reqwest/blocking/) serves programs
//! that have no runtime. Every type has the name of its async twin and the same methods, each
//! returning its result instead of a future:
//!
//! ```no_run
//! use multiproc::blocking::{Pool, Process, Queue};
//! use multiproc::worker;
//!
//! #[worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[worker]
//! fn produce(q: Queue<String>) {                  // a plain fn, no runtime: it just blocks
//!     q.put("hello from a child".into()).unwrap();
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     multiproc::init();                           // first, as in every multiproc program
//!
//!     let p = Process::new(square, (7,)).start()?;
//!     assert_eq!(p.join()?, 49);
//!
//!     let q = Queue::new();
//!     Process::new(produce, (q.clone(),)).start()?.join()?;
//!     println!("{}", q.get()?);
//!
//!     let pool = Pool::builder().processes(4).build()?;
//!     let squares = pool.map(square, 0..100u64)?;
//!     assert_eq!(squares[9], 81);
//!     Ok(())
//! }
//! ```
//!
//! # Python's names, here
//!
//! | Python `multiprocessing` | `multiproc::blocking` |
//! |---|---|
//! | `Process(target=f, args=(1,)).start()`, `p.join()`, `p.join(timeout)` | [`Process::new(f, (1,)).start()`](Process::new), [`join`](Process::join), [`join_timeout`](Process::join_timeout) |
//! | `Pool(4)`, `pool.map(f, xs)`, `pool.apply(f, args)`, `pool.apply_async(...).get()` | [`Pool::builder().processes(4).build()`](Pool::builder), [`map`](Pool::map), [`apply`](Pool::apply), [`apply_async`](Pool::apply_async)`(...).`[`get()`](AsyncResult::get) |
//! | `pool.map(f, xs, chunksize=1)` | [`pool.map_with(f, xs, \|map\| map.chunksize(1))`](Pool::map_with) |
//! | `for r in pool.imap(f, xs)` | [`for r in pool.imap(f, xs)`](Pool::imap) (an [`Iterator`]) |
//! | `Queue()`, `q.put(x)`, `q.get()`, `q.get(timeout=1)` | [`Queue::new()`](Queue::new), [`put`](Queue::put), [`get`](Queue::get), [`get_timeout`](Queue::get_timeout) |
//! | `JoinableQueue`, `Pipe()` | [`JoinableQueue`], [`pipe()`](pipe) |
//! | `with lock:` | `let _guard = lock.`[`acquire()`](Lock::acquire)`?;` |
//! | `Event`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Barrier` | [`Event`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Barrier`] |
//! | `Manager()`, `manager.dict()` | [`Manager::start()`](Manager::start), [`dict`](Manager::dict) |
//!
//! # Where a blocking form may be called
//!
//! Anywhere no tokio runtime runs on the calling thread: a synchronous `main` (after
//! [`multiproc::init()`](crate::init)), a thread of your own, and a plain `fn` worker, whether a
//! [`Process`] or a [`Pool`] runs it (a pool worker calls its functions from its serving
//! runtime, but a plain `fn` cannot await, so it may block). Not inside async code:
//!
//! # Panics
//!
//! Every blocking form panics when called from an async context, that is, when
//! [`tokio::runtime::Handle::try_current`] succeeds on the calling thread (inside an
//! `async fn` worker, a `#[tokio::main]` body, a tokio task, or `spawn_blocking`), unless a
//! plain `fn` worker is running there. Blocking such a thread would stall every task of its
//! runtime, and deadlock when one of those tasks is what the call waits for (the task that
//! would put the item a blocking `get` waits for); a panic at the call site says so instead.
//! From async code use the async form, which every type here hands out with `as_async()` or
//! `From`: `queue.as_async().get().await`. Inside `spawn_blocking`, which has a runtime's
//! context but may block, call `tokio::runtime::Handle::current().block_on(queue.as_async().get())`.
//!
//! # Why wrapper types
//!
//! Each type here wraps its async twin (`blocking::Queue<T>` holds a [`crate::Queue<T>`]),
//! as `reqwest::blocking::Client` wraps the async client, rather than adding `_blocking`
//! methods to the async types through extension traits:
//!
//! - The names stay those of Python and of the async API: `q.get()`, not `q.get_blocking()`,
//!   and `use multiproc::blocking::Queue` is the whole port.
//! - A type says which API its user has: code holding a `blocking::Queue<T>` calls
//!   `q.get()` and has its item, code holding a `Queue<T>` awaits. Extension traits would
//!   put both sets on one type, `get` beside `get_blocking`, for every caller to choose
//!   from at every call.
//! - Handles convert both ways at no cost (`From` in each direction, and `as_async()` to
//!   borrow), and serialize exactly as their async twins do: a sync worker takes a
//!   `blocking::Queue<T>` argument, an async worker a `Queue<T>`, and both reach the same
//!   queue.
//!
//! Guards that have nothing to wait for ([`LockGuard`], [`RLockGuard`], [`SemaphorePermit`])
//! are the async API's own: dropping one releases the lock or permit, without a runtime.
//! [`ConditionGuard`], which waits, has a blocking twin.
//!
//! # How it runs
//!
//! A blocking form polls the async operation on the calling thread and parks the thread
//! between polls. The sockets and timers it uses are driven by the thread that already serves
//! this process's shared objects (see [`shared`](crate::shared)), and the tasks it starts (a
//! child's supervisor, a pool's scheduler) run there too: no runtime is built per call, and
//! no second runtime exists. A child started from the main thread of a sync `main` is started
//! by that thread, so it dies with its parent at once, as with the async API.
//!
//! Every `*_timeout` form returns within its bound as its async twin does; the other forms
//! wait as long as their twins would.
//!
//! The owner of an [`RLock`], or of a [`Condition`]'s lock, is the tokio task that acquired
//! it, and outside of any task (as blocking forms run) the thread: as in Python, another
//! thread of the same process waits for an `RLock` that one thread holds, and only the
//! holding thread may release it.

use std::future::Future;

mod manager;
mod pool;
mod process;
mod shared;

pub use manager::{DictProxy, ListProxy, Manager, Namespace, ValueProxy};
pub use pool::{AsyncResult, Imap, Pool, PoolBuilder};
pub use process::{Process, ProcessBuilder};
pub use shared::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, JoinableQueue, Lock, LockGuard,
    PipeEnd, Queue, RLock, RLockGuard, Semaphore, SemaphorePermit, pipe,
};

/// Runs `future` to completion on the calling thread: the one way every blocking form waits.
///
/// # Panics
///
/// In an async context (see the [module docs](self#panics)).
#[track_caller]
fn wait<F: Future>(future: F) -> F::Output {
    if tokio::runtime::Handle::try_current().is_ok() && !crate::worker::running_plain() {
        panic!(
            "multiproc::blocking was called from an async context (a tokio runtime runs on this \
             thread), where blocking would stall the runtime and could deadlock; use the async \
             form (`.as_async()`) and `.await` it"
        );
    }
    // The shared-objects thread drives the sockets and timers the future registers, and runs
    // the tasks it spawns; this thread only polls it.
    let _entered = crate::shared::hub::runtime().enter();
    futures::executor::block_on(future)
}

/// Declares a blocking wrapper around an async handle: the struct, `as_async`, `From` both
/// ways, `Debug`, and (when listed) `Clone` and the async type's serde form.
macro_rules! wrapper {
    (
        $(#[$attr:meta])*
        $name:ident $(<$($param:ident),+>)? wraps $inner:ty $(, $extra:ident)*
    ) => {
        $(#[$attr])*
        pub struct $name $(<$($param),+>)? {
            inner: $inner,
        }

        impl $(<$($param),+>)? $name $(<$($param),+>)? {
            #[doc = concat!("The async `", stringify!($inner), "` this wraps, to use from async code.")]
            pub fn as_async(&self) -> &$inner {
                &self.inner
            }
        }

        impl $(<$($param),+>)? From<$inner> for $name $(<$($param),+>)? {
            fn from(inner: $inner) -> Self {
                $name { inner }
            }
        }

        impl $(<$($param),+>)? From<$name $(<$($param),+>)?> for $inner {
            fn from(blocking: $name $(<$($param),+>)?) -> Self {
                blocking.inner
            }
        }

        impl $(<$($param),+>)? std::fmt::Debug for $name $(<$($param),+>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(concat!("blocking::", stringify!($name)))
                    .field(&self.inner)
                    .finish()
            }
        }

        $crate::blocking::wrapper!(@extras $name [$($($param),+)?] $($extra)*);
    };
    (@extras $name:ident $generics:tt $($extra:ident)*) => {
        $( $crate::blocking::wrapper!(@$extra $name $generics); )*
    };
    (@clone $name:ident [$($param:ident),*]) => {
        impl<$($param),*> Clone for $name<$($param),*> {
            fn clone(&self) -> Self {
                $name { inner: self.inner.clone() }
            }
        }
    };
    (@serde $name:ident [$($param:ident),*]) => {
        impl<$($param),*> serde::Serialize for $name<$($param),*> {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.inner, serializer)
            }
        }

        impl<'de, $($param),*> serde::Deserialize<'de> for $name<$($param),*> {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                serde::Deserialize::deserialize(deserializer).map(|inner| $name { inner })
            }
        }
    };
}

/// Declares blocking forms that call the wrapped handle's async method of the same name with
/// the same arguments, each documented as its twin's blocking form, with an example run
/// inside `$demo` (the hidden lines that open a function with the handle as its argument).
/// A method's generic parameters and bounds go in brackets (`fn get[T: Value](..) -> .. where
/// [..]`); `as into` converts what the twin returns (an async handle) into its blocking twin.
macro_rules! blocking_forms {
    (
        $twin:expr, $demo:expr;
        $(
            $(#[$doc:meta])*
            fn $name:ident $([$($generic:tt)*])? (&self $(, $arg:ident: $ty:ty)*) -> $out:ty
                $(where [$($bound:tt)*])? $(as $into:ident)? = $example:expr;
        )*
    ) => {
        $(
            $(#[$doc])*
            ///
            #[doc = concat!("The blocking form of [`", $twin, "::", stringify!($name), "`](", $twin, "::", stringify!($name), ").")]
            ///
            /// # Errors
            ///
            #[doc = concat!("As [`", $twin, "::", stringify!($name), "`](", $twin, "::", stringify!($name), ").")]
            ///
            /// # Panics
            ///
            /// In an async context (see the [module docs](crate::blocking#panics)).
            ///
            /// # Examples
            ///
            /// ```no_run
            #[doc = $demo]
            #[doc = $example]
            /// # Ok(()) }
            /// ```
            #[track_caller]
            pub fn $name $(<$($generic)*>)? (&self $(, $arg: $ty)*) -> $out $(where $($bound)*)? {
                $crate::blocking::wait(self.inner.$name($($arg),*)) $(.map(Into::$into))?
            }
        )*
    };
}

use blocking_forms;
use wrapper;
