//! [`RemotePool`]: the [`Pool`](crate::Pool) API, its tasks run by the [`Node`](super::Node)s
//! of a NATS JetStream cluster.
//!
//! Every call is one task message on the work-queue stream: an `apply` is a batch of one
//! item, a `map` one batch per chunk, exactly as the local pool's chunks. Results come back on
//! the pool's own inbox subject, where a listener task hands each to its waiting caller.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv::Store};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};
use crate::pool::Pool;
use crate::pool::map::{MAX_DEFAULT_IMAP_CHUNK, MapResults, decode_chunk, resolve_chunksize};
use crate::protocol::{decode, encode};
use crate::registry::{self, WORKER_HINT};
use crate::worker::{Value, Worker, worker_name};

use super::{
    ConnectOptions, DEFAULT_NAMESPACE, HEADER_ROOM, ITEMS_HEADER, Names, NodeInfo, Outcome,
    REPLY_HEADER, TASK_HEADER, WORKER_HEADER, connect, ensure_layout, fingerprint, nats_error,
};

/// How long a list of live nodes is trusted before it is read again.
const NODES_CACHE: Duration = Duration::from_millis(500);

type Reply = Result<Vec<u8>>;

/// The callers waiting for results: by task id, and the stream sequence of each task.
#[derive(Default)]
struct Waiting {
    by_task: HashMap<String, (oneshot::Sender<Reply>, Option<u64>)>,
    by_seq: HashMap<u64, String>,
}

impl Waiting {
    fn take(&mut self, task: &str) -> Option<oneshot::Sender<Reply>> {
        let (sender, seq) = self.by_task.remove(task)?;
        if let Some(seq) = seq {
            self.by_seq.remove(&seq);
        }
        Some(sender)
    }
}

type Pending = Arc<Mutex<Waiting>>;

/// The advisory JetStream sends when a message reached `max_deliver` without an ack.
#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

impl Pool {
    /// A builder for a pool whose calls run on the [`Node`](super::Node)s of the NATS
    /// JetStream server at `url`; see [`RemotePool`] and the [cluster docs](crate::cluster).
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
        }
    }
}

/// Configures a [`RemotePool`]; returned by [`Pool::connect`].
#[must_use = "a pool connects only when built"]
pub struct RemotePoolBuilder {
    url: String,
    options: Option<ConnectOptions>,
    namespace: String,
}

