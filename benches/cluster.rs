//! `map` over 10,000 small tasks through NATS JetStream with 2 nodes (2 slots each), beside
//! the local pool of 4 processes in the same run; then the recovery from a node killed
//! mid-map: the time from its `SIGKILL` until the tasks it held run again on the other nodes
//! (median of 5, with the default ack wait).
//!
//! ```text
//! cargo bench --features nats --bench cluster             # both
//! cargo bench --features nats --bench cluster -- recovery # only the recovery
//! ```
//!
//! Starts its own `nats-server -js` on 127.0.0.1 (skipped with a note when it is not
//! installed) and the node processes (this binary with `--node`). Prints markdown tables.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::{Node, Pool, worker};

const TASKS: u64 = 10_000;

/// How many times a node is killed for the recovery figure.
const RECOVERY_RUNS: usize = 5;

#[worker]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// Leaves `<x>~<node pid>` in `dir`, then works for `ms`; returns the node's pid (its
/// parent's) and when it began, in ms since the epoch.
#[worker]
fn stamp(dir: String, x: u64, ms: u64) -> (u32, u64) {
    let node = std::os::unix::process::parent_id();
    let began = epoch_ms();
    std::fs::write(Path::new(&dir).join(format!("{x}~{node}")), b"").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    (node, began)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
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

    let remote = Pool::connect(url.clone()).build().await?;
    wait_for_nodes(&remote, 2).await?;
    if !args.iter().any(|arg| arg == "recovery") {
        throughput(&remote).await?;
    }
    recovery(&remote, &exe, &url).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn wait_for_nodes(pool: &Pool, count: usize) -> multiproc::Result<()> {
    while pool.nodes().await?.len() != count {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The map of [`TASKS`] small tasks, on the cluster and on a local pool of 4 processes.
async fn throughput(remote: &Pool) -> multiproc::Result<()> {
    let local = Pool::builder().processes(4).build().await?;
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
    Ok(())
}

/// [`RECOVERY_RUNS`] times: a third node joins, takes tasks of a map and is `SIGKILL`ed; the
/// time from the kill until the last of its tasks begins again on another node.
async fn recovery(remote: &Pool, exe: &Path, url: &str) -> multiproc::Result<()> {
    let mut figures = Vec::new();
    for _ in 0..RECOVERY_RUNS {
        let mut victim = Killed(
            Command::new(exe)
                .args(["--node", url])
                .spawn()
                .expect("starting a node"),
        );
        let pid = victim.0.id();
        wait_for_nodes(remote, 3).await?;
        let dir = std::env::temp_dir().join(format!("multiproc-bench-recovery-{pid}"));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let inputs: Vec<(String, u64, u64)> = (0..24)
            .map(|x| (dir.to_string_lossy().into_owned(), x, 500))
            .collect();
        let mapping = {
            let remote = remote.clone();
            tokio::spawn(async move { remote.starmap(stamp, inputs).chunksize(1).await })
        };
        let on_victim = |x: u64| dir.join(format!("{x}~{pid}")).exists();
        while (0..24).filter(|&x| on_victim(x)).count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let killed = epoch_ms();
        let _ = victim.0.kill();
        let results = mapping.await.expect("the map's task")?;
        let rerun = (0..24u64)
            .filter(|&x| on_victim(x) && results[x as usize].0 != pid)
            .map(|x| results[x as usize].1.saturating_sub(killed))
            .max();
        if let Some(rerun) = rerun {
            figures.push(Duration::from_millis(rerun));
        }
        let _ = std::fs::remove_dir_all(&dir);
        drop(victim);
        // Its heartbeat expires (5 s) before the next run counts the nodes.
        wait_for_nodes(remote, 2).await?;
    }
    figures.sort();
    println!("\n| recovery (default ack wait) | median | fastest | slowest |");
    println!("|---|---|---|---|");
    if let (Some(fastest), Some(slowest)) = (figures.first(), figures.last()) {
        println!(
            "| node SIGKILLed mid-map to its tasks running elsewhere ({} runs) | {:.2?} | {fastest:.2?} | {slowest:.2?} |",
            figures.len(),
            figures[figures.len() / 2],
        );
    }
    Ok(())
}
