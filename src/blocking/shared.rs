//! Queues, pipes, locks, events, conditions, semaphores and barriers in blocking form.
//!
//! Each type wraps its async twin of [`crate::shared`], whose docs say how the objects are
//! served and how they behave when a process dies; each serializes as that twin does, so a
//! plain `fn` worker takes one as an argument.

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{blocking_forms, wait, wrapper};
use crate::error::Result;
pub use crate::shared::{LockGuard, RLockGuard, SemaphorePermit};

wrapper! {
    /// A queue shared between processes: the blocking twin of [`crate::Queue`] (Python's
    /// `multiprocessing.Queue`).
    ///
    /// ```no_run
    /// use multiproc::blocking::{Process, Queue};
    ///
    /// #[multiproc::worker]
    /// fn produce(queue: Queue<String>) {
    ///     queue.put("hello".to_string()).expect("the parent serves the queue");
    /// }
    ///
    /// fn main() -> multiproc::Result<()> {
    ///     multiproc::init();
    ///     let queue = Queue::new();
    ///     let p = Process::new(produce, (queue.clone(),)).start()?;
    ///     assert_eq!(queue.get()?, "hello");
    ///     p.join()
    /// }
    /// ```
    Queue<T> wraps crate::Queue<T>, clone, serde
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// An unbounded queue, served by this process. As [`crate::Queue::new`].
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket.
    #[allow(clippy::new_without_default)] // creating a queue starts a server; keep it explicit
    pub fn new() -> Self {
        crate::Queue::new().into()
    }

    /// An unbounded queue; fails if this process's hub cannot bind its socket.
    ///
    /// # Errors
    ///
    /// As [`crate::Queue::try_new`].
    pub fn try_new() -> Result<Self> {
        crate::Queue::try_new().map(Queue::from)
    }

    /// A queue holding at most `capacity` items (Python's `maxsize`). As
    /// [`crate::Queue::bounded`].
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or this process's hub cannot bind its socket.
    pub fn bounded(capacity: usize) -> Self {
        crate::Queue::bounded(capacity).into()
    }

    blocking_forms! {
        "crate::Queue", "# fn demo(queue: multiproc::blocking::Queue<u32>) -> multiproc::Result<()> {";
        /// Puts `item` at the back of the queue, waiting for room in a bounded queue; returns
        /// once the queue's process holds it.
        fn put(&self, item: T) -> Result<()> = "queue.put(42)?;";
        /// Puts `item` unless the bounded queue is full.
        fn try_put(&self, item: T) -> Result<()> = "match queue.try_put(42) {\n    Err(error) if error.is_full() => println!(\"full\"),\n    other => other?,\n}";
        /// Puts `item`, waiting at most `timeout` for room.
        fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> = "queue.put_timeout(42, std::time::Duration::from_secs(1))?;";
        /// Puts every item, in order, in one request.
        fn put_many(&self, items: impl IntoIterator<Item = T>) -> Result<()> = "queue.put_many(0..1000)?;";
        /// Takes the item at the front of the queue, waiting for one.
        fn get(&self) -> Result<T> = "let item = queue.get()?;";
        /// Takes the front item if there is one.
        fn try_get(&self) -> Result<T> = "match queue.try_get() {\n    Ok(item) => println!(\"got {item}\"),\n    Err(error) if error.is_empty() => println!(\"nothing yet\"),\n    Err(error) => return Err(error),\n}";
        /// Takes the front item, waiting at most `timeout` for one.
        fn get_timeout(&self, timeout: Duration) -> Result<T> = "let item = queue.get_timeout(std::time::Duration::from_secs(1))?;";
        /// The number of items in the queue now.
        fn len(&self) -> Result<usize> = "println!(\"{} items waiting\", queue.len()?);";
        /// Whether the queue is empty now.
        fn is_empty(&self) -> Result<bool> = "if queue.is_empty()? { println!(\"drained\"); }";
        /// Closes the queue for every process: later puts fail, gets drain what is left and
        /// then fail.
        fn close(&self) -> Result<()> = "queue.close()?;\nassert!(queue.put(1).unwrap_err().is_closed());";
    }
}