impl RemotePoolBuilder {
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
    pub async fn build(self) -> Result<RemotePool> {
        let names = Names::new(&self.namespace)?;
        let client = connect(&self.url, self.options).await?;
        let js = jetstream::new(client.clone());
        let (stream, bucket) = ensure_layout(&js, &names).await?;
        let fingerprint = fingerprint();
        let inbox = client.new_inbox();
        let id = inbox.rsplit('.').next().unwrap_or("pool").to_string();
        let inbox = format!("{}.{id}", names.results_prefix);
        let results_stream = js
            .get_stream(names.results.clone())
            .await
            .map_err(|error| nats_error("opening the results stream", error))?;
        let mut results = read_results(&results_stream, &inbox, 0).await?;
        let mut advisories = client
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
                names.stream,
                names.consumer(&fingerprint)
            ))
            .await
            .map_err(|error| nats_error("subscribing to the max-deliveries advisories", error))?;
        client
            .flush()
            .await
            .map_err(|error| nats_error("flushing the subscription", error))?;
        let pending: Pending = Arc::default();
        let listener = {
            let pending = pending.clone();
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let mut last_seq = 0;
                loop {
                    tokio::select! {
                        message = results.next() => {
                            let message = match message {
                                Some(Ok(message)) => message,
                                failed => {
                                    // Read again from where we were (the server may have
                                    // restarted and forgotten the consumer).
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
                            let Some(task) = message
                                .headers
                                .as_ref()
                                .and_then(|headers| headers.get(TASK_HEADER))
                                .map(|task| task.as_str().to_string())
                            else {
                                continue;
                            };
                            // A duplicate (a task run twice) finds no waiter and is dropped.
                            let waiter = pending.lock().expect("pending lock").take(&task);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(outcome(&task, &message.payload));
                            }
                        }
                        advisory = advisories.next() => {
                            let Some(advisory) = advisory else { break };
                            given_up(&pending, &stream, &advisory.payload).await;
                        }
                    }
                }
            })
        };
        Ok(RemotePool {
            inner: Arc::new(Inner {
                subject: names.task_subject(&fingerprint),
                fingerprint,
                js,
                client,
                bucket,
                inbox,
                id,
                next_task: AtomicU64::new(0),
                pending,
                nodes: Mutex::new(None),
                listener,
            }),
        })
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
fn outcome(task: &str, payload: &[u8]) -> Reply {
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

/// A pool whose calls run on the [`Node`](super::Node)s of a NATS JetStream cluster; built
/// by [`Pool::connect`]. Its methods are those of the local [`Pool`], with the same
/// chunking, ordering and errors. See the [cluster docs](crate::cluster) for the delivery
/// guarantee.
///
/// Cheap to clone: clones share one connection. Dropping the last clone stops listening
/// for results; tasks already sent still run on the nodes.
#[derive(Clone)]
pub struct RemotePool {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    bucket: Store,
    subject: String,
    fingerprint: String,
    inbox: String,
    id: String,
    next_task: AtomicU64,
    pending: Pending,
    nodes: Mutex<Option<(Instant, Vec<NodeInfo>)>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl RemotePool {
    /// The number of slots (child processes) of the live nodes of this build: the analogue
    /// of [`Pool::processes`], used for the default chunk size.
    ///
    /// # Errors
    ///
    /// [`Io`](crate::ErrorKind::Io) if the node bucket cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// println!("{} slots", pool.slots().await?);
    /// # Ok(()) }
    /// ```
    pub async fn slots(&self) -> Result<usize> {
        Ok(self
            .live_nodes(false)
            .await?
            .iter()
            .filter(|node| node.fingerprint == self.inner.fingerprint)
            .map(|node| node.slots)
            .sum())
    }

    /// The ids of the live nodes that run this build, as their heartbeats announce them.
    ///
    /// # Errors
    ///
    /// [`Io`](crate::ErrorKind::Io) if the node bucket cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// for node in pool.nodes().await? {
    ///     println!("serving: {node}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn nodes(&self) -> Result<Vec<String>> {
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

    /// Runs `worker(args)` on a node and returns its result.
    ///
    /// # Errors
    ///
    /// - [`UnknownWorker`](crate::ErrorKind::UnknownWorker) at once if no live node of this
    ///   build serves `worker` (or it is not a `#[worker]`).
    /// - [`Panic`](crate::ErrorKind::Panic) if the worker panicked.
    /// - [`WorkerDied`](crate::ErrorKind::WorkerDied) if every delivery of the task crashed
    ///   its child process (see [`NodeBuilder::max_deliver`](super::NodeBuilder::max_deliver)).
    /// - [`FrameTooLarge`](crate::ErrorKind::FrameTooLarge) if the arguments or the result
    ///   exceed the server's `max_payload`; [`Serialization`](crate::ErrorKind::Serialization).
    /// - [`Io`](crate::ErrorKind::Io) if the task cannot be published.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the task is published withdraws it; afterwards the task
    /// still runs on a node and its result is discarded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// assert_eq!(pool.apply(square, (5,)).await?, 25);
    /// # Ok(()) }
    /// ```
    pub async fn apply<W: Worker<M>, M>(&self, worker: W, args: W::Args) -> Result<W::Output> {
        self.apply_async(worker, args).await
    }

    /// Sends `worker(args)` and returns a handle to its result at once (Python's
    /// `apply_async`). The handle is a future; errors, as for [`apply`](Self::apply), come
    /// out of it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// let handles: Vec<_> = (0..10).map(|x| pool.apply_async(square, (x,))).collect();
    /// for (x, handle) in handles.into_iter().enumerate() {
    ///     assert_eq!(handle.await?, (x * x) as u64);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn apply_async<W: Worker<M>, M>(
        &self,
        worker: W,
        args: W::Args,
    ) -> RemoteAsyncResult<W::Output> {
        let _ = worker;
        let pool = self.clone();
        let name = worker_name::<W, M>();
        let task = tokio::spawn(async move {
            let name = registry::ensure_registered(name, WORKER_HINT)?;
            let payload = encode(&[args][..], &format!("the arguments of `{name}`"))?;
            let reply = pool.submit(name, payload, 1).await?;
            let mut outcomes = decode_chunk::<W::Output>(wait(reply).await, 1)?;
            outcomes.pop().expect("one outcome")
        });
        RemoteAsyncResult {
            task,
            _output: PhantomData,
        }
    }

    /// Runs `worker` on every item of `inputs`, in chunks spread over the nodes, and returns
    /// the results in input order; as [`Pool::map`]. The default chunk size is
    /// `ceil(n / (4 × slots))` over the live nodes' slots; set it with
    /// [`chunksize`](RemoteMap::chunksize).
    ///
    /// # Errors
    ///
    /// As [`apply`](Self::apply), for the first item (in input order) that failed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops publishing chunks; chunks already published still run and
    /// their results are discarded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// let squares = pool.map(square, 0..10_000u64).chunksize(100).await?;
    /// assert_eq!(squares[3], 9);
    /// # Ok(()) }
    /// ```
    pub fn map<W, M, T, I>(&self, worker: W, inputs: I) -> RemoteMap<'_, W, M, T>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
    {
        let _ = worker;
        RemoteMap {
            pool: self,
            inputs: inputs.into_iter().collect(),
            chunksize: None,
            _worker: PhantomData,
        }
    }

    /// Like [`map`](Self::map), for a worker of several arguments: each item is the tuple of
    /// one call's arguments.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    ///
    /// As [`map`](Self::map).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn add(a: u64, b: u64) -> u64 { a + b }
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).await?, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<W, M, I>(&self, worker: W, inputs: I) -> RemoteMap<'_, W, M, W::Args>
    where
        W: Worker<M>,
        I: IntoIterator<Item = W::Args>,
    {
        let _ = worker;
        RemoteMap {
            pool: self,
            inputs: inputs.into_iter().collect(),
            chunksize: None,
            _worker: PhantomData,
        }
    }

    /// Runs `worker` over a lazy input, yielding results in input order as a
    /// [`Stream`](futures::Stream) of `Result`s, one per item; as [`Pool::imap`].
    ///
    /// The input is pulled only as chunks are published, at most `2 × slots` chunks ahead
    /// of the consumer (the submission window), so an endless iterator works and the stream
    /// on the server stays small. The default chunk size comes from the iterator's size hint
    /// (as for `map`, at most 1024); without one it is 1. Set it with
    /// [`RemoteImap::chunksize`] before the first poll.
    ///
    /// An item that fails yields its error in its place, and the stream goes on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// use futures::StreamExt;
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// let mut squares = pool.imap(square, 0..u64::MAX).chunksize(256);
    /// while let Some(square) = squares.next().await {
    ///     if square? > 1_000_000 { break }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn imap<W, M, T, I>(&self, worker: W, inputs: I) -> RemoteImap<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let _ = worker;
        RemoteImap::new::<W, M, T, _>(self.clone(), inputs.into_iter(), true)
    }

    /// Like [`imap`](Self::imap), yielding results as they complete rather than in input
    /// order; as [`Pool::imap_unordered`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[multiproc::worker] fn square(x: u64) -> u64 { x * x }
    /// use futures::StreamExt;
    /// # async fn demo(pool: multiproc::RemotePool) -> multiproc::Result<()> {
    /// let total: u64 = pool
    ///     .imap_unordered(square, 0..1_000u64)
    ///     .map(|square| square.unwrap())
    ///     .fold(0, |sum, square| async move { sum + square })
    ///     .await;
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<W, M, T, I>(&self, worker: W, inputs: I) -> RemoteImap<W::Output>
    where
        W: Worker<M, Args = (T,)>,
        T: Value,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let _ = worker;
        RemoteImap::new::<W, M, T, _>(self.clone(), inputs.into_iter(), false)
    }

    /// The live nodes, from the cache unless it is stale or `fresh` is asked for.
    async fn live_nodes(&self, fresh: bool) -> Result<Vec<NodeInfo>> {
        if !fresh {
            if let Some((at, nodes)) = &*self.inner.nodes.lock().expect("nodes lock") {
                if at.elapsed() < NODES_CACHE {
                    return Ok(nodes.clone());
                }
            }
        }
        let mut keys = self
            .inner
            .bucket
            .keys()
            .await
            .map_err(|error| nats_error("listing the nodes", error))?;
        let mut nodes = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|error| nats_error("listing the nodes", error))?;
            let value = self
                .inner
                .bucket
                .get(&key)
                .await
                .map_err(|error| nats_error("reading a node's heartbeat", error))?;
            if let Some(value) = value {
                if let Ok(node) = decode::<NodeInfo>(&value, "a node heartbeat") {
                    if node.is_fresh() {
                        nodes.push(node);
                    }
                }
            }
        }
        *self.inner.nodes.lock().expect("nodes lock") = Some((Instant::now(), nodes.clone()));
        Ok(nodes)
    }

    /// Fails unless a live node of this build serves `worker`.
    async fn ensure_served(&self, worker: &str) -> Result<()> {
        let nodes = self.live_nodes(false).await?;
        let serves = |node: &NodeInfo| {
            node.fingerprint == self.inner.fingerprint && node.workers.iter().any(|w| w == worker)
        };
        if nodes.iter().any(serves) {
            return Ok(());
        }
        // The cache may predate a node that just started.
        let nodes = self.live_nodes(true).await?;
        if nodes.iter().any(serves) {
            return Ok(());
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

    /// Publishes one task (a batch of `items`) and returns the receiver of its reply.
    async fn submit(
        &self,
        worker: &'static str,
        payload: Vec<u8>,
        items: usize,
    ) -> Result<oneshot::Receiver<Reply>> {
        let inner = &self.inner;
        let max = inner.client.server_info().max_payload;
        if payload.len() + HEADER_ROOM > max {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                format!(
                    "the arguments of a task of `{worker}` are {} bytes, over the NATS server's \
                     max_payload of {max} bytes; send less per task (a smaller chunksize), or \
                     raise max_payload",
                    payload.len()
                ),
            ));
        }
        self.ensure_served(worker).await?;
        let task = format!(
            "{}.{}",
            inner.id,
            inner.next_task.fetch_add(1, Ordering::Relaxed)
        );
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", task.as_str());
        headers.insert(TASK_HEADER, task.as_str());
        headers.insert(REPLY_HEADER, inner.inbox.as_str());
        headers.insert(WORKER_HEADER, worker);
        headers.insert(ITEMS_HEADER, items.to_string().as_str());
        let (sender, receiver) = oneshot::channel();
        inner
            .pending
            .lock()
            .expect("pending lock")
            .by_task
            .insert(task.clone(), (sender, None));
        let published = async {
            inner
                .js
                .publish_with_headers(inner.subject.clone(), headers, payload.into())
                .await
                .map_err(|error| nats_error(&format!("publishing task {task}"), error))?
                .await
                .map_err(|error| nats_error(&format!("storing task {task}"), error))
        }
        .await;
        let mut waiting = inner.pending.lock().expect("pending lock");
        match published {
            Ok(ack) => {
                if let Some((_, seq)) = waiting.by_task.get_mut(&task) {
                    *seq = Some(ack.sequence);
                    waiting.by_seq.insert(ack.sequence, task);
                }
                Ok(receiver)
            }
            Err(error) => {
                waiting.take(&task);
                Err(error)
            }
        }
    }
}

