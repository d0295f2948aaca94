//! Routing on a NATS JetStream cluster: a GPU node (label `gpu`, one `gpu` resource) and a
//! CPU node on this machine (this binary started again with `--node`), and a service whose
//! calls say what they need. Prints which node ran what.
//!
//! ```sh
//! apt-get install nats-server          # or any nats-server ≥ 2.9
//! cargo run --features nats --example cluster_routing
//! ```
//!
//! Without `NATS_URL` the example starts its own `nats-server -js` on 127.0.0.1:4334 and stops
//! it at the end; with `NATS_URL=nats://host:4222` it uses that server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multiproc::cluster::Needs;
use multiproc::{Node, Pool, worker};

/// Runs on a node: says which node and process it ran on.
#[worker]
fn where_am_i(job: u64) -> String {
    let node = std::env::var("EXAMPLE_NODE").unwrap_or_default();
    format!("job {job} ran on {node} (pid {})", std::process::id())
}

/// Kills a process started by the example when dropped, and removes its directory, if any.
struct Killed(Child, Option<std::path::PathBuf>);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // A node: `cluster_routing --node <gpu|cpu> <url>`.
    if let Some(at) = args.iter().position(|arg| arg == "--node") {
        let node = Node::connect(args[at + 2].clone())
            .name(format!("{}-node", args[at + 1]))
            .slots(2);
        let node = match args[at + 1].as_str() {
            "gpu" => node.labels(["gpu"]).resource("gpu", 1),
            _ => node,
        };
        return node.serve().await;
    }

    let url = std::env::var("NATS_URL").ok();
    let _server = match &url {
        Some(_) => None,
        None => {
            let dir =
                std::env::temp_dir().join(format!("multiproc-routing-{}", std::process::id()));
            let server = Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", "4334", "-sd"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nats-server (apt-get install nats-server, or set NATS_URL)");
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some(Killed(server, Some(dir)))
        }
    };
    let url = url.unwrap_or_else(|| "nats://127.0.0.1:4334".to_string());

    let exe = std::env::current_exe().expect("the example's path");
    let _nodes: Vec<Killed> = ["gpu", "cpu"]
        .into_iter()
        .map(|kind| {
            let node = Command::new(&exe)
                .args(["--node", kind, &url])
                .env("EXAMPLE_NODE", format!("{kind}-node"))
                .spawn()
                .expect("starting a node");
            Killed(node, None)
        })
        .collect();

    let pool = Pool::connect(url.clone()).build().await?;
    while pool.nodes().await?.len() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("-- no needs: any node");
    for line in pool.map(where_am_i, 0..4u64).chunksize(1).await? {
        println!("{line}");
    }
    println!("-- needs the label `gpu`: the GPU node only");
    println!("{}", pool.apply(where_am_i, (4,)).needs("gpu").await?);
    println!("-- needs one `gpu` resource: one at a time on the GPU node");
    let gpu_calls: Vec<_> = (5..8u64)
        .map(|job| {
            pool.apply(where_am_i, (job,))
                .needs(Needs::resource("gpu", 1))
                .submit()
        })
        .collect();
    for call in gpu_calls {
        println!("{}", call.await?);
    }
    println!("-- a pool whose every call needs `gpu`");
    let gpu_pool = Pool::connect(url).requires("gpu").build().await?;
    for line in gpu_pool.map(where_am_i, 8..10u64).chunksize(1).await? {
        println!("{line}");
    }
    println!("-- needs `tpu`, which no node has: fails at once");
    let error = pool
        .apply(where_am_i, (10,))
        .needs("tpu")
        .await
        .unwrap_err();
    println!("{:?}: {error}", error.kind());
    Ok(())
}
