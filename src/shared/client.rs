//! Reaching a hub: directly in the hub's own process, over one multiplexed connection from
//! any other.
//!
//! A [`Handle`] names an object as (hub socket name, object id); that pair is all a shared
//! object serializes to. The first request for a remote hub opens one authenticated
//! connection on the [shared runtime](super::hub::runtime); every later request of this
//! process, from any task or runtime, goes over it, tagged with a request id whose answer
//! comes back through a oneshot channel. The connection's writer coalesces requests queued
//! while the socket is busy, so pipelined requests cost few system calls.
//!
//! A request the caller stops waiting for (a timeout, a dropped future) is cancelled at the
//! hub; if its answer had already been sent, or is sent later, and grants something (items, a
//! lock, a permit), it is given back as soon as it arrives (the items to the front of their
//! queue), so a cancelled `get` or `acquire` keeps nothing. A timed request never waits on the
//! hub past its bound plus about 100 ms: a hub that does not answer its cancellation (or a
//! probe) by then is stalled or gone, and the caller is answered as if it had cancelled. An
//! untimed request fails as soon as the connection closes, which the kernel does the moment
//! the hub's process dies.
//!
//! A manager served over TCP is named `tcp://addr/run-<run>`, or `tls://addr/run-<run>` when
//! served with TLS (see [`hub_name`](mod@super::hub_name)). A process keeps one link per address
//! (and scheme), whatever the run; a handle may use it only if the link reached the
//! handle's run, so a proxy of a restarted manager's earlier run is refused here, before
//! anything is sent. Unlike a process's hub, a manager may come back at its address, so a
//! closed TCP link is replaced on its next use.

use std::collections::HashMap;
use std::future::Future as _;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::Either;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, oneshot};

use super::hub::{Caller, Hub, Items, LOCAL, Replier, Reply, Request, decode_items, runtime};
use super::hub_name::{self, ManagerHub, hub_name, link_name};
use crate::error::{Error, Result};
use crate::protocol::Welcome;
use crate::protocol::hub::{Answer, Failure, HubReply, HubRequest, ObjectId, Op, grants, undo_of};
use crate::transport::tls::TlsClientConfig;
use crate::transport::{self, DEFAULT_MAX_FRAME_LEN, FrameReader, FrameWriter};
use tokio::io::AsyncRead;

/// The name of one object: its hub and its id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Handle {
    pub(crate) hub: String,
    pub(crate) object: ObjectId,
}

impl Handle {
    /// Creates `object` on this process's hub.
    pub(crate) fn create(object: Box<dyn super::hub::Object>) -> Result<Self> {
        let hub = Hub::get_or_start()?;
        let id = hub.create(object);
        Ok(Handle {
            hub: hub.name().to_string(),
            object: id,
        })
    }
}

/// The way to an object's hub.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    Local(Arc<Hub>),
    Remote(Arc<Remote>),
}

impl Link {
    /// The error to give for a request on this link if its connection has closed (the hub's
    /// process died or closed it); `None` while it is open.
    pub(crate) fn gone(&self) -> Option<Error> {
        match self {
            Link::Local(_) => None,
            Link::Remote(remote) => remote.closed.load(Ordering::SeqCst).then(|| gone(remote)),
        }
    }
}

/// This process's connection to another process's hub.
#[derive(Debug)]
pub(crate) struct Remote {
    hub: String,
    /// For a TCP manager, the run this connection reached: only its objects may use it.
    run: Option<u64>,
    writer: FrameWriter,
    waiting: Mutex<HashMap<u64, Waiting>>,
    closed: AtomicBool,
}

