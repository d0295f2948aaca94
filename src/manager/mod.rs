//! Managers: dicts, lists, namespaces and values served by a process, reached from any
//! process, locally or across machines.
//!
//! Python's `multiprocessing.Manager()` starts a server process holding shared objects that
//! every process reaches through proxies. [`Manager::start`] does the same: it starts a child,
//! `SyncManager-N`, and returns a handle that creates objects there and hands out typed
//! proxies: [`DictProxy`], [`ListProxy`], [`Namespace`] and [`ValueProxy`], plus
//! manager-hosted [`Queue`], [`JoinableQueue`], [`Event`], [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Condition`] and [`Barrier`]. Proxies are
//! `Clone + Serialize + Deserialize`: pass them to workers as arguments.
//! [`Manager::builder`] sets the environment, working directory and output of the manager's
//! process first, as `std::process::Command` does.
//!
//! ```no_run
//! use multiproc::{worker, DictProxy, Manager, Process};
//!
//! #[worker]
//! async fn fill(d: DictProxy<u32, String>, n: u32) {
//!     d.insert(n, format!("from {n}")).await.expect("the manager is up");
//! }
//!
//! #[multiproc::main]
//! async fn main() -> multiproc::Result<()> {
//!     let manager = Manager::start().await?;
//!     let d = manager.dict::<u32, String>().await?;
//!     let mut children = Vec::new();
//!     for n in 0..10 {
//!         children.push(Process::new(fill, (d.clone(), n)).start().await?);
//!     }
//!     for child in children {
//!         child.join().await?;
//!     }
//!     assert_eq!(d.len().await?, 10);
//!     manager.shutdown().await
//! }
//! ```
//!
//! # A value read out of a proxy is a copy
//!
//! As in Python, `d.get(&k)` returns a copy. Mutating it changes nothing in the manager; and
//! reading, changing and writing back races with every other writer. For read-modify-write
//! use `update`, which applies a registered `#[worker]` function on the server, atomically:
//! [`DictProxy::update`] (a dict entry), [`ListProxy::update`] (a list item),
//! [`Namespace::update`] (a field) and [`ValueProxy::update`].
//!
//! ```no_run
//! # use multiproc::DictProxy;
//! #[multiproc::worker]
//! fn increment(n: u64) -> u64 { n + 1 }
//!
//! # async fn demo(hits: DictProxy<String, u64>) -> multiproc::Result<()> {
//! hits.update_or(&"page".to_string(), 0, increment).await?; // never loses a count
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! The manager's child runs one internal worker that creates a *store* on its
//! [hub](crate::shared) (the server every process already runs for its queues and locks) and
//! returns the store's handle; the child then stays, idle, answering the hub's connections
//! from the hub's thread until it is asked to exit. The store is one hub object holding every
//! dict, list, namespace and value, keyed by id; a proxy is (store handle, id). So the
//! manager uses the crate's one transport and one request path: each process opens one
//! authenticated connection to the manager's hub and multiplexes every request of every
//! task over it, and many requests may be in flight at once.
//!
//! Values are kept encoded (postcard); the server never needs your types. Dict keys are
//! compared as encoded bytes (see [`DictProxy`]). Queues, events and locks hosted by a manager
//! are the crate's ordinary [`Queue`], [`Event`], ...: a request to the store creates one as
//! an object of the manager's hub, beside the store, so it outlives the process that asked
//! for it, lives as long as the manager (it is not reference counted), and is reached over
//! the same connection as the dicts. A lock or semaphore held by a process whose connection closes (it exited or was
//! killed) is released, and the next holder is told by `owner_died`, as for any hub.
//!
//! # How long objects live
//!
//! As in Python, every proxy is a reference, in whatever process or host it is: a dict, list,
//! namespace or value is freed once the last proxy of it is dropped, in every process, or its
//! process dies. Cloning a proxy is free (clones share one reference); deserializing one (a
//! worker's argument, an item read from a queue) takes a reference, and dropping the last
//! clone releases it, without waiting. The manager counts references per connection, so
//! when a process exits or is killed, its references go with its connection: nothing a dead
//! process held stays alive.
//!
//! A proxy on its way to another process keeps its object: **serializing a proxy lends a
//! reference** from the sender, which the first process to deserialize it takes over. So a
//! proxy put on a queue, or passed to a worker, stays usable after the sender drops its own.
//! A lent reference nobody takes over (a proxy serialized and never read back) lasts until
//! the sender exits; [`ManagerStats::lent`] counts them.
//!
//! A proxy can outlive its object only when the process holding its reference is gone: its
//! sender died before it was received, or its own connection to the manager broke (a TCP
//! link cut for longer than keepalive allows, which also releases its locks). Its calls then
//! fail with a [`Closed`](crate::ErrorKind::Closed) error saying that the object was freed.
//! Ids are never reused, so a stale proxy never reaches another object's data.
//!
//! Objects registered by name ([`Manager::dict_named`], ...) live as long as the manager:
//! a client may ask for them by name at any time. So do the queues, locks and other hosted
//! objects: they are the crate's ordinary [`Queue`], [`Lock`], ..., whose handles are not
//! counted. [`Manager::stats`] tells what the manager holds, for a service to watch.
//!
//! # Across machines
//!
//! [`Manager::serve`] serves a store from the calling process on a TCP address; any process
//! with the same authkey reaches it with [`Manager::connect`]. Both sides prove the key with
//! Python 3.12's mutual HMAC-SHA256 challenge before anything else is read (see the `tcp`
//! module), and handshake messages are capped at 256 bytes. After the handshake the TCP
//! connection carries the same requests as a local connection, so everything a manager hosts
//! works across it: dicts, lists, namespaces and values, and [`Queue`], [`JoinableQueue`],
//! [`Event`], [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`] and
//! [`Barrier`].
//!
//! ```no_run
//! use multiproc::Manager;
//!
//! # async fn demo() -> multiproc::Result<()> {
//! // On one machine:
//! let server = Manager::serve("0.0.0.0:50000".parse().unwrap(), b"secret").await?;
//! let jobs = server.queue_named::<String>("jobs").await?;
//! // On another (or in another process):
//! let client = Manager::connect("10.0.0.1:50000".parse().unwrap(), b"secret").await?;
//! let jobs = client.queue_named::<String>("jobs").await?;
//! jobs.put("a job".into()).await?;
//! # Ok(()) }
//! ```
//!
//! ## With TLS
//!
//! Without TLS, the key proof keeps strangers out but what follows crosses the network in the
//! clear. [`Manager::serve_tls`] and [`Manager::connect_tls`] make each connection a TLS
//! session first: the client checks the manager's certificate against the CAs it trusts (and
//! the manager the client's, if it asks for one), then the key proof and everything after it
//! run inside the session. [`TlsServerConfig`] and [`TlsClientConfig`] are read from PEM; a
//! ready `rustls` configuration is accepted too (`from_rustls`, with [`rustls`] re-exported).
//!
//! ```no_run
//! use multiproc::{Manager, TlsClientConfig, TlsServerConfig};
//!
//! # async fn demo() -> multiproc::Result<()> {
//! let read = |path: &str| std::fs::read(path).expect("a PEM file");
//! // On one machine, with a certificate naming its address (IP:10.0.0.1) or a DNS name:
//! let tls = TlsServerConfig::from_pem(&read("manager.crt"), &read("manager.key"))?;
//! let server = Manager::serve_tls("0.0.0.0:50000".parse().unwrap(), b"secret", tls).await?;
//! // On another, trusting the CA that signed it:
//! let tls = TlsClientConfig::from_pem(&read("ca.crt"))?;
//! let client = Manager::connect_tls("10.0.0.1:50000".parse().unwrap(), b"secret", tls).await?;
//! # Ok(()) }
//! ```
//!
//! A client with the wrong CA, or without a client certificate the manager asks for, is
//! refused with an [`Auth`](crate::ErrorKind::Auth) error saying what TLS found, before any
//! request; one without TLS is refused within 2 seconds, told that the manager speaks TLS.
//! The proxies of a manager reached with TLS name it `tls://ADDRESS/run-RUN`, so every
//! process reaches them with TLS or not at all; a process started afterwards inherits the
//! client configuration with the key (see [`TlsClientConfig`]).
//!
//! ## Proxies in other processes
//!
//! A proxy or hosted object from [`Manager::connect`] names the server's address and its
//! *run* (below), not the key. As in Python, a process started after [`Manager::connect`]
//! inherits the key (on its connection to its parent, never its command line or
//! environment), so a worker given such a proxy just uses it. Any other process given one
//! (through a queue, say) uses it once it has called [`Manager::connect`] to that address
//! itself; before that, calls fail with a [`Closed`](crate::ErrorKind::Closed) error saying
//! so. Processes that share only an address find the same objects by name:
//! [`Manager::dict_named`], [`Manager::queue_named`], [`Manager::lock_named`] and friends.
//!
//! # When the server goes away
//!
//! If the server goes away (it exits, or stops with [`shutdown`](Manager::shutdown)), every
//! call waiting on it fails with a [`Closed`](crate::ErrorKind::Closed) error as soon as the
//! connection closes. A later call tries to connect again, and fails the same way as soon as
//! the connection is refused (at once, when nothing listens at the address), or after 5
//! seconds if the host does not answer. A host that vanishes without closing the connection
//! (power lost, network cut) is noticed by TCP keepalive, within about 8 seconds; then the
//! server also releases the locks its processes held. The process that served the manager
//! is no exception: after [`shutdown`](Manager::shutdown) (or drop), its own proxies, and
//! those it passed to its children, fail the same way, with an error saying the manager was
//! shut down, as do requests that were waiting (a `get` on an empty queue, an `acquire`).
//!
//! Each [`Manager::serve`] is a new *run* of the manager at its address, with objects of its
//! own, even when it serves an address an earlier run used (after a restart, in this process
//! or another). A proxy names the run it came from, and a call through a proxy of an earlier
//! run fails with a [`Closed`](crate::ErrorKind::Closed) error saying that the object
//! belonged to an earlier run of the manager at that address; it never reaches an object of
//! the run now serving. A process whose connection closed connects again on its next call,
//! with the key it has, so it reaches a restarted manager without further ado: proxies of
//! the new run (received from another process, say) work, those of earlier runs fail as
//! said. To create objects in the new run, call [`Manager::connect`] again: a manager
//! handle, too, belongs to one run.
//!
//! # What is different from Python
//!
//! - Proxies are typed; a dict proxy is `DictProxy<K, V>` and decodes what it reads.
//! - Every method is async and is one round trip (pipelined when called from several tasks).
//! - `update` runs a registered function on the server: Python has no atomic equivalent.
//! - References are counted per connection rather than by messages alone, so a process that
//!   dies never keeps an object alive; hosted queues and locks are not counted (below).
//! - After [`Manager::shutdown`] (or once the manager is dropped), every proxy call fails
//!   with a [`Closed`](crate::ErrorKind::Closed) error, without hanging, in every process.
//! - A proxy of a manager that was restarted fails with a clear error instead of reaching an
//!   object of the new run that happens to have the same id.

