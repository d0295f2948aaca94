//! Routing on a NATS JetStream cluster, against a real `nats-server -js` on 127.0.0.1: a
//! GPU-labelled node and a CPU node, tasks sent by what they need, a resource held by one
//! task at a time, and needs no node can meet failing at once.
#![cfg(feature = "nats")]

#[path = "common/nats.rs"]
mod nats;

use std::path::Path;
use std::time::{Duration, Instant};

use multiproc::cluster::Needs;
use multiproc::{ErrorKind, Node, Pool, worker};
use nats::{NodeProcess, Server, wait_for_nodes};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

/// The tests run one at a time: each starts a server and node processes with children.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node this task ran on (from the node process's environment) and the child's pid.
#[worker]
fn where_ran() -> (String, u32) {
    (
        std::env::var("MP_TEST_NODE_NAME").unwrap_or_default(),
        std::process::id(),
    )
}

/// Holds `dir/busy` for 200 ms, and returns the node it ran on and whether it found the
/// file free: two such tasks at once on one node would not.
#[worker]
fn hold_the_gpu(dir: String) -> (String, bool) {
    let busy = Path::new(&dir).join("busy");
    let alone = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&busy)
        .is_ok();
    std::thread::sleep(Duration::from_millis(200));
    if alone {
        std::fs::remove_file(&busy).unwrap();
    }
    (where_ran().0, alone)
}

/// Not a test: the body of a node process started by [`NodeProcess::start`].
#[test]
fn node_process() {
    let Ok(url) = std::env::var("MP_TEST_NODE_URL") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let mut node = Node::connect(url)
        .name(var("MP_TEST_NODE_NAME"))
        .slots(var("MP_TEST_NODE_SLOTS").parse().unwrap())
        .ack_wait(Duration::from_secs(2));
    let labels = var("MP_TEST_NODE_LABELS");
    node = node.labels(labels.split(',').filter(|label| !label.is_empty()));
    for resource in var("MP_TEST_NODE_RESOURCES")
        .split(',')
        .filter(|r| !r.is_empty())
    {
        let (name, amount) = resource.split_once('=').unwrap();
        node = node.resource(name, amount.parse().unwrap());
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let served = runtime.block_on(node.serve());
    panic!("the node stopped: {served:?}");
}

/// A GPU node (label `gpu`, one `gpu` resource, 2 slots), a CPU node (2 slots), and a pool
/// that sees both; dropped pool first.
struct Cluster {
    pool: Pool,
    _nodes: [NodeProcess; 2],
    server: Server,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    async fn start() -> Option<Cluster> {
        let serial = SERIAL.lock().await;
        let server = Server::start()?;
        let gpu = [
            ("MP_TEST_NODE_LABELS", "gpu"),
            ("MP_TEST_NODE_RESOURCES", "gpu=1"),
        ];
        let nodes = [
            NodeProcess::start(&server, "gpu-node", 2, &gpu),
            NodeProcess::start(&server, "cpu-node", 2, &[]),
        ];
        let pool = connect(Pool::connect(server.url())).await;
        wait_for_nodes(&pool, 2).await;
        Some(Cluster {
            pool,
            _nodes: nodes,
            server,
            _serial: serial,
        })
    }
}

async fn connect(builder: multiproc::RemotePoolBuilder) -> Pool {
    tokio::time::timeout(LIMIT, builder.build())
        .await
        .expect("connecting in time")
        .expect("connecting")
}

#[tokio::test]
async fn tasks_run_only_on_nodes_with_what_they_need() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let pool = &cluster.pool;
    for _ in 0..6 {
        let (node, _) = tokio::time::timeout(LIMIT, pool.apply(where_ran, ()).needs("gpu"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(node, "gpu-node");
    }
    // Without needs, both nodes serve (each has 2 slots and each slot pulls in turn).
    let anywhere: Vec<(String, u32)> = tokio::time::timeout(
        LIMIT,
        pool.starmap(where_ran_slowly, vec![(); 8]).chunksize(1),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        anywhere.iter().any(|(node, _)| node == "cpu-node"),
        "{anywhere:?}"
    );

    // A pool that requires the label sends its maps there.
    let gpu_pool = connect(Pool::connect(cluster.server.url()).requires("gpu")).await;
    let ran: Vec<(String, u32)> = tokio::time::timeout(
        LIMIT,
        gpu_pool.starmap(where_ran, vec![(); 10]).chunksize(1),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(ran.iter().all(|(node, _)| node == "gpu-node"), "{ran:?}");
}

/// `where_ran` after 100 ms, so that several slots take part.
#[worker]
fn where_ran_slowly() -> (String, u32) {
    std::thread::sleep(Duration::from_millis(100));
    where_ran()
}

#[tokio::test]
async fn a_resource_is_held_by_one_task_at_a_time() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("multiproc-test-gpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            cluster
                .pool
                .apply(hold_the_gpu, (dir.display().to_string(),))
                .needs(Needs::resource("gpu", 1))
                .submit()
        })
        .collect();
    for call in calls {
        let (node, alone) = tokio::time::timeout(LIMIT, call).await.unwrap().unwrap();
        assert_eq!(node, "gpu-node");
        assert!(alone, "two tasks held the node's only gpu at once");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_need_no_live_node_meets_fails_at_once() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let started = Instant::now();
    let error = tokio::time::timeout(LIMIT, cluster.pool.apply(where_ran, ()).needs("tpu"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Infeasible, "{error}");
    assert!(
        error.to_string().contains("gpu-node offers [gpu, gpu=1]"),
        "{error}"
    );
    // More of a resource than any node has.
    let error = tokio::time::timeout(
        LIMIT,
        cluster
            .pool
            .apply(where_ran, ())
            .needs(Needs::resource("gpu", 2)),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Infeasible, "{error}");
    // A pool whose every call needs it fails its maps alike.
    let pool = connect(Pool::connect(cluster.server.url()).requires(["gpu", "tpu"])).await;
    let error = tokio::time::timeout(LIMIT, pool.starmap(where_ran, vec![(); 3]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Infeasible, "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn needs_on_a_local_pool_or_invalid_names_are_refused() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let error = tokio::time::timeout(LIMIT, pool.apply(where_ran, ()).needs("gpu"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let error = Node::connect("nats://127.0.0.1:1")
        .labels(["gpu", "g.p.u"])
        .serve()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let error = Pool::connect("nats://127.0.0.1:1")
        .requires("g.p.u")
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}