async fn wait(receiver: oneshot::Receiver<Reply>) -> Reply {
    receiver
        .await
        .unwrap_or_else(|_| Err(Error::cancelled("the pool stopped listening for results")))
}

/// A batch's reply as one result per item.
impl fmt::Debug for RemotePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePool")
            .field("id", &self.inner.id)
            .field("subject", &self.inner.subject)
            .field("fingerprint", &self.inner.fingerprint)
            .finish()
    }
}

/// The pending result of [`RemotePool::map`] or [`RemotePool::starmap`]: await it, after
/// setting the chunk size if you like.
#[must_use = "a map does nothing until awaited"]
pub struct RemoteMap<'a, W, M, T> {
    pool: &'a RemotePool,
    inputs: Vec<T>,
    chunksize: Option<usize>,
    _worker: PhantomData<fn() -> (W, M)>,
}

impl<W, M, T> RemoteMap<'_, W, M, T> {
    /// Sends the input in tasks of `items` (default `ceil(n / (4 × slots))`). 0 makes the
    /// map fail with an [`InvalidInput`](crate::ErrorKind::InvalidInput) error.
    pub fn chunksize(mut self, items: usize) -> Self {
        self.chunksize = Some(items);
        self
    }
}

impl<'a, W, M, T> IntoFuture for RemoteMap<'a, W, M, T>
where
    W: Worker<M>,
    M: 'a,
    T: Value,
{
    type Output = Result<Vec<W::Output>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let RemoteMap {
                pool,
                inputs,
                chunksize,
                ..
            } = self;
            let name = registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT)?;
            let items = inputs.len();
            if items == 0 {
                return Ok(Vec::new());
            }
            pool.ensure_served(name).await?;
            let chunksize = resolve_chunksize(chunksize, items, pool.slots().await?)?;
            let what = format!("a chunk of arguments of `{name}`");
            let chunks = inputs
                .chunks(chunksize)
                .map(|chunk| Ok((encode(chunk, &what)?, chunk.len())))
                .collect::<Result<Vec<_>>>()?;
            drop(inputs);
            let mut replies = Vec::with_capacity(chunks.len());
            for (payload, len) in chunks {
                replies.push((pool.submit(name, payload, len).await?, len));
            }
            let mut results = MapResults::with_capacity(items);
            for (receiver, len) in replies {
                results.add_chunk(wait(receiver).await, len);
            }
            results.finish()
        })
    }
}

