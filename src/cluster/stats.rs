//! What a cluster reports: [`ClusterStats`] and [`NodeStats`] as data, and the same figures
//! as metrics through the [`metrics`] facade, for the exporter the application installs
//! (Prometheus, StatsD, ...); without one, recording them costs next to nothing.
//!
//! # Metrics
//!
//! Recorded by a pool on a cluster (in the process that submits work):
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `multiproc_cluster_queue_depth` | gauge | | tasks of this build waiting in the work queue, not yet delivered to a node (every caller's), read every second |
//! | `multiproc_cluster_node_tasks_in_flight` | gauge | `node` | tasks each live node is running, from its heartbeat |
//! | `multiproc_cluster_tasks_submitted_total` | counter | | tasks this pool published |
//! | `multiproc_cluster_tasks_completed_total` | counter | | tasks answered with their results (a chunk of a `map` is one task) |
//! | `multiproc_cluster_tasks_failed_total` | counter | | tasks answered with an error (given-up ones included) |
//! | `multiproc_cluster_task_give_ups_total` | counter | | tasks given up after the retry cap |
//! | `multiproc_cluster_task_duration_seconds` | histogram | | from publishing a task to its answer |
//!
//! Recorded by a [`Node`](super::Node) (in each node process), labelled with the node's id:
//!
//! | name | kind | what |
//! |---|---|---|
//! | `multiproc_node_tasks_in_flight` | gauge | tasks the node is running |
//! | `multiproc_node_tasks_completed_total` | counter | tasks it answered with their results |
//! | `multiproc_node_tasks_failed_total` | counter | tasks it answered with an error |
//! | `multiproc_node_task_retries_total` | counter | deliveries it received of tasks delivered before (after a crash, or a node that vanished) |
//! | `multiproc_node_task_give_ups_total` | counter | tasks it gave up after the retry cap |
//! | `multiproc_node_task_duration_seconds` | histogram | how long its tasks ran |

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::cluster::{NodeInfo, NodeLoad, Outcome};

/// A cluster's work and nodes, as the pool reads them; returned by
/// [`Pool::cluster_stats`](crate::Pool::cluster_stats).
///
/// ```no_run
/// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
/// let stats = pool.cluster_stats().await?;
/// println!("{} tasks waiting", stats.queue_depth);
/// for node in &stats.nodes {
///     println!("{}: {} running, {} retries", node.id, node.in_flight, node.retries);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Tasks of this build (every caller's) waiting in the work queue, not yet delivered to
    /// a node.
    pub queue_depth: u64,
    /// Tasks of this build delivered to a node and not yet acknowledged.
    pub in_flight: u64,
    /// The live nodes of this build, by id.
    pub nodes: Vec<NodeStats>,
}

/// One live node of a [`ClusterStats`], as its last heartbeat (at most a second old) tells.
/// Counts are of tasks (a chunk of a `map` is one task), since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// The node's id ([`NodeBuilder::name`](super::NodeBuilder::name)).
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id (of the node, not of its children).
    pub pid: u32,
    /// Its slots (child processes).
    pub slots: usize,
    /// The labels it offers (see [`Needs`](super::Needs)).
    pub labels: Vec<String>,
    /// The resources it offers, with their total amounts.
    pub resources: Vec<(String, u64)>,
    /// Tasks it is running.
    pub in_flight: usize,
    /// Tasks it answered with their results (a chunk whose items partly panicked included).
    pub completed: u64,
    /// Tasks it answered with an error (unknown worker, undecodable, too large).
    pub failed: u64,
    /// Deliveries it received of tasks delivered before.
    pub retries: u64,
    /// Tasks it gave up after the retry cap.
    pub give_ups: u64,
    /// Child processes its local pool started to replace one that ended unexpectedly.
    pub restarts: u64,
    /// How long its tasks ran, in all: divided by `completed + failed`, the mean duration.
    pub task_time: Duration,
}

impl NodeStats {
    pub(crate) fn of(node: &NodeInfo) -> NodeStats {
        let load = &node.load;
        NodeStats {
            id: node.id.clone(),
            host: node.host.clone(),
            pid: node.pid,
            slots: node.slots,
            labels: node.labels.clone(),
            resources: node.resources.clone(),
            in_flight: load.in_flight,
            completed: load.completed,
            failed: load.failed,
            retries: load.retries,
            give_ups: load.give_ups,
            restarts: load.restarts,
            task_time: Duration::from_millis(load.task_ms),
        }
    }
}

/// A node's counts as it works, recorded as metrics too.
#[derive(Debug)]
pub(crate) struct NodeCounts {
    node: String,
    in_flight: AtomicUsize,
    completed: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    give_ups: AtomicU64,
    task_ms: AtomicU64,
}

impl NodeCounts {
    pub(crate) fn new(node: &str) -> NodeCounts {
        NodeCounts {
            node: node.to_string(),
            in_flight: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            give_ups: AtomicU64::new(0),
            task_ms: AtomicU64::new(0),
        }
    }

