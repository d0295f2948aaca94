//! [`Node`]: a machine's local pool, serving the tasks of a NATS JetStream cluster.
//!
//! Each slot (one per child process) pulls *one* task at a time, and only when it is free:
//! a batch prefetch would strand the tasks it reserved on a node that dies. The task is
//! acknowledged after its result is published; from the moment it arrives until then, the
//! node extends its lease with progress acks every third of the ack wait. A task whose child
//! process died is rejected (`nak`) for immediate redelivery, unless it was its last
//! delivery: then the caller is told and the message is terminated, which removes it from
//! the work queue.
//!
//! # Failover
//!
//! The ack wait is short (3 s by default) because the progress acks, not the ack wait, are
//! what keeps a long task on its node: a node that stops sending them (killed, frozen by
//! `SIGSTOP`, cut off from the server) loses its tasks to the other nodes within the ack
//! wait, rather than holding them for the 30 s of JetStream's default. Pull requests expire
//! after [`PULL_EXPIRES`], so that a frozen node's idle slots stop taking tasks soon too.
//!
//! # Draining
//!
//! [`Node::drain`] (and `SIGTERM`, under [`NodeBuilder::serve`]) deletes the node's
//! heartbeat so that pools stop counting it, and stops the slots asking for tasks: each lets
//! the pull request it has out expire (within [`PULL_EXPIRES`]) rather than drop it, since a
//! task the server was sending it at that moment would otherwise wait out the ack wait, and
//! runs a task that comes on it. The tasks in flight finish and are acknowledged. Those
//! still running after the grace period are handed back: the local pool is terminated,
//! which fails their calls as cancelled, and a cancelled call is rejected for immediate
//! redelivery elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};
use crate::pool::{Job, Pool, PoolBuilder};
use crate::protocol::encode;
use crate::worker::Worker;

use super::routing::Offer;
use super::stats::NodeCounts;
use super::task::{WITH_TASK, with_task_payload};
use crate::pool::needs::{invalid_name, is_valid_name};

use super::{
    ConnectOptions, DEFAULT_NAMESPACE, FailKind, HEADER_ROOM, HEARTBEAT, ITEMS_HEADER, NODE_HEADER,
    Names, NodeInfo, OBJECT_HEADER, Outcome, REPLY_HEADER, TASK_HEADER, WORKER_HEADER, connect,
    connects, delete_object, ensure_layout, fingerprint, header, nats_error, now_ms, put_object,
    read_object, reconnected,
};

/// The default ack wait: a node silent this long (killed, frozen, cut off) has its tasks
/// delivered elsewhere. A running task's lease is renewed every third of it.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(3);

/// The default time a draining node gives the tasks it runs before handing them back; below
/// the 30 s Kubernetes waits between `SIGTERM` and `SIGKILL`.
const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(25);

/// How long a drain waits, once its grace period is over, for the tasks still running to be
/// handed back; those left then are delivered again after the ack wait.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The default number of deliveries of a task before the caller gets an error.
const DEFAULT_MAX_DELIVER: i64 = 3;

/// How many times a node tries to store a result before it gives the task back.
const ANSWER_ATTEMPTS: u32 = 60;

/// How long one pull request waits for a task before it is renewed. Short, because the
/// server keeps delivering to the pull requests of a frozen node until they expire.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// A running worker node: serves the tasks of a NATS JetStream cluster on a local pool of
/// child processes, until it is drained. See the [module docs](crate::cluster).
///
/// Started by [`NodeBuilder::start`]; [`NodeBuilder::serve`] runs one until `SIGTERM`.
/// Dropping a `Node` that is not draining stops it at once: its child processes exit, and the
/// tasks it held are delivered to other nodes after the ack wait.
pub struct Node {
    id: String,
    /// Set to `true` to begin draining.
    draining: watch::Sender<bool>,
    /// The node's own task: heartbeats and slots, until drained. `None` once `drain` took it.
    serving: Option<JoinHandle<()>>,
}

