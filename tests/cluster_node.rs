//! A node's local pool as the local pool's builder shapes it, against a real
//! `nats-server -js` on 127.0.0.1: an initializer run in each slot's child (replacements
//! too), `max_tasks_per_child`, and a failing initializer stopping the node with its error.
#![cfg(feature = "nats")]

#[path = "common/nats.rs"]
mod nats;

use std::sync::OnceLock;
use std::time::Duration;

use multiproc::{ErrorKind, Node, Pool, worker};
use nats::{NodeProcess, Server, wait_for_nodes};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

/// What the initializer left in this child process.
static GREETING: OnceLock<String> = OnceLock::new();

#[worker]
fn set_greeting(greeting: String) {
    GREETING.set(greeting).unwrap();
}

#[worker]
fn fail_to_start() {
    panic!("no licence server");
}

/// The initializer's greeting in this child, and the child's pid.
#[worker]
fn greeting() -> (Option<String>, u32) {
    (GREETING.get().cloned(), std::process::id())
}

/// Not a test: the body of a node process started by [`NodeProcess::start`]: one slot, an
/// initializer, and a child replaced after every task.
#[test]
fn node_process() {
    let Ok(url) = std::env::var("MP_TEST_NODE_URL") else {
        return;
    };
    let node = Node::connect(url)
        .name(std::env::var("MP_TEST_NODE_NAME").unwrap())
        .slots(1)
        .initializer(set_greeting, ("hello".to_string(),))
        .max_tasks_per_child(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let served = runtime.block_on(node.serve());
    panic!("the node stopped: {served:?}");
}

#[tokio::test]
async fn the_initializer_runs_in_every_child_and_children_retire() {
    let Some(server) = Server::start() else {
        return;
    };
    let _node = NodeProcess::start(&server, "node-a", 1, &[]);
    let pool = tokio::time::timeout(LIMIT, Pool::connect(server.url()).build())
        .await
        .unwrap()
        .unwrap();
    wait_for_nodes(&pool, 1).await;
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (greeting, pid) = tokio::time::timeout(LIMIT, pool.apply(greeting, ()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(greeting.as_deref(), Some("hello"), "child {pid}");
        pids.push(pid);
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "one task per child: {pids:?}");
}

#[tokio::test]
async fn a_failing_initializer_stops_the_node_with_its_error() {
    // The local pool starts before the node connects, so no server is needed.
    let served = Node::connect("nats://127.0.0.1:1")
        .slots(1)
        .initializer(fail_to_start, ())
        .serve();
    let error = tokio::time::timeout(LIMIT, served)
        .await
        .expect("the node gave up in time")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Panic, "{error}");
    assert!(error.to_string().contains("no licence server"), "{error}");
    let error = Node::connect("nats://127.0.0.1:1")
        .max_tasks_per_child(0)
        .serve()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}
