//! [`Manager`] and its proxies in blocking form.
//!
//! Each type wraps its async twin of [`crate::manager`], whose docs say how a manager serves
//! its objects, locally or over TCP, and what happens when it goes away. Proxies serialize as
//! their twins do, so a plain `fn` worker takes one as an argument.

use std::net::SocketAddr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Queue, RLock, Semaphore,
    blocking_forms, wait, wrapper,
};
use crate::error::Result;
use crate::worker::{Value, Worker};

wrapper! {
    /// A manager: a process (or a TCP server) holding shared objects, and the way to create
    /// them. The blocking twin of [`crate::Manager`] (Python's `multiprocessing.Manager()`).
    ///
    /// ```no_run
    /// use multiproc::blocking::{DictProxy, Manager, Process};
    ///
    /// #[multiproc::worker]
    /// fn fill(d: DictProxy<u32, String>, n: u32) {
    ///     d.insert(n, format!("from {n}")).expect("the manager is up");
    /// }
    ///
    /// fn main() -> multiproc::Result<()> {
    ///     multiproc::init();
    ///     let manager = Manager::start()?;
    ///     let d = manager.dict::<u32, String>()?;
    ///     Process::new(fill, (d.clone(), 7)).start()?.join()?;
    ///     assert_eq!(d.get(&7)?, Some("from 7".to_string()));
    ///     manager.shutdown()
    /// }
    /// ```
    Manager wraps crate::Manager
}

impl Manager {
    /// Starts a manager process, `SyncManager-N`, and waits until it serves.
    ///
    /// The blocking form of [`crate::Manager::start`].
    ///
    /// # Errors
    ///
    /// As [`crate::Manager::start`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    #[track_caller]
    pub fn start() -> Result<Manager> {
        wait(crate::Manager::start()).map(Manager::from)
    }

    /// Serves a manager from this process on the TCP address `addr`.
    ///
    /// The blocking form of [`crate::Manager::serve`].
    ///
    /// # Errors
    ///
    /// As [`crate::Manager::serve`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    #[track_caller]
    pub fn serve(addr: SocketAddr, authkey: &[u8]) -> Result<Manager> {
        wait(crate::Manager::serve(addr, authkey)).map(Manager::from)
    }

    /// Connects to a manager served at `addr`, proving `authkey`.
    ///
    /// The blocking form of [`crate::Manager::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::Manager::connect`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    #[track_caller]
    pub fn connect(addr: SocketAddr, authkey: &[u8]) -> Result<Manager> {
        wait(crate::Manager::connect(addr, authkey)).map(Manager::from)
    }