impl Node {
    /// A builder for a node connected to the server at `url` (`"nats://host:4222"`).
    pub fn connect(url: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            url: url.into(),
            options: None,
            pool: Pool::builder(),
            labels: BTreeSet::new(),
            resources: BTreeMap::new(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            name: None,
            fingerprint: None,
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: DEFAULT_MAX_DELIVER,
            drain_grace: DEFAULT_DRAIN_GRACE,
        }
    }

    /// The node's id, in heartbeats, results and [`Pool::nodes`](crate::Pool::nodes).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes the node out of the cluster without losing a task: stops pulling tasks, leaves
    /// the node list (pools stop counting it), lets the tasks in flight finish and be
    /// acknowledged, and stops the child processes. Tasks still running after the grace
    /// period ([`NodeBuilder::drain_grace`], 25 s by default) are handed back for another
    /// node to run (such a delivery counts towards the retry cap, as any other). Returns
    /// once the node has stopped; the process can then exit.
    ///
    /// [`NodeBuilder::serve`] drains its node on `SIGTERM`.
    ///
    /// # Errors
    ///
    /// [`Protocol`](crate::ErrorKind::Protocol) if the node's own task had failed (it
    /// panicked); its tasks are then delivered again after the ack wait.
    ///
    /// # Cancel safety
    ///
    /// Once called, the drain goes on even if the future is dropped, for as long as the
    /// runtime runs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let node = multiproc::Node::connect("nats://127.0.0.1:4222")
    ///     .slots(4)
    ///     .start()
    ///     .await?;
    /// // ... serve for a while, then take the node out before a deploy:
    /// node.drain().await?;
    /// # Ok(()) }
    /// ```
    pub async fn drain(mut self) -> Result<()> {
        self.draining.send_replace(true);
        match self.serving.take() {
            Some(serving) => serving.await.map_err(Self::failed),
            None => Ok(()),
        }
    }

    /// Resolves only if the node's own task ended without a drain, which is a failure.
    async fn failure(&mut self) -> Error {
        match self.serving.as_mut() {
            Some(serving) => match serving.await {
                Ok(()) => Error::new(ErrorKind::Protocol, "the node stopped serving"),
                Err(error) => Self::failed(error),
            },
            None => std::future::pending().await,
        }
    }