mod builder;
mod dict;
mod entry;
mod list;
mod namespace;
pub(crate) mod reference;
mod stats;
pub(crate) mod store;
pub(crate) mod tcp;
mod value;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::store::{Hosted, HostedObject, Kind, StoreOp};
pub use crate::transport::tls::{TlsClientConfig, TlsServerConfig};
pub use builder::ManagerBuilder;
pub use dict::DictProxy;
use entry::Target;
pub use list::ListProxy;
pub use namespace::Namespace;
/// The TLS library of [`TlsServerConfig::from_rustls`] and [`TlsClientConfig::from_rustls`],
/// for configurations beyond what the PEM constructors offer.
pub use rustls;
pub use stats::ManagerStats;
use store::Store;
pub use value::ValueProxy;

use crate::error::{Error, Result};
use crate::output::OutputLines;
use crate::protocol::hub::{Answer, Op};
use crate::protocol::{decode, encode};
use crate::shared::client::{self, Handle};
use crate::shared::hub::Hub;
use crate::spawn::{self, ChildConfig, ChildSpec, DEFAULT_START_TIMEOUT};
use crate::supervisor::Supervised;
use crate::worker::{Value, worker_name};
use crate::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Queue, RLock, Semaphore,
    current,
};

/// How long [`Manager::shutdown`] waits for the server to exit after asking, before it
/// terminates it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A manager: a process (or a TCP server) holding shared objects, and the way to create them.
///
/// See the [module docs](self). Dropping a manager started with [`start`](Self::start) shuts
/// its process down (without waiting for it); prefer [`shutdown`](Self::shutdown), which
/// waits.
#[derive(Debug)]
pub struct Manager {
    store: Handle,
    server: Server,
    closed: AtomicBool,
    /// The lines of the manager's process, until [`Manager::take_output`] takes them.
    output: Mutex<Option<OutputLines>>,
}