    /// The TCP address of the manager. As [`crate::Manager::local_addr`].
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }

    /// The pid of the manager's process. As [`crate::Manager::pid`].
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    blocking_forms! {
        "crate::Manager";
        /// Creates a dict in the manager's process; Python's `manager.dict()`.
        fn dict[K: Value, V: Value](&self) -> Result<DictProxy<K, V>> as into;
        /// Creates a list in the manager's process; Python's `manager.list()`.
        fn list[T: Value](&self) -> Result<ListProxy<T>> as into;
        /// Creates a namespace in the manager's process; Python's `manager.Namespace()`.
        fn namespace(&self) -> Result<Namespace> as into;
        /// Creates a value in the manager's process; Python's `manager.Value(initial)`.
        fn value[T: Value](&self, initial: T) -> Result<ValueProxy<T>> as into;
        /// The dict registered as `name`, created by the first caller.
        fn dict_named[K: Value, V: Value](&self, name: &str) -> Result<DictProxy<K, V>> as into;
        /// The list registered as `name`, created by the first caller.
        fn list_named[T: Value](&self, name: &str) -> Result<ListProxy<T>> as into;
        /// The namespace registered as `name`, created by the first caller.
        fn namespace_named(&self, name: &str) -> Result<Namespace> as into;
        /// The value registered as `name`, created by the first caller with `initial`.
        fn value_named[T: Value](&self, name: &str, initial: T) -> Result<ValueProxy<T>> as into;
        /// Creates an unbounded queue in the manager's process; Python's `manager.Queue()`.
        fn queue[T: Value](&self) -> Result<Queue<T>> as into;
        /// The queue registered as `name`, created by the first caller.
        fn queue_named[T: Value](&self, name: &str) -> Result<Queue<T>> as into;
        /// Creates a queue of at most `capacity` items in the manager's process.
        fn bounded_queue[T: Value](&self, capacity: usize) -> Result<Queue<T>> as into;
        /// Creates a joinable queue in the manager's process; Python's
        /// `manager.JoinableQueue()`.
        fn joinable_queue[T: Value](&self) -> Result<JoinableQueue<T>> as into;
        /// The joinable queue registered as `name`, created by the first caller.
        fn joinable_queue_named[T: Value](&self, name: &str) -> Result<JoinableQueue<T>> as into;
        /// Creates an event in the manager's process; Python's `manager.Event()`.
        fn event(&self) -> Result<Event> as into;
        /// The event registered as `name`, created by the first caller.
        fn event_named(&self, name: &str) -> Result<Event> as into;
        /// Creates a lock in the manager's process; Python's `manager.Lock()`.
        fn lock(&self) -> Result<Lock> as into;
        /// The lock registered as `name`, created by the first caller.
        fn lock_named(&self, name: &str) -> Result<Lock> as into;
        /// Creates a recursive lock in the manager's process; Python's `manager.RLock()`.
        fn rlock(&self) -> Result<RLock> as into;
        /// The recursive lock registered as `name`, created by the first caller.
        fn rlock_named(&self, name: &str) -> Result<RLock> as into;
        /// Creates a semaphore in the manager's process; Python's `manager.Semaphore(n)`.
        fn semaphore(&self, permits: u64) -> Result<Semaphore> as into;
        /// The semaphore registered as `name`, created by the first caller.
        fn semaphore_named(&self, name: &str, permits: u64) -> Result<Semaphore> as into;
        /// Creates a bounded semaphore in the manager's process; Python's
        /// `manager.BoundedSemaphore(n)`.
        fn bounded_semaphore(&self, permits: u64) -> Result<BoundedSemaphore> as into;
        /// The bounded semaphore registered as `name`, created by the first caller.
        fn bounded_semaphore_named(&self, name: &str, permits: u64) -> Result<BoundedSemaphore> as into;
        /// Creates a condition in the manager's process; Python's `manager.Condition()`.
        fn condition(&self) -> Result<Condition> as into;
        /// The condition registered as `name`, created by the first caller.
        fn condition_named(&self, name: &str) -> Result<Condition> as into;
        /// Creates a barrier for `parties` in the manager's process; Python's
        /// `manager.Barrier(parties)`.
        fn barrier(&self, parties: usize) -> Result<Barrier> as into;
        /// The barrier registered as `name`, created by the first caller.
        fn barrier_named(&self, name: &str, parties: usize) -> Result<Barrier> as into;
        /// Stops the manager: every proxy call made afterwards, from any process, fails with
        /// a [`Closed`](crate::ErrorKind::Closed) error.
        fn shutdown(&self) -> Result<()>;
    }
}

wrapper! {
    /// A dict held by a manager: the blocking twin of [`crate::DictProxy`], whose docs say
    /// how keys compare and why a value read is a copy.
    DictProxy<K, V> wraps crate::DictProxy<K, V>, clone, serde
}

