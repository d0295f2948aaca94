//! A pool on a NATS JetStream cluster: two nodes on this machine (this binary started again
//! with `--node <name>`, each with its own child processes) and a service mapping over them,
//! printing which node ran what.
//!
//! ```sh
//! apt-get install nats-server          # or any nats-server ≥ 2.9
//! cargo run --features nats --example cluster
//! ```
//!
//! Without `NATS_URL` the example starts its own `nats-server -js` on 127.0.0.1:4333 and stops
//! it at the end; with `NATS_URL=nats://host:4222` it uses that server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multiproc::{Node, Pool, worker};

/// Runs on a node: the square of `x`, and which node and process computed it.
#[worker]
fn square(x: u64) -> (u64, String) {
    let node = std::env::var("EXAMPLE_NODE").unwrap_or_default();
    (x * x, format!("{node} (pid {})", std::process::id()))
}

/// Kills a process started by the example when dropped.
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
    let url = std::env::var("NATS_URL").ok();

    // A node: `cluster --node <name> <url>`.
    if let Some(at) = args.iter().position(|arg| arg == "--node") {
        return Node::connect(args[at + 2].clone())
            .name(args[at + 1].clone())
            .slots(2)
            .serve()
            .await;
    }

    let _server = match &url {
        Some(_) => None,
        None => {
            let dir =
                std::env::temp_dir().join(format!("multiproc-example-{}", std::process::id()));
            let server = Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", "4333", "-sd"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nats-server (apt-get install nats-server, or set NATS_URL)");
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some(Killed(server))
        }
    };
    let url = url.unwrap_or_else(|| "nats://127.0.0.1:4333".to_string());

    let exe = std::env::current_exe().expect("the example's path");
    let _nodes: Vec<Killed> = ["node-a", "node-b"]
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
    println!(
        "nodes: {:?}, {} slots",
        pool.nodes().await?,
        pool.processes()
    );

    let results = pool.map(square, 0..12u64).chunksize(1).await?;
    for (x, (square, ran_on)) in results.into_iter().enumerate() {
        println!("{x}² = {square:>3}  ran on {ran_on}");
    }
    Ok(())
}