/// A [`Queue`] whose consumers mark items done: the blocking twin of
/// [`crate::JoinableQueue`]. [`Queue`]'s methods are available through `Deref`.
pub struct JoinableQueue<T> {
    inner: crate::JoinableQueue<T>,
    /// The same queue, for `Deref`: a second handle costs a clone of its name.
    queue: Queue<T>,
}

impl<T> JoinableQueue<T> {
    /// The async [`crate::JoinableQueue`] this wraps, to use from async code.
    pub fn as_async(&self) -> &crate::JoinableQueue<T> {
        &self.inner
    }
}

impl<T> From<crate::JoinableQueue<T>> for JoinableQueue<T> {
    fn from(inner: crate::JoinableQueue<T>) -> Self {
        let queue = Queue::from((*inner).clone());
        JoinableQueue { inner, queue }
    }
}

impl<T> From<JoinableQueue<T>> for crate::JoinableQueue<T> {
    fn from(blocking: JoinableQueue<T>) -> Self {
        blocking.inner
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        self.inner.clone().into()
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("blocking::JoinableQueue")
            .field(&self.inner)
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> serde::Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        crate::JoinableQueue::deserialize(deserializer).map(JoinableQueue::from)
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> JoinableQueue<T> {
    /// An unbounded joinable queue, served by this process.
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket.
    #[allow(clippy::new_without_default)] // creating a queue starts a server; keep it explicit
    pub fn new() -> Self {
        crate::JoinableQueue::new().into()
    }

    /// A joinable queue holding at most `capacity` items.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or this process's hub cannot bind its socket.
    pub fn bounded(capacity: usize) -> Self {
        crate::JoinableQueue::bounded(capacity).into()
    }

    blocking_forms! {
        "crate::JoinableQueue", "# fn demo(tasks: multiproc::blocking::JoinableQueue<u32>) -> multiproc::Result<()> {";
        /// Marks one task taken from the queue as finished.
        fn task_done(&self) -> Result<()> = "let task = tasks.get()?;\n// ... work on it ...\ntasks.task_done()?;";
        /// Waits until every item ever put has been marked done.
        fn join(&self) -> Result<()> = "tasks.join()?;\nprintln!(\"all tasks done\");";
    }
}

wrapper! {
    /// One end of a [`pipe`]: the blocking twin of [`crate::PipeEnd`].
    PipeEnd<T> wraps crate::PipeEnd<T>, serde
}

/// A two-way pipe (Python's `multiprocessing.Pipe()`): two ends, each sending to the other.
/// As [`crate::pipe`].
///
/// # Panics
///
/// If this process's hub cannot bind its socket.
///
/// # Examples
///
/// ```no_run
/// use multiproc::blocking::{pipe, PipeEnd, Process};
///
/// #[multiproc::worker]
/// fn greet(end: PipeEnd<String>) {
///     end.send("hello".into()).unwrap();
/// }
///
/// fn main() -> multiproc::Result<()> {
///     multiproc::init();
///     let (here, there) = pipe();
///     let p = Process::new(greet, (there,)).start()?;
///     assert_eq!(here.recv()?, "hello");
///     p.join()
/// }
/// ```
pub fn pipe<T: Serialize + DeserializeOwned + Send + 'static>() -> (PipeEnd<T>, PipeEnd<T>) {
    let (a, b) = crate::pipe();
    (a.into(), b.into())
}

impl<T: Serialize + DeserializeOwned + Send + 'static> PipeEnd<T> {
    blocking_forms! {
        "crate::PipeEnd", "# fn demo(end: multiproc::blocking::PipeEnd<u32>) -> multiproc::Result<()> {";
        /// Sends `item` to the other end; returns once the pipe's process holds it.
        fn send(&self, item: T) -> Result<()> = "end.send(42)?;";
        /// Receives the next item the other end sent, waiting for one.
        fn recv(&self) -> Result<T> = "while let Ok(item) = end.recv() {\n    println!(\"{item}\");\n}";
        /// As [`recv`](Self::recv), for at most `timeout`.
        fn recv_timeout(&self, timeout: Duration) -> Result<T> = "let item = end.recv_timeout(std::time::Duration::from_secs(1))?;";
    }

