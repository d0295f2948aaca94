//! A [`Pool`] on a NATS JetStream cluster: [`Pool::connect`] builds a pool whose
//! [`Command`]s are served here, by publishing tasks for the [`Node`](super::Node)s, instead
//! of by a scheduler of local child processes. The pool's handles, and so its API, result
//! types, chunking and checks (`close`, `join`), are the local pool's.
//!
//! Every call is one task message on the work-queue stream: a chunk of a `map` or `imap` is a
//! batch, exactly as the local pool sends it, and an `apply` is a batch of one item. Results
//! come back on the pool's own subject of the results stream, where a listener task hands
//! each to its waiting caller.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::{self, kv::Store};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::error::{Error, ErrorKind, Result};
use crate::pool::{Backend, Command, Job, Pool};
use crate::protocol::call::{batch_of_one, only_item};
use crate::protocol::decode;

use super::stats::{ClusterStats, NodeStats, PoolCounts, record_cluster};
use super::{
    ConnectOptions, DEFAULT_NAMESPACE, HEADER_ROOM, ITEMS_HEADER, Layout, Names, Needs, NodeInfo,
    OBJECT_HEADER, Outcome, RECONNECT_CHECK, REPLY_HEADER, TASK_HEADER, WORKER_HEADER, connect,
    connects, delete_object, ensure_layout, fingerprint, header, nats_error, put_object,
    read_object, reconnected,
};

/// How long a list of live nodes is trusted before a call reads it again. The refresher
/// reads it more often than this, so calls seldom wait for it.
const NODES_CACHE: Duration = Duration::from_secs(2);

/// How long listing the live nodes may take before it counts as a failure to reach the
/// server.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the list of live nodes (and so [`Pool::processes`]) is read in the background.
const NODES_REFRESH: Duration = Duration::from_secs(1);

/// How long a task is retried while the server cannot be reached (it restarts, the network
/// is cut), before its caller gets the error. Below the stream's duplicate window (120 s),
/// so that a retry of a task the server did store is recognised as a duplicate.
const PUBLISH_RETRY: Duration = Duration::from_secs(60);

/// The pause between two attempts to publish a task.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How long `terminate` spends withdrawing the tasks it cancelled from the work queue.
const WITHDRAW_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a task's encoded result (or its failure) goes: to the caller awaiting it.
type ResultSender = oneshot::Sender<Result<Vec<u8>>>;

/// The callers waiting for results: by task id, and the stream sequence of each task.
#[derive(Default)]
struct PendingTasks {
    by_task: HashMap<String, (ResultSender, Option<u64>)>,
    by_seq: HashMap<u64, String>,
}

impl PendingTasks {
    fn take(&mut self, task: &str) -> Option<ResultSender> {
        let (sender, seq) = self.by_task.remove(task)?;
        if let Some(seq) = seq {
            self.by_seq.remove(&seq);
        }
        Some(sender)
    }
}

type Pending = Arc<Mutex<PendingTasks>>;

