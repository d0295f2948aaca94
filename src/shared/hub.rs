//! The hub: the server that holds this process's shared objects and answers requests for them.
//!
//! One hub per process, started on the first object creation. It binds one
//! [listener](crate::transport::Listener) and serves every authenticated connection on the
//! [shared runtime](runtime): a dedicated thread with its own tokio runtime, so objects keep
//! being served while the owning process's own runtime is blocked by a sync worker or has been
//! dropped (a `#[tokio::test]` runtime ends before the process does).
//!
//! All objects sit behind one mutex. A request from another process is read by its
//! connection's task, applied under the mutex, and answered through the connection's coalescing
//! writer; a request from this process takes the same mutex directly, with no socket and no
//! task switch (see [`client`](super::client)). A request that must wait (a `get` on an empty
//! queue, an `acquire` of a held lock) is parked inside its object with a [`Replier`] and
//! answered when another request makes progress possible.
//!
//! # Adding an object type
//!
//! 1. Add a variant to [`Op`](crate::protocol::hub::Op) with the type's operations.
//! 2. Write a state struct implementing [`Object`]: `call` applies one operation and answers
//!    (now, or later through a parked [`Replier`]); `cancel` drops a parked request;
//!    `disconnected` cleans up after a process whose connection closed; `drain` hands over
//!    every parked request when the object is [retired](Hub::retire).
//! 3. Create it with [`Hub::create`] from the handle's constructor, and talk to it through
//!    [`client::call`](super::client::call) (or [`client::ask`](super::client::ask) when no
//!    items travel). If the answer to a request grants something that must be given back when
//!    nobody is left to receive it (items taken, a lock granted), name the undoing request in
//!    [`undo_of`](crate::protocol::hub::undo_of).
//!
//! An object is retired, for good, when what it belongs to ends (a manager's store and what
//! it hosts, at the manager's shutdown): whoever still names it, in any process, is told why
//! (a [`Failure::Gone`]) rather than finding nothing.
//!
//! An object that creates objects at its clients' request (a manager's store hosting a queue)
//! does so with [`Hub::create_from_request`], since the request already holds the hub's lock:
//! the rest (connections, multiplexing, cancellation, death of a client) is already here. Items and values travel as [`Items`] (encoded byte
//! strings), so the hub never needs to know a user's types.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use crate::error::Result;
use crate::protocol::hub::{Answer, Failure, HubReply, HubRequest, ObjectId, Op};
use crate::protocol::{decode, encode};
use crate::transport::accept::Handshakes;
use crate::transport::{
    self, Burst, DEFAULT_MAX_FRAME_LEN, FrameReader, FrameWriter, InFrame, Listener,
};
use tokio::io::AsyncRead;

/// Identifies a connection to the hub; [`LOCAL`] is the hub's own process.
pub(crate) type ConnId = u64;

/// The connection id of requests made by the hub's own process.
pub(crate) const LOCAL: ConnId = 0;

/// Encoded items, as a queue holds them.
pub(crate) type Items = Vec<Vec<u8>>;

/// Who is asking: the connection (one per process) and the tokio task within it. Locks record
/// their owner as a `Caller`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Caller {
    pub(crate) conn: ConnId,
    pub(crate) task: u64,
}

/// An answer: what happened, and the items it carries.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) outcome: std::result::Result<Answer, Failure>,
    pub(crate) items: Items,
}

impl Reply {
    pub(crate) fn ok(answer: Answer) -> Self {
        Reply {
            outcome: Ok(answer),
            items: Vec::new(),
        }
    }

    pub(crate) fn failed(failure: Failure) -> Self {
        Reply {
            outcome: Err(failure),
            items: Vec::new(),
        }
    }

    pub(crate) fn items(items: Items) -> Self {
        Reply {
            outcome: Ok(Answer::Items),
            items,
        }
    }
}

/// Where the answer to one request goes.
#[derive(Debug)]
pub(crate) enum Replier {
    /// A caller in this process, waiting on a channel.
    Local(oneshot::Sender<Reply>),
    /// A caller in another process (`peer_pid`, 0 if unknown): the answer goes out on its
    /// connection.
    Remote {
        writer: FrameWriter,
        id: u64,
        peer_pid: u32,
    },
    /// Nobody waits (a guard released on drop).
    Discard,
}