    /// A task starts, on its `delivered`th delivery; the guard counts it done when dropped.
    pub(crate) fn start(&self, delivered: i64) -> Running<'_> {
        if delivered > 1 {
            self.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("multiproc_node_task_retries_total", "node" => self.node.clone())
                .increment(1);
        }
        let running = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.set_in_flight(running);
        Running {
            counts: self,
            started: std::time::Instant::now(),
        }
    }

    fn set_in_flight(&self, running: usize) {
        metrics::gauge!("multiproc_node_tasks_in_flight", "node" => self.node.clone())
            .set(running as f64);
    }

    /// The node answered a task with `outcome`.
    pub(crate) fn answered(&self, outcome: &Outcome) {
        let (count, name) = match outcome {
            Outcome::Done(_) => (&self.completed, "multiproc_node_tasks_completed_total"),
            Outcome::Failed { .. } => (&self.failed, "multiproc_node_tasks_failed_total"),
            Outcome::GaveUp { .. } => (&self.give_ups, "multiproc_node_task_give_ups_total"),
        };
        count.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(name, "node" => self.node.clone()).increment(1);
    }

    /// The figures for the heartbeat; `restarts` from the local pool.
    pub(crate) fn load(&self, restarts: u64) -> NodeLoad {
        NodeLoad {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            give_ups: self.give_ups.load(Ordering::Relaxed),
            restarts,
            task_ms: self.task_ms.load(Ordering::Relaxed),
        }
    }
}

/// A task a node runs, counted in flight until dropped.
pub(crate) struct Running<'a> {
    counts: &'a NodeCounts,
    started: std::time::Instant,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let counts = self.counts;
        let elapsed = self.started.elapsed();
        counts
            .task_ms
            .fetch_add(elapsed.as_millis() as u64, Ordering::Relaxed);
        metrics::histogram!("multiproc_node_task_duration_seconds", "node" => counts.node.clone())
            .record(elapsed.as_secs_f64());
        let running = counts.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        counts.set_in_flight(running);
    }
}

/// A pool's counts of its items (as [`PoolStats`](crate::PoolStats) counts them) and the
/// pool-side metrics.
#[derive(Debug, Default)]
pub(crate) struct PoolCounts {
    /// Items held back by the submission window.
    queued: AtomicUsize,
    /// Items published and not answered.
    running: AtomicUsize,
    completed: AtomicU64,
    failed: AtomicU64,
}

impl PoolCounts {
    /// `items` wait for the submission window.
    pub(crate) fn queue(&self, items: usize) {
        self.queued.fetch_add(items, Ordering::Relaxed);
    }

    /// `items` leave the window's queue, to be published.
    pub(crate) fn dequeue(&self, items: usize) {
        self.queued.fetch_sub(items, Ordering::Relaxed);
    }

    /// A task of `items` was published: counted running until the guard is dropped.
    pub(crate) fn published(&self, items: usize) -> Published<'_> {
        self.running.fetch_add(items, Ordering::Relaxed);
        metrics::counter!("multiproc_cluster_tasks_submitted_total").increment(1);
        Published {
            counts: self,
            items,
            started: std::time::Instant::now(),
        }
    }

    /// The pool's [`PoolStats`](crate::PoolStats): its own items, and the restarts of the
    /// live nodes' children.
    pub(crate) fn stats(&self, nodes: &[NodeInfo]) -> crate::PoolStats {
        crate::PoolStats {
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            restarts: nodes.iter().map(|node| node.load.restarts).sum(),
            workers: Vec::new(),
        }
    }
}

/// A published task of a pool, running until dropped.
pub(crate) struct Published<'a> {
    counts: &'a PoolCounts,
    items: usize,
    started: std::time::Instant,
}

impl Published<'_> {
    /// The task was answered with `answer`: its items completed or failed (a give-up is a
    /// [`WorkerDied`](crate::ErrorKind::WorkerDied) error, as only give-ups reach a caller
    /// on a cluster).
    pub(crate) fn answered<T>(self, answer: &crate::Result<T>) {
        let counts = self.counts;
        metrics::histogram!("multiproc_cluster_task_duration_seconds")
            .record(self.started.elapsed().as_secs_f64());
        let (count, name) = match answer {
            Ok(_) => (&counts.completed, "multiproc_cluster_tasks_completed_total"),
            Err(_) => (&counts.failed, "multiproc_cluster_tasks_failed_total"),
        };
        count.fetch_add(self.items as u64, Ordering::Relaxed);
        metrics::counter!(name).increment(1);
        if matches!(answer, Err(error) if error.is_worker_died()) {
            metrics::counter!("multiproc_cluster_task_give_ups_total").increment(1);
        }
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.counts.running.fetch_sub(self.items, Ordering::Relaxed);
    }
}

/// Records the figures of a fresh list of live nodes, and of the work queue.
pub(crate) fn record_cluster(stats: &ClusterStats) {
    metrics::gauge!("multiproc_cluster_queue_depth").set(stats.queue_depth as f64);
    for node in &stats.nodes {
        metrics::gauge!("multiproc_cluster_node_tasks_in_flight", "node" => node.id.clone())
            .set(node.in_flight as f64);
    }
}