/// The advisory JetStream sends when a message reached `max_deliver` without an ack.
#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
impl Pool {
    /// A builder for a pool whose calls run on the [`Node`](super::Node)s of the NATS
    /// JetStream server at `url`: a `Pool` like a local one, with the same methods, result
    /// types, chunking and errors. See the [cluster docs](crate::cluster).
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo() -> multiproc::Result<()> {
    /// let pool = multiproc::Pool::connect("nats://127.0.0.1:4222").build().await?;
    /// assert_eq!(pool.apply(square, (3,)).await?, 9);
    /// # Ok(()) }
    /// ```
    pub fn connect(url: impl Into<String>) -> RemotePoolBuilder {
        RemotePoolBuilder {
            url: url.into(),
            options: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            requires: Needs::none(),
        }
    }

    /// The ids of the live nodes that run this build, as their heartbeats announce them, for
    /// a pool built by [`Pool::connect`].
    ///
    /// # Errors
    ///
    /// - [`InvalidState`](crate::ErrorKind::InvalidState) for a local pool, which has no
    ///   nodes.
    /// - [`Io`](crate::ErrorKind::Io) if the node bucket cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// for node in pool.nodes().await? {
    ///     println!("serving: {node}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn nodes(&self) -> Result<Vec<String>> {
        match self.backend::<RemotePool>() {
            Some(remote) => remote.nodes().await,
            None => Err(Error::invalid_state(
                "nodes() is for a pool on a cluster (Pool::connect); this pool is local",
            )),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
impl Pool {
    /// What the cluster of a pool built by [`Pool::connect`] is doing, read now: the tasks
    /// waiting in the work queue and in flight, and each live node's work (tasks running,
    /// completed, failed, retried and given up, time spent), as its heartbeat tells. The same
    /// figures are recorded as metrics; see [`stats`](crate::cluster::stats).
    /// [`Pool::stats`] has this pool's own counts.
    ///
    /// # Errors
    ///
    /// - [`InvalidState`](crate::ErrorKind::InvalidState) for a local pool, which has no
    ///   nodes.
    /// - [`Io`](crate::ErrorKind::Io) if the server cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
    /// let stats = pool.cluster_stats().await?;
    /// println!("{} queued, {} in flight", stats.queue_depth, stats.in_flight);
    /// for node in stats.nodes {
    ///     println!("{}: {} running, {} done", node.id, node.in_flight, node.completed);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cluster_stats(&self) -> Result<ClusterStats> {
        match self.backend::<RemotePool>() {
            Some(remote) => remote.cluster_stats().await,
            None => Err(Error::invalid_state(
                "cluster_stats() is for a pool on a cluster (Pool::connect); this pool is local",
            )),
        }
    }
}

/// Configures a [`Pool`] on a cluster; returned by [`Pool::connect`].
#[must_use = "a pool connects only when built"]
pub struct RemotePoolBuilder {
    url: String,
    options: Option<ConnectOptions>,
    namespace: String,
    requires: Needs,
}

impl RemotePoolBuilder {
    /// What every call of the pool needs of the node that runs it (default: nothing), a
    /// label such as `"gpu"` or a [`Needs`] of labels and resources, as Ray's
    /// `ray_remote_args`; [`Apply::needs`](crate::pool::Apply::needs) overrides it for one
    /// call. See the [routing docs](super::routing).
    pub fn requires(mut self, needs: impl Into<Needs>) -> Self {
        self.requires = needs.into();
        self
    }

    /// Connection options: credentials, NKeys, token, TLS, reconnection.
    pub fn options(mut self, options: ConnectOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// The namespace whose nodes run the calls (default `"default"`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Connects to the server and starts listening for results.
    ///
    /// Nodes need not be up yet; a call fails at once while no live node serves its worker.
    ///
    /// # Errors
    ///
    /// - [`Io`](crate::ErrorKind::Io) if the server cannot be reached or JetStream is off.
    /// - [`Auth`](crate::ErrorKind::Auth) if the server refuses the credentials.
    /// - [`InvalidInput`](crate::ErrorKind::InvalidInput) for an invalid namespace.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> multiproc::Result<()> {
    /// let pool = multiproc::Pool::connect("nats://127.0.0.1:4222")
    ///     .namespace("batch_jobs")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<Pool> {
        let names = Names::new(&self.namespace)?;
        self.requires.check()?;
        let client = connect(&self.url, self.options).await?;
        let js = jetstream::new(client.clone());
        let Layout {
            stream,
            bucket,
            objects,
        } = ensure_layout(&js, &names).await?;
        let fingerprint = fingerprint();
        let inbox = client.new_inbox();
        let id = inbox.rsplit('.').next().unwrap_or("pool").to_string();
        let inbox = format!("{}.{id}", names.results_prefix);
        let results_stream = js
            .get_stream(names.results.clone())
            .await
            .map_err(|error| nats_error("opening the results stream", error))?;
        let results = read_results(&results_stream, &inbox, 0).await?;
        let advisories = client
            // Every consumer of the stream: the build's own and its routes'.
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
                names.stream
            ))
            .await
            .map_err(|error| nats_error("subscribing to the max-deliveries advisories", error))?;
        client
            .flush()
            .await
            .map_err(|error| nats_error("flushing the subscription", error))?;
        let pending: Pending = Arc::default();
        let listener = tokio::spawn(listen(
            ResultsListener {
                client: client.clone(),
                objects: objects.clone(),
                pending: pending.clone(),
                results_stream,
                inbox: inbox.clone(),
                stream: stream.clone(),
            },
            results,
            advisories,
        ));
        let remote = RemotePool {
            inner: Arc::new(Inner {
                requires: self.requires,
                routes: Mutex::default(),
                names,
                fingerprint,
                js,
                client,
                stream,
                bucket,
                objects,
                inbox,
                id,
                next_task: AtomicU64::new(0),
                pending,
                nodes: Mutex::new(None),
                slots: AtomicUsize::new(0),
                terminated: AtomicBool::new(false),
                counts: PoolCounts::default(),
                busy: watch::Sender::new(0),
                listener,
            }),
        };
        // A first count of the slots, for the default chunk size of the first map; a
        // server that cannot list them yet is not an error here.
        if let Err(error) = remote.live_nodes(true).await {
            tracing::debug!(%error, "multiproc: listing the nodes failed");
        }
        tokio::spawn(refresh_nodes(Arc::downgrade(&remote.inner)));
        let (commands, receiver) = mpsc::unbounded_channel();
        let pool = Pool::with_backend(remote.clone(), Arc::default(), commands);
        tokio::spawn(remote.serve(receiver));
        Ok(pool)
    }
}

