//! The same `#[worker]` functions on many machines, through a NATS JetStream server
//! (feature `nats`).
//!
//! Start a [`Node`] on every machine, from your own binary (behind a flag of your CLI), and
//! connect a [`Pool`](crate::Pool) to the cluster with [`Pool::connect`](crate::Pool::connect)
//! in the service that submits work. It is the same `Pool` type as a local one, with the same
//! methods, result types, chunking and errors, so code written against a local pool compiles
//! unchanged; only [`processes`](crate::Pool::processes) (the live nodes' slots) and
//! [`pids`](crate::Pool::pids) (empty) differ, and [`nodes`](crate::Pool::nodes) lists the
//! nodes.
//!
//! ```no_run
//! use multiproc::{worker, Node, Pool};
//!
//! #[worker]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[multiproc::main]
//! async fn main() -> multiproc::Result<()> {
//!     let url = "nats://127.0.0.1:4222";
//!     if std::env::args().any(|arg| arg == "--node") {
//!         // On each worker machine: a local pool of 8 child processes.
//!         return Node::connect(url).slots(8).serve().await;
//!     }
//!     // In the service: a `Pool` whose calls run on the nodes.
//!     let pool = Pool::connect(url).build().await?;
//!     let squares: Vec<u64> = pool.map(square, 0..1_000u64).await?;
//!     assert_eq!(squares[3], 9);
//!     Ok(())
//! }
//! ```
//!
//! # Running a cluster
//!
//! Run `nats-server -js` (2.9 or later; JetStream must be on), start the nodes, then the
//! service. Everything lives under a *namespace* (`"default"` unless set with
//! [`NodeBuilder::namespace`] and [`RemotePoolBuilder::namespace`]):
//!
//! - a work-queue stream `MP_<namespace>_TASKS`, subjects `mp.<namespace>.task.<fingerprint>`,
//!   from which the nodes of one build pull through one durable pull consumer;
//! - a key-value bucket `mp_<namespace>_nodes` in which every node writes a heartbeat (its
//!   id, host, pid, slots, workers and registry fingerprint) that expires when the node
//!   stops beating;
//! - a stream `MP_<namespace>_RESULTS` (subjects `mp.<namespace>.result.<pool id>`, kept 15
//!   minutes) on which the nodes publish results, each pool reading its own subject through
//!   an ordered consumer, so that results survive a server restart;
//! - an object store `mp_<namespace>_payloads` (objects kept 15 minutes at most) for the
//!   arguments and results too large for a message (the server's `max_payload`, 1 MiB by
//!   default): the message then only names its object, which is deleted once read. Such
//!   payloads are limited only by the nodes' local pools
//!   ([`max_frame_len`](crate::PoolBuilder::max_frame_len), 256 MiB).
//!
//! Connection options (user and password, token, NKeys, credentials files, TLS) pass through
//! [`NodeBuilder::options`] and [`RemotePoolBuilder::options`] as an
//! [`async_nats::ConnectOptions`]; a server that refuses them gives an
//! [`Auth`](crate::ErrorKind::Auth) error, which never shows credentials written in the URL.
//!
//! # Routing, node options and metrics
//!
//! A node declares [labels](NodeBuilder::labels) and [resources](NodeBuilder::resource); a
//! pool ([`RemotePoolBuilder::requires`]) or one call ([`Apply::needs`](crate::pool::Apply::needs))
//! states its [`Needs`], and only a node that can serve them receives the task: see
//! [`routing`]. A node's local pool takes the local pool's
//! [`initializer`](NodeBuilder::initializer) and
//! [`max_tasks_per_child`](NodeBuilder::max_tasks_per_child). Queue depth, tasks in flight per
//! node, retries, give-ups and task durations are recorded through the `metrics` facade and
//! returned as data by [`Pool::cluster_stats`](crate::Pool::cluster_stats): see [`stats`].
//!
//! # Delivery guarantee: at least once
//!
//! A task (one chunk of a `map`, or one `apply`) is acknowledged *late*: only after its
//! result has been published. So:
//!
//! - a child process that crashes while running a task makes its node reject the task at
//!   once, and JetStream delivers it again, to another slot or another node;
//! - a node that vanishes (killed, frozen, cut off from the server) has its tasks delivered
//!   again after the ack wait (3 s by default, [`NodeBuilder::ack_wait`]); a node keeps the
//!   lease of each task it holds alive with progress acks every third of the ack wait, so a
//!   long task is not delivered twice merely for being long;
//! - after [`max_deliver`](NodeBuilder::max_deliver) deliveries (3 by default) that all
//!   crashed, the caller gets a [`WorkerDied`](crate::ErrorKind::WorkerDied) error naming the
//!   task and the last failure, and the message is removed from the stream. When the
//!   deliveries ended because the nodes vanished rather than crashed, JetStream notices the
//!   exhausted task (and the caller gets its error) the next time a node asks for work.
//!
//! A task may therefore run more than once (a node that died after running it but before
//! acknowledging it, a node cut off longer than the ack wait): **workers run on a cluster
//! should be idempotent**. Each task has an id (`<pool id>.<n>`), which travels in the
//! `Mp-Task` header, names the task in errors, and is what [`task_id()`] returns inside the
//! worker, the same on every delivery: a worker with side effects can use it to do them
//! once. A duplicate result is discarded by the caller.
//!
//! # Stopping a node: drain
//!
//! [`Node::drain`] takes a node out without losing a task: it stops pulling,
//! leaves the node list at once, lets its running tasks finish (for up to
//! [`NodeBuilder::drain_grace`], 25 s by default) and hands back those that did not, which
//! other nodes then run at once. [`NodeBuilder::serve`] drains on `SIGTERM` and then returns
//! `Ok(())`, so a rolling restart (Kubernetes, systemd) is a `SIGTERM` to each node in turn:
//!
//! ```no_run
//! # async fn demo() -> multiproc::Result<()> {
//! let node = multiproc::Node::connect("nats://127.0.0.1:4222").start().await?;
//! // ... on a signal of your own:
//! node.drain().await?;
//! # Ok(()) }
//! ```
//!
//! # Submission window and shutting down
//!
//! A `map` publishes at most `2 × slots` of its chunks at once (the slots of the live nodes,
//! [`Pool::processes`](crate::Pool::processes)) and the next ones as results come back, as
//! `imap` does, so a huge map neither floods the work queue nor leaves it full of tasks when
//! its caller gives up. [`close`](crate::Pool::close), [`join`](crate::Pool::join) and
//! [`terminate`](crate::Pool::terminate) behave as for a local pool: `close` refuses new
//! calls, `join` (after `close`) waits until every call submitted has been answered, and
//! `terminate` fails every waiting call with a [`Cancelled`](crate::ErrorKind::Cancelled)
//! error at once and withdraws their tasks from the work queue (a task a node is already
//! running finishes there, and its result is discarded).
//!
//! While the server cannot be reached (it restarts, the network is cut), a call's task is
//! published again for up to a minute before the caller gets the error; the server stores it
//! once, however many attempts reach it. The tasks and results of a server with a file
//! store survive its restart, and nodes and pools carry on as soon as their clients have
//! reconnected (the reconnection back-off of `async-nats` is at most 4 s by default; see
//! [`ConnectOptions::reconnect_delay_callback`]).
//!
//! # Builds and fingerprints
//!
//! Workers are found by name, so every node must run the same build as the caller. Each
//! binary computes a fingerprint of its worker registry (the sorted names of its
//! `#[worker]`s); tasks are published on a subject carrying the caller's fingerprint, so a
//! node of another build never receives them. A call for which no live node of the
//! caller's fingerprint serves the worker fails at once with an
//! [`UnknownWorker`](crate::ErrorKind::UnknownWorker) error that says what nodes are alive.

