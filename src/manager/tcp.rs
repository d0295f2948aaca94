//! The manager's TCP front: TLS if asked, the mutual HMAC challenge, then hub frames.
//!
//! A TCP peer may be another machine with no common ancestor, so both sides prove a key given
//! by the user rather than the process tree's, with the same handshake as every named local
//! socket ([`transport::auth`](crate::transport::auth)), which is Python 3.12's
//! (`multiprocessing.connection.deliver_challenge` and `answer_challenge`). Each connection
//! is accepted and authenticated in its own task, a bounded number at once, and accepting
//! survives running out of descriptors ([`transport::accept`](crate::transport::accept)).
//! Nothing after the handshake is read from a peer that failed; the key never crosses the
//! wire. Once both sides are proven, the server sends the store's object id and its run, and
//! the connection carries ordinary hub frames.
//!
//! # Runs
//!
//! A server's address outlives the server: a manager stopped and served again at the same
//! address (by another process, or the same one) is a new *run*, with objects of its own,
//! whose ids may be those of the earlier run's (another process numbers its objects afresh).
//! So each [`serve`] draws a random 64-bit run, and a TCP manager's hub name carries it:
//! `tcp://127.0.0.1:50000/run-<16 hex digits>`. A process keeps one connection per address,
//! which knows the run it reached; a handle naming another run is refused before anything is
//! sent (see `client::link`), so a proxy of an earlier run never reaches an object of the run
//! now serving.
//!
//! The authkey is the whole trust boundary, as in Python: an authenticated peer can address
//! any object of the serving process's hub (as any process of the local tree can) and can ask
//! `update` to run any one-argument `#[worker]` registered in the server's binary. Unlike
//! Python's pickle, nothing a peer sends can run code that is not already registered there.
//!
//! # TLS
//!
//! A front served with [`Manager::serve`](crate::Manager::serve) is not encrypted: the key
//! proof keeps strangers out, but what follows is readable on the wire. One served with
//! [`Manager::serve_tls`](crate::Manager::serve_tls) first makes each connection a TLS
//! session ([`transport::tls`](crate::transport::tls)): the client checks the manager's
//! certificate (and the manager the client's, if it asks for one); the key proof then runs
//! inside the session, and so does everything after it. Its hub name starts with `tls://`
//! instead of `tcp://`, so that its proxies are reached with TLS in every process, or not at
//! all.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::error::{Error, Result};
use crate::protocol::{ObjectId, Welcome};
use crate::shared::hub::{Hub, runtime};
use crate::transport::accept::Handshakes;
use crate::transport::auth::random_bytes;
use crate::transport::tls::TlsServerConfig;
use crate::transport::{DEFAULT_MAX_FRAME_LEN, tcp};

/// A TCP front serving one store, and the connections it accepted.
#[derive(Debug)]
pub(crate) struct TcpFront {
    pub(crate) local_addr: SocketAddr,
    tasks: Arc<Mutex<FrontTasks>>,
    /// The task that owns the listener: the address is free again once it has ended.
    accepting: Mutex<Option<JoinHandle<()>>>,
    hub: Arc<Hub>,
    store: ObjectId,
}

/// The tasks of a front (its accept loop, and one per connection served), aborted together
/// when it stops.
#[derive(Debug, Default)]
struct FrontTasks {
    stopped: bool,
    running: Vec<AbortHandle>,
}

impl FrontTasks {
    /// Keeps `task` to abort at [`stop`](Self::stop); aborts it at once if that has come.
    fn track(&mut self, task: AbortHandle) {
        if self.stopped {
            task.abort();
            return;
        }
        self.running.retain(|task| !task.is_finished());
        self.running.push(task);
    }

    fn stop(&mut self) {
        self.stopped = true;
        for task in self.running.drain(..) {
            task.abort();
        }
    }
}