impl fmt::Debug for RemotePoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePoolBuilder")
            .field("url", &self.url)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// What the listener of a pool's results works with.
struct ResultsListener {
    client: async_nats::Client,
    /// Where results too large for a message are.
    objects: ObjectStore,
    pending: Pending,
    /// The results stream, and the pool's subject on it.
    results_stream: jetstream::stream::Stream,
    inbox: String,
    /// The work queue, from which given-up tasks are deleted.
    stream: jetstream::stream::Stream,
}

/// Hands each result on the pool's subject to its waiting caller, and fails the tasks that
/// JetStream gave up on; until the pool is dropped.
async fn listen(
    listener: ResultsListener,
    mut results: jetstream::consumer::pull::Ordered,
    mut advisories: async_nats::Subscriber,
) {
    let ResultsListener {
        client,
        objects,
        pending,
        results_stream,
        inbox,
        stream,
    } = listener;
    let mut last_seq = 0;
    // A restarted server has forgotten the results consumer, and the client would notice
    // only when the consumer's idle heartbeat (15 s, fixed by async-nats) is missed: read
    // again, from where we were, as soon as the client has reconnected.
    let mut connected = connects(&client);
    let mut reconnects = tokio::time::interval(RECONNECT_CHECK);
    loop {
        tokio::select! {
            _ = reconnects.tick() => {
                if connects(&client) == connected {
                    continue;
                }
                match read_results(&results_stream, &inbox, last_seq).await {
                    Ok(again) => {
                        results = again;
                        connected = connects(&client);
                    }
                    // JetStream may not be up yet: tried again at the next tick.
                    Err(error) => tracing::debug!(%error, "multiproc: reading results again failed"),
                }
            }
            message = results.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    failed => {
                        // Read again from where we were (the server may have restarted and
                        // forgotten the consumer).
                        if let Some(Err(error)) = failed {
                            tracing::warn!(%error, "multiproc: reading results failed");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        match read_results(&results_stream, &inbox, last_seq).await {
                            Ok(again) => results = again,
                            Err(error) => {
                                tracing::warn!(%error, "multiproc: reading results failed");
                            }
                        }
                        continue;
                    }
                };
                if let Ok(info) = message.info() {
                    last_seq = last_seq.max(info.stream_sequence);
                }
                deliver(&pending, &objects, &message);
            }
            advisory = advisories.next() => {
                let Some(advisory) = advisory else { break };
                given_up(&pending, &stream, &advisory.payload).await;
            }
        }
    }
}

/// The headers of a task message: its id (which also makes the server store it once however
/// many attempts reach it), where to answer, what to run, and where large arguments are.
fn task_headers(task: &str, inbox: &str, worker: &str, items: usize, large: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", task);
    headers.insert(TASK_HEADER, task);
    headers.insert(REPLY_HEADER, inbox);
    headers.insert(WORKER_HEADER, worker);
    headers.insert(ITEMS_HEADER, items.to_string().as_str());
    if large {
        headers.insert(OBJECT_HEADER, task);
    }
    headers
}

