//! [`Queue`]: a FIFO queue shared between processes, served by the hub of the process that
//! created it.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::{self, Handle, InFlight, Link};
use super::hub::{ConnId, Items, Object, Reply, Request, take_parked};
use super::put_ring::{self, Rings};
use crate::error::{Error, Result};
use crate::protocol::hub::{Answer, Failure, Op, QueueOp};
use crate::protocol::{decode, encode};

/// How many items a [`Sink`](futures::Sink) sends per request.
const SINK_BATCH: usize = 512;
/// How many of those requests may await the hub's answer at once.
const SINK_IN_FLIGHT: usize = 8;
/// How many items a [`Stream`](futures::Stream) reads ahead at most.
const STREAM_BATCH: u32 = 128;

// ---------------------------------------------------------------------------------------------
// The hub side.

struct Getter {
    request: Request,
    max: u32,
}

struct Putter {
    request: Request,
    items: VecDeque<Vec<u8>>,
}

/// A queue's state on its hub; also serves [`JoinableQueue`](super::JoinableQueue).
pub(crate) struct QueueState {
    items: VecDeque<Vec<u8>>,
    capacity: Option<usize>,
    closed: bool,
    getters: VecDeque<Getter>,
    putters: VecDeque<Putter>,
    joinable: bool,
    unfinished: u64,
    joiners: VecDeque<Request>,
    /// Items put by other processes through shared memory, read before every request.
    rings: Rings,
}

impl QueueState {
    pub(crate) fn new(capacity: Option<usize>, joinable: bool) -> Self {
        QueueState {
            items: VecDeque::new(),
            capacity,
            closed: false,
            getters: VecDeque::new(),
            putters: VecDeque::new(),
            joinable,
            unfinished: 0,
            joiners: VecDeque::new(),
            rings: Rings::default(),
        }
    }

    fn room(&self) -> usize {
        self.capacity.map_or(usize::MAX, |capacity| {
            capacity.saturating_sub(self.items.len())
        })
    }

    fn admit(&mut self, item: Vec<u8>) {
        self.items.push_back(item);
        self.unfinished += 1;
    }

    /// Admits what the rings hold: every put that returned before the request being applied.
    fn read_rings(&mut self) {
        let Self {
            rings,
            items,
            unfinished,
            ..
        } = self;
        rings.read(|item| {
            items.push_back(item);
            *unfinished += 1;
        });
    }

    /// After a request: if a getter still waits, arms the rings and looks once more, so a put
    /// through a ring from now on rings the hub (see `put_ring.rs`).
    fn watch_rings(&mut self) {
        if !self.getters.is_empty() {
            self.rings.arm();
            self.read_rings();
            self.make_progress();
        }
    }

    fn attach_ring(&mut self, request: Request, items: Items) {
        let outcome = if self.capacity.is_some() {
            Err(Failure::InvalidState(
                "a bounded queue counts every item at its hub".into(),
            ))
        } else if self.closed {
            Err(Failure::Closed)
        } else {
            self.rings.attach(request.caller.conn, &items)
        };
        let _ = request.answer(match outcome {
            Ok(()) => Reply::ok(Answer::Done),
            Err(failure) => Reply::failed(failure),
        });
    }