/// A request of this process waiting for its answer from a remote hub.
#[derive(Debug)]
struct Waiting {
    object: ObjectId,
    task: u64,
    undo: Option<Op>,
    sender: oneshot::Sender<Reply>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

type RemoteSlot = Arc<OnceCell<Arc<Remote>>>;

static REMOTES: Mutex<Option<HashMap<String, RemoteSlot>>> = Mutex::new(None);

/// The link to `handle`'s hub, connecting on first use.
pub(crate) async fn link(handle: &Handle) -> Result<Link> {
    if let Some(hub) = Hub::running()
        && hub.name() == handle.hub
    {
        return Ok(Link::Local(hub));
    }
    if let Some(manager) = hub_name::parse_hub_name(&handle.hub) {
        return manager_link(manager).await;
    }
    let slot = slot(&handle.hub, false);
    let remote = slot.get_or_try_init(|| connect(handle.hub.clone())).await?;
    Ok(Link::Remote(remote.clone()))
}

/// The slot of the link kept under `name`. With `renew`, a link that has closed is forgotten,
/// so that this use connects again.
fn slot(name: &str, renew: bool) -> RemoteSlot {
    let mut remotes = REMOTES.lock().expect("remote hubs poisoned");
    let slot = remotes
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_default();
    if renew
        && slot
            .get()
            .is_some_and(|remote| remote.closed.load(Ordering::SeqCst))
    {
        *slot = RemoteSlot::default();
    }
    slot.clone()
}

/// The link to the manager `manager` names, for an object of its run: the process's one link
/// to that address (with TLS or not, as the name says), which must reach that run.
async fn manager_link(manager: ManagerHub<'_>) -> Result<Link> {
    let ManagerHub { addr, run, tls } = manager;
    // Unlike a process, a manager can come back at its address (a network cut, or served
    // again): a closed link is replaced on next use. Whether the server is the same run is
    // learnt on connecting, and only a handle of that run may use the link.
    let slot = slot(&link_name(addr, tls), true);
    let remote = slot.get_or_try_init(|| connect_manager(addr, tls)).await?;
    if remote.run.is_none() || remote.run != run {
        let connect = connect_call(addr, tls);
        return Err(Error::closed(format!(
            "this object belonged to an earlier run of the manager at {addr}, which has been \
             shut down or restarted since: the manager serving there now is a new run, without \
             this object. Get a new proxy from it: {connect}, then dict_named, queue_named, ..."
        )));
    }
    Ok(Link::Remote(remote.clone()))
}

/// How long connecting to a manager may take, handshake and welcome included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a process connects to the manager at `addr`, with TLS or not, for messages that say
/// what to call.
fn connect_call(addr: &str, tls: bool) -> String {
    if tls {
        format!("Manager::connect_tls({addr}, authkey, tls)")
    } else {
        format!("Manager::connect({addr}, authkey)")
    }
}

/// Connects to a manager served at `addr`, with TLS if `tls` is given, proves `key` both ways,
/// and registers the connection as this process's link to that address. Returns the hub's
/// name (scheme, address and run) and the store's id.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    key: Vec<u8>,
    tls: Option<TlsClientConfig>,
) -> Result<(String, ObjectId)> {
    runtime()
        .spawn(async move {
            let attempt = async {
                let (mut reader, writer) = transport::tcp::connect_authenticated(
                    addr,
                    &key,
                    DEFAULT_MAX_FRAME_LEN,
                    tls.as_ref(),
                )
                .await?;
                let welcome: Welcome = match reader.read().await? {
                    Some(frame) => frame.header()?,
                    None => return Err(Error::closed(format!("the manager at {addr} hung up"))),
                };
                // Kept under the address alone, so that a proxy of this run received from
                // another process works here too. A reconnect replaces the link.
                let peer = addr.to_string();
                adopt(link_name(&peer, tls.is_some()), welcome.run, reader, writer);
                let trust = tls.as_ref().and_then(TlsClientConfig::trust);
                transport::auth::remember_peer_key(peer.clone(), key, trust);
                if let Some(tls) = &tls {
                    transport::tls::remember(&peer, tls.clone());
                }
                Ok((hub_name(addr, welcome.run, tls.is_some()), welcome.store))
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Error::timeout(format!(
                    "connecting to the manager at {addr} timed out"
                ))),
            }
        })
        .await
        .map_err(|_| Error::closed("the shared-objects runtime stopped"))?
}