    fn failed(error: tokio::task::JoinError) -> Error {
        Error::new(ErrorKind::Protocol, format!("the node failed: {error}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(serving) = &self.serving
            && !*self.draining.borrow()
        {
            serving.abort();
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("draining", &*self.draining.borrow())
            .finish()
    }
}

/// Configures a [`Node`]; returned by [`Node::connect`].
#[must_use = "a node serves only once `start` or `serve` is awaited"]
pub struct NodeBuilder {
    url: String,
    options: Option<ConnectOptions>,
    /// The local pool: its size, initializer and `max_tasks_per_child`.
    pool: PoolBuilder,
    labels: BTreeSet<String>,
    resources: BTreeMap<String, u64>,
    namespace: String,
    name: Option<String>,
    fingerprint: Option<String>,
    ack_wait: Duration,
    max_deliver: i64,
    drain_grace: Duration,
}

impl NodeBuilder {
    /// The number of child processes, hence of tasks run at once (default:
    /// [`cpu_count()`](crate::cpu_count)).
    pub fn slots(mut self, slots: usize) -> Self {
        self.pool = self.pool.processes(slots);
        self
    }

    /// Labels the node offers to tasks' [`Needs`](super::Needs) (`["gpu", "eu-west"]`): a
    /// task needing a label runs only on a node that has it. ASCII letters, digits, `_` and
    /// `-`. See the [routing docs](super::routing).
    pub fn labels<I>(mut self, labels: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.labels.extend(labels.into_iter().map(Into::into));
        self
    }

    /// A resource the node has, with its total `amount` (`resource("gpu", 2)`), as Ray's
    /// custom resources: a task needing some of it runs only while that amount is free here,
    /// and holds it while it runs. Set again, the amount replaces the previous one.
    pub fn resource(mut self, name: impl Into<String>, amount: u64) -> Self {
        self.resources.insert(name.into(), amount);
        self
    }

    /// A `#[worker]` function run once in each slot's child process before its first task,
    /// replacements included (Python's `initializer` and `initargs`), as
    /// [`PoolBuilder::initializer`](crate::PoolBuilder::initializer): a child whose
    /// initializer panics is started again with back-off, and after ten failed starts in a
    /// row [`serve`](Self::serve) fails with the initializer's error.
    pub fn initializer<W: Worker<M>, M>(mut self, initializer: W, args: W::Args) -> Self {
        self.pool = self.pool.initializer(initializer, args);
        self
    }

    /// Replaces a slot's child process once it has been given `tasks` tasks (items of a
    /// `map`, or `apply`s), as
    /// [`PoolBuilder::max_tasks_per_child`](crate::PoolBuilder::max_tasks_per_child). Must
    /// be at least 1; default: never.
    pub fn max_tasks_per_child(mut self, tasks: usize) -> Self {
        self.pool = self.pool.max_tasks_per_child(tasks);
        self
    }

    /// Connection options: credentials, NKeys, token, TLS, reconnection.
    pub fn options(mut self, options: ConnectOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// The namespace to serve (default `"default"`); see the [module docs](crate::cluster).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The node's id in heartbeats and results (default `<host>-<pid>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Not public API: poses as a build with another worker registry, for the tests of the
    /// refusal of a node of another build. Hex digits only.
    #[doc(hidden)]
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// How long a delivered task may go without an ack or a progress ack before JetStream
    /// delivers it again (default 3 s): how long the tasks of a node that died, froze or lost
    /// the server wait before another node runs them. A node sends progress acks every third
    /// of it while it holds a task, so a long task is not delivered again for being long.
    /// Fixed by the first node of a build to create the consumer.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// How many times a task is delivered before its caller gets an error (default 3).
    /// Fixed by the first node of a build to create the consumer.
    pub fn max_deliver(mut self, deliveries: u32) -> Self {
        self.max_deliver = i64::from(deliveries.max(1));
        self
    }

    /// How long [`Node::drain`] (or `SIGTERM`) lets the tasks in flight run before handing
    /// them back to the cluster (default 25 s).
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// Starts the node and serves tasks until `SIGTERM`, which [drains](Node::drain) it:
    /// then it returns `Ok(())`, and the process can exit 0. The process's `SIGTERM` no
    /// longer kills it from the moment this is called; a second `SIGTERM` while draining
    /// changes nothing (`SIGKILL` still works, and the tasks then run elsewhere after the ack
    /// wait).
    ///
    /// Under systemd, set `KillMode=mixed` so that only the node, and not its child
    /// processes, gets the `SIGTERM`: a child killed mid-task is a crash, which counts
    /// towards the task's retry cap.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); [`Io`](crate::ErrorKind::Io) if the `SIGTERM` handler
    /// cannot be installed.
    ///
    /// Lost connections are not errors: the client reconnects and the node goes on.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the node: its child processes exit, and the tasks it held
    /// are delivered to other nodes after the ack wait. Once draining, the drain goes on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// multiproc::Node::connect("nats://127.0.0.1:4222")
    ///     .slots(4)
    ///     .serve()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(self) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        // Before starting, so that a SIGTERM sent while the node starts drains it.
        let mut terminate = signal(SignalKind::terminate()).map_err(|error| {
            Error::new(
                ErrorKind::Io,
                format!("installing the node's SIGTERM handler: {error}"),
            )
            .with_source(error)
        })?;
        let mut node = self.start().await?;
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!(node = %node.id, "multiproc node: SIGTERM; draining");
            }
            error = node.failure() => return Err(error),
        }
        node.drain().await
    }

    /// Connects, starts the local pool, announces the node and serves tasks in the
    /// background until the returned [`Node`] is drained or dropped.
    ///
    /// # Errors
    ///
    /// - [`Io`](crate::ErrorKind::Io) if the server cannot be reached or refuses to create
    ///   the stream, the consumer or the node bucket (is JetStream on? `nats-server -js`).
    /// - [`Auth`](crate::ErrorKind::Auth) if the server refuses the credentials.
    /// - [`InvalidInput`](crate::ErrorKind::InvalidInput) for an invalid namespace, label or
    ///   resource name, 0 slots or a `max_tasks_per_child` of 0; the local pool's start error
    ///   if its children cannot start, or the initializer's error (a
    ///   [`Panic`](crate::ErrorKind::Panic)) after ten failed starts in a row.
    ///
    /// Lost connections are not errors: the client reconnects and the node goes on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it resolves stops what it started (the
    /// child processes exit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let node = multiproc::Node::connect("nats://127.0.0.1:4222")
    ///     .slots(4)
    ///     .start()
    ///     .await?;
    /// println!("serving as {}", node.id());
    /// node.drain().await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(mut self) -> Result<Node> {
        let names = Names::new(&self.namespace)?;
        if let Some(name) =
            (self.labels.iter().chain(self.resources.keys())).find(|name| !is_valid_name(name))
        {
            return Err(invalid_name(name));
        }
        let pool = std::mem::replace(&mut self.pool, Pool::builder())
            .build()
            .await?;
        let client = connect(&self.url, self.options.take()).await?;
        let js = jetstream::new(client.clone());
        let layout = ensure_layout(&js, &names).await?;
        let fingerprint = self.fingerprint.take().unwrap_or_else(fingerprint);
        let consumer: PullConsumer = self.consumer(&layout.stream, &names, &fingerprint).await?;
        let bucket = layout.bucket;
        let config = &consumer.cached_info().config;
        let labels: Vec<String> = std::mem::take(&mut self.labels).into_iter().collect();
        let resources: Vec<(String, u64)> =
            std::mem::take(&mut self.resources).into_iter().collect();
        let offer = Offer::new(labels.clone(), resources.clone(), consumer.clone());
        let id = self
            .name
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        let node = Arc::new(Serving {
            counts: NodeCounts::new(&id),
            id,
            client,
            js,
            objects: layout.objects,
            pool,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            offer,
        });
        let info = NodeInfo {
            id: node.id.clone(),
            host: hostname(),
            pid: std::process::id(),
            slots: node.pool.processes(),
            fingerprint,
            workers: crate::registry::names()
                .into_iter()
                .map(String::from)
                .collect(),
            labels,
            resources,
            load: Default::default(),
            at_ms: 0,
        };
        let heartbeat = Heartbeat {
            key: node_key(&node.id),
            bucket,
            info,
            stream: layout.stream,
            names,
        };
        heartbeat.beat().await?;
        tracing::info!(node = %node.id, slots = heartbeat.info.slots, "multiproc node serving");
        let (draining, drained) = watch::channel(false);
        let serving = tokio::spawn(node.clone().serve_until_drained(
            heartbeat,
            drained,
            self.drain_grace,
        ));
        Ok(Node {
            id: node.id.clone(),
            draining,
            serving: Some(serving),
        })
    }
}