/// Hands one result to its waiting caller. A duplicate (a task run twice) finds no waiter and
/// is dropped; a result in the object store is read aside, so that it holds up no other.
fn deliver(pending: &Pending, objects: &ObjectStore, message: &jetstream::Message) {
    let Some(task) = header(message, TASK_HEADER) else {
        return;
    };
    let waiter = pending.lock().expect("pending lock").take(&task);
    match (waiter, header(message, OBJECT_HEADER)) {
        (Some(waiter), None) => {
            let _ = waiter.send(outcome(&task, &message.payload));
        }
        (waiter, Some(object)) => {
            let objects = objects.clone();
            tokio::spawn(async move {
                let read = read_object(&objects, &object).await;
                delete_object(&objects, &object).await;
                if let Some(waiter) = waiter {
                    let _ = waiter.send(read.and_then(|bytes| outcome(&task, &bytes)));
                }
            });
        }
        (None, None) => {}
    }
}

/// Reads the results on `subject` after stream sequence `after`, through an ordered
/// consumer.
async fn read_results(
    stream: &jetstream::stream::Stream,
    subject: &str,
    after: u64,
) -> Result<jetstream::consumer::pull::Ordered> {
    let deliver_policy = if after == 0 {
        jetstream::consumer::DeliverPolicy::All
    } else {
        jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        }
    };
    stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|error| nats_error("reading the results stream", error))?
        .messages()
        .await
        .map_err(|error| nats_error("reading the results stream", error))
}

/// A task that reached `max_deliver` without an answer (its nodes vanished while running
/// it): its caller gets an error, and the message, which JetStream keeps but no longer
/// delivers, is deleted.
async fn given_up(pending: &Pending, stream: &jetstream::stream::Stream, advisory: &[u8]) {
    let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(advisory) else {
        return;
    };
    let waiter = {
        let mut waiting = pending.lock().expect("pending lock");
        let task = waiting.by_seq.get(&advisory.stream_seq).cloned();
        task.and_then(|task| waiting.take(&task).map(|waiter| (task, waiter)))
    };
    let Some((task, waiter)) = waiter else {
        return;
    };
    if let Err(error) = stream.delete_message(advisory.stream_seq).await {
        tracing::warn!(%error, task, "multiproc: deleting a given-up task failed");
    }
    let _ = waiter.send(Err(Error::new(
        ErrorKind::WorkerDied,
        format!(
            "task {task} was given up after {} deliveries: each time, the node running it \
             stopped answering (died, or lost its connection) for longer than the ack wait",
            advisory.deliveries
        ),
    )));
}

/// A task's answer as the caller sees it: the batch's encoded results, or an error.
fn outcome(task: &str, payload: &[u8]) -> Result<Vec<u8>> {
    match decode::<Outcome>(payload, "a task's outcome")? {
        Outcome::Done(bytes) => Ok(bytes),
        Outcome::GaveUp { attempts, last } => Err(Error::new(
            ErrorKind::WorkerDied,
            format!(
                "task {task} was given up after {attempts} deliveries, each of which crashed \
                 its worker; the last: {last}"
            ),
        )),
        Outcome::Failed { kind, message } => Err(Error::new(
            kind.kind(),
            format!("task {task} failed: {message}"),
        )),
    }
}

/// Reads the list of live nodes every [`NODES_REFRESH`], so that [`Pool::processes`] follows
/// the nodes that come and go; until the pool is dropped.
async fn refresh_nodes(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(NODES_REFRESH).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        if let Err(error) = (RemotePool { inner }).cluster_stats().await {
            tracing::debug!(%error, "multiproc: listing the nodes failed");
        }
    }
}