    /// Closes this end: the other end receives what was already sent, then end of file.
    ///
    /// The blocking form of [`crate::PipeEnd::close`].
    ///
    /// # Errors
    ///
    /// As [`crate::PipeEnd::close`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(end: multiproc::blocking::PipeEnd<u32>) -> multiproc::Result<()> {
    /// end.close()?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn close(self) -> Result<()> {
        wait(self.inner.close())
    }
}

/// Declares the blocking twin of a lock type and its forms.
macro_rules! blocking_lock {
    ($lock:ident, $guard:ident, $python:literal) => {
        wrapper! {
            #[doc = concat!("The blocking twin of [`crate::", stringify!($lock), "`] (Python's `multiprocessing.", $python, "`).")]
            ///
            #[doc = concat!("[`acquire`](Self::acquire) returns the async API's [`", stringify!($guard), "`], which releases the lock when dropped, with or without a runtime.")]
            $lock wraps crate::$lock, clone, serde
        }

        impl $lock {
            #[doc = concat!("An unlocked ", $python, ", served by this process.")]
            ///
            /// # Panics
            ///
            /// If this process's hub cannot bind its socket.
            #[allow(clippy::new_without_default)] // creating a lock starts a server
            pub fn new() -> Self {
                crate::$lock::new().into()
            }

            blocking_forms! {
                concat!("crate::", stringify!($lock)), concat!("# fn demo(lock: multiproc::blocking::", stringify!($lock), ") -> multiproc::Result<()> {");
                /// Waits for the lock; the guard releases it when dropped.
                fn acquire(&self) -> Result<$guard> = "let guard = lock.acquire()?;\nif guard.owner_died() { println!(\"repairing after a dead holder\"); }\ndrop(guard);";
                /// Takes the lock if it is free now; `Ok(None)` if another holder has it.
                fn try_acquire(&self) -> Result<Option<$guard>> = "if let Some(guard) = lock.try_acquire()? { /* ... */ }";
                /// Waits at most `timeout` for the lock; `Ok(None)` on timeout.
                fn acquire_timeout(&self, timeout: Duration) -> Result<Option<$guard>> = "match lock.acquire_timeout(std::time::Duration::from_millis(100))? {\n    Some(guard) => { /* ... */ }\n    None => println!(\"busy\"),\n}";
                /// Releases a lock whose guard was forgotten.
                fn release(&self) -> Result<()> = "lock.acquire()?.forget();\nlock.release()?;";
                /// Whether some holder has the lock now.
                fn is_locked(&self) -> Result<bool> = "println!(\"locked: {}\", lock.is_locked()?);";
            }
        }
    };
}

blocking_lock!(Lock, LockGuard, "Lock");
blocking_lock!(RLock, RLockGuard, "RLock");

/// Declares the blocking twin of a semaphore type and its forms.
macro_rules! blocking_semaphore {
    ($semaphore:ident, $python:literal) => {
        wrapper! {
            #[doc = concat!("The blocking twin of [`crate::", stringify!($semaphore), "`] (Python's `multiprocessing.", $python, "`).")]
            ///
            /// [`acquire`](Self::acquire) returns the async API's [`SemaphorePermit`], which
            /// gives the permit back when dropped, with or without a runtime.
            $semaphore wraps crate::$semaphore, clone, serde
        }

        impl $semaphore {
            #[doc = concat!("A ", $python, " with `permits` permits, served by this process.")]
            ///
            /// # Panics
            ///
            /// If this process's hub cannot bind its socket.
            pub fn new(permits: u64) -> Self {
                crate::$semaphore::new(permits).into()
            }

            blocking_forms! {
                concat!("crate::", stringify!($semaphore)), concat!("# fn demo(s: multiproc::blocking::", stringify!($semaphore), ") -> multiproc::Result<()> {");
                /// Waits for a permit; the permit goes back when dropped.
                fn acquire(&self) -> Result<SemaphorePermit> = "let _permit = s.acquire()?;";
                /// Takes a permit if one is free now; `Ok(None)` otherwise.
                fn try_acquire(&self) -> Result<Option<SemaphorePermit>> = "if let Some(_permit) = s.try_acquire()? { /* ... */ }";
                /// Waits at most `timeout` for a permit; `Ok(None)` on timeout.
                fn acquire_timeout(&self, timeout: Duration) -> Result<Option<SemaphorePermit>> = "let permit = s.acquire_timeout(std::time::Duration::from_millis(50))?;";
                /// Adds a permit (Python's `release`).
                fn release(&self) -> Result<()> = "s.acquire()?.forget();\ns.release()?;";
                /// The number of free permits now.
                fn value(&self) -> Result<u64> = "println!(\"{} permits free\", s.value()?);";
            }
        }
    };
}

