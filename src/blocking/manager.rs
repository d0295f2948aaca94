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
use crate::manager::{TlsClientConfig, TlsServerConfig};
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let manager = multiproc::blocking::Manager::start()?;
    /// let d = manager.dict::<String, u64>()?;
    /// manager.shutdown()?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let server = multiproc::blocking::Manager::serve("127.0.0.1:50000".parse().unwrap(), b"secret")?;
    /// let jobs = server.queue_named::<String>("jobs")?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let client = multiproc::blocking::Manager::connect("10.0.0.1:50000".parse().unwrap(), b"secret")?;
    /// let jobs = client.queue_named::<String>("jobs")?;
    /// jobs.put("a job".into())?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn connect(addr: SocketAddr, authkey: &[u8]) -> Result<Manager> {
        wait(crate::Manager::connect(addr, authkey)).map(Manager::from)
    }

    /// Serves a manager from this process on the TCP address `addr`, inside TLS.
    ///
    /// The blocking form of [`crate::Manager::serve_tls`].
    ///
    /// # Errors
    ///
    /// As [`crate::Manager::serve_tls`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let read = |path: &str| std::fs::read(path).expect("a PEM file");
    /// let tls = multiproc::TlsServerConfig::from_pem(&read("manager.crt"), &read("manager.key"))?;
    /// let server =
    ///     multiproc::blocking::Manager::serve_tls("0.0.0.0:50000".parse().unwrap(), b"secret", tls)?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn serve_tls(addr: SocketAddr, authkey: &[u8], tls: TlsServerConfig) -> Result<Manager> {
        wait(crate::Manager::serve_tls(addr, authkey, tls)).map(Manager::from)
    }

    /// Connects to a manager served with TLS at `addr`, checking its certificate against
    /// `tls`, then proving `authkey`.
    ///
    /// The blocking form of [`crate::Manager::connect_tls`].
    ///
    /// # Errors
    ///
    /// As [`crate::Manager::connect_tls`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> multiproc::Result<()> {
    /// let ca = std::fs::read("ca.crt").expect("the CA certificate");
    /// let tls = multiproc::TlsClientConfig::from_pem(&ca)?;
    /// let client =
    ///     multiproc::blocking::Manager::connect_tls("10.0.0.1:50000".parse().unwrap(), b"secret", tls)?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn connect_tls(addr: SocketAddr, authkey: &[u8], tls: TlsClientConfig) -> Result<Manager> {
        wait(crate::Manager::connect_tls(addr, authkey, tls)).map(Manager::from)
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
        "crate::Manager", "# fn demo(manager: multiproc::blocking::Manager) -> multiproc::Result<()> {";
        /// Creates a dict in the manager's process; Python's `manager.dict()`.
        fn dict[K: Value, V: Value](&self) -> Result<DictProxy<K, V>> as into = "let d = manager.dict::<String, u64>()?;";
        /// Creates a list in the manager's process; Python's `manager.list()`.
        fn list[T: Value](&self) -> Result<ListProxy<T>> as into = "let l = manager.list::<u64>()?;";
        /// Creates a namespace in the manager's process; Python's `manager.Namespace()`.
        fn namespace(&self) -> Result<Namespace> as into = "let ns = manager.namespace()?;";
        /// Creates a value in the manager's process; Python's `manager.Value(initial)`.
        fn value[T: Value](&self, initial: T) -> Result<ValueProxy<T>> as into = "let v = manager.value(0u64)?;";
        /// The dict registered as `name`, created by the first caller.
        fn dict_named[K: Value, V: Value](&self, name: &str) -> Result<DictProxy<K, V>> as into = "let d = manager.dict_named::<String, u64>(\"hits\")?;";
        /// The list registered as `name`, created by the first caller.
        fn list_named[T: Value](&self, name: &str) -> Result<ListProxy<T>> as into = "let l = manager.list_named::<u64>(\"results\")?;";
        /// The namespace registered as `name`, created by the first caller.
        fn namespace_named(&self, name: &str) -> Result<Namespace> as into = "let ns = manager.namespace_named(\"config\")?;";
        /// The value registered as `name`, created by the first caller with `initial`.
        fn value_named[T: Value](&self, name: &str, initial: T) -> Result<ValueProxy<T>> as into = "let v = manager.value_named(\"counter\", 0u64)?;";
        /// Creates an unbounded queue in the manager's process; Python's `manager.Queue()`.
        fn queue[T: Value](&self) -> Result<Queue<T>> as into = "let q = manager.queue::<String>()?;";
        /// The queue registered as `name`, created by the first caller.
        fn queue_named[T: Value](&self, name: &str) -> Result<Queue<T>> as into = "let q = manager.queue_named::<String>(\"jobs\")?;";
        /// Creates a queue of at most `capacity` items in the manager's process.
        fn bounded_queue[T: Value](&self, capacity: usize) -> Result<Queue<T>> as into = "let q = manager.bounded_queue::<String>(10)?;";
        /// Creates a joinable queue in the manager's process; Python's
        /// `manager.JoinableQueue()`.
        fn joinable_queue[T: Value](&self) -> Result<JoinableQueue<T>> as into = "let q = manager.joinable_queue::<String>()?;";
        /// The joinable queue registered as `name`, created by the first caller.
        fn joinable_queue_named[T: Value](&self, name: &str) -> Result<JoinableQueue<T>> as into = "let q = manager.joinable_queue_named::<String>(\"tasks\")?;";
        /// Creates an event in the manager's process; Python's `manager.Event()`.
        fn event(&self) -> Result<Event> as into = "let e = manager.event()?;";
        /// The event registered as `name`, created by the first caller.
        fn event_named(&self, name: &str) -> Result<Event> as into = "let e = manager.event_named(\"ready\")?;";
        /// Creates a lock in the manager's process; Python's `manager.Lock()`.
        fn lock(&self) -> Result<Lock> as into = "let l = manager.lock()?;";
        /// The lock registered as `name`, created by the first caller.
        fn lock_named(&self, name: &str) -> Result<Lock> as into = "let l = manager.lock_named(\"files\")?;";
        /// Creates a recursive lock in the manager's process; Python's `manager.RLock()`.
        fn rlock(&self) -> Result<RLock> as into = "let l = manager.rlock()?;";
        /// The recursive lock registered as `name`, created by the first caller.
        fn rlock_named(&self, name: &str) -> Result<RLock> as into = "let l = manager.rlock_named(\"tree\")?;";
        /// Creates a semaphore in the manager's process; Python's `manager.Semaphore(n)`.
        fn semaphore(&self, permits: u64) -> Result<Semaphore> as into = "let s = manager.semaphore(2)?;";
        /// The semaphore registered as `name`, created by the first caller.
        fn semaphore_named(&self, name: &str, permits: u64) -> Result<Semaphore> as into = "let s = manager.semaphore_named(\"slots\", 2)?;";
        /// Creates a bounded semaphore in the manager's process; Python's
        /// `manager.BoundedSemaphore(n)`.
        fn bounded_semaphore(&self, permits: u64) -> Result<BoundedSemaphore> as into = "let s = manager.bounded_semaphore(2)?;";
        /// The bounded semaphore registered as `name`, created by the first caller.
        fn bounded_semaphore_named(&self, name: &str, permits: u64) -> Result<BoundedSemaphore> as into = "let s = manager.bounded_semaphore_named(\"slots\", 2)?;";
        /// Creates a condition in the manager's process; Python's `manager.Condition()`.
        fn condition(&self) -> Result<Condition> as into = "let c = manager.condition()?;";
        /// The condition registered as `name`, created by the first caller.
        fn condition_named(&self, name: &str) -> Result<Condition> as into = "let c = manager.condition_named(\"changed\")?;";
        /// Creates a barrier for `parties` in the manager's process; Python's
        /// `manager.Barrier(parties)`.
        fn barrier(&self, parties: usize) -> Result<Barrier> as into = "let b = manager.barrier(3)?;";
        /// The barrier registered as `name`, created by the first caller.
        fn barrier_named(&self, name: &str, parties: usize) -> Result<Barrier> as into = "let b = manager.barrier_named(\"start\", 3)?;";
        /// Stops the manager: every proxy call made afterwards, from any process, fails with
        /// a [`Closed`](crate::ErrorKind::Closed) error.
        fn shutdown(&self) -> Result<()> = "manager.shutdown()?;";
    }
}