#[derive(Debug)]
enum Server {
    /// A `SyncManager-N` child started by [`Manager::start`].
    Child(Supervised),
    /// A store served by this process over TCP.
    Serving(tcp::TcpFront),
    /// A connection to a store served elsewhere.
    Connected(SocketAddr),
}

/// The registered name of a worker function item.
fn name_of<W: crate::Worker<M>, M>(_: W) -> &'static str {
    worker_name::<W, M>()
}

/// Runs in the manager's process: creates the store on its hub.
#[crate::worker]
fn manager_start_store() -> std::result::Result<Handle, String> {
    Handle::create(Box::new(Store::default())).map_err(|error| error.to_string())
}

impl Manager {
    /// Starts a manager process, `SyncManager-N`, and waits until it serves.
    ///
    /// # Errors
    ///
    /// The spawn errors of [`Process::start`](crate::ProcessBuilder::start) (a daemon process cannot
    /// start one; a child that does not start within the default start timeout), or a
    /// [`WorkerDied`](crate::ErrorKind::WorkerDied) error if the server dies while starting.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a server started when the future is dropped is told to exit but not
    /// waited for.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let manager = multiproc::Manager::start().await?;
    /// let d = manager.dict::<String, u64>().await?;
    /// manager.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn start() -> Result<Manager> {
        Manager::builder().start().await
    }

    /// A builder for a manager process whose environment, working directory or output is
    /// set; see [`ManagerBuilder`].
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::new()
    }

    /// Starts a manager process shaped by `child`, and waits until it serves.
    async fn start_child(mut child: ChildConfig) -> Result<Manager> {
        let output = child.pipe_lines();
        let identity = current::next_identity();
        let spec = ChildSpec {
            name: current::default_name("SyncManager", &identity),
            identity,
            daemon: false,
            // Like Python's manager, it is stopped when its owner exits.
            stop_at_exit: true,
            start_timeout: DEFAULT_START_TIMEOUT,
            max_frame_len: crate::DEFAULT_MAX_FRAME_LEN,
            stall: false,
            config: Arc::new(child),
        };
        let spawned = spawn::spawn(&spec).await?;
        let supervised = Supervised::start(spawned, spec.name);
        let mut manager = Manager {
            store: Handle {
                hub: String::new(),
                object: 0,
            },
            server: Server::Child(supervised),
            closed: AtomicBool::new(false),
            output: Mutex::new(output),
        };
        let store: std::result::Result<Handle, String> = manager
            .run(name_of(manager_start_store), &(), "starting the manager")
            .await?;
        let store = store.map_err(|message| {
            Error::invalid_state(format!("the manager could not start its store: {message}"))
        })?;
        manager.store = store;
        Ok(manager)
    }

    /// Runs an internal worker in the manager's process.
    async fn run<A: Serialize, T: DeserializeOwned>(
        &self,
        worker: &str,
        args: &A,
        doing: &str,
    ) -> Result<T> {
        let Server::Child(server) = &self.server else {
            return Err(Error::invalid_state(format!(
                "{doing}: only a manager started with Manager::start has a process to run it"
            )));
        };
        self.check_open()?;
        let payload = encode(args, "a manager request")?;
        let reply = server.call(worker, payload, false)?;
        let bytes = reply.await.unwrap_or_else(|_| {
            Err(Error::worker_died(
                server.name(),
                server.pid(),
                server.exit_status(),
                doing,
            ))
        })?;
        decode(&bytes, "a manager reply")
    }

    /// Serves a new, empty store from this process on `addr` (for tests, `127.0.0.1:0`; then
    /// [`local_addr`](Self::local_addr) tells the port), for any process that proves `authkey`
    /// with [`connect`](Self::connect). Python's `BaseManager(address, authkey).get_server()`.
    ///
    /// The returned manager creates objects in this process, without a round trip; the store
    /// is served until [`shutdown`](Self::shutdown) or drop, which end it for every process,
    /// this one included. Each call is a new run of the manager at `addr`: proxies of an
    /// earlier run there fail instead of reaching this run's objects (see the
    /// [module docs](self#when-the-server-goes-away)).
    ///
    /// # Errors
    ///
    /// An [`Io`](crate::ErrorKind::Io) error if `addr` cannot be bound.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a listener bound when the future is dropped is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let server = multiproc::Manager::serve("127.0.0.1:50000".parse().unwrap(), b"secret").await?;
    /// let shared = server.dict::<String, String>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(addr: SocketAddr, authkey: &[u8]) -> Result<Manager> {
        Self::serve_with(addr, authkey, None).await
    }

    /// As [`serve`](Self::serve), with every connection inside TLS: clients reach it with
    /// [`connect_tls`](Self::connect_tls), check its certificate (and, with
    /// [`TlsServerConfig::from_pem_with_client_ca`], present one of their own), then prove
    /// `authkey` inside the TLS session, so nothing after the TCP handshake crosses the
    /// network in the clear. A client without TLS is refused, and told why, within 2 seconds.
    /// See [Across machines](self#across-machines).
    ///
    /// # Errors
    ///
    /// An [`Io`](crate::ErrorKind::Io) error if `addr` cannot be bound.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a listener bound when the future is dropped is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// use multiproc::{Manager, TlsServerConfig};
    ///
    /// let chain = std::fs::read("manager.crt").expect("the certificate chain");
    /// let key = std::fs::read("manager.key").expect("its private key");
    /// let tls = TlsServerConfig::from_pem(&chain, &key)?;
    /// let server = Manager::serve_tls("0.0.0.0:50000".parse().unwrap(), b"secret", tls).await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve_tls(
        addr: SocketAddr,
        authkey: &[u8],
        tls: TlsServerConfig,
    ) -> Result<Manager> {
        Self::serve_with(addr, authkey, Some(tls)).await
    }

    async fn serve_with(
        addr: SocketAddr,
        authkey: &[u8],
        tls: Option<TlsServerConfig>,
    ) -> Result<Manager> {
        let hub = Hub::get_or_start()?;
        let object = hub.create(Box::new(Store::default()));
        let store = Handle {
            hub: hub.name().to_string(),
            object,
        };
        let front = tcp::serve(addr, authkey.to_vec(), tls, hub, object).await?;
        Ok(Manager {
            store,
            server: Server::Serving(front),
            closed: AtomicBool::new(false),
            output: Mutex::new(None),
        })
    }

    /// Connects to a manager [served](Self::serve) at `addr`, proving `authkey` (and checking
    /// that the server knows it too) before anything else is exchanged.
    ///
    /// # Errors
    ///
    /// An [`Auth`](crate::ErrorKind::Auth) error if either side's key is wrong (within about a
    /// second); an [`Io`](crate::ErrorKind::Io) error if nothing listens at `addr`; a
    /// [`Timeout`](crate::ErrorKind::Timeout) if the server does not answer.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let manager = multiproc::Manager::connect("127.0.0.1:50000".parse().unwrap(), b"secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(addr: SocketAddr, authkey: &[u8]) -> Result<Manager> {
        Self::connect_with(addr, authkey, None).await
    }

    /// Connects to a manager [served with TLS](Self::serve_tls) at `addr`: checks its
    /// certificate against `tls` (and presents `tls`'s client certificate, if it has one),
    /// then proves `authkey` inside the TLS session, before anything else is exchanged.
    /// Processes started afterwards inherit `tls` with the key, so the proxies they are given
    /// just work (unless `tls` was made with [`TlsClientConfig::from_rustls`]).
    ///
    /// # Errors
    ///
    /// An [`Auth`](crate::ErrorKind::Auth) error, saying what TLS found, if the certificate is
    /// not signed by a CA `tls` trusts or does not name the server, if the manager requires a
    /// client certificate `tls` lacks, or if it does not speak TLS; as [`connect`](Self::connect)
    /// otherwise.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// use multiproc::{Manager, TlsClientConfig};
    ///
    /// let ca = std::fs::read("ca.crt").expect("the CA certificate");
    /// let tls = TlsClientConfig::from_pem(&ca)?;
    /// let manager = Manager::connect_tls("10.0.0.1:50000".parse().unwrap(), b"secret", tls).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_tls(
        addr: SocketAddr,
        authkey: &[u8],
        tls: TlsClientConfig,
    ) -> Result<Manager> {
        Self::connect_with(addr, authkey, Some(tls)).await
    }

    async fn connect_with(
        addr: SocketAddr,
        authkey: &[u8],
        tls: Option<TlsClientConfig>,
    ) -> Result<Manager> {
        let (hub, object) = client::connect_tcp(addr, authkey.to_vec(), tls).await?;
        Ok(Manager {
            store: Handle { hub, object },
            server: Server::Connected(addr),
            closed: AtomicBool::new(false),
            output: Mutex::new(None),
        })
    }

    /// The TCP address of the manager: the one bound by [`serve`](Self::serve) (with its
    /// actual port when bound to port 0), or the one reached by [`connect`](Self::connect).
    /// `None` for a manager from [`start`](Self::start).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.server {
            Server::Serving(front) => Some(front.local_addr),
            Server::Connected(addr) => Some(*addr),
            Server::Child(_) => None,
        }
    }

    /// What the manager holds: its objects alive by kind, the references to them, the
    /// processes connected; see [`ManagerStats`]. For a service to watch: a manager whose
    /// clients create and drop proxies keeps [`objects`](ManagerStats::objects) level.
    ///
    /// References are released without waiting for an answer, so a proxy dropped just
    /// before this call may still be counted; a proxy dropped in this process before the
    /// call is not (its release travels ahead of the request).
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down or its server is
    /// gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let stats = manager.stats().await?;
    /// println!("{} objects, {} clients", stats.objects(), stats.connections);
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<ManagerStats> {
        self.ask_item(StoreOp::Stats, "the manager's stats").await
    }

    /// Sends `op`, whose answer is one encoded item, `what`, and decodes it.
    async fn ask_item<T: DeserializeOwned>(&self, op: StoreOp, what: &str) -> Result<T> {
        self.check_open()?;
        let reply = client::call(&self.store, Op::Manager(op), Vec::new(), None).await?;
        if let Err(failure) = reply.outcome {
            return Err(failure.into_error("the manager"));
        }
        match reply.items.first() {
            Some(bytes) => decode(bytes, what),
            None => Err(Error::new(
                crate::ErrorKind::Protocol,
                format!("the manager answered with no item where {what} was due"),
            )),
        }
    }

    /// The pid of the manager's process, for a manager from [`start`](Self::start).
    pub fn pid(&self) -> Option<u32> {
        match &self.server {
            Server::Child(server) => Some(server.pid()),
            _ => None,
        }
    }

    /// The lines the manager's process writes to a stream set to
    /// [`Stdio::Lines`](crate::Stdio::Lines) on its [builder](ManagerBuilder::stdout), tagged
    /// with its name and pid; see the [`output`](crate::output) module. Returns them once:
    /// `None` afterwards, when neither stdout nor stderr was set to `Lines`, and for a
    /// manager from [`serve`](Self::serve) or [`connect`](Self::connect).
    pub fn take_output(&self) -> Option<OutputLines> {
        self.output.lock().expect("output lock").take()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::closed("the manager has been shut down"))
        } else {
            Ok(())
        }
    }

    /// Ends the store of a manager's process before that process is asked to exit, which
    /// takes a while: calls of this process made from now on fail, as do the calls of other
    /// processes as soon as it arrives, and calls waiting on a hosted object, instead of
    /// being answered until the process is gone.
    fn retire_child_store(&self, server: &Supervised) {
        if self.store.hub.is_empty() {
            // The store was never started.
            return;
        }
        let reason = format!(
            "it belonged to the manager {}, which has been shut down; its objects went with it",
            server.name()
        );
        client::send_now(&self.store, Op::Retire(reason));
    }

    async fn create(&self, kind: Kind, items: Vec<Vec<u8>>) -> Result<Target> {
        self.ask(StoreOp::Create(kind), items).await
    }

    async fn named(&self, kind: Kind, name: &str, items: Vec<Vec<u8>>) -> Result<Target> {
        let name = name.to_string();
        self.ask(StoreOp::Named { kind, name }, items).await
    }

    async fn ask(&self, op: StoreOp, items: Vec<Vec<u8>>) -> Result<Target> {
        self.check_open()?;
        let reply = client::call(&self.store, Op::Manager(op), items, None).await?;
        match reply.outcome {
            Ok(Answer::Count(entry)) => Ok(Target::counted(self.store.clone(), entry)),
            Ok(other) => Err(Error::new(
                crate::ErrorKind::Protocol,
                format!("the manager answered a creation with {other:?}"),
            )),
            Err(failure) => Err(failure.into_error("the manager")),
        }
    }

    /// Creates an empty dict; Python's `manager.dict()`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a dict may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let d = manager.dict::<u32, String>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn dict<K: Value, V: Value>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_target(
            self.create(Kind::Dict, Vec::new()).await?,
        ))
    }

    /// Creates an empty list; Python's `manager.list()`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a list may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let l = manager.list::<u64>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn list<T: Value>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::from_target(
            self.create(Kind::List, Vec::new()).await?,
        ))
    }

    /// Creates an empty namespace; Python's `manager.Namespace()`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a namespace may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let ns = manager.namespace().await?;
    /// # Ok(()) }
    /// ```
    pub async fn namespace(&self) -> Result<Namespace> {
        Ok(Namespace::from_target(
            self.create(Kind::Namespace, Vec::new()).await?,
        ))
    }

    /// Creates a value holding `initial`; Python's `manager.Value(typecode, initial)`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down;
    /// [`Serialization`](crate::ErrorKind::Serialization) if `initial` does not encode.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a value may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let counter = manager.value(0u64).await?;
    /// # Ok(()) }
    /// ```
    pub async fn value<T: Value>(&self, initial: T) -> Result<ValueProxy<T>> {
        let items = vec![encode(&initial, "a manager value")?];
        Ok(ValueProxy::from_target(
            self.create(Kind::Value, items).await?,
        ))
    }

    /// The dict registered as `name` in this manager, created empty by the first caller.
    /// How processes that share only an address find the same objects: Python's
    /// `BaseManager.register("get_dict", ...)`. A name holds one kind of object.
    ///
    /// # Errors
    ///
    /// [`InvalidState`](crate::ErrorKind::InvalidState) if `name` holds another kind of
    /// object; [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; the dict may have been created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let jobs = manager.dict_named::<u32, String>("jobs").await?;
    /// # Ok(()) }
    /// ```
    pub async fn dict_named<K: Value, V: Value>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_target(
            self.named(Kind::Dict, name, Vec::new()).await?,
        ))
    }

    /// The list registered as `name`, created empty by the first caller; see
    /// [`dict_named`](Self::dict_named).
    ///
    /// # Errors
    ///
    /// As [`dict_named`](Self::dict_named).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; the list may have been created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let log = manager.list_named::<String>("log").await?;
    /// # Ok(()) }
    /// ```
    pub async fn list_named<T: Value>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::from_target(
            self.named(Kind::List, name, Vec::new()).await?,
        ))
    }

    /// The namespace registered as `name`, created empty by the first caller; see
    /// [`dict_named`](Self::dict_named).
    ///
    /// # Errors
    ///
    /// As [`dict_named`](Self::dict_named).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; the namespace may have been created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let config = manager.namespace_named("config").await?;
    /// # Ok(()) }
    /// ```
    pub async fn namespace_named(&self, name: &str) -> Result<Namespace> {
        Ok(Namespace::from_target(
            self.named(Kind::Namespace, name, Vec::new()).await?,
        ))
    }

    /// The value registered as `name`, created holding `initial` by the first caller (later
    /// callers' `initial` is ignored); see [`dict_named`](Self::dict_named).
    ///
    /// # Errors
    ///
    /// As [`dict_named`](Self::dict_named).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; the value may have been created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let total = manager.value_named("total", 0u64).await?;
    /// # Ok(()) }
    /// ```
    pub async fn value_named<T: Value>(&self, name: &str, initial: T) -> Result<ValueProxy<T>> {
        let items = vec![encode(&initial, "a manager value")?];
        Ok(ValueProxy::from_target(
            self.named(Kind::Value, name, items).await?,
        ))
    }

    /// Creates (or, with a `name`, finds) a hosted object in the manager's process and
    /// returns its handle, naming the hub this process reaches the store through: the
    /// manager's local socket, or `tcp://addr` (`tls://addr`) for a manager reached with
    /// [`connect`](Self::connect) ([`connect_tls`](Self::connect_tls)). So a queue works over whatever connection the store does.
    async fn host<S: DeserializeOwned>(&self, object: Hosted, name: Option<&str>) -> Result<S> {
        let op = StoreOp::Host {
            object,
            name: name.map(str::to_string),
        };
        let hosted: HostedObject = self.ask_item(op, "a hosted object").await?;
        let handle = Handle {
            hub: self.store.hub.clone(),
            object: hosted.id,
        };
        // Every hosted type serializes as its handle (a `Barrier` adds its parties), which is
        // how it travels to workers; building it from that encoding needs no constructor per
        // type and gives the same value a worker would receive.
        let encoded = match hosted.object {
            Hosted::Barrier(parties) => encode(&(handle, parties), "a hosted object")?,
            // A manager's locks, events and semaphores are served by its hub (reachable across machines),
            // so they have no part in shared memory.
            Hosted::Lock
            | Hosted::RLock
            | Hosted::Event
            | Hosted::Semaphore(_)
            | Hosted::BoundedSemaphore(_)
            | Hosted::Condition => encode(&(handle, None::<()>), "a hosted object")?,
            _ => encode(&handle, "a hosted object")?,
        };
        decode(&encoded, "a hosted object")
    }
}