/// Where and what a node beats, and where it looks for the routes it can serve.
struct Heartbeat {
    bucket: jetstream::kv::Store,
    key: String,
    info: NodeInfo,
    stream: jetstream::stream::Stream,
    names: Names,
}

impl Heartbeat {
    async fn beat(&self) -> Result<()> {
        beat(&self.bucket, &self.key, &self.info).await
    }

    /// Beats every [`HEARTBEAT`] with `node`'s load, and refreshes the routes it pulls
    /// from, for ever.
    async fn keep_beating(&self, node: &Serving) {
        let mut info = self.info.clone();
        let mut ticks = tokio::time::interval(HEARTBEAT);
        loop {
            ticks.tick().await;
            info.load = node.counts.load(node.pool.stats().restarts);
            if let Err(error) = beat(&self.bucket, &self.key, &info).await {
                tracing::warn!(%error, "multiproc node: heartbeat failed");
            }
            node.offer
                .refresh(&self.stream, &self.names, &info.fingerprint)
                .await;
        }
    }

    /// Takes the node off the node list at once, rather than when its heartbeat expires.
    async fn leave(&self) {
        if let Err(error) = self.bucket.delete(&self.key).await {
            tracing::warn!(%error, "multiproc node: leaving the node list failed");
        }
    }
}