impl Replier {
    /// Delivers `reply`. Gives it back when a local caller has stopped waiting, so the object
    /// can keep what it carries (an item goes back to the queue); a remote caller that has
    /// stopped waiting gives items back itself.
    pub(crate) fn send(self, reply: Reply) -> std::result::Result<(), Reply> {
        match self {
            Replier::Local(sender) => sender.send(reply),
            Replier::Remote { writer, id, .. } => {
                let payload = if reply.items.is_empty() {
                    Vec::new()
                } else {
                    encode_items(reply.items)
                };
                let header = HubReply {
                    id,
                    outcome: reply.outcome,
                };
                if let Err(error) = writer.send(&header, payload) {
                    tracing::debug!(target: "multiproc", "a hub reply was not sent: {error}");
                }
                Ok(())
            }
            Replier::Discard => Ok(()),
        }
    }

    /// Whether the caller is still waiting, as far as this process can tell.
    pub(crate) fn is_waiting(&self) -> bool {
        match self {
            Replier::Local(sender) => !sender.is_closed(),
            Replier::Remote { .. } | Replier::Discard => true,
        }
    }

    /// Whether the caller's process has ended, though its connection may not have been seen
    /// closing yet (it was killed a moment ago). Reads `/proc`: a few microseconds, against
    /// the round trip a remote request costs anyway.
    pub(crate) fn caller_has_ended(&self) -> bool {
        match self {
            Replier::Remote { peer_pid, .. } if *peer_pid != 0 => {
                crate::shm::owner::has_ended(*peer_pid)
            }
            _ => false,
        }
    }
}

/// One request as an object sees it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) caller: Caller,
    /// The caller's request id, unique per connection; [`Object::cancel`] names it.
    pub(crate) id: u64,
    pub(crate) replier: Replier,
}

impl Request {
    /// Answers now.
    pub(crate) fn answer(self, reply: Reply) -> std::result::Result<(), Reply> {
        self.replier.send(reply)
    }
}

/// A shared object's state on its hub. See the [module docs](self) for how to add one.
pub(crate) trait Object: Send {
    /// Applies `op`, answering `request` now or parking it to answer later.
    fn call(&mut self, request: Request, op: Op, items: Items);

    /// Removes the parked request `id` of `conn`, returning it so the hub can answer it
    /// [`Cancelled`](Failure::Cancelled). `None` when it was already answered.
    fn cancel(&mut self, conn: ConnId, id: u64) -> Option<Request>;

    /// The process behind `conn` is gone: drop its parked requests and release what it held.
    fn disconnected(&mut self, conn: ConnId);

    /// The object is being [retired](Hub::retire): hands back every parked request, so that
    /// the hub can tell each caller why instead of leaving it waiting.
    fn drain(&mut self) -> Vec<Request>;

    /// Objects of the same hub that this one created and that are retired with it (a
    /// manager's hosted queues and locks).
    fn owned(&self) -> Vec<ObjectId> {
        Vec::new()
    }
}

/// Removes and returns the parked request `id` of `conn` from a queue of parked requests.
pub(crate) fn take_parked<W>(
    parked: &mut std::collections::VecDeque<W>,
    conn: ConnId,
    id: u64,
    request: impl Fn(&W) -> &Request,
) -> Option<W> {
    let position = parked.iter().position(|waiter| {
        let request = request(waiter);
        request.caller.conn == conn && request.id == id
    })?;
    parked.remove(position)
}

/// This process's hub.
pub(crate) struct Hub {
    name: String,
    state: Mutex<HubState>,
    /// Ids are taken outside the state's lock so that a request can reserve one while it
    /// holds that lock (see [`Hub::create_from_request`]).
    next_object: AtomicU64,
    /// Objects created by the request being applied; they join `objects` when it returns.
    born: Mutex<Vec<(ObjectId, Box<dyn Object>)>>,
    /// Whether `born` holds anything, so that other requests skip its lock. Read and written
    /// only under the state's lock.
    any_born: AtomicBool,
}

struct HubState {
    objects: HashMap<ObjectId, Box<dyn Object>>,
    /// Why each retired object went, told to whoever still names it. Kept for the life of
    /// the hub: a few bytes per object, and ids are never reused.
    retired: HashMap<ObjectId, Arc<str>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("name", &self.name).finish()
    }
}

static HUB: Mutex<Option<Arc<Hub>>> = Mutex::new(None);