wrapper! {
    /// A dict held by a manager: the blocking twin of [`crate::DictProxy`], whose docs say
    /// how keys compare and why a value read is a copy.
    DictProxy<K, V> wraps crate::DictProxy<K, V>, clone, serde
}

impl<K: Value, V: Value> DictProxy<K, V> {
    blocking_forms! {
        "crate::DictProxy", "# #[multiproc::worker] fn increment(n: u64) -> u64 { n + 1 }\n# fn demo(d: multiproc::blocking::DictProxy<String, u64>) -> multiproc::Result<()> {";
        /// Inserts `value` under `key`, returning the value it replaced.
        fn insert(&self, key: K, value: V) -> Result<Option<V>> = "let previous = d.insert(\"hits\".into(), 1)?;";
        /// A copy of the value under `key`.
        fn get(&self, key: &K) -> Result<Option<V>> = "if let Some(hits) = d.get(&\"hits\".into())? { println!(\"{hits}\"); }";
        /// Removes `key`, returning its value.
        fn remove(&self, key: &K) -> Result<Option<V>> = "let removed = d.remove(&\"hits\".into())?;";
        /// Whether `key` is present.
        fn contains_key(&self, key: &K) -> Result<bool> = "if d.contains_key(&\"hits\".into())? { println!(\"counted\"); }";
        /// The number of entries.
        fn len(&self) -> Result<usize> = "println!(\"{} entries\", d.len()?);";
        /// Whether the dict has no entries.
        fn is_empty(&self) -> Result<bool> = "if d.is_empty()? { println!(\"empty\"); }";
        /// A copy of every key.
        fn keys(&self) -> Result<Vec<K>> = "for key in d.keys()? { println!(\"{key}\"); }";
        /// A copy of every value.
        fn values(&self) -> Result<Vec<V>> = "let total: u64 = d.values()?.iter().sum();";
        /// A copy of every entry.
        fn snapshot(&self) -> Result<Vec<(K, V)>> = "for (key, value) in d.snapshot()? { println!(\"{key}: {value}\"); }";
        /// Inserts every pair, in one request.
        fn extend(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> = "d.extend([(\"a\".to_string(), 1), (\"b\".to_string(), 2)])?;";
        /// Removes every entry.
        fn clear(&self) -> Result<()> = "d.clear()?;";
        /// Replaces the value under `key` with `worker(value)` on the server, atomically;
        /// returns the new value, or `None` if `key` is absent.
        fn update[W, M](&self, key: &K, worker: W) -> Result<Option<V>>
            where [W: Worker<M, Args = (V,), Output = V>] = "let hits = d.update(&\"hits\".into(), increment)?;";
        /// As [`update`](Self::update), starting from `default` when `key` is absent.
        fn update_or[W, M](&self, key: &K, default: V, worker: W) -> Result<V>
            where [W: Worker<M, Args = (V,), Output = V>] = "let hits = d.update_or(&\"hits\".into(), 0, increment)?; // never loses a count";
    }
}

wrapper! {
    /// A list held by a manager: the blocking twin of [`crate::ListProxy`].
    ListProxy<T> wraps crate::ListProxy<T>, clone, serde
}

impl<T: Value> ListProxy<T> {
    blocking_forms! {
        "crate::ListProxy", "# #[multiproc::worker] fn double(n: u64) -> u64 { n * 2 }\n# fn demo(l: multiproc::blocking::ListProxy<u64>) -> multiproc::Result<()> {";
        /// Appends `item`; returns the new length.
        fn push(&self, item: T) -> Result<usize> = "let len = l.push(7)?;";
        /// Appends every item, in one request; returns the new length.
        fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<usize> = "let len = l.extend([3, 1, 2])?;";
        /// Removes and returns the last item.
        fn pop(&self) -> Result<Option<T>> = "if let Some(last) = l.pop()? { println!(\"{last}\"); }";
        /// A copy of the item at `index`.
        fn get(&self, index: usize) -> Result<Option<T>> = "let first = l.get(0)?;";
        /// Replaces the item at `index`.
        fn set(&self, index: usize, item: T) -> Result<()> = "l.set(0, 42)?;";
        /// Inserts `item` before `index`.
        fn insert(&self, index: usize, item: T) -> Result<()> = "l.insert(0, 42)?;";
        /// Removes and returns the item at `index`.
        fn remove(&self, index: usize) -> Result<Option<T>> = "let removed = l.remove(0)?;";
        /// Replaces the item at `index` with `worker(item)` on the server, atomically.
        fn update[W, M](&self, index: usize, worker: W) -> Result<Option<T>>
            where [W: Worker<M, Args = (T,), Output = T>] = "let doubled = l.update(0, double)?;";
        /// The number of items.
        fn len(&self) -> Result<usize> = "println!(\"{} items\", l.len()?);";
        /// Whether the list has no items.
        fn is_empty(&self) -> Result<bool> = "if l.is_empty()? { println!(\"empty\"); }";
        /// Reverses the list in place.
        fn reverse(&self) -> Result<()> = "l.reverse()?;";
        /// Removes every item.
        fn clear(&self) -> Result<()> = "l.clear()?;";
        /// A copy of every item.
        fn snapshot(&self) -> Result<Vec<T>> = "let items: Vec<u64> = l.snapshot()?;";
        /// Sorts the list by `compare`, here; retried if another writer changed the list
        /// meanwhile.
        fn sort_by(&self, compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()> = "l.sort_by(|a, b| b.cmp(a))?; // largest first";
        /// Sorts the list in `T`'s order.
        fn sort(&self) -> Result<()> where [T: Ord] = "l.sort()?;";
    }
}

wrapper! {
    /// A namespace held by a manager (Python's `manager.Namespace()`): the blocking twin of
    /// [`crate::Namespace`].
    Namespace wraps crate::Namespace, clone, serde
}

impl Namespace {
    blocking_forms! {
        "crate::Namespace", "# #[multiproc::worker] fn increment(n: u64) -> u64 { n + 1 }\n# fn demo(ns: multiproc::blocking::Namespace) -> multiproc::Result<()> {";
        /// Sets field `name` to `value`.
        fn set[T: Serialize](&self, name: &str, value: T) -> Result<()> = "ns.set(\"ready\", true)?;";
        /// A copy of field `name`.
        fn get[T: DeserializeOwned](&self, name: &str) -> Result<Option<T>> = "let ready: Option<bool> = ns.get(\"ready\")?;";
        /// Removes field `name`; whether it was there.
        fn remove(&self, name: &str) -> Result<bool> = "let was_there = ns.remove(\"ready\")?;";
        /// Replaces field `name` with `worker(value)` on the server, atomically.
        fn update[T, W, M](&self, name: &str, worker: W) -> Result<Option<T>>
            where [T: Serialize + DeserializeOwned, W: Worker<M, Args = (T,), Output = T>] = "let count: Option<u64> = ns.update(\"count\", increment)?;";
        /// As [`update`](Self::update), starting from `default` when the field is absent.
        fn update_or[T, W, M](&self, name: &str, default: T, worker: W) -> Result<T>
            where [T: Serialize + DeserializeOwned, W: Worker<M, Args = (T,), Output = T>] = "let count: u64 = ns.update_or(\"count\", 0, increment)?;";
        /// The names of the fields.
        fn fields(&self) -> Result<Vec<String>> = "for field in ns.fields()? { println!(\"{field}\"); }";
    }
}

wrapper! {
    /// A value held by a manager (Python's `manager.Value`): the blocking twin of
    /// [`crate::ValueProxy`].
    ValueProxy<T> wraps crate::ValueProxy<T>, clone, serde
}

impl<T: Value> ValueProxy<T> {
    blocking_forms! {
        "crate::ValueProxy", "# #[multiproc::worker] fn increment(n: u64) -> u64 { n + 1 }\n# fn demo(v: multiproc::blocking::ValueProxy<u64>) -> multiproc::Result<()> {";
        /// A copy of the value.
        fn get(&self) -> Result<T> = "println!(\"{}\", v.get()?);";
        /// Replaces the value, returning the one it replaced.
        fn set(&self, value: T) -> Result<T> = "let previous = v.set(7)?;";
        /// Replaces the value with `worker(value)` on the server, atomically; returns the new
        /// value.
        fn update[W, M](&self, worker: W) -> Result<T>
            where [W: Worker<M, Args = (T,), Output = T>] = "let new = v.update(increment)?;";
    }
}