/// The connection of a [`Pool`] on a cluster, which serves the pool's commands. Cheap to
/// clone.
#[derive(Clone)]
pub(crate) struct RemotePool {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The work-queue stream, from which `terminate` withdraws cancelled tasks.
    stream: jetstream::stream::Stream,
    bucket: Store,
    /// Arguments and results too large for a message.
    objects: ObjectStore,
    names: Names,
    /// What calls need unless they say otherwise.
    requires: Needs,
    /// The routes whose consumer this pool has made sure of.
    routes: Mutex<HashSet<String>>,
    fingerprint: String,
    inbox: String,
    id: String,
    next_task: AtomicU64,
    pending: Pending,
    nodes: Mutex<Option<(Instant, Vec<NodeInfo>)>>,
    /// The slots of the live nodes of this build, as last read.
    slots: AtomicUsize,
    terminated: AtomicBool,
    /// Its items' counts, for [`Pool::stats`], and its metrics.
    counts: PoolCounts,
    /// Jobs submitted and not yet answered (or withdrawn): `join` waits for 0.
    busy: watch::Sender<usize>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// One unanswered job, counted in [`Inner::busy`] until dropped.
struct Busy(RemotePool);

impl Busy {
    fn new(pool: &RemotePool) -> Busy {
        pool.inner.busy.send_modify(|busy| *busy += 1);
        Busy(pool.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.inner.busy.send_modify(|busy| *busy -= 1);
    }
}

/// The caller's side of a published task: its reply, and its entry among the waiting,
/// removed when the caller stops waiting.
struct Waiter {
    pending: Pending,
    task: String,
    receiver: oneshot::Receiver<Result<Vec<u8>>>,
}

impl Waiter {
    async fn reply(mut self) -> Result<Vec<u8>> {
        (&mut self.receiver)
            .await
            .unwrap_or_else(|_| Err(Error::cancelled("the pool stopped listening for results")))
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending.lock().expect("pending lock").take(&self.task);
    }
}

/// The error of a call whose `needs` no live node serving `worker` can meet, with what the
/// nodes offer.
fn infeasible(worker: &str, needs: &Needs, nodes: &[NodeInfo]) -> Error {
    let offers: Vec<String> = nodes
        .iter()
        .map(|node| {
            let resources = node
                .resources
                .iter()
                .map(|(name, amount)| format!("{name}={amount}"));
            let offer: Vec<String> = node.labels.iter().cloned().chain(resources).collect();
            format!("{} offers [{}]", node.id, offer.join(", "))
        })
        .collect();
    Error::new(
        ErrorKind::Infeasible,
        format!(
            "no live node can run `{worker}`, which needs {needs}: {}; start a node with \
             Node::connect(url).labels([..]).resource(name, amount)",
            offers.join("; ")
        ),
    )
}

fn terminated() -> Error {
    Error::cancelled("the pool was terminated before this call finished")
}

/// A pool on a cluster: its jobs are published to the work queue by [`RemotePool::serve`],
/// which reads them as [`Command::Submit`]s, in order with `Join` and `Terminate`.
impl Backend for RemotePool {
    /// The slots (child processes) of the live nodes of this build, as last read, at least
    /// 1: the pool's [`processes`](Pool::processes).
    fn slots(&self) -> usize {
        self.inner.slots.load(Ordering::Relaxed).max(1)
    }

    /// This pool's items, and the restarts of the live nodes' children, as last read.
    fn stats(&self) -> crate::PoolStats {
        let nodes = self.inner.nodes.lock().expect("nodes lock");
        let nodes: Vec<NodeInfo> = nodes
            .iter()
            .flat_map(|(_, nodes)| nodes)
            .filter(|node| node.fingerprint == self.inner.fingerprint)
            .cloned()
            .collect();
        self.inner.counts.stats(&nodes)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl RemotePool {
    /// The work queue and the live nodes of this build, read now, and recorded as metrics.
    async fn cluster_stats(&self) -> Result<ClusterStats> {
        let mut nodes: Vec<NodeStats> = self
            .live_nodes(true)
            .await?
            .iter()
            .filter(|node| node.fingerprint == self.inner.fingerprint)
            .map(NodeStats::of)
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut stats = ClusterStats {
            nodes,
            ..ClusterStats::default()
        };
        // The build's consumer and its routes' (see `Names::route_consumer`).
        let ours = self.inner.names.consumer(&self.inner.fingerprint);
        let mut consumers = self.inner.stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|error| nats_error("reading the work queue", error))?;
            if info.name == ours || info.name.starts_with(&format!("{ours}_")) {
                stats.queue_depth += info.num_pending;
                stats.in_flight += info.num_ack_pending as u64;
            }
        }
        record_cluster(&stats);
        Ok(stats)
    }