mod node;
mod pool;
pub mod routing;
pub mod stats;
mod task;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use async_nats::jetstream::object_store::ObjectStore;

use crate::error::{Error, ErrorKind, Result};

pub use crate::pool::Needs;
pub use node::{Node, NodeBuilder};
pub use pool::RemotePoolBuilder;
pub use stats::{ClusterStats, NodeStats};
pub use task::task_id;

use crate::protocol::cluster::{FailKind, NodeInfo, Outcome};

/// The connection options of `async-nats`, re-exported: credentials, NKeys, token, TLS.
pub use async_nats::ConnectOptions;

/// The namespace used unless one is set.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How long results are kept in the results stream for a caller to read them.
const RESULT_TTL: Duration = Duration::from_secs(15 * 60);

/// How often a node writes its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a heartbeat stays valid: a node silent this long is taken for dead.
const NODE_TTL: Duration = Duration::from_secs(5);

/// Header: the task id.
const TASK_HEADER: &str = "Mp-Task";
/// Header: the subject the result goes to.
const REPLY_HEADER: &str = "Mp-Reply";
/// Header: the worker's registered name.
const WORKER_HEADER: &str = "Mp-Worker";
/// Header: the number of items in the task's batch.
const ITEMS_HEADER: &str = "Mp-Items";
/// Header: the node that ran the task (on results).
const NODE_HEADER: &str = "Mp-Node";