blocking_semaphore!(Semaphore, "Semaphore");
blocking_semaphore!(BoundedSemaphore, "BoundedSemaphore");

wrapper! {
    /// An event shared between processes: the blocking twin of [`crate::Event`] (Python's
    /// `multiprocessing.Event`).
    Event wraps crate::Event, clone, serde
}

impl Event {
    /// An unset event, served by this process.
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket.
    #[allow(clippy::new_without_default)] // creating an event starts a server; keep it explicit
    pub fn new() -> Self {
        crate::Event::new().into()
    }

    blocking_forms! {
        "crate::Event", "# fn demo(event: multiproc::blocking::Event) -> multiproc::Result<()> {";
        /// Sets the flag and wakes every waiter.
        fn set(&self) -> Result<()> = "event.set()?;";
        /// Clears the flag.
        fn clear(&self) -> Result<()> = "event.clear()?;";
        /// Whether the flag is set now.
        fn is_set(&self) -> Result<bool> = "if event.is_set()? { println!(\"set\"); }";
        /// Waits until the flag is set.
        fn wait(&self) -> Result<()> = "event.wait()?;";
        /// Waits at most `timeout` for the flag; `Ok(true)` if it was set, `Ok(false)` on
        /// timeout.
        fn wait_timeout(&self, timeout: Duration) -> Result<bool> = "if !event.wait_timeout(std::time::Duration::from_millis(200))? { println!(\"timed out\"); }";
    }
}

wrapper! {
    /// A condition variable shared between processes: the blocking twin of
    /// [`crate::Condition`] (Python's `multiprocessing.Condition`).
    Condition wraps crate::Condition, clone, serde
}

wrapper! {
    /// Holds a [`Condition`]'s lock until dropped: the blocking twin of
    /// [`crate::ConditionGuard`].
    #[must_use = "the lock is released as soon as the guard is dropped"]
    ConditionGuard wraps crate::ConditionGuard
}

impl Condition {
    /// A condition with its own unlocked lock, served by this process.
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket.
    #[allow(clippy::new_without_default)] // creating a condition starts a server
    pub fn new() -> Self {
        crate::Condition::new().into()
    }

    /// A condition on an existing lock: [`crate::Condition::with_lock`].
    ///
    /// # Errors
    ///
    /// As [`crate::Condition::with_lock`].
    pub fn with_lock(lock: &Lock) -> crate::Result<Self> {
        crate::Condition::with_lock(lock.as_async()).map(Self::from)
    }

    /// A condition on an existing recursive lock: [`crate::Condition::with_rlock`].
    ///
    /// # Errors
    ///
    /// As [`crate::Condition::with_rlock`].
    pub fn with_rlock(lock: &RLock) -> crate::Result<Self> {
        crate::Condition::with_rlock(lock.as_async()).map(Self::from)
    }

    /// Takes the condition's lock.
    ///
    /// The blocking form of [`crate::Condition::acquire`].
    ///
    /// # Errors
    ///
    /// As [`crate::Condition::acquire`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(condition: multiproc::blocking::Condition) -> multiproc::Result<()> {
    /// let guard = condition.acquire()?;
    /// guard.notify_all()?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire(&self) -> Result<ConditionGuard> {
        wait(self.inner.acquire()).map(ConditionGuard::from)
    }

    blocking_forms! {
        "crate::Condition", "# fn demo(condition: multiproc::blocking::Condition) -> multiproc::Result<()> {";
        /// Wakes up to `n` waiters; the caller must hold the lock.
        fn notify(&self, n: usize) -> Result<()> = "let _guard = condition.acquire()?;\ncondition.notify(1)?;";
        /// Wakes every waiter; the caller must hold the lock.
        fn notify_all(&self) -> Result<()> = "let _guard = condition.acquire()?;\ncondition.notify_all()?;";
    }
}

