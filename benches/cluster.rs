//! `map` over 10,000 small tasks through NATS JetStream with 2 nodes (2 slots each), beside
//! the local pool of 4 processes in the same run.
//!
//! ```text
//! cargo bench --features nats --bench cluster
//! ```
//!
//! Starts its own `nats-server -js` on 127.0.0.1 (skipped with a note when it is not
//! installed) and two node processes (this binary with `--node`). Prints a markdown table.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::{Node, Pool, worker};

const TASKS: u64 = 10_000;

#[worker]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

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
    if let Some(at) = args.iter().position(|arg| arg == "--node") {
        return Node::connect(args[at + 1].clone()).slots(2).serve().await;
    }
    if Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("nats-server is not installed; skipped (apt-get install nats-server)");
        return Ok(());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = std::env::temp_dir().join(format!("multiproc-bench-{}", std::process::id()));
    let _server = Killed(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server"),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("nats://127.0.0.1:{port}");
    let exe = std::env::current_exe().expect("the bench's path");
    let _nodes: Vec<Killed> = (0..2)
        .map(|_| {
            Killed(
                Command::new(&exe)
                    .args(["--node", &url])
                    .spawn()
                    .expect("starting a node"),
            )
        })
        .collect();

    let local = Pool::builder().processes(4).build().await?;
    let remote = Pool::connect(url).build().await?;
    while remote.nodes().await?.len() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warm up both.
    local.map(square, 0..1_000u64).await?;
    remote.map(square, 0..1_000u64).await?;

    println!("| map of {TASKS} small tasks | time | tasks/s | per task |");
    println!("|---|---|---|---|");
    let mut rows = Vec::new();
    for chunksize in [None, Some(1)] {
        let label = chunksize.map_or("default chunks".to_string(), |c| format!("chunksize {c}"));
        let started = Instant::now();
        let out = match chunksize {
            Some(c) => local.map(square, 0..TASKS).chunksize(c).await?,
            None => local.map(square, 0..TASKS).await?,
        };
        let local_time = started.elapsed();
        assert_eq!(out.len(), TASKS as usize);
        let started = Instant::now();
        let out = match chunksize {
            Some(c) => remote.map(square, 0..TASKS).chunksize(c).await?,
            None => remote.map(square, 0..TASKS).await?,
        };
        let remote_time = started.elapsed();
        assert_eq!(out.len(), TASKS as usize);
        for (what, time) in [
            ("local pool, 4 processes", local_time),
            ("NATS, 2 nodes × 2 slots", remote_time),
        ] {
            println!(
                "| {what}, {label} | {time:.2?} | {:.0} | {:.1} µs |",
                TASKS as f64 / time.as_secs_f64(),
                time.as_secs_f64() * 1e6 / TASKS as f64
            );
        }
        rows.push((label, remote_time.as_secs_f64() / local_time.as_secs_f64()));
    }
    for (label, ratio) in rows {
        println!("\nNATS / local, {label}: {ratio:.1}× the time");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