    /// Hands items to parked getters and admits parked putters until neither can progress.
    fn make_progress(&mut self) {
        loop {
            let mut progressed = false;
            while !self.items.is_empty()
                && let Some(getter) = self.getters.pop_front()
            {
                // An item never goes to a process that has ended, though its connection may
                // not have been seen closing yet (it was killed while its get waited).
                if !getter.request.replier.is_waiting() || getter.request.replier.caller_has_ended()
                {
                    continue;
                }
                let count = (getter.max as usize).min(self.items.len());
                let items: Items = self.items.drain(..count).collect();
                if let Err(reply) = getter.request.answer(Reply::items(items)) {
                    for item in reply.items.into_iter().rev() {
                        self.items.push_front(item);
                    }
                }
                progressed = true;
            }
            while self.room() > 0
                && let Some(putter) = self.putters.front_mut()
            {
                let room = self.capacity.map_or(usize::MAX, |capacity| {
                    capacity.saturating_sub(self.items.len())
                });
                let count = room.min(putter.items.len());
                if count > 0 {
                    self.items.extend(putter.items.drain(..count));
                    self.unfinished += count as u64;
                    progressed = true;
                }
                if putter.items.is_empty() {
                    let putter = self.putters.pop_front().expect("front exists");
                    let _ = putter.request.answer(Reply::ok(Answer::Done));
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn put(&mut self, request: Request, wait: bool, items: Items) {
        if self.closed {
            let _ = request.answer(Reply::failed(Failure::Closed));
            return;
        }
        let fits = self.putters.is_empty() && items.len() <= self.room();
        if fits {
            for item in items {
                self.admit(item);
            }
            let _ = request.answer(Reply::ok(Answer::Done));
        } else if !wait {
            let _ = request.answer(Reply::failed(Failure::Full));
            return;
        } else {
            self.putters.push_back(Putter {
                request,
                items: items.into(),
            });
        }
        self.make_progress();
    }

    fn get(&mut self, request: Request, wait: bool, max: u32) {
        if self.items.is_empty() {
            if self.closed {
                let _ = request.answer(Reply::failed(Failure::Closed));
            } else if !wait {
                let _ = request.answer(Reply::failed(Failure::Empty));
            } else {
                self.getters.push_back(Getter { request, max });
            }
            return;
        }
        self.getters.push_back(Getter { request, max });
        self.make_progress();
    }

    fn close(&mut self) {
        self.closed = true;
        self.rings.close();
        for putter in self.putters.drain(..) {
            let _ = putter.request.answer(Reply::failed(Failure::Closed));
        }
        if self.items.is_empty() {
            for getter in self.getters.drain(..) {
                let _ = getter.request.answer(Reply::failed(Failure::Closed));
            }
        }
    }

    fn task_done(&mut self, request: Request) {
        if !self.joinable {
            let _ = request.answer(Reply::failed(Failure::InvalidState(
                "task_done on a queue that is not joinable".into(),
            )));
        } else if self.unfinished == 0 {
            let _ = request.answer(Reply::failed(Failure::InvalidState(
                "task_done() called more times than items were put".into(),
            )));
        } else {
            self.unfinished -= 1;
            let _ = request.answer(Reply::ok(Answer::Done));
            if self.unfinished == 0 {
                for joiner in self.joiners.drain(..) {
                    let _ = joiner.answer(Reply::ok(Answer::Done));
                }
            }
        }
    }
}

impl Object for QueueState {
    fn call(&mut self, request: Request, op: Op, items: Items) {
        let Op::Queue(op) = op else {
            let _ = request.answer(Reply::failed(Failure::Protocol("not a queue".into())));
            return;
        };
        self.read_rings();
        self.apply(request, op, items);
        self.watch_rings();
    }

    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request> {
        if let Some(getter) = take_parked(&mut self.getters, conn, id, |g| &g.request) {
            return Some(getter.request);
        }
        if let Some(putter) = take_parked(&mut self.putters, conn, id, |p| &p.request) {
            // Items already admitted stay; a single put is all or nothing, so only a
            // cancelled put_many can have put part of its items.
            let request = putter.request;
            self.make_progress();
            return Some(request);
        }
        take_parked(&mut self.joiners, conn, id, |r| r)
    }

    fn disconnected(&mut self, conn: ConnId) {
        // What the process put through its ring before it went is kept.
        self.read_rings();
        self.rings.forget(conn);
        self.getters.retain(|g| g.request.caller.conn != conn);
        self.putters.retain(|p| p.request.caller.conn != conn);
        self.joiners.retain(|r| r.caller.conn != conn);
        self.make_progress();
        self.watch_rings();
    }

    fn drain(&mut self) -> Vec<Request> {
        let getters = self.getters.drain(..).map(|g| g.request);
        let putters = self.putters.drain(..).map(|p| p.request);
        getters
            .chain(putters)
            .chain(self.joiners.drain(..))
            .collect()
    }
}

impl QueueState {
    fn apply(&mut self, request: Request, op: QueueOp, items: Items) {
        match op {
            QueueOp::AttachRing => self.attach_ring(request, items),
            QueueOp::RingRung => {
                self.make_progress();
                let _ = request.answer(Reply::ok(Answer::Done));
            }
            QueueOp::Put { wait } => self.put(request, wait, items),
            QueueOp::Get { wait, max } => self.get(request, wait, max.unwrap_or(1).max(1)),
            QueueOp::Unget => {
                for item in items.into_iter().rev() {
                    self.items.push_front(item);
                }
                let _ = request.answer(Reply::ok(Answer::Done));
                if self.closed && !self.items.is_empty() {
                    // Getters only park on an empty queue; nothing to wake besides them.
                }
                self.make_progress();
            }
            QueueOp::Len => {
                let _ = request.answer(Reply::ok(Answer::Count(self.items.len() as u64)));
            }
            QueueOp::Capacity => {
                let _ = request.answer(Reply::ok(Answer::Capacity {
                    capacity: self.capacity.map(|capacity| capacity as u64),
                    len: self.items.len() as u64,
                }));
            }
            QueueOp::Close => {
                self.close();
                let _ = request.answer(Reply::ok(Answer::Done));
            }
            QueueOp::TaskDone => self.task_done(request),
            QueueOp::Join => {
                if !self.joinable {
                    let _ = request.answer(Reply::failed(Failure::InvalidState(
                        "join on a queue that is not joinable".into(),
                    )));
                } else if self.unfinished == 0 {
                    let _ = request.answer(Reply::ok(Answer::Done));
                } else {
                    self.joiners.push_back(request);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handle.

/// A first-in, first-out queue shared between processes: Python's `multiprocessing.Queue`.
///
/// The queue lives in the process that created it (its hub); a `Queue` is a handle to it.
/// Handles are cheap to clone and serialize to a few bytes, so pass them to a
/// [`#[worker]`](crate::worker) as arguments: the child's handle reaches the same queue.
///
/// - [`put`](Self::put) returns once the item is held, so a process may exit (or be killed)
///   right after a `put` without losing the item (Python's feeder thread loses it), and a
///   value that fails to serialize is an error from `put` itself. From a process other than
///   the creator, a `put` to an unbounded queue is a copy into a ring of shared memory that
///   the hub reads (no round trip); a bounded queue, an item over 64 KiB, or a full ring take
///   a request to the hub, in order with the ring's items.
/// - A [bounded](Self::bounded) queue makes `put` wait at the hub until there is room, in
///   every process.
/// - Order is FIFO per producer; items of different producers interleave.
/// - [`close`](Self::close) closes the queue for everyone: puts fail with a
///   [`Closed`](crate::ErrorKind::Closed) error; gets drain what is left, then fail the same way.
/// - A process killed during a `put` or `get` breaks only its own connection; an item whose
///   `put` reported success is never lost.
///
/// As a [`Stream`](futures::Stream) it yields items until the queue is closed and drained,
/// reading up to 128 available items ahead (items read ahead but not consumed go back to the
/// front of the queue when the handle is dropped; they are lost if the process is killed). As
/// a [`Sink`](futures::Sink) it sends items in batches with several batches in flight, and its
/// `flush` returns once the hub holds every item sent: the fast way to fill a queue.
///
/// Objects live as long as the process that created them; handles used after that process
/// exited fail with a [`Closed`](crate::ErrorKind::Closed) error.
///
/// ```no_run
/// use multiproc::{worker, Process, Queue};
///
/// #[worker]
/// async fn produce(queue: Queue<String>) -> Result<(), String> {
///     queue.put("hello".to_string()).await.map_err(|error| error.to_string())
/// }
///
/// #[multiproc::main]
/// async fn main() -> multiproc::Result<()> {
///     let queue = Queue::new();
///     let p = Process::new(produce, (queue.clone(),)).start().await?;
///     assert_eq!(queue.get().await?, "hello");
///     p.join().await?.expect("the put succeeded");
///     Ok(())
/// }
/// ```
pub struct Queue<T> {
    pub(crate) handle: Handle,
    // Behind mutexes only to make the handle `Sync` (a boxed future is not); the Sink and
    // Stream reach them through `get_mut`, without locking.
    feeding: std::sync::Mutex<Feeding>,
    draining: std::sync::Mutex<Draining>,
    _items: PhantomData<fn(T) -> T>,
}

#[derive(Default)]
struct Feeding {
    link: Option<Link>,
    connecting: Option<BoxFuture<'static, Result<Link>>>,
    batch: Items,
    in_flight: VecDeque<InFlight>,
}

#[derive(Default)]
struct Draining {
    fetch: Option<BoxFuture<'static, Result<Reply>>>,
    read_ahead: VecDeque<Vec<u8>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue::from_handle(self.handle.clone())
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("hub", &self.handle.hub)
            .field("object", &self.handle.object)
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Handle::deserialize(deserializer).map(Queue::from_handle)
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let read_ahead: Items = self.draining_mut().read_ahead.drain(..).collect();
        if !read_ahead.is_empty() {
            client::send_later(self.handle.clone(), Op::Queue(QueueOp::Unget), read_ahead);
        }
    }
}

pub(crate) fn expect_started<T>(created: Result<T>) -> T {
    created.unwrap_or_else(|error| panic!("could not start this process's hub: {error}"))
}

impl<T> Queue<T> {
    pub(crate) fn from_handle(handle: Handle) -> Self {
        Queue {
            handle,
            feeding: Default::default(),
            draining: Default::default(),
            _items: PhantomData,
        }
    }

    fn feeding_mut(&mut self) -> &mut Feeding {
        self.feeding
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn draining_mut(&mut self) -> &mut Draining {
        self.draining
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn describe(&self) -> String {
        format!("queue {}", self.handle.object)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// An unbounded queue, served by this process.
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket (see [`try_new`](Self::try_new)).
    #[allow(clippy::new_without_default)] // creating a queue starts a server; keep it explicit
    pub fn new() -> Self {
        expect_started(Self::try_new())
    }

    /// An unbounded queue; fails if this process's hub cannot bind its socket.
    pub fn try_new() -> Result<Self> {
        Handle::create(Box::new(QueueState::new(None, false))).map(Queue::from_handle)
    }

    /// A queue holding at most `capacity` items (Python's `maxsize`); `put` waits for room.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or this process's hub cannot bind its socket.
    pub fn bounded(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a bounded queue needs a capacity of at least 1"
        );
        expect_started(
            Handle::create(Box::new(QueueState::new(Some(capacity), false)))
                .map(Queue::from_handle),
        )
    }

    fn encode_item(&self, item: &T) -> Result<Vec<u8>> {
        encode(item, &format!("an item for {}", self.describe()))
    }

    fn decode_item(&self, bytes: &[u8]) -> Result<T> {
        decode(bytes, &format!("an item from {}", self.describe()))
    }

    async fn request(&self, op: QueueOp, items: Items, timeout: Option<Duration>) -> Result<Reply> {
        client::call(&self.handle, Op::Queue(op), items, timeout).await
    }

    async fn put_items(
        &self,
        mut items: Items,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        // Through this process's ring where the queue takes one: no round trip. What does
        // not fit goes by request, which the hub applies after reading the ring.
        let mut through_ring = 0;
        for item in &items {
            if !put_ring::put(&self.handle, item).await? {
                break;
            }
            through_ring += 1;
        }
        items.drain(..through_ring);
        if items.is_empty() {
            return Ok(());
        }
        let reply = self.request(QueueOp::Put { wait }, items, timeout).await?;
        match reply.outcome {
            Ok(_) => Ok(()),
            Err(Failure::Cancelled) => Err(Failure::Full.into_error(&self.describe())),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Puts `item` at the back of the queue, waiting for room in a bounded queue; returns once
    /// the item is held (in shared memory the hub reads, or at the hub).
    ///
    /// # Errors
    ///
    /// [`is_serialization`](Error::is_serialization) if `item` does not serialize (nothing is
    /// sent; the queue stays usable); [`is_closed`](Error::is_closed) if the queue is closed
    /// or its process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled `put` either put the item or did not, and a put still waiting
    /// for room is withdrawn.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let queue = multiproc::Queue::bounded(10);
    /// queue.put(42u32).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put(&self, item: T) -> Result<()> {
        let bytes = self.encode_item(&item)?;
        self.put_items(vec![bytes], true, None).await
    }

    /// Puts `item` unless the bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`is_full`](Error::is_full) if there is no room now; otherwise as [`put`](Self::put).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`put`](Self::put).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let queue = multiproc::Queue::bounded(1);
    /// queue.try_put(1u32).await?;
    /// assert!(queue.try_put(2).await.unwrap_err().is_full());
    /// # Ok(()) }
    /// ```
    pub async fn try_put(&self, item: T) -> Result<()> {
        let bytes = self.encode_item(&item)?;
        self.put_items(vec![bytes], false, None).await
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`is_full`](Error::is_full) if there was no room within `timeout`; otherwise as
    /// [`put`](Self::put).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`put`](Self::put). Returns within `timeout` plus about 100 ms whatever
    /// the queue's process does; if that process is stopped, the put is withdrawn when it
    /// resumes, unless it finds room at once then: the item is put, and the call has already
    /// answered [`is_full`](Error::is_full).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// use std::time::Duration;
    /// let queue = multiproc::Queue::bounded(1);
    /// queue.put_timeout(1u32, Duration::from_millis(100)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        let bytes = self.encode_item(&item)?;
        self.put_items(vec![bytes], true, Some(timeout)).await
    }

    /// Puts every item, in order, in one request; returns once the hub holds them all.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put). If one item fails to serialize, none is sent.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe on a bounded queue: a cancelled `put_many` may have put a prefix of the
    /// items. Cancel safe on an unbounded queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let queue = multiproc::Queue::new();
    /// queue.put_many(0..1000u32).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_many(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|item| self.encode_item(&item))
            .collect::<Result<Items>>()?;
        if items.is_empty() {
            return Ok(());
        }
        self.put_items(items, true, None).await
    }

    async fn get_items(&self, wait: bool, timeout: Option<Duration>) -> Result<T> {
        let reply = self
            .request(QueueOp::Get { wait, max: None }, Vec::new(), timeout)
            .await?;
        match reply.outcome {
            Ok(_) => {
                let bytes = reply.items.into_iter().next().ok_or_else(|| {
                    Failure::Protocol("a get answered without an item".into())
                        .into_error(&self.describe())
                })?;
                self.decode_item(&bytes)
            }
            Err(Failure::Cancelled) => Err(Failure::Empty.into_error(&self.describe())),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Takes the item at the front of the queue, waiting for one.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) once the queue is closed and empty, or its process has
    /// exited; [`is_serialization`](Error::is_serialization) if the item does not decode as `T`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an item taken for a cancelled `get` goes back to the front of the queue,
    /// even when it arrives after the cancellation.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(queue: multiproc::Queue<String>) -> multiproc::Result<()> {
    /// let message = queue.get().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<T> {
        self.get_items(true, None).await
    }

    /// Takes the front item if there is one.
    ///
    /// # Errors
    ///
    /// [`is_empty`](Error::is_empty) if the queue is empty now; otherwise as [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(queue: multiproc::Queue<u32>) -> multiproc::Result<()> {
    /// match queue.try_get().await {
    ///     Ok(item) => println!("got {item}"),
    ///     Err(error) if error.is_empty() => println!("nothing yet"),
    ///     Err(error) => return Err(error),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_get(&self) -> Result<T> {
        self.get_items(false, None).await
    }

    /// Takes the front item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`is_empty`](Error::is_empty) if no item came within `timeout`; otherwise as
    /// [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`get`](Self::get). Returns within `timeout` plus about 100 ms whatever
    /// the queue's process does (stopped, killed); an item it hands out after that (a stopped
    /// process that resumes) goes back to the front of the queue as soon as it reaches this
    /// process, never kept by nobody.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(queue: multiproc::Queue<u32>) -> multiproc::Result<()> {
    /// use std::time::Duration;
    /// let item = queue.get_timeout(Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_items(true, Some(timeout)).await
    }

    /// The number of items in the queue now (others may change it at once).
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) if the queue's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(queue: multiproc::Queue<u32>) -> multiproc::Result<()> {
    /// println!("{} items waiting", queue.len().await?);
    /// # Ok(()) }
    /// ```
    pub async fn len(&self) -> Result<usize> {
        let reply = self.request(QueueOp::Len, Vec::new(), None).await?;
        match reply.outcome {
            Ok(Answer::Count(count)) => Ok(count as usize),
            Ok(_) => Err(
                Failure::Protocol("a length answered without a count".into())
                    .into_error(&self.describe()),
            ),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Whether the queue is empty now.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(queue: multiproc::Queue<u32>) -> multiproc::Result<()> {
    /// if queue.is_empty().await? { println!("drained"); }
    /// # Ok(()) }
    /// ```
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// The most items the queue holds (Python's `maxsize`), or `None` for an unbounded queue.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) if the queue's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// assert_eq!(multiproc::Queue::<u32>::bounded(8).capacity().await?, Some(8));
    /// assert_eq!(multiproc::Queue::<u32>::new().capacity().await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn capacity(&self) -> Result<Option<usize>> {
        Ok(self.bound_and_len().await?.0)
    }

    /// Whether the queue is full now, so a [`try_put`](Self::try_put) would fail (others may
    /// change it at once). Python's `Queue.full()`: always `false` for an unbounded queue.
    ///
    /// # Errors
    ///
    /// As [`capacity`](Self::capacity).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let queue = multiproc::Queue::bounded(1);
    /// queue.put(1u32).await?;
    /// assert!(queue.full().await?);
    /// # Ok(()) }
    /// ```
    pub async fn full(&self) -> Result<bool> {
        let (capacity, len) = self.bound_and_len().await?;
        Ok(capacity.is_some_and(|capacity| len >= capacity))
    }

    /// The queue's bound and its length, read at the same moment on its hub.
    async fn bound_and_len(&self) -> Result<(Option<usize>, usize)> {
        let reply = self.request(QueueOp::Capacity, Vec::new(), None).await?;
        match reply.outcome {
            Ok(Answer::Capacity { capacity, len }) => {
                Ok((capacity.map(|capacity| capacity as usize), len as usize))
            }
            Ok(_) => Err(
                Failure::Protocol("a capacity answered without a bound".into())
                    .into_error(&self.describe()),
            ),
            Err(failure) => Err(failure.into_error(&self.describe())),
        }
    }

    /// Closes the queue for every process: later puts fail, gets drain what is left and then
    /// fail, waiting getters and putters are told at once. Closing twice is harmless.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) if the queue's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the queue is closed or not.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(queue: multiproc::Queue<u32>) -> multiproc::Result<()> {
    /// queue.close().await?;
    /// assert!(queue.put(1).await.unwrap_err().is_closed());
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<()> {
        let reply = self.request(QueueOp::Close, Vec::new(), None).await?;
        reply
            .outcome
            .map(drop)
            .map_err(|failure| failure.into_error(&self.describe()))
    }

    pub(crate) async fn simple(&self, op: QueueOp) -> Result<()> {
        let reply = self.request(op, Vec::new(), None).await?;
        reply
            .outcome
            .map(drop)
            .map_err(|failure| failure.into_error(&self.describe()))
    }

    fn poll_link(&mut self, cx: &mut Context<'_>) -> Poll<Result<Link>> {
        if let Some(link) = &self.feeding_mut().link {
            return Poll::Ready(Ok(link.clone()));
        }
        let handle = self.handle.clone();
        let connecting = self
            .feeding_mut()
            .connecting
            .get_or_insert_with(|| Box::pin(async move { client::link(&handle).await }));
        let link = ready!(connecting.as_mut().poll(cx));
        self.feeding_mut().connecting = None;
        let link = link?;
        self.feeding_mut().link = Some(link.clone());
        Poll::Ready(Ok(link))
    }

    /// Sends the current batch; sending is immediate, so batches reach the hub in order.
    fn send_batch(&mut self, link: &Link) -> Result<()> {
        let items = std::mem::take(&mut self.feeding_mut().batch);
        if items.is_empty() {
            return Ok(());
        }
        let in_flight = client::start(
            link,
            self.handle.object,
            Op::Queue(QueueOp::Put { wait: true }),
            items,
            client::current_task(),
        )?;
        self.feeding_mut().in_flight.push_back(in_flight);
        Ok(())
    }

    /// Waits until at most `keep` batches await their answer.
    fn poll_answers(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<Result<()>> {
        while self.feeding_mut().in_flight.len() > keep {
            let front = self.feeding_mut().in_flight.front_mut().expect("not empty");
            let reply = ready!(front.poll_reply(cx));
            self.feeding_mut().in_flight.pop_front();
            if let Err(failure) = reply?.outcome {
                return Poll::Ready(Err(failure.into_error(&self.describe())));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Sink<T> for Queue<T> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        if this.feeding_mut().batch.len() >= SINK_BATCH {
            let link = ready!(this.poll_link(cx))?;
            this.send_batch(&link)?;
        }
        this.poll_answers(cx, SINK_IN_FLIGHT)
    }

    fn start_send(mut self: Pin<&mut Self>, item: T) -> Result<()> {
        let bytes = self.encode_item(&item)?;
        self.feeding_mut().batch.push(bytes);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        if !this.feeding_mut().batch.is_empty() {
            let link = ready!(this.poll_link(cx))?;
            this.send_batch(&link)?;
        }
        this.poll_answers(cx, 0)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_flush(cx)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Stream for Queue<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.draining_mut().read_ahead.pop_front() {
                return Poll::Ready(Some(this.decode_item(&bytes)));
            }
            let handle = this.handle.clone();
            let fetch = this.draining_mut().fetch.get_or_insert_with(|| {
                Box::pin(async move {
                    let op = Op::Queue(QueueOp::Get {
                        wait: true,
                        max: Some(STREAM_BATCH),
                    });
                    client::call(&handle, op, Vec::new(), None).await
                })
            });
            let reply = ready!(fetch.as_mut().poll(cx));
            this.draining_mut().fetch = None;
            match reply {
                Ok(Reply {
                    outcome: Ok(_),
                    items,
                }) => this.draining_mut().read_ahead.extend(items),
                Ok(Reply {
                    outcome: Err(Failure::Closed),
                    ..
                }) => return Poll::Ready(None),
                Ok(Reply {
                    outcome: Err(failure),
                    ..
                }) => return Poll::Ready(Some(Err(failure.into_error(&this.describe())))),
                Err(error) if error.is_closed() => return Poll::Ready(None),
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }
}