impl Hub {
    /// This process's hub, started on first use.
    pub(crate) fn get_or_start() -> Result<Arc<Hub>> {
        let mut slot = HUB.lock().expect("hub slot poisoned");
        if let Some(hub) = &*slot {
            return Ok(hub.clone());
        }
        let listener = {
            // Registering with the shared runtime's reactor, not the caller's: the listener
            // must outlive the caller's runtime.
            let _context = runtime().enter();
            Listener::bind()?
        };
        let hub = Arc::new(Hub {
            name: listener.name().to_string(),
            state: Mutex::new(HubState {
                objects: HashMap::new(),
                retired: HashMap::new(),
            }),
            next_object: AtomicU64::new(1),
            born: Mutex::new(Vec::new()),
            any_born: AtomicBool::new(false),
        });
        runtime().spawn(accept_connections(hub.clone(), listener));
        *slot = Some(hub.clone());
        Ok(hub)
    }

    /// This process's hub if it has been started.
    pub(crate) fn running() -> Option<Arc<Hub>> {
        HUB.lock().expect("hub slot poisoned").clone()
    }

    /// The socket name other processes connect to.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Adds an object; returns its id.
    pub(crate) fn create(&self, object: Box<dyn Object>) -> ObjectId {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        self.lock().objects.insert(id, object);
        id
    }

    /// Adds an object from inside [`Object::call`], which runs under the hub's lock (so
    /// [`create`](Self::create) would deadlock): the id is reserved now, and the object joins
    /// the hub as soon as the request returns, before the lock is released, so no request can
    /// name it before it is there. The caller must be applying a request of this hub.
    pub(crate) fn create_from_request(&self, object: Box<dyn Object>) -> ObjectId {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        self.born
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((id, object));
        self.any_born.store(true, Ordering::Relaxed);
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // An object that panicked mid-request leaves its own state as it was; the others
        // are intact, so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies one request.
    pub(crate) fn dispatch(&self, object: ObjectId, op: Op, items: Items, request: Request) {
        if let Op::Retire(reason) = op {
            self.retire(object, &reason);
            let _ = request.answer(Reply::ok(Answer::Done));
            return;
        }
        let mut state = self.lock();
        match state.objects.get_mut(&object) {
            Some(target) => {
                target.call(request, op, items);
                // Set only by a request under the state's lock, which we hold: a plain load
                // keeps the common case to one uncontended read.
                if self.any_born.load(Ordering::Relaxed) {
                    self.any_born.store(false, Ordering::Relaxed);
                    let born = std::mem::take(
                        &mut *self
                            .born
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()),
                    );
                    state.objects.extend(born);
                }
            }
            None => {
                let failure = match state.retired.get(&object) {
                    Some(reason) => Failure::Gone(reason.to_string()),
                    None => Failure::NoSuchObject,
                };
                let _ = request.answer(Reply::failed(failure));
            }
        }
    }

    /// Removes `object` and the objects it [owns](Object::owned), for good: their parked
    /// requests, and every later request naming them, from any process, fail with
    /// [`Failure::Gone`] and `reason`.
    pub(crate) fn retire(&self, object: ObjectId, reason: &str) {
        let reason: Arc<str> = reason.into();
        let mut gone = Vec::new();
        {
            let mut state = self.lock();
            let mut next = vec![object];
            while let Some(id) = next.pop() {
                let Some(mut target) = state.objects.remove(&id) else {
                    continue;
                };
                next.extend(target.owned());
                for request in target.drain() {
                    let _ = request.answer(Reply::failed(Failure::Gone(reason.to_string())));
                }
                state.retired.insert(id, reason.clone());
                gone.push(target);
            }
        }
        // A store may hold much: freed outside the lock, so other objects keep being served.
        drop(gone);
    }

    /// Answers the parked request `id` of `conn` as cancelled, if it is still parked.
    pub(crate) fn cancel(&self, conn: ConnId, object: ObjectId, id: u64) {
        let mut state = self.lock();
        if let Some(target) = state.objects.get_mut(&object)
            && let Some(request) = target.cancel(conn, id)
        {
            let _ = request.answer(Reply::failed(Failure::Cancelled));
        }
    }

    fn disconnected(&self, conn: ConnId) {
        let mut state = self.lock();
        for object in state.objects.values_mut() {
            object.disconnected(conn);
        }
    }
}

/// The runtime that serves hubs and carries this process's connections to other hubs.
pub(crate) fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the shared-objects runtime");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("multiproc-hub".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("starting the shared-objects thread");
        handle
    })
}

/// Connection ids, unique in this process whatever listener (local or the manager's TCP
/// front) accepted the connection.
static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(LOCAL + 1);