    /// The ids of the live nodes that run this build, read now.
    async fn nodes(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .live_nodes(true)
            .await?
            .into_iter()
            .filter(|node| node.fingerprint == self.inner.fingerprint)
            .map(|node| node.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Serves the pool's commands until every handle of the pool is gone.
    async fn serve(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // Each operation's window, shared by all its submissions (a map submits its chunks
        // as it encodes them); dropped once none of them runs.
        let mut windows: HashMap<u64, Arc<Semaphore>> = HashMap::new();
        while let Some(command) = commands.recv().await {
            match command {
                Command::Submit { group, jobs } => {
                    // Counted now, before a `join` that follows can look.
                    let jobs: Vec<_> = jobs
                        .into_iter()
                        .map(|job| (job, Busy::new(&self)))
                        .collect();
                    windows.retain(|_, window| Arc::strong_count(window) > 1);
                    let window = windows
                        .entry(group)
                        .or_insert_with(|| Arc::new(Semaphore::new(2 * self.slots())))
                        .clone();
                    tokio::spawn(self.clone().run_jobs(jobs, window));
                }
                Command::Join(done) => {
                    let mut busy = self.inner.busy.subscribe();
                    tokio::spawn(async move {
                        let _ = busy.wait_for(|busy| *busy == 0).await;
                        let _ = done.send(Ok(()));
                    });
                }
                Command::Terminate(done) => {
                    self.terminate().await;
                    let _ = done.send(());
                }
            }
        }
    }

    /// Runs the jobs of one submission (a `map`'s chunks, an `apply`) within its
    /// operation's `window` (`2 × slots` jobs on the server at once): a huge map does not
    /// flood the work queue, and its later chunks are not published while the caller may
    /// still drop it.
    async fn run_jobs(self, jobs: Vec<(Job, Busy)>, window: Arc<Semaphore>) {
        let this = &self;
        let mut running = FuturesUnordered::new();
        for (job, _) in &jobs {
            self.inner.counts.queue(job.items);
        }
        for (job, busy) in jobs {
            let permit = loop {
                tokio::select! {
                    permit = window.clone().acquire_owned() => {
                        break permit.expect("the window is never closed");
                    }
                    Some(()) = running.next(), if !running.is_empty() => {}
                }
            };
            running.push(async move {
                this.run_job(job, busy).await;
                drop(permit);
            });
        }
        while running.next().await.is_some() {}
    }

    /// Publishes one job, waits for its answer and hands it to the job's caller.
    async fn run_job(&self, job: Job, _busy: Busy) {
        let Job {
            worker,
            payload,
            batch,
            items,
            mut reply,
            needs,
            // Deadlines and cancelling a running call are the local pool's; a node runs its
            // tasks to the end.
            ..
        } = job;
        self.inner.counts.dequeue(items);
        if reply.is_closed() {
            return; // withdrawn before it was sent
        }
        // Nodes run batches only; a single call travels as a batch of one, so that its
        // error keeps its kind (a panic stays a panic).
        let payload = if batch {
            payload
        } else {
            batch_of_one(payload)
        };
        let answer = async {
            let needs = needs.as_ref().unwrap_or(&self.inner.requires);
            let waiter = self.submit(worker, payload, items, needs).await?;
            let published = self.inner.counts.published(items);
            let answer = waiter.reply().await;
            published.answered(&answer);
            let answer = answer?;
            if batch {
                Ok(answer)
            } else {
                only_item(&answer)
            }
        };
        tokio::select! {
            answer = answer => {
                let _ = reply.send(answer);
            }
            // The caller went away: its result would be discarded, so stop waiting.
            () = reply.closed() => {}
        }
    }

    /// The live nodes, from the cache unless it is stale or `fresh` is asked for.
    async fn live_nodes(&self, fresh: bool) -> Result<Vec<NodeInfo>> {
        if !fresh
            && let Some((at, nodes)) = &*self.inner.nodes.lock().expect("nodes lock")
            && at.elapsed() < NODES_CACHE
        {
            return Ok(nodes.clone());
        }
        // The keys come from the stream's subjects rather than from `Store::keys`, whose
        // push consumer now and then loses the race with its own subscription and then
        // waits for its idle heartbeat (seconds) before it lists anything.
        let bucket = &self.inner.bucket;
        let listing = async {
            let mut subjects = bucket
                .stream
                .info_with_subjects(format!("{}>", bucket.prefix))
                .await
                .map_err(|error| nats_error("listing the nodes", error))?;
            let mut nodes = Vec::new();
            while let Some(subject) = subjects.next().await {
                let (subject, _) =
                    subject.map_err(|error| nats_error("listing the nodes", error))?;
                let Some(key) = subject.strip_prefix(&bucket.prefix) else {
                    continue;
                };
                let value = bucket
                    .get(key)
                    .await
                    .map_err(|error| nats_error("reading a node's heartbeat", error))?;
                if let Some(value) = value
                    && let Ok(node) = decode::<NodeInfo>(&value, "a node heartbeat")
                    && node.is_fresh()
                {
                    nodes.push(node);
                }
            }
            Ok::<_, Error>(nodes)
        };
        // A server gone quiet must not hold up the callers.
        let nodes = tokio::time::timeout(LIST_TIMEOUT, listing)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Io,
                    format!("NATS: listing the nodes took longer than {LIST_TIMEOUT:?}"),
                )
            })??;
        let slots = nodes
            .iter()
            .filter(|node| node.fingerprint == self.inner.fingerprint)
            .map(|node| node.slots)
            .sum();
        self.inner.slots.store(slots, Ordering::Relaxed);
        *self.inner.nodes.lock().expect("nodes lock") = Some((Instant::now(), nodes.clone()));
        Ok(nodes)
    }