macro_rules! hosted {
    (
        $(#[$doc:meta])*
        $name:ident / $named:ident ( $($arg:ident : $ty:ty),* ) -> $out:ty = $kind:expr,
        $example:literal, $named_example:literal
    ) => {
        impl Manager {
            $(#[$doc])*
            ///
            /// # Errors
            ///
            /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down or its
            /// server is gone; [`InvalidState`](crate::ErrorKind::InvalidState) for
            /// parameters the type's constructor refuses.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe in that nothing is lost; an object may have been created and left
            /// unused.
            ///
            /// # Examples
            ///
            /// ```no_run
            /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
            #[doc = $example]
            /// # Ok(()) }
            /// ```
            pub async fn $name(&self $(, $arg: $ty)*) -> Result<$out> {
                self.host($kind, None).await
            }

            #[doc = concat!("The object registered as `name`, created by the first caller as [`", stringify!($name), "`](Self::", stringify!($name), ") does (later callers' parameters are ignored); see [`dict_named`](Self::dict_named).")]
            ///
            /// # Errors
            ///
            /// As [`dict_named`](Self::dict_named).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe in that nothing is lost; the object may have been created.
            ///
            /// # Examples
            ///
            /// ```no_run
            /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
            #[doc = $named_example]
            /// # Ok(()) }
            /// ```
            pub async fn $named(&self, name: &str $(, $arg: $ty)*) -> Result<$out> {
                self.host($kind, Some(name)).await
            }
        }
    };
}

impl Manager {
    /// Creates an unbounded [`Queue`] in the manager's process; Python's `manager.Queue()`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down or its server is
    /// gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a queue may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let q = manager.queue::<String>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue<T: Value>(&self) -> Result<Queue<T>> {
        self.host(Hosted::Queue(None), None).await
    }

    /// The queue registered as `name`, created unbounded by the first caller; see
    /// [`dict_named`](Self::dict_named). How clients that share only an address share a
    /// queue.
    ///
    /// # Errors
    ///
    /// As [`dict_named`](Self::dict_named).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; the queue may have been created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let jobs = manager.queue_named::<String>("jobs").await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_named<T: Value>(&self, name: &str) -> Result<Queue<T>> {
        self.host(Hosted::Queue(None), Some(name)).await
    }

    /// Creates a [`Queue`] holding at most `capacity` items in the manager's process.
    ///
    /// # Errors
    ///
    /// As [`queue`](Self::queue); [`InvalidState`](crate::ErrorKind::InvalidState) for a
    /// capacity of 0.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a queue may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let q = manager.bounded_queue::<u64>(16).await?;
    /// # Ok(()) }
    /// ```
    pub async fn bounded_queue<T: Value>(&self, capacity: usize) -> Result<Queue<T>> {
        self.host(Hosted::Queue(Some(capacity)), None).await
    }

    /// Creates a [`JoinableQueue`] in the manager's process; Python's
    /// `manager.JoinableQueue()`.
    ///
    /// # Errors
    ///
    /// As [`queue`](Self::queue).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; a queue may have been created and left unused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let q = manager.joinable_queue::<u64>().await?;
    /// # Ok(()) }
    /// ```
    pub async fn joinable_queue<T: Value>(&self) -> Result<JoinableQueue<T>> {
        self.host(Hosted::JoinableQueue(None), None).await
    }

    /// The joinable queue registered as `name`, created unbounded by the first caller; see
    /// [`dict_named`](Self::dict_named).
    ///
    /// # Errors
    ///
    /// As [`dict_named`](Self::dict_named).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost; the queue may have been created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
    /// let tasks = manager.joinable_queue_named::<u64>("tasks").await?;
    /// # Ok(()) }
    /// ```
    pub async fn joinable_queue_named<T: Value>(&self, name: &str) -> Result<JoinableQueue<T>> {
        self.host(Hosted::JoinableQueue(None), Some(name)).await
    }
}