impl NodeBuilder {
    /// Creates (or finds) the durable pull consumer of this build's nodes; a lost creation
    /// race with another node is retried.
    async fn consumer(
        &self,
        stream: &jetstream::stream::Stream,
        names: &Names,
        fingerprint: &str,
    ) -> Result<PullConsumer> {
        let mut attempt = 0;
        loop {
            let created = stream
                .get_or_create_consumer(
                    &names.consumer(fingerprint),
                    jetstream::consumer::pull::Config {
                        durable_name: Some(names.consumer(fingerprint)),
                        filter_subject: names.task_subject(fingerprint),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: self.ack_wait,
                        max_deliver: self.max_deliver,
                        ..Default::default()
                    },
                )
                .await;
            match created {
                Ok(consumer) => return Ok(consumer),
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(%error, attempt, "multiproc node: creating the consumer; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(error) => return Err(nats_error("creating the nodes' consumer", error)),
            }
        }
    }
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("url", &self.url)
            .field("pool", &self.pool)
            .field("labels", &self.labels)
            .field("resources", &self.resources)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliver", &self.max_deliver)
            .field("drain_grace", &self.drain_grace)
            .finish()
    }
}

/// Runs a registered worker, by name, on an already encoded argument tuple in the node's
/// local pool, and returns the encoded reply. `items` is how many items the call carries
/// inside (a task's batch), for the pool's pacing.
async fn call_encoded(
    pool: &Pool,
    worker: &'static str,
    payload: Vec<u8>,
    items: usize,
) -> Result<Vec<u8>> {
    let (job, receiver) = Job::new(worker, payload, false, items);
    pool.submit(pool.new_group(), vec![job])?;
    crate::pool::reply(receiver).await
}

/// What a task message says about itself in its headers.
struct TaskHeaders {
    task: String,
    reply: String,
    worker: String,
    /// How many items the batch holds.
    items: usize,
}

impl TaskHeaders {
    fn of(message: &jetstream::Message) -> Option<Self> {
        let header = |name: &str| header(message, name);
        Some(TaskHeaders {
            task: header(TASK_HEADER)?,
            reply: header(REPLY_HEADER)?,
            worker: header(WORKER_HEADER)?,
            items: header(ITEMS_HEADER)
                .and_then(|items| items.parse().ok())
                .unwrap_or(1),
        })
    }
}

/// A running node, shared by its slots.
struct Serving {
    id: String,
    client: async_nats::Client,
    js: jetstream::Context,
    objects: ObjectStore,
    pool: Pool,
    ack_wait: Duration,
    max_deliver: i64,
    /// What the node offers to tasks' needs, and the routes it pulls from.
    offer: Offer,
    /// Its work so far, for heartbeats and metrics.
    counts: NodeCounts,
}

impl Serving {
    /// Serves tasks and beats until a drain begins; then leaves the node list, lets the
    /// tasks in flight finish within `grace`, hands back those still running, and stops the
    /// local pool.
    async fn serve_until_drained(
        self: Arc<Self>,
        heartbeat: Heartbeat,
        mut draining: watch::Receiver<bool>,
        grace: Duration,
    ) {
        let slots = futures::future::join_all(
            (0..self.pool.processes()).map(|_| self.clone().slot(draining.clone())),
        );
        tokio::pin!(slots);
        tokio::select! {
            () = heartbeat.keep_beating(&self) => {}
            _ = draining.wait_for(|draining| *draining) => {}
            // The slots stop only once draining.
            _ = &mut slots => {}
        }
        heartbeat.leave().await;
        tracing::info!(node = %self.id, "multiproc node draining: finishing the tasks in flight");
        if tokio::time::timeout(grace, &mut slots).await.is_err() {
            tracing::warn!(node = %self.id, ?grace, "multiproc node: handing back the tasks still running");
            // Their calls fail as cancelled, and `settle` rejects them for redelivery.
            let _ = self.pool.terminate().await;
            if tokio::time::timeout(HAND_BACK_TIMEOUT, &mut slots)
                .await
                .is_err()
            {
                tracing::warn!(node = %self.id, "multiproc node: tasks left to the ack wait");
            }
        }
        // The last acks and rejections must reach the server before the process goes.
        if let Err(error) = self.client.flush().await {
            tracing::warn!(%error, "multiproc node: flushing the last acks failed");
        }
        let _ = self.pool.terminate().await;
        tracing::info!(node = %self.id, "multiproc node drained");
    }

