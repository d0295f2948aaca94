//! Draining a node mid-map, as a rolling deploy does: two nodes serve a map, node-a gets
//! `SIGTERM` halfway through, finishes the tasks it holds, leaves the cluster and exits 0;
//! node-b runs the rest, and every item comes back once.
//!
//! ```sh
//! apt-get install nats-server          # or any nats-server ≥ 2.9
//! cargo run --features nats --example cluster_drain
//! ```
//!
//! Without `NATS_URL` the example starts its own `nats-server -js` on a free port of
//! 127.0.0.1 and stops it at the end; with `NATS_URL=nats://host:4222` it uses that server.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::{Node, Pool, worker};

/// Runs on a node for 200 ms: `x`, and the node that ran it.
#[worker]
fn slow(x: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_millis(200));
    (x, std::env::var("EXAMPLE_NODE").unwrap_or_default())
}

/// Kills a process started by the example when dropped (a no-op once it has exited).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // A node: `cluster_drain --node <name> <url>`. `serve` drains on SIGTERM, then returns.
    if let Some(at) = args.iter().position(|arg| arg == "--node") {
        Node::connect(args[at + 2].clone())
            .name(args[at + 1].clone())
            .slots(2)
            .serve()
            .await?;
        eprintln!("{}: drained, exiting", args[at + 1]);
        return Ok(());
    }

    let (url, _server) = match std::env::var("NATS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let (url, server) = start_server().await;
            (url, Some(server))
        }
    };
    let exe = std::env::current_exe().expect("the example's path");
    let mut nodes: Vec<Killed> = ["node-a", "node-b"]
        .into_iter()
        .map(|name| {
            let node = Command::new(&exe)
                .args(["--node", name, &url])
                .env("EXAMPLE_NODE", name)
                .spawn()
                .expect("starting a node");
            Killed(node)
        })
        .collect();

    let pool = Pool::connect(url).build().await?;
    while pool.nodes().await?.len() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("nodes: {:?}", pool.nodes().await?);

    let mapping = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.map(slow, 0..40u64).chunksize(1).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let node_a = &mut nodes[0].0;
    println!("SIGTERM to node-a (pid {}) mid-map", node_a.id());
    let drained = Instant::now();
    // SAFETY: kill(2) on the pid of a child process of ours.
    unsafe { libc::kill(node_a.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = node_a.try_wait().expect("waiting for node-a") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "node-a exited with {status} after {:.2?}; nodes now: {:?}",
        drained.elapsed(),
        pool.nodes().await?
    );

    let results = mapping.await.expect("the map's task")?;
    let mut ran_on = BTreeMap::<String, usize>::new();
    for (x, (item, node)) in results.iter().enumerate() {
        assert_eq!(*item, x as u64);
        *ran_on.entry(node.clone()).or_default() += 1;
    }
    println!(
        "all {} items came back, in order; ran on: {ran_on:?}",
        results.len()
    );
    Ok(())
}

/// Starts `nats-server -js` on a free port of 127.0.0.1, with a temporary store.
async fn start_server() -> (String, Killed) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = std::env::temp_dir().join(format!("multiproc-example-{}", std::process::id()));
    let server = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server (apt-get install nats-server, or set NATS_URL)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (format!("nats://127.0.0.1:{port}"), Killed(server))
}