hosted!(
    /// Creates an [`Event`] in the manager's process; Python's `manager.Event()`.
    event / event_named() -> Event = Hosted::Event,
    "let e = manager.event().await?;",
    "let ready = manager.event_named(\"ready\").await?;"
);
hosted!(
    /// Creates a [`Lock`] in the manager's process; Python's `manager.Lock()`. A lock held
    /// by a process whose connection to the manager closes (it exited, or was killed) is
    /// released, and the next holder is told by [`LockGuard::owner_died`](crate::LockGuard::owner_died).
    lock / lock_named() -> Lock = Hosted::Lock,
    "let l = manager.lock().await?;",
    "let l = manager.lock_named(\"db\").await?;"
);
hosted!(
    /// Creates an [`RLock`] in the manager's process; Python's `manager.RLock()`.
    rlock / rlock_named() -> RLock = Hosted::RLock,
    "let l = manager.rlock().await?;",
    "let l = manager.rlock_named(\"db\").await?;"
);
hosted!(
    /// Creates a [`Semaphore`] with `permits` in the manager's process; Python's
    /// `manager.Semaphore(permits)`.
    semaphore / semaphore_named(permits: u64) -> Semaphore = Hosted::Semaphore(permits),
    "let s = manager.semaphore(2).await?;",
    "let s = manager.semaphore_named(\"slots\", 2).await?;"
);
hosted!(
    /// Creates a [`BoundedSemaphore`] with `permits` in the manager's process.
    bounded_semaphore / bounded_semaphore_named(permits: u64) -> BoundedSemaphore =
        Hosted::BoundedSemaphore(permits),
    "let s = manager.bounded_semaphore(2).await?;",
    "let s = manager.bounded_semaphore_named(\"slots\", 2).await?;"
);
hosted!(
    /// Creates a [`Condition`] in the manager's process; Python's `manager.Condition()`.
    condition / condition_named() -> Condition = Hosted::Condition,
    "let c = manager.condition().await?;",
    "let c = manager.condition_named(\"changed\").await?;"
);
hosted!(
    /// Creates a [`Barrier`] for `parties` in the manager's process; Python's
    /// `manager.Barrier(parties)`.
    barrier / barrier_named(parties: usize) -> Barrier = Hosted::Barrier(parties),
    "let b = manager.barrier(3).await?;",
    "let b = manager.barrier_named(\"start\", 3).await?;"
);