impl TcpFront {
    /// Retires the store and every object it hosts, so that their proxies fail in every
    /// process, this one included (whose proxies reach the hub directly, not through the
    /// front); then stops accepting (dropping the handshakes in progress) and drops every
    /// connection: their clients' calls fail as closed.
    pub(crate) fn stop(&self) {
        let addr = self.local_addr;
        self.hub.retire(
            self.store,
            &format!(
                "it belonged to the manager served at {addr}, which has been shut down; \
                 its objects went with it"
            ),
        );
        self.tasks.lock().expect("front tasks poisoned").stop();
    }

    /// [Stops](Self::stop), and returns once the listening socket is closed, so that the
    /// address can be served again.
    pub(crate) async fn stop_and_wait(&self) {
        self.stop();
        let accepting = self.accepting.lock().expect("front tasks poisoned").take();
        if let Some(accepting) = accepting {
            // Aborted: it ends as soon as the shared runtime drops it, with its listener.
            let _ = accepting.await;
        }
    }
}

/// Listens on `addr` and serves `store` of this process's `hub` to every client that proves
/// `key`, inside TLS if `tls` is given.
pub(crate) async fn serve(
    addr: SocketAddr,
    key: Vec<u8>,
    tls: Option<TlsServerConfig>,
    hub: Arc<Hub>,
    store: ObjectId,
) -> Result<TcpFront> {
    // Bound and served on the shared runtime, so the front outlives the caller's runtime as
    // the hub does.
    let listener = runtime()
        .spawn(tcp::bind(addr))
        .await
        .map_err(|_| Error::closed("the shared-objects runtime stopped"))??;
    let local_addr = listener
        .local_addr()
        .map_err(|error| Error::io("reading the bound address", error))?;
    let tasks = Arc::new(Mutex::new(FrontTasks::default()));
    let front = Front {
        key: key.into(),
        tls,
        hub: hub.clone(),
        welcome: Welcome {
            store,
            run: u64::from_le_bytes(random_bytes()),
        },
        tasks: tasks.clone(),
    };
    let accepting = runtime().spawn(accept_peers(listener, Arc::new(front)));
    tasks
        .lock()
        .expect("front tasks poisoned")
        .track(accepting.abort_handle());
    Ok(TcpFront {
        local_addr,
        tasks,
        accepting: Mutex::new(Some(accepting)),
        hub,
        store,
    })
}

/// What every connection to one front shares.
struct Front {
    key: Arc<[u8]>,
    tls: Option<TlsServerConfig>,
    hub: Arc<Hub>,
    welcome: Welcome,
    tasks: Arc<Mutex<FrontTasks>>,
}

/// Accepts connections until the front stops, each authenticated in its own task and then
/// served in another; an accept that fails (out of descriptors) is retried.
async fn accept_peers(listener: TcpListener, front: Arc<Front>) {
    let mut handshakes = Handshakes::default();
    let name = listener.local_addr().map_or_else(
        |_| "a manager's address".to_string(),
        |addr| addr.to_string(),
    );
    loop {
        match tcp::accept(&listener).await {
            Ok((stream, peer)) => handshakes.start(authenticate_peer(stream, peer, front.clone())),
            Err(error) => handshakes.back_off(&name, &error).await,
        }
    }
}

/// Starts TLS with `peer` if the front has it, proves the key both ways and, if it is
/// proven, serves the peer in a task of its own.
async fn authenticate_peer(stream: TcpStream, peer: SocketAddr, front: Arc<Front>) {
    let authenticated = tcp::authenticate(
        stream,
        &front.key,
        DEFAULT_MAX_FRAME_LEN,
        front.tls.as_ref(),
    )
    .await;
    let (reader, writer) = match authenticated {
        Ok(framed) => framed,
        Err(error) => {
            tracing::warn!(target: "multiproc", "the manager refused {peer}: {error}");
            return;
        }
    };
    if writer.send(&front.welcome, Vec::new()).is_err() {
        return;
    }
    let served = tokio::spawn(front.hub.clone().serve_stream(reader, writer, 0));
    front
        .tasks
        .lock()
        .expect("front tasks poisoned")
        .track(served.abort_handle());
}