/// Connects to the manager at `addr` (with TLS if `tls`) with the authkey and TLS
/// configuration this process has for it: it has them if it (or the process that started it)
/// called `Manager::connect` or `connect_tls` for that address.
async fn connect_manager(addr: &str, tls: bool) -> Result<Arc<Remote>> {
    let connect = connect_call(addr, tls);
    let unknown = || {
        Error::closed(format!(
            "this object lives in the manager at {addr}, which this process has not \
             connected to; call {connect} in this process first"
        ))
    };
    let key = transport::auth::peer_key(addr).ok_or_else(unknown)?;
    let parsed = addr.parse().map_err(|_| unknown())?;
    let config = if tls {
        let config = transport::tls::client_config(addr)?.ok_or_else(|| {
            Error::closed(format!(
                "this object lives in the manager at {addr}, served with TLS, and this process \
                 has no TLS configuration for it (a TlsClientConfig made with from_rustls is \
                 not handed to children); call {connect} in this process first"
            ))
        })?;
        Some(config)
    } else {
        None
    };
    if let Err(error) = connect_tcp(parsed, key, config).await {
        // A wrong key is the user's to fix; anything else means the server is not there,
        // which for a proxy is the manager having gone away.
        return Err(if error.is_auth() {
            error
        } else {
            Error::closed(format!(
                "the manager at {addr} cannot be reached ({error}): it stopped serving, \
                 exited or is unreachable; later calls connect again once it is back"
            ))
        });
    }
    // `connect` registered the link under the address.
    REMOTES
        .lock()
        .expect("remote hubs poisoned")
        .as_ref()
        .and_then(|remotes| remotes.get(&link_name(addr, tls)))
        .and_then(|slot| slot.get().cloned())
        .ok_or_else(unknown)
}

async fn connect(hub: String) -> Result<Arc<Remote>> {
    let name = hub.clone();
    // The connection's tasks live on the shared runtime so they outlive the caller's runtime.
    let connection = runtime()
        .spawn(async move { transport::connect(&name, DEFAULT_MAX_FRAME_LEN).await })
        .await
        .map_err(|_| Error::closed("the shared-objects runtime stopped"))?
        .map_err(|error| {
            // A listener that cannot prove the key is not the process that served this
            // object (a name squatted after it exited, or a forged handle): say so. Unless
            // that process has just ended, closing the connection in the middle of the
            // handshake: then it is simply gone.
            let ended = transport::pid_in_name(&hub).is_some_and(crate::shm::owner::has_ended);
            if error.is_auth() && !ended {
                error
            } else {
                Error::closed(format!(
                    "the process that serves this object is gone ({error})"
                ))
            }
        })?;
    let transport::Connection { reader, writer, .. } = connection;
    Ok(start_remote(hub, None, reader, writer))
}

/// Makes a [`Remote`] of an authenticated connection and starts reading its answers on the
/// shared runtime.
fn start_remote<R: AsyncRead + Unpin + Send + 'static>(
    hub: String,
    run: Option<u64>,
    mut reader: FrameReader<R>,
    writer: FrameWriter,
) -> Arc<Remote> {
    let remote = Arc::new(Remote {
        hub,
        run,
        writer,
        waiting: Mutex::new(HashMap::new()),
        closed: AtomicBool::new(false),
    });
    let receiving = remote.clone();
    runtime().spawn(async move {
        loop {
            let frame = match reader.read().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(target: "multiproc", "hub connection to {}: {error}", receiving.hub);
                    break;
                }
            };
            let Ok(reply) = frame.header::<HubReply>() else {
                break;
            };
            let items = if frame.payload().is_empty() {
                Ok(Vec::new())
            } else {
                decode_items(frame.payload())
            };
            let waiter = receiving
                .waiting
                .lock()
                .expect("waiting poisoned")
                .remove(&reply.id);
            let reply = match items {
                Ok(items) => Reply {
                    outcome: reply.outcome,
                    items,
                },
                Err(_) => Reply::failed(crate::protocol::hub::Failure::Protocol(
                    "undecodable items from the hub".into(),
                )),
            };
            if let Some(waiting) = waiter
                && let Err(reply) = waiting.sender.send(reply)
            {
                undo(&Link::Remote(receiving.clone()), waiting.object, waiting.task, waiting.undo, reply);
            }
        }
        receiving.closed.store(true, Ordering::SeqCst);
        // Dropping the senders wakes every waiter with "the hub is gone".
        receiving.waiting.lock().expect("waiting poisoned").clear();
    });
    remote
}