impl ConditionGuard {
    /// Whether the previous holder's process died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.inner.owner_died()
    }

    /// Releases the lock, sleeps until notified, and takes the lock back.
    ///
    /// The blocking form of [`crate::ConditionGuard::wait`].
    ///
    /// # Errors
    ///
    /// As [`crate::ConditionGuard::wait`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(condition: multiproc::blocking::Condition) -> multiproc::Result<()> {
    /// let mut guard = condition.acquire()?;
    /// guard.wait()?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn wait(&mut self) -> Result<()> {
        wait(self.inner.wait())
    }

    /// As [`wait`](Self::wait), for at most `timeout`: `Ok(true)` if notified, `Ok(false)` on
    /// timeout; either way the lock is held again.
    ///
    /// The blocking form of [`crate::ConditionGuard::wait_timeout`].
    ///
    /// # Errors
    ///
    /// As [`crate::ConditionGuard::wait_timeout`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(condition: multiproc::blocking::Condition) -> multiproc::Result<()> {
    /// let mut guard = condition.acquire()?;
    /// if !guard.wait_timeout(std::time::Duration::from_millis(100))? { println!("timed out"); }
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        wait(self.inner.wait_timeout(timeout))
    }

    /// Waits until `predicate` returns `true`, checking it first and after each notification;
    /// with a `timeout`, gives up when it passes. Returns the predicate's last value.
    ///
    /// The blocking form of [`crate::ConditionGuard::wait_for`], with a plain closure: it is
    /// called between waits, so it may use blocking forms itself.
    ///
    /// # Errors
    ///
    /// As [`crate::ConditionGuard::wait`].
    ///
    /// # Panics
    ///
    /// In an async context (see the [module docs](crate::blocking#panics)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(condition: multiproc::blocking::Condition, items: multiproc::blocking::Queue<u32>) -> multiproc::Result<()> {
    /// let mut guard = condition.acquire()?;
    /// let ready = guard.wait_for(|| !items.is_empty().unwrap_or(true), None)?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            match deadline {
                None => self.wait()?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    blocking_forms! {
        "crate::ConditionGuard", "# fn demo(condition: multiproc::blocking::Condition) -> multiproc::Result<()> {";
        /// Wakes up to `n` waiters; they get the lock after this guard releases it.
        fn notify(&self, n: usize) -> Result<()> = "condition.acquire()?.notify(1)?;";
        /// Wakes every waiter.
        fn notify_all(&self) -> Result<()> = "condition.acquire()?.notify_all()?;";
    }
}

wrapper! {
    /// A barrier shared between processes: the blocking twin of [`crate::Barrier`] (Python's
    /// `multiprocessing.Barrier`).
    Barrier wraps crate::Barrier, clone, serde
}

impl Barrier {
    /// A barrier for `parties` waiters, served by this process.
    ///
    /// # Panics
    ///
    /// If `parties` is 0, or this process's hub cannot bind its socket.
    pub fn new(parties: usize) -> Self {
        crate::Barrier::new(parties).into()
    }

    /// The number of parties the barrier waits for.
    pub fn parties(&self) -> usize {
        self.inner.parties()
    }

    blocking_forms! {
        "crate::Barrier", "# fn demo(barrier: multiproc::blocking::Barrier) -> multiproc::Result<()> {";
        /// Waits until every party waits; returns this party's index in `0..parties`.
        fn wait(&self) -> Result<usize> = "if barrier.wait()? == 0 { println!(\"first through\"); }";
        /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier.
        fn wait_timeout(&self, timeout: Duration) -> Result<usize> = "let index = barrier.wait_timeout(std::time::Duration::from_secs(5))?;";
        /// Breaks the barrier: pending and later waits fail until [`reset`](Self::reset).
        fn abort(&self) -> Result<()> = "barrier.abort()?;";
        /// Makes the barrier usable again; pending waits fail as broken.
        fn reset(&self) -> Result<()> = "barrier.reset()?;";
        /// How many parties are waiting now.
        fn n_waiting(&self) -> Result<usize> = "println!(\"{} waiting\", barrier.n_waiting()?);";
    }
}