    /// Fails unless a live node of this build serves `worker` with `needs`.
    async fn ensure_served(&self, worker: &str, needs: &Needs) -> Result<()> {
        let nodes = self.live_nodes(false).await?;
        let serves = |node: &NodeInfo| {
            node.fingerprint == self.inner.fingerprint && node.workers.iter().any(|w| w == worker)
        };
        let satisfies =
            |node: &NodeInfo| serves(node) && needs.satisfied_by(&node.labels, &node.resources);
        if nodes.iter().any(satisfies) {
            return Ok(());
        }
        // The cache may predate a node that just started.
        let nodes = self.live_nodes(true).await?;
        if nodes.iter().any(satisfies) {
            return Ok(());
        }
        if nodes.iter().any(serves) {
            return Err(infeasible(worker, needs, &nodes));
        }
        let others = nodes
            .iter()
            .filter(|node| node.fingerprint != self.inner.fingerprint)
            .count();
        let why = if nodes.is_empty() {
            "no node is alive; start one with multiproc::Node::connect(url).serve()".to_string()
        } else if others == nodes.len() {
            format!(
                "{others} node(s) are alive but run a different build (worker registry \
                 fingerprint differs from this one's, {}); deploy the same binary",
                self.inner.fingerprint
            )
        } else {
            "the live nodes of this build do not register it".to_string()
        };
        Err(Error::new(
            ErrorKind::UnknownWorker,
            format!("no live node serves `{worker}`: {why}"),
        ))
    }

    /// Makes sure the consumer of the route of `needs` exists, so that the nodes find the
    /// route: created with the settings of the build's own consumer (its ack wait and
    /// retry cap, which the nodes chose).
    async fn ensure_route(&self, needs: &Needs) -> Result<()> {
        let inner = &self.inner;
        let Some(route) = needs.route() else {
            return Ok(());
        };
        if inner.routes.lock().expect("routes lock").contains(&route) {
            return Ok(());
        }
        let (names, fingerprint) = (&inner.names, &inner.fingerprint);
        let mut config = inner
            .stream
            .get_consumer::<jetstream::consumer::pull::Config>(&names.consumer(fingerprint))
            .await
            .map_err(|error| {
                Error::new(
                    ErrorKind::Io,
                    format!("NATS: reading the nodes' consumer: {error}"),
                )
            })?
            .cached_info()
            .config
            .clone();
        let name = names.route_consumer(fingerprint, &route);
        config.durable_name = Some(name.clone());
        config.name = None;
        config.filter_subject = names.routed_subject(fingerprint, needs);
        inner
            .stream
            .get_or_create_consumer::<jetstream::consumer::Config>(&name, config)
            .await
            .map_err(|error| nats_error(&format!("creating the route {route}"), error))?;
        inner.routes.lock().expect("routes lock").insert(route);
        Ok(())
    }