fn next_conn() -> ConnId {
    NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Accepts connections for as long as the process lives, each authenticated in its own task
/// (see [`transport::accept`]) and then served in another.
async fn accept_connections(hub: Arc<Hub>, listener: Listener) {
    let mut handshakes = Handshakes::default();
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors, most likely: keep serving the connections already
                // open and try again shortly.
                handshakes.back_off(listener.name(), &error).await;
                continue;
            }
        };
        let hub = hub.clone();
        handshakes.start(async move {
            match transport::authenticate(stream, DEFAULT_MAX_FRAME_LEN).await {
                Ok(connection) => {
                    let transport::Connection {
                        reader,
                        writer,
                        peer_pid,
                        ..
                    } = connection;
                    tokio::spawn(serve_connection(
                        hub,
                        next_conn(),
                        reader,
                        writer,
                        peer_pid,
                    ));
                }
                Err(error) => {
                    tracing::warn!(target: "multiproc", "the hub {} refused a connection: {error}", hub.name());
                }
            }
        });
    }
}

impl Hub {
    /// Serves requests read from `reader` on an already authenticated stream of another
    /// kind (the manager's TCP front) exactly as a local connection's, answering on `writer`.
    /// `peer` names the peer in logs. Returns when the stream ends.
    pub(crate) async fn serve_stream<R: AsyncRead + Unpin>(
        self: Arc<Self>,
        reader: FrameReader<R>,
        writer: FrameWriter,
        peer: u32,
    ) {
        serve_connection(self, next_conn(), reader, writer, peer).await;
    }
}

async fn serve_connection<R: AsyncRead + Unpin>(
    hub: Arc<Hub>,
    conn: ConnId,
    mut reader: FrameReader<R>,
    writer: FrameWriter,
    peer_pid: u32,
) {
    // Also when the task is aborted (a manager's TCP front stopping drops its connections):
    // what the peer held is released and its parked requests dropped, so nobody in this
    // process waits on a lock whose holder can no longer release it.
    let _disconnect = Disconnect {
        hub: hub.clone(),
        conn,
    };
    // A client that pipelines requests gets the answers to a burst of them in one write.
    let handle = |frame: InFrame| {
        let request = match frame.header::<HubRequest>() {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(target: "multiproc", "a malformed hub request from pid {peer_pid}: {error}");
                return ControlFlow::Break(());
            }
        };
        match request {
            HubRequest::Call {
                id,
                object,
                task,
                op,
            } => {
                let replier = Replier::Remote {
                    writer: writer.clone(),
                    id,
                    peer_pid,
                };
                dispatch_call(&hub, Caller { conn, task }, object, op, frame, replier, id);
            }
            HubRequest::Cancel { id, object } => hub.cancel(conn, object, id),
            HubRequest::Sync { id } => {
                let replier = Replier::Remote {
                    writer: writer.clone(),
                    id,
                    peer_pid,
                };
                let _ = replier.send(Reply::ok(Answer::Done));
            }
        }
        ControlFlow::Continue(())
    };
    loop {
        match reader.read_burst(handle).await {
            Ok(Burst::Handled) => {}
            Ok(Burst::Stopped | Burst::Ended) => break,
            Err(error) => {
                tracing::debug!(target: "multiproc", "hub connection from pid {peer_pid}: {error}");
                break;
            }
        }
    }
}

/// Decodes the items of a call read from a connection and hands it to its object; items
/// that do not decode are answered as a protocol failure.
fn dispatch_call(
    hub: &Hub,
    caller: Caller,
    object: ObjectId,
    op: Op,
    frame: InFrame,
    replier: Replier,
    id: u64,
) {
    let payload = frame.into_payload();
    let items = if payload.is_empty() {
        Vec::new()
    } else {
        match decode_items(&payload) {
            Ok(items) => items,
            Err(error) => {
                let _ = replier.send(Reply::failed(Failure::Protocol(error.to_string())));
                return;
            }
        }
    };
    hub.dispatch(
        object,
        op,
        items,
        Request {
            caller,
            id,
            replier,
        },
    );
}

/// Tells the hub's objects that a connection is gone when dropped.
struct Disconnect {
    hub: Arc<Hub>,
    conn: ConnId,
}

impl Drop for Disconnect {
    fn drop(&mut self) {
        self.hub.disconnected(self.conn);
    }
}

/// Encodes items for a frame's payload.
pub(crate) fn encode_items(items: Items) -> Vec<u8> {
    let items: Vec<ByteBuf> = items.into_iter().map(ByteBuf::from).collect();
    encode(&items, "queue items").expect("byte strings always encode")
}

/// Decodes a frame's payload of items.
pub(crate) fn decode_items(payload: &[u8]) -> Result<Items> {
    let items: Vec<ByteBuf> = decode(payload, "queue items")?;
    Ok(items.into_iter().map(ByteBuf::into_vec).collect())
}