impl<K: Value, V: Value> DictProxy<K, V> {
    blocking_forms! {
        "crate::DictProxy";
        /// Inserts `value` under `key`, returning the value it replaced.
        fn insert(&self, key: K, value: V) -> Result<Option<V>>;
        /// A copy of the value under `key`.
        fn get(&self, key: &K) -> Result<Option<V>>;
        /// Removes `key`, returning its value.
        fn remove(&self, key: &K) -> Result<Option<V>>;
        /// Whether `key` is present.
        fn contains_key(&self, key: &K) -> Result<bool>;
        /// The number of entries.
        fn len(&self) -> Result<usize>;
        /// Whether the dict has no entries.
        fn is_empty(&self) -> Result<bool>;
        /// A copy of every key.
        fn keys(&self) -> Result<Vec<K>>;
        /// A copy of every value.
        fn values(&self) -> Result<Vec<V>>;
        /// A copy of every entry.
        fn snapshot(&self) -> Result<Vec<(K, V)>>;
        /// Inserts every pair, in one request.
        fn extend(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()>;
        /// Removes every entry.
        fn clear(&self) -> Result<()>;
        /// Replaces the value under `key` with `worker(value)` on the server, atomically;
        /// returns the new value, or `None` if `key` is absent.
        fn update[W, M](&self, key: &K, worker: W) -> Result<Option<V>>
            where [W: Worker<M, Args = (V,), Output = V>];
        /// As [`update`](Self::update), starting from `default` when `key` is absent.
        fn update_or[W, M](&self, key: &K, default: V, worker: W) -> Result<V>
            where [W: Worker<M, Args = (V,), Output = V>];
    }
}

wrapper! {
    /// A list held by a manager: the blocking twin of [`crate::ListProxy`].
    ListProxy<T> wraps crate::ListProxy<T>, clone, serde
}

impl<T: Value> ListProxy<T> {
    blocking_forms! {
        "crate::ListProxy";
        /// Appends `item`; returns the new length.
        fn push(&self, item: T) -> Result<usize>;
        /// Appends every item, in one request; returns the new length.
        fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<usize>;
        /// Removes and returns the last item.
        fn pop(&self) -> Result<Option<T>>;
        /// A copy of the item at `index`.
        fn get(&self, index: usize) -> Result<Option<T>>;
        /// Replaces the item at `index`.
        fn set(&self, index: usize, item: T) -> Result<()>;
        /// Inserts `item` before `index`.
        fn insert(&self, index: usize, item: T) -> Result<()>;
        /// Removes and returns the item at `index`.
        fn remove(&self, index: usize) -> Result<Option<T>>;
        /// Replaces the item at `index` with `worker(item)` on the server, atomically.
        fn update[W, M](&self, index: usize, worker: W) -> Result<Option<T>>
            where [W: Worker<M, Args = (T,), Output = T>];
        /// The number of items.
        fn len(&self) -> Result<usize>;
        /// Whether the list has no items.
        fn is_empty(&self) -> Result<bool>;
        /// Reverses the list in place.
        fn reverse(&self) -> Result<()>;
        /// Removes every item.
        fn clear(&self) -> Result<()>;
        /// A copy of every item.
        fn snapshot(&self) -> Result<Vec<T>>;
        /// Sorts the list by `compare`, here; retried if another writer changed the list
        /// meanwhile.
        fn sort_by(&self, compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()>;
        /// Sorts the list in `T`'s order.
        fn sort(&self) -> Result<()> where [T: Ord];
    }
}

wrapper! {
    /// A namespace held by a manager (Python's `manager.Namespace()`): the blocking twin of
    /// [`crate::Namespace`].
    Namespace wraps crate::Namespace, clone, serde
}

impl Namespace {
    blocking_forms! {
        "crate::Namespace";
        /// Sets field `name` to `value`.
        fn set[T: Serialize](&self, name: &str, value: T) -> Result<()>;
        /// A copy of field `name`.
        fn get[T: DeserializeOwned](&self, name: &str) -> Result<Option<T>>;
        /// Removes field `name`; whether it was there.
        fn remove(&self, name: &str) -> Result<bool>;
        /// Replaces field `name` with `worker(value)` on the server, atomically.
        fn update[T, W, M](&self, name: &str, worker: W) -> Result<Option<T>>
            where [T: Serialize + DeserializeOwned, W: Worker<M, Args = (T,), Output = T>];
        /// As [`update`](Self::update), starting from `default` when the field is absent.
        fn update_or[T, W, M](&self, name: &str, default: T, worker: W) -> Result<T>
            where [T: Serialize + DeserializeOwned, W: Worker<M, Args = (T,), Output = T>];
        /// The names of the fields.
        fn fields(&self) -> Result<Vec<String>>;
    }
}

wrapper! {
    /// A value held by a manager (Python's `manager.Value`): the blocking twin of
    /// [`crate::ValueProxy`].
    ValueProxy<T> wraps crate::ValueProxy<T>, clone, serde
}

impl<T: Value> ValueProxy<T> {
    blocking_forms! {
        "crate::ValueProxy";
        /// A copy of the value.
        fn get(&self) -> Result<T>;
        /// Replaces the value, returning the one it replaced.
        fn set(&self, value: T) -> Result<T>;
        /// Replaces the value with `worker(value)` on the server, atomically; returns the new
        /// value.
        fn update[W, M](&self, worker: W) -> Result<T>
            where [W: Worker<M, Args = (T,), Output = T>];
    }
}
