//! What a cluster reports, against a real `nats-server -js` on 127.0.0.1 and a node run in
//! this process: the metrics recorded through the `metrics` facade (captured by a debugging
//! recorder), `Pool::stats` and `Pool::cluster_stats`, for completed tasks, a crashing task
//! retried then given up, and a queue that fills and drains.
#![cfg(feature = "nats")]

#[path = "common/nats.rs"]
mod nats;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use metrics::{SharedString, Unit};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use multiproc::{ErrorKind, Node, Pool, worker};
use nats::{Server, wait_for_nodes};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

#[worker]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    x * x
}

/// Always kills its child process.
#[worker]
fn crash() {
    std::process::exit(3)
}

/// What the recorder holds: a snapshot resets its counters and histograms, so a test takes
/// one, once.
type Snapshot = Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>;

/// The sum of the counters named `name` (with `node` as their `node` label if given), the
/// number of samples of such histograms, or the value of such a gauge.
fn read(snapshot: &Snapshot, name: &str, node: Option<&str>) -> Option<f64> {
    let mut found = None;
    for (key, _, _, value) in snapshot {
        let key = key.key();
        let labelled = node.is_none_or(|node| {
            key.labels()
                .any(|label| label.key() == "node" && label.value() == node)
        });
        if key.name() != name || !labelled {
            continue;
        }
        let value = match value {
            DebugValue::Counter(count) => *count as f64,
            DebugValue::Gauge(value) => value.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        };
        found = Some(found.unwrap_or(0.0) + value);
    }
    found
}

/// Polls `check` (at most `LIMIT`) until it holds: the nodes' figures come with their
/// heartbeats, once a second.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not so within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn counters_move_and_stats_tell_the_same() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let Some(server) = Server::start() else {
        return;
    };
    let node = tokio::spawn(
        Node::connect(server.url())
            .name("node-m")
            .slots(2)
            .max_deliver(2)
            .serve(),
    );
    let pool = tokio::time::timeout(LIMIT, Pool::connect(server.url()).build())
        .await
        .unwrap()
        .unwrap();
    wait_for_nodes(&pool, 1).await;

    // Eight 200 ms tasks on two slots: the work queue holds some of them for a while.
    let map = pool.map(slow_square, 0..8u64).chunksize(1).into_future();
    tokio::pin!(map);
    let mut deepest = 0;
    let squares = loop {
        tokio::select! {
            squares = &mut map => break squares.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                let stats = pool.cluster_stats().await.unwrap();
                deepest = deepest.max(stats.queue_depth);
            }
        }
    };
    assert_eq!(squares[7], 49);
    assert!(deepest >= 1, "the queue never held a task");
    let error = tokio::time::timeout(LIMIT, pool.apply(crash, ()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerDied, "{error}");

    eventually("the node's heartbeat tells its work", async || {
        let stats = pool.cluster_stats().await.unwrap();
        let node = &stats.nodes[0];
        (node.completed, node.retries, node.give_ups, node.in_flight) == (8, 1, 1, 0)
            && node.restarts >= 2
            && (stats.queue_depth, stats.in_flight) == (0, 0)
    })
    .await;
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    assert_eq!((stats.completed, stats.failed), (8, 1), "{stats:?}");
    assert!(stats.restarts >= 2, "{stats:?}");

    let node_m = Some("node-m");
    let snapshot = snapshotter.snapshot().into_vec();
    let counted = |name, node| read(&snapshot, name, node).unwrap_or(0.0);
    assert_eq!(
        counted("multiproc_cluster_tasks_submitted_total", None),
        9.0
    );
    assert_eq!(
        counted("multiproc_cluster_tasks_completed_total", None),
        8.0
    );
    assert_eq!(counted("multiproc_cluster_tasks_failed_total", None), 1.0);
    assert_eq!(counted("multiproc_cluster_task_give_ups_total", None), 1.0);
    assert_eq!(counted("multiproc_node_tasks_completed_total", node_m), 8.0);
    assert_eq!(counted("multiproc_node_task_retries_total", node_m), 1.0);
    assert_eq!(counted("multiproc_node_task_give_ups_total", node_m), 1.0);
    assert_eq!(counted("multiproc_node_tasks_in_flight", node_m), 0.0);
    assert!(read(&snapshot, "multiproc_cluster_queue_depth", None).is_some());
    assert!(read(&snapshot, "multiproc_cluster_node_tasks_in_flight", node_m).is_some());
    assert_eq!(
        counted("multiproc_cluster_task_duration_seconds", None),
        9.0
    );
    assert!(counted("multiproc_node_task_duration_seconds", node_m) >= 9.0);

    node.abort();
    let _ = node.await;
    let local = Pool::builder().processes(1).build().await.unwrap();
    let error = local.cluster_stats().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidState, "{error}");
}