    /// One slot: pulls one task, from a route whose needs are free here, runs it, answers
    /// it; again and again, until draining.
    async fn slot(self: Arc<Self>, draining: watch::Receiver<bool>) {
        while !*draining.borrow() {
            let since = connects(&self.client);
            // Holds the route's resources until its task is done.
            let route = self.offer.pick(PULL_EXPIRES);
            let batch = route
                .consumer
                .batch()
                .max_messages(1)
                .expires(route.expires)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "multiproc node: pulling a task failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            loop {
                // A server that restarted forgot this pull request: ask again at once
                // rather than when the request times out (about 10 s).
                // A drain lets the pull request out expire rather than drop it: a task the
                // server is sending it at that moment would wait out the ack wait.
                let message = tokio::select! {
                    message = batch.next() => message,
                    () = reconnected(&self.client, since) => break,
                };
                let Some(message) = message else {
                    break;
                };
                match message {
                    Ok(message) => self.run(message).await,
                    Err(error) => {
                        tracing::warn!(%error, "multiproc node: receiving a task failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    /// Runs one task and answers it; never fails (every failure is an answer or a `nak`).
    /// Arguments that came through the object store are deleted once the task is done with.
    /// The task's lease is renewed from its arrival to its ack: reading large arguments
    /// and storing a large result take time too.
    async fn run(&self, message: jetstream::Message) {
        let object = header(&message, OBJECT_HEADER);
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        let _running = self.counts.start(delivered);
        let handled = self.handle(&message, object.as_deref());
        if with_progress(&message, self.ack_wait, handled).await
            && let Some(name) = object
        {
            delete_object(&self.objects, &name).await;
        }
    }

    /// Runs one task and answers it. Returns whether the task is done with (acknowledged or
    /// terminated), rather than given back for another delivery.
    async fn handle(&self, message: &jetstream::Message, object: Option<&str>) -> bool {
        let Some(headers) = TaskHeaders::of(message) else {
            tracing::warn!("multiproc node: a task without its headers; terminated");
            let _ = message.ack_with(AckKind::Term).await;
            return true;
        };
        let reply_bytes = match self.prepare(message, &headers, object).await {
            Ok(payload) => call_encoded(&self.pool, WITH_TASK, payload, headers.items).await,
            Err(error) => {
                self.answer(&headers.task, &headers.reply, &Outcome::failed(&error))
                    .await;
                let _ = message.ack_with(AckKind::Term).await;
                return true;
            }
        };
        self.settle(message, &headers, reply_bytes).await
    }

    /// The payload of the internal worker that gives the batch its task id: the task's
    /// arguments (from the message or the object store) behind the worker's name.
    async fn prepare(
        &self,
        message: &jetstream::Message,
        headers: &TaskHeaders,
        object: Option<&str>,
    ) -> Result<Vec<u8>> {
        let worker = &headers.worker;
        let name = crate::registry::static_name(worker).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownWorker,
                format!("node {} has no worker `{worker}`", self.id),
            )
        })?;
        match object {
            Some(object) => {
                let stored = read_object(&self.objects, object).await?;
                with_task_payload(&headers.task, name, &stored)
            }
            None => with_task_payload(&headers.task, name, &message.payload),
        }
    }

    /// Answers the caller and acknowledges, rejects or terminates the message by how the call
    /// ended: a crash is redelivered until the retry cap, a stopping node gives the task back.
    async fn settle(
        &self,
        message: &jetstream::Message,
        headers: &TaskHeaders,
        reply_bytes: Result<Vec<u8>>,
    ) -> bool {
        let (task, reply) = (&headers.task, &headers.reply);
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        match reply_bytes {
            Ok(bytes) => {
                if !self.answer(task, reply, &Outcome::Done(bytes)).await {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    return false;
                }
                if let Err(error) = message.double_ack().await {
                    tracing::warn!(%error, task, "multiproc node: ack failed");
                }
                true
            }
            Err(error) if error.is_worker_died() && delivered < self.max_deliver => {
                tracing::warn!(%error, task, delivered, "multiproc node: task crashed; rejected");
                let _ = message.ack_with(AckKind::Nak(None)).await;
                false
            }
            Err(error) if error.is_worker_died() => {
                let outcome = Outcome::GaveUp {
                    attempts: delivered.max(0) as u64,
                    last: format!("on node {}: {error}", self.id),
                };
                self.answer(task, reply, &outcome).await;
                let _ = message.double_ack_with(AckKind::Term).await;
                true
            }
            Err(error) if error.is_cancelled() || error.is_closed() => {
                // The node is stopping: someone else will run it.
                let _ = message.ack_with(AckKind::Nak(None)).await;
                false
            }
            Err(error) => {
                self.answer(task, reply, &Outcome::failed(&error)).await;
                let _ = message.double_ack().await;
                true
            }
        }
    }

    /// Publishes the answer to `task` on the results stream (through the object store if it
    /// is too large for a message). Returns whether the server stored it; a lost connection
    /// is retried for a while.
    async fn answer(&self, task: &str, reply: &str, outcome: &Outcome) -> bool {
        self.counts.answered(outcome);
        let bytes = match encode(outcome, "a task's outcome") {
            Ok(bytes) => bytes,
            Err(error) => encode(&Outcome::failed(&error), "a task's outcome")
                .expect("an error outcome encodes"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(TASK_HEADER, task);
        headers.insert(NODE_HEADER, self.id.as_str());
        // An outcome too large for a message goes through the object store, and the
        // message only names it.
        let large = bytes.len() + HEADER_ROOM > self.client.server_info().max_payload;
        let object = format!("{task}.result");
        if large {
            headers.insert(OBJECT_HEADER, object.as_str());
        }
        let bytes = bytes::Bytes::from(bytes);
        for attempt in 0..ANSWER_ATTEMPTS {
            let stored = async {
                let payload = if large {
                    put_object(&self.objects, &object, &bytes).await?;
                    bytes::Bytes::new()
                } else {
                    bytes.clone()
                };
                self.js
                    .publish_with_headers(reply.to_string(), headers.clone(), payload)
                    .await
                    .map_err(|error| nats_error("publishing a result", error))?
                    .await
                    .map_err(|error| nats_error("storing a result", error))
            }
            .await;
            match stored {
                Ok(_) => return true,
                Err(error) => {
                    tracing::warn!(%error, task, attempt, "multiproc node: storing a result failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        false
    }
}

/// Awaits `work` on `message`, telling the server every third of the ack wait that the task
/// is still being worked on, so that it is not delivered again meanwhile. A node that stops
/// (killed, frozen, cut off) stops telling it, and loses the task within the ack wait.
async fn with_progress<T>(
    message: &jetstream::Message,
    ack_wait: Duration,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut progress = tokio::time::interval(ack_wait / 3);
    progress.tick().await;
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = progress.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    let task = header(message, TASK_HEADER);
                    tracing::warn!(%error, ?task, "multiproc node: progress ack failed");
                }
            }
        }
    }
}

impl Outcome {
    fn failed(error: &Error) -> Outcome {
        Outcome::Failed {
            kind: FailKind::of(error),
            message: error.to_string(),
        }
    }
}

async fn beat(bucket: &jetstream::kv::Store, key: &str, info: &NodeInfo) -> Result<()> {
    let info = NodeInfo {
        at_ms: now_ms(),
        ..info.clone()
    };
    let bytes = encode(&info, "a node heartbeat")?;
    bucket
        .put(key, bytes.into())
        .await
        .map_err(|error| nats_error("writing the node's heartbeat", error))?;
    Ok(())
}

/// A key-value key for a node id: letters, digits, `-`, `_` and `=` kept, the rest `_`.
fn node_key(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