impl<W, M, T> fmt::Debug for RemoteMap<'_, W, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteMap")
            .field("worker", &std::any::type_name::<W>())
            .field("items", &self.inputs.len())
            .field("chunksize", &self.chunksize)
            .finish()
    }
}

/// The result of [`RemotePool::apply_async`]: a future of the call's result.
///
/// The task is published in the background; dropping the handle discards its result.
#[must_use = "the result is lost unless awaited"]
pub struct RemoteAsyncResult<T> {
    task: tokio::task::JoinHandle<Result<T>>,
    _output: PhantomData<fn() -> T>,
}

impl<T> RemoteAsyncResult<T> {
    /// Whether the result (or the call's error) has arrived, so awaiting would not wait.
    pub fn ready(&self) -> bool {
        self.task.is_finished()
    }
}

impl<T> Future for RemoteAsyncResult<T> {
    type Output = Result<T>;

    /// # Cancel safety
    ///
    /// Polling is cancel safe: a handle may be polled, put aside and awaited later.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.unwrap_or_else(|error| {
                Err(Error::cancelled(format!("the call's task ended: {error}")))
            })
        })
    }
}

impl<T> Drop for RemoteAsyncResult<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> fmt::Debug for RemoteAsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

type ItemStream<T> = futures::stream::BoxStream<'static, Result<T>>;
type MakeStream<T> = Box<dyn FnOnce(Option<usize>) -> ItemStream<T> + Send>;