/// Registers an already authenticated connection of another kind (the manager's TCP client)
/// as this process's link kept under `hub`, reaching the manager's run `run`, so that handles
/// of that run use it. Must be called on the [shared runtime](super::hub::runtime), which
/// carries the reading task. A connection already registered under that name is replaced.
fn adopt<R: AsyncRead + Unpin + Send + 'static>(
    hub: String,
    run: u64,
    reader: FrameReader<R>,
    writer: FrameWriter,
) {
    let remote = start_remote(hub.clone(), Some(run), reader, writer);
    let slot = Arc::new(OnceCell::new_with(Some(remote)));
    REMOTES
        .lock()
        .expect("remote hubs poisoned")
        .get_or_insert_with(HashMap::new)
        .insert(hub, slot);
}

impl Remote {
    /// Resolves once the hub has applied everything this process sent before.
    async fn sync(&self) {
        let _ = self.probe().await;
    }

    /// Asks the hub to answer once it has applied everything this process sent before; the
    /// answer comes through the returned channel (closed at once if the connection is).
    fn probe(&self) -> oneshot::Receiver<Reply> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock().expect("waiting poisoned").insert(
            id,
            Waiting {
                object: 0,
                task: 0,
                undo: None,
                sender,
            },
        );
        if self.closed.load(Ordering::SeqCst)
            || self
                .writer
                .send(&HubRequest::Sync { id }, Vec::new())
                .is_err()
        {
            self.waiting.lock().expect("waiting poisoned").remove(&id);
        }
        receiver
    }

    fn send(&self, id: u64, object: ObjectId, task: u64, op: Op, items: Items) -> Result<()> {
        let payload = if items.is_empty() {
            Vec::new()
        } else {
            super::hub::encode_items(items)
        };
        self.writer.send(
            &HubRequest::Call {
                id,
                object,
                task,
                op,
            },
            payload,
        )
    }
}

/// Identifies the calling tokio task, for lock ownership; outside of any task (a sync worker,
/// a blocking call), the calling thread.
pub(crate) fn current_task() -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match tokio::task::try_id() {
        Some(id) => {
            id.hash(&mut hasher);
            // Tasks are odd, threads even: they never collide, and never 0 ("nobody").
            hasher.finish() | 1
        }
        None => {
            std::thread::current().id().hash(&mut hasher);
            (hasher.finish() & !1) | 2
        }
    }
}

/// A request sent and not yet answered. Dropping it cancels the request at the hub and gives
/// back any items its answer already carried.
#[derive(Debug)]
pub(crate) struct InFlight {
    link: Link,
    object: ObjectId,
    id: u64,
    task: u64,
    undo: Option<Op>,
    receiver: Option<oneshot::Receiver<Reply>>,
    /// Whether the hub has been told to cancel the request.
    cancelled: bool,
}

impl InFlight {
    /// Waits for the answer, however long it takes; fails only if the connection closes.
    async fn answer(&mut self) -> Result<Reply> {
        let receiver = self.receiver.as_mut().expect("not yet answered");
        let answer = receiver.await;
        self.receiver = None;
        answer.map_err(|_| self.hub_gone())
    }