/// Header: the name in the object store of the message's payload (arguments on a task,
/// the outcome on a result), sent there for being too large for a message.
const OBJECT_HEADER: &str = "Mp-Object";

/// Room kept for the headers when checking a payload against the server's `max_payload`.
const HEADER_ROOM: usize = 1024;

/// The value of one of our headers on `message`, if it has it.
fn header(message: &async_nats::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map(|value| value.as_str().to_string())
}

/// The names one namespace uses on the server.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    stream: String,
    results: String,
    results_prefix: String,
    bucket: String,
    objects: String,
    subject_prefix: String,
}

impl Names {
    fn new(namespace: &str) -> Result<Names> {
        let valid = !namespace.is_empty()
            && namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the namespace {namespace:?} must be made of ASCII letters, digits, `_` and `-`"
                ),
            ));
        }
        Ok(Names {
            stream: format!("MP_{namespace}_TASKS"),
            results: format!("MP_{namespace}_RESULTS"),
            results_prefix: format!("mp.{namespace}.result"),
            bucket: format!("mp_{namespace}_nodes"),
            objects: format!("mp_{namespace}_payloads"),
            subject_prefix: format!("mp.{namespace}.task"),
        })
    }

    fn task_subject(&self, fingerprint: &str) -> String {
        format!("{}.{fingerprint}", self.subject_prefix)
    }

    fn consumer(&self, fingerprint: &str) -> String {
        format!("nodes_{fingerprint}")
    }

    /// The subject of the tasks of a build with `needs` (see [`routing`]).
    fn routed_subject(&self, fingerprint: &str, needs: &Needs) -> String {
        match needs.route() {
            Some(route) => format!("{}.{route}", self.task_subject(fingerprint)),
            None => self.task_subject(fingerprint),
        }
    }

    /// The durable consumer of a route: named by a hash of the route, which may hold
    /// characters a consumer name may not.
    fn route_consumer(&self, fingerprint: &str, route: &str) -> String {
        format!("{}_{:016x}", self.consumer(fingerprint), fnv1a([route]))
    }
}

impl NodeInfo {
    fn is_fresh(&self) -> bool {
        now_ms().saturating_sub(self.at_ms) < NODE_TTL.as_millis() as u64
    }
}

/// The fingerprint of this binary's worker registry: FNV-1a over the sorted names, in hex.
pub(crate) fn fingerprint() -> String {
    format!("{:016x}", fnv1a(crate::registry::names()))
}

/// FNV-1a over `parts`, each followed by a newline.
fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([b'\n']) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// An error of the NATS client, while `doing` something.
fn nats_error(doing: &str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Io, format!("NATS: {doing}: {source}")).with_source(source)
}

/// Connects to `url`. A refusal of the credentials is an [`Auth`](ErrorKind::Auth) error;
/// credentials written in the URL never appear in an error.
async fn connect(url: &str, options: Option<ConnectOptions>) -> Result<async_nats::Client> {
    use async_nats::ConnectErrorKind;
    let shown = redacted(url);
    options
        .unwrap_or_default()
        .connect(url)
        .await
        .map_err(|error| match error.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                Error::new(
                    ErrorKind::Auth,
                    format!(
                        "NATS: the server at {shown} refused the credentials ({error}); check \
                         the token, user and password, NKey or credentials file given with \
                         `options`"
                    ),
                )
                .with_source(error)
            }
            _ => nats_error(&format!("connecting to {shown}"), error),
        })
}

/// How often a waiting task checks whether the client has reconnected.
const RECONNECT_CHECK: Duration = Duration::from_millis(100);