/// The results of [`RemotePool::imap`] or [`RemotePool::imap_unordered`]: a
/// [`Stream`](futures::Stream) of one `Result` per input item.
///
/// Dropping it stops pulling the input and publishing chunks; chunks already published
/// still run and their results are discarded.
#[must_use = "streams do nothing unless polled"]
pub struct RemoteImap<T> {
    chunksize: Option<usize>,
    make: Option<MakeStream<T>>,
    stream: Option<ItemStream<T>>,
}

impl<T: Value> RemoteImap<T> {
    fn new<W, M, A, I>(pool: RemotePool, inputs: I, ordered: bool) -> Self
    where
        W: Worker<M, Args = (A,), Output = T>,
        A: Value,
        I: Iterator<Item = A> + Send + 'static,
    {
        let name = worker_name::<W, M>();
        let make: MakeStream<T> = Box::new(move |chunksize| {
            futures::stream::once(async move {
                let start = async {
                    let name = registry::ensure_registered(name, WORKER_HINT)?;
                    pool.ensure_served(name).await?;
                    let slots = pool.slots().await?.max(1);
                    if chunksize == Some(0) {
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            "a chunk size must be at least 1; chunksize(0) was given",
                        ));
                    }
                    Ok((name, slots))
                };
                let (name, slots) = match start.await {
                    Ok(started) => started,
                    Err(error) => return futures::stream::once(async { Err(error) }).boxed(),
                };
                let chunksize = chunksize.unwrap_or_else(|| match inputs.size_hint() {
                    (low, Some(high)) if low == high && high > 0 => {
                        high.div_ceil(4 * slots).clamp(1, MAX_DEFAULT_IMAP_CHUNK)
                    }
                    _ => 1,
                });
                let what = format!("a chunk of arguments of `{name}`");
                let chunks = futures::stream::iter(inputs)
                    .chunks(chunksize)
                    .map(move |chunk| {
                        let pool = pool.clone();
                        let payload = encode(&chunk, &what);
                        let len = chunk.len();
                        async move {
                            let reply = match payload {
                                Ok(payload) => match pool.submit(name, payload, len).await {
                                    Ok(receiver) => wait(receiver).await,
                                    Err(error) => Err(error),
                                },
                                Err(error) => Err(error),
                            };
                            match decode_chunk::<T>(reply, len) {
                                Ok(outcomes) => outcomes,
                                Err(error) => (0..len).map(|_| Err(error.clone())).collect(),
                            }
                        }
                    });
                let window = 2 * slots;
                if ordered {
                    chunks
                        .buffered(window)
                        .flat_map(futures::stream::iter)
                        .boxed()
                } else {
                    chunks
                        .buffer_unordered(window)
                        .flat_map(futures::stream::iter)
                        .boxed()
                }
            })
            .flatten()
            .boxed()
        });
        RemoteImap {
            chunksize: None,
            make: Some(make),
            stream: None,
        }
    }

    /// Sends the input in chunks of `items`; takes effect only before the first poll. 0
    /// yields one [`InvalidInput`](crate::ErrorKind::InvalidInput) error.
    pub fn chunksize(mut self, items: usize) -> Self {
        self.chunksize = Some(items);
        self
    }
}

impl<T: Value> futures::Stream for RemoteImap<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = &mut *self;
        if let Some(make) = this.make.take() {
            this.stream = Some(make(this.chunksize));
        }
        match &mut this.stream {
            Some(stream) => stream.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

impl<T> fmt::Debug for RemoteImap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteImap")
            .field("chunksize", &self.chunksize)
            .field("started", &self.stream.is_some())
            .finish()
    }
}