    /// Waits for the answer while the hub proves alive; `None` as soon as a probe of the hub
    /// goes unanswered for [`CANCEL_GRACE`]. The request is then still pending: dropping
    /// `self` cancels it, and what a later answer grants is given back.
    async fn answer_while_alive(&mut self) -> Option<Result<Reply>> {
        let Link::Remote(remote) = &self.link else {
            // This process's own hub cannot stall while this process runs.
            return Some(self.answer().await);
        };
        let remote = remote.clone();
        let receiver = self.receiver.as_mut().expect("not yet answered");
        let answer = loop {
            // The hub answers in the order it reads: a probe sent after the request and
            // answered first means the hub is alive and the request is still waiting.
            let alive = futures::future::select(remote.probe(), Timer::after(CANCEL_GRACE));
            match futures::future::select(&mut *receiver, alive).await {
                Either::Left((answer, _)) => break answer,
                Either::Right((Either::Right(_), _)) => return None,
                Either::Right((Either::Left(_), _)) => {}
            }
            if let Either::Left((answer, _)) =
                futures::future::select(&mut *receiver, Timer::after(PROBE_INTERVAL)).await
            {
                break answer;
            }
        };
        self.receiver = None;
        Some(answer.map_err(|_| self.hub_gone()))
    }

    /// Polls for the answer.
    pub(crate) fn poll_reply(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Reply>> {
        let receiver = self.receiver.as_mut().expect("polled after its answer");
        let answer = std::task::ready!(std::pin::Pin::new(receiver).poll(cx));
        self.receiver = None;
        std::task::Poll::Ready(answer.map_err(|_| self.hub_gone()))
    }

    fn hub_gone(&self) -> Error {
        match &self.link {
            Link::Remote(remote) => gone(remote),
            Link::Local(_) => Error::closed("the hub dropped a request"),
        }
    }

    fn cancel(&mut self) {
        self.cancelled = true;
        match &self.link {
            Link::Local(hub) => hub.cancel(LOCAL, self.object, self.id),
            Link::Remote(remote) => {
                let cancel = HubRequest::Cancel {
                    id: self.id,
                    object: self.object,
                };
                let _ = remote.writer.send(&cancel, Vec::new());
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(mut receiver) = self.receiver.take() else {
            return;
        };
        match receiver.try_recv() {
            Ok(reply) => undo(&self.link, self.object, self.task, self.undo.take(), reply),
            Err(oneshot::error::TryRecvError::Empty) => {
                if !self.cancelled {
                    self.cancel();
                }
                // An answer sent between the check and the cancel is still in the channel.
                receiver.close();
                if let Ok(reply) = receiver.try_recv() {
                    undo(&self.link, self.object, self.task, self.undo.take(), reply);
                }
            }
            Err(oneshot::error::TryRecvError::Closed) => {}
        }
    }
}

/// Gives back what an answer nobody received granted.
fn undo(link: &Link, object: ObjectId, task: u64, undo: Option<Op>, reply: Reply) {
    if let Some(op) = undo
        && grants(&reply.outcome)
    {
        send_and_forget(link, object, task, op, reply.items);
    }
}

fn gone(remote: &Remote) -> Error {
    if let Some(ManagerHub { addr, .. }) = hub_name::parse_hub_name(&remote.hub) {
        // A TCP server may have stopped serving rather than exited, and may come back.
        return Error::closed(format!(
            "the connection to the manager at {addr} closed (it stopped serving, exited or \
             became unreachable); later calls connect again once it is back"
        ));
    }
    Error::closed(format!(
        "the process that serves this object ({}) has exited",
        remote.hub
    ))
}

/// How long a caller whose bound has passed waits for the hub to answer its cancellation (or a
/// probe) before it concludes that the hub is stalled or gone. A live hub answers both at once;
/// within the 100 ms every timed call promises beyond its bound.
const CANCEL_GRACE: Duration = Duration::from_millis(60);

/// How often a caller whose cancelled request is still owed an answer (a condition's notified
/// waiter queueing for its lock) checks that the hub is alive.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Sends `op` and waits for its answer. With a `timeout`, a request still unanswered when it
/// passes (counting the time to connect) is cancelled, and the call answers
/// [`Cancelled`](crate::protocol::hub::Failure::Cancelled) unless the hub answers otherwise at once:
/// never later than the bound plus about [`CANCEL_GRACE`], whatever the hub does.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future (or a timeout the hub does not answer in time) cancels the
/// request; whatever an answer arriving later grants is given back as [`undo_of`] says (items
/// to the front of their queue, a lock or permit released).
pub(crate) async fn call(
    handle: &Handle,
    op: Op,
    items: Items,
    timeout: Option<Duration>,
) -> Result<Reply> {
    call_as(handle, op, items, timeout, current_task()).await
}

/// [`call`] on behalf of `task` (a guard's owner), not the calling task.
pub(crate) async fn call_as(
    handle: &Handle,
    op: Op,
    items: Items,
    timeout: Option<Duration>,
    task: u64,
) -> Result<Reply> {
    let Some(timeout) = timeout else {
        let link = link(handle).await?;
        let mut in_flight = start(&link, handle.object, op, items, task)?;
        return in_flight.answer().await;
    };
    let mut deadline = Timer::after(timeout);
    // Connecting counts against the bound: a stopped hub may never finish a handshake.
    let link = match futures::future::select(std::pin::pin!(link(handle)), &mut deadline).await {
        Either::Left((link, _)) => link?,
        Either::Right(_) => return Ok(Reply::failed(Failure::Cancelled)),
    };
    let mut in_flight = start(&link, handle.object, op, items, task)?;
    let receiver = in_flight.receiver.as_mut().expect("not yet answered");
    if let Either::Left((answer, _)) = futures::future::select(receiver, deadline).await {
        in_flight.receiver = None;
        return answer.map_err(|_| in_flight.hub_gone());
    }
    in_flight.cancel();
    in_flight
        .answer_while_alive()
        .await
        .unwrap_or_else(|| Ok(Reply::failed(Failure::Cancelled)))
}

/// Sends `op` and waits for its answer for as long as the hub is alive: a wait that may last
/// (a lock held by another task) goes on, but a hub that stops answering is given up on
/// within about [`PROBE_INTERVAL`], with `None`. Whatever an answer arriving later grants is
/// given back.
///
/// # Cancel safety
///
/// Cancel safe, as [`call`].
pub(crate) async fn call_while_alive(handle: &Handle, op: Op, task: u64) -> Result<Option<Reply>> {
    let link = link(handle).await?;
    let mut in_flight = start(&link, handle.object, op, Vec::new(), task)?;
    in_flight.answer_while_alive().await.transpose()
}

/// A sleep on the [shared runtime](super::hub::runtime), so that a bound holds from any
/// executor (a sync worker may drive these futures with `futures::executor::block_on`).
pub(crate) struct Timer(tokio::task::JoinHandle<()>);

impl Timer {
    pub(crate) fn after(duration: Duration) -> Self {
        Timer(runtime().spawn(tokio::time::sleep(duration)))
    }
}

impl std::future::Future for Timer {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `op` to `handle`'s object without waiting, from a `Drop`: at once, ahead of any
/// request this process makes afterwards, when the link to its hub is open (as it is once
/// this process has used the object); otherwise as soon as it is.
pub(crate) fn send_now(handle: &Handle, op: Op) {
    let open = match Hub::running() {
        Some(hub) if hub.name() == handle.hub => Some(Link::Local(hub)),
        _ => REMOTES
            .lock()
            .expect("remote hubs poisoned")
            .as_ref()
            .and_then(|remotes| remotes.get(&handle.hub))
            .and_then(|slot| slot.get().cloned())
            .map(Link::Remote),
    };
    match open {
        Some(link) => send_and_forget(&link, handle.object, 0, op, Vec::new()),
        None => send_later(handle.clone(), op, Vec::new()),
    }
}

/// Sends `op` without waiting, from a `Drop` that has no link at hand (a dropped stream's
/// read-ahead going back to its queue, a pipe end closing).
pub(crate) fn send_later(handle: Handle, op: Op, items: Items) {
    runtime().spawn(async move {
        if let Ok(link) = link(&handle).await {
            send_and_forget(&link, handle.object, 0, op, items);
        }
    });
}

/// Sends `op` without waiting for the answer (a guard released on drop). Does nothing if the
/// hub is gone: then there is nothing left to release.
pub(crate) fn send_and_forget(link: &Link, object: ObjectId, task: u64, op: Op, items: Items) {
    match link {
        Link::Local(hub) => hub.dispatch(
            object,
            op,
            items,
            Request {
                caller: Caller { conn: LOCAL, task },
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                replier: Replier::Discard,
            },
        ),
        Link::Remote(remote) => {
            let _ = remote.send(
                NEXT_ID.fetch_add(1, Ordering::Relaxed),
                object,
                task,
                op,
                items,
            );
        }
    }
}

pub(crate) fn start(
    link: &Link,
    object: ObjectId,
    op: Op,
    items: Items,
    task: u64,
) -> Result<InFlight> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let undo = undo_of(&op);
    let (sender, receiver) = oneshot::channel();
    match link {
        Link::Local(hub) => hub.dispatch(
            object,
            op,
            items,
            Request {
                caller: Caller { conn: LOCAL, task },
                id,
                replier: Replier::Local(sender),
            },
        ),
        Link::Remote(remote) => {
            if remote.closed.load(Ordering::SeqCst) {
                return Err(gone(remote));
            }
            remote.waiting.lock().expect("waiting poisoned").insert(
                id,
                Waiting {
                    object,
                    task,
                    undo: undo.clone(),
                    sender,
                },
            );
            // The reader marks the connection closed before it drops the waiting senders, so
            // a request registered after that is caught here instead of waiting forever.
            if remote.closed.load(Ordering::SeqCst) {
                remote.waiting.lock().expect("waiting poisoned").remove(&id);
                return Err(gone(remote));
            }
            if let Err(error) = remote.send(id, object, task, op, items) {
                remote.waiting.lock().expect("waiting poisoned").remove(&id);
                return Err(if remote.closed.load(Ordering::SeqCst) {
                    gone(remote)
                } else {
                    error
                });
            }
        }
    }
    Ok(InFlight {
        link: link.clone(),
        object,
        id,
        task,
        undo,
        receiver: Some(receiver),
        cancelled: false,
    })
}

/// Sends `op` and returns the hub's verdict; `what` names the object in errors. A request
/// still parked when `timeout` passes is answered [`Failure::Cancelled`].
pub(crate) async fn ask(
    handle: &Handle,
    op: Op,
    timeout: Option<Duration>,
) -> Result<std::result::Result<Answer, Failure>> {
    Ok(call(handle, op, Vec::new(), timeout).await?.outcome)
}

/// Blocks, at most `timeout`, until every hub this process has talked to has applied what this
/// process sent: releases sent by guards dropped just before exit arrive as releases, not as
/// an owner's death. Must not be called from inside an async context.
pub(crate) fn flush_connections(timeout: Duration) {
    let remotes: Vec<Arc<Remote>> = REMOTES
        .lock()
        .expect("remote hubs poisoned")
        .iter()
        .flat_map(|hubs| hubs.values())
        .filter_map(|slot| slot.get().cloned())
        .collect();
    if remotes.is_empty() {
        return;
    }
    let (done, finished) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        futures::future::join_all(remotes.iter().map(|remote| remote.sync())).await;
        let _ = done.send(());
    });
    let _ = finished.recv_timeout(timeout);
}