impl Manager {
    /// Stops the manager: every proxy call made afterwards, from any process, fails with a
    /// [`Closed`](crate::ErrorKind::Closed) error.
    ///
    /// For a manager from [`start`](Self::start): asks the process to exit, waits
    /// [`SHUTDOWN_GRACE`], then terminates it (`SIGTERM`, then `SIGKILL`) and reaps it. For
    /// one from [`serve`](Self::serve): drops the store and every object it hosts, so that
    /// proxies fail in this process and its children too, and calls waiting on a hosted
    /// object (a `get`, an `acquire`) fail at once; then stops listening, drops every TCP
    /// client, and returns once the address is free to serve again. For one from
    /// [`connect`](Self::connect): only this handle is closed; the server goes on.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for reporting a server that could not be reaped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the request to exit is sent (or a served store dropped and its listener
    /// stopped) before the first await, and the supervisor reaps the process whatever happens
    /// to this future. A dropped future only stops waiting for a served address to be free.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let manager = multiproc::Manager::start().await?;
    /// manager.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        match &self.server {
            Server::Child(server) => {
                self.retire_child_store(server);
                server.shutdown();
                if tokio::time::timeout(SHUTDOWN_GRACE, server.wait())
                    .await
                    .is_err()
                {
                    server.signal(libc::SIGTERM);
                    if tokio::time::timeout(SHUTDOWN_GRACE, server.wait())
                        .await
                        .is_err()
                    {
                        server.signal(libc::SIGKILL);
                        server.wait().await;
                    }
                }
            }
            Server::Serving(front) => front.stop_and_wait().await,
            Server::Connected(_) => {}
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        match &self.server {
            // The supervisor's task reaps it; a runtime that ends first leaves it to the
            // exit hook, which terminates children marked stop_at_exit.
            Server::Child(server) => {
                self.retire_child_store(server);
                server.shutdown();
            }
            Server::Serving(front) => front.stop(),
            Server::Connected(_) => {}
        }
    }
}