/// How many times the client has connected to the server: a change means it reconnected.
fn connects(client: &async_nats::Client) -> u64 {
    client
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Resolves once the client has connected again since it had connected `since` times. A
/// restarted server has forgotten the pull requests and consumers of the clients, which
/// would otherwise notice only when their requests time out.
async fn reconnected(client: &async_nats::Client, since: u64) {
    while connects(client) == since {
        tokio::time::sleep(RECONNECT_CHECK).await;
    }
}

/// `url` with the credentials of its user part, if any, replaced by `***`.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host, credentials) = match rest.rsplit_once('@') {
        Some((_, host)) => (host, true),
        None => (rest, false),
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    if credentials {
        format!("{scheme}***@{host}")
    } else {
        format!("{scheme}{host}")
    }
}

/// What a namespace has on the server.
struct Layout {
    /// The work queue of tasks.
    stream: jetstream::stream::Stream,
    /// The nodes' heartbeats.
    bucket: jetstream::kv::Store,
    /// Arguments and results too large for a message.
    objects: ObjectStore,
}

/// Creates (or finds) the streams and buckets of a namespace. Nodes and pools starting at
/// the same time race to create them; a lost race is retried.
async fn ensure_layout(js: &jetstream::Context, names: &Names) -> Result<Layout> {
    let mut attempt = 0;
    loop {
        match try_ensure_layout(js, names).await {
            Err(error) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(%error, attempt, "multiproc: setting up the streams; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            done => return done,
        }
    }
}

/// The bucket's stream is created by hand: `create_key_value` of `async-nats` fails against
/// the 2.9 servers of Debian, while `get_key_value` on an existing stream works.
async fn try_ensure_layout(js: &jetstream::Context, names: &Names) -> Result<Layout> {
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: names.stream.clone(),
            subjects: vec![format!("{}.>", names.subject_prefix)],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|error| nats_error(&format!("creating the stream {}", names.stream), error))?;
    js.get_or_create_stream(jetstream::stream::Config {
        name: names.results.clone(),
        subjects: vec![format!("{}.>", names.results_prefix)],
        max_age: RESULT_TTL,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|error| nats_error(&format!("creating the stream {}", names.results), error))?;
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{}", names.bucket),
        subjects: vec![format!("$KV.{}.>", names.bucket)],
        max_messages_per_subject: 1,
        max_age: NODE_TTL,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|error| nats_error(&format!("creating the bucket {}", names.bucket), error))?;
    let bucket = js
        .get_key_value(names.bucket.clone())
        .await
        .map_err(|error| nats_error(&format!("opening the bucket {}", names.bucket), error))?;
    let objects = match js.get_object_store(&names.objects).await {
        Ok(objects) => objects,
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: names.objects.clone(),
                description: Some(
                    "multiproc: arguments and results too large for a message".into(),
                ),
                // Whatever a crash leaves behind goes with the results it belonged to.
                max_age: RESULT_TTL,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|error| {
                nats_error(
                    &format!("creating the object store {}", names.objects),
                    error,
                )
            })?,
    };
    Ok(Layout {
        stream,
        bucket,
        objects,
    })
}

/// Stores `bytes`, too large for a message, in the object store as `name`.
async fn put_object(objects: &ObjectStore, name: &str, bytes: &[u8]) -> Result<()> {
    let mut reader = bytes;
    objects
        .put(name, &mut reader)
        .await
        .map(drop)
        .map_err(|error| nats_error(&format!("storing {name} in the object store"), error))
}

/// Reads the object `name`.
async fn read_object(objects: &ObjectStore, name: &str) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    objects
        .get(name)
        .await
        .map_err(|error| nats_error(&format!("reading {name} from the object store"), error))?
        .read_to_end(&mut bytes)
        .await
        .map_err(|error| nats_error(&format!("reading {name} from the object store"), error))?;
    Ok(bytes)
}

/// Deletes the object `name`; a failure is only logged, as the object expires anyway.
async fn delete_object(objects: &ObjectStore, name: &str) {
    if let Err(error) = objects.delete(name).await {
        tracing::debug!(%error, name, "multiproc: deleting an object failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_redacted() {
        assert_eq!(redacted("nats://s3cret@host:4222"), "nats://***@host:4222");
        assert_eq!(redacted("nats://user:pw@host:4222"), "nats://***@host:4222");
        assert_eq!(redacted("nats://host:4222"), "nats://host:4222");
        assert_eq!(redacted("host:4222"), "host:4222");
        assert_eq!(redacted("a:b@host"), "***@host");
    }
}