    /// Waits out an unreachable server: `Ok` to try `doing` again after a pause, or the
    /// error once [`PUBLISH_RETRY`] has passed since `since` or the pool was terminated.
    async fn retry(&self, error: Error, doing: &str, since: Instant) -> Result<()> {
        if self.inner.terminated.load(Ordering::SeqCst) {
            return Err(terminated());
        }
        if error.kind() != ErrorKind::Io || since.elapsed() > PUBLISH_RETRY {
            return Err(error);
        }
        tracing::debug!(%error, "multiproc: {doing} failed; retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
        Ok(())
    }

    /// Publishes one task (a batch of `items`) and returns its caller's side.
    ///
    /// While the server cannot be reached the task is published again, for up to
    /// [`PUBLISH_RETRY`]: the `Nats-Msg-Id` header makes the server store it once however
    /// many attempts reach it.
    async fn submit(
        &self,
        worker: &'static str,
        payload: Vec<u8>,
        items: usize,
        needs: &Needs,
    ) -> Result<Waiter> {
        let inner = &self.inner;
        let started = Instant::now();
        if inner.terminated.load(Ordering::SeqCst) {
            return Err(terminated());
        }
        needs.check()?;
        let subject = inner.names.routed_subject(&inner.fingerprint, needs);
        let task = format!(
            "{}.{}",
            inner.id,
            inner.next_task.fetch_add(1, Ordering::Relaxed)
        );
        // Arguments too large for a message go through the object store, under the task's
        // id, and the message only names them; the node deletes them when done.
        let large = payload.len() + HEADER_ROOM > inner.client.server_info().max_payload;
        let headers = task_headers(&task, &inner.inbox, worker, items, large);
        let (sender, receiver) = oneshot::channel();
        inner
            .pending
            .lock()
            .expect("pending lock")
            .by_task
            .insert(task.clone(), (sender, None));
        // From here on, dropping the waiter forgets the task.
        let waiter = Waiter {
            pending: inner.pending.clone(),
            task,
            receiver,
        };
        let payload = bytes::Bytes::from(payload);
        loop {
            let since = connects(&inner.client);
            let attempt = async {
                self.ensure_served(worker, needs).await?;
                self.ensure_route(needs).await?;
                let payload = if large {
                    put_object(&inner.objects, &waiter.task, &payload).await?;
                    bytes::Bytes::new()
                } else {
                    payload.clone()
                };
                inner
                    .js
                    .publish_with_headers(subject.clone(), headers.clone(), payload)
                    .await
                    .map_err(|error| {
                        nats_error(&format!("publishing task {}", waiter.task), error)
                    })?
                    .await
                    .map_err(|error| nats_error(&format!("storing task {}", waiter.task), error))
            };
            // An attempt made while the server was away waits out its request timeout (5 s)
            // for an answer that will not come: begin again as soon as the client is back.
            let published = tokio::select! {
                published = attempt => published,
                () = reconnected(&inner.client, since) => continue,
            };
            match published {
                Ok(ack) => {
                    // Published while `terminate` was cancelling the others: withdrawn too.
                    if inner.terminated.load(Ordering::SeqCst) {
                        let _ = inner.stream.delete_message(ack.sequence).await;
                        return Err(terminated());
                    }
                    let mut waiting = inner.pending.lock().expect("pending lock");
                    if let Some((_, seq)) = waiting.by_task.get_mut(&waiter.task) {
                        *seq = Some(ack.sequence);
                        waiting.by_seq.insert(ack.sequence, waiter.task.clone());
                    }
                    return Ok(waiter);
                }
                Err(error) => self.retry(error, "publishing a task", started).await?,
            }
        }
    }

    /// Cancels every call: each waiting caller gets a [`Cancelled`](ErrorKind::Cancelled)
    /// error at once, jobs not yet published never are, and the published tasks are
    /// withdrawn from the work queue (those a node is running finish there, unheard).
    async fn terminate(&self) {
        self.inner.terminated.store(true, Ordering::SeqCst);
        let waiting = std::mem::take(&mut *self.inner.pending.lock().expect("pending lock"));
        for (sender, _) in waiting.by_task.into_values() {
            let _ = sender.send(Err(terminated()));
        }
        let withdrawals = waiting
            .by_seq
            .keys()
            .map(|&seq| self.inner.stream.delete_message(seq));
        let withdrawn =
            tokio::time::timeout(WITHDRAW_TIMEOUT, futures::future::join_all(withdrawals)).await;
        if withdrawn.is_err() {
            tracing::debug!("multiproc: withdrawing the cancelled tasks timed out");
        }
    }
}

impl fmt::Debug for RemotePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePool")
            .field("id", &self.inner.id)
            .field("requires", &self.inner.requires)
            .field("fingerprint", &self.inner.fingerprint)
            .finish()
    }
}
