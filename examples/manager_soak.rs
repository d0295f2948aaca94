//! A manager that outlives its objects: 4 processes create and drop 1,000,000 dicts, lists,
//! namespaces and values in a manager served over TCP, and the manager's memory stays flat,
//! because each object is freed once its last proxy is dropped.
//!
//! Prints the resident memory of the manager's process (`VmRSS` in `/proc/<pid>/status`)
//! before, at its highest during, and after the churn, and the manager's stats at the end.
//!
//! ```sh
//! cargo run --release --example manager_soak            # 1,000,000 objects
//! cargo run --release --example manager_soak -- 100000  # fewer
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::{Event, Manager, Process, Queue, worker};

const KEY: &[u8] = b"soak";
const PROCESSES: u64 = 4;
/// Tasks per process, each creating and dropping objects one after the other.
const TASKS: u64 = 16;

/// Serves a manager on a free port of 127.0.0.1 until `stop` is set.
#[worker]
async fn serve_manager(port: Queue<u16>, stop: Event) -> multiproc::Result<()> {
    let manager = Manager::serve("127.0.0.1:0".parse().expect("an address"), KEY).await?;
    let addr = manager
        .local_addr()
        .expect("a served manager has an address");
    port.put(addr.port()).await?;
    stop.wait().await?;
    manager.shutdown().await
}

/// Creates `objects` objects in the manager at `addr`, uses each once and drops it.
#[worker]
async fn churn(addr: SocketAddr, objects: u64) -> multiproc::Result<u64> {
    let manager = Arc::new(Manager::connect(addr, KEY).await?);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let manager = manager.clone();
        tasks.push(tokio::spawn(async move {
            for n in (task..objects).step_by(TASKS as usize) {
                match n % 4 {
                    0 => {
                        manager.dict::<u64, u64>().await?.insert(n, n).await?;
                    }
                    1 => {
                        manager.list::<u64>().await?.push(n).await?;
                    }
                    2 => {
                        manager.namespace().await?.set("n", n).await?;
                    }
                    _ => {
                        manager.value(n).await?.get().await?;
                    }
                }
            }
            Ok::<(), multiproc::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("a churning task panicked")?;
    }
    Ok(objects)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let objects: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of objects"))
        .unwrap_or(1_000_000);
    let port = Queue::new();
    let stop = Event::new();
    let server = Process::new(serve_manager, (port.clone(), stop.clone()))
        .start()
        .await?;
    let addr: SocketAddr = ([127, 0, 0, 1], port.get().await?).into();
    let watcher = Manager::connect(addr, KEY).await?;
    let pid = server.pid();
    let before = rss_kib(pid);
    println!(
        "manager pid {pid} at {addr}: {:.1} MiB resident before",
        mib(before)
    );

    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..PROCESSES {
        clients.push(
            Process::new(churn, (addr, objects / PROCESSES))
                .start()
                .await?,
        );
    }
    let mut peak = before;
    let mut done = 0;
    for client in &clients {
        loop {
            peak = peak.max(rss_kib(pid));
            if let Some(count) = client.join_timeout(Duration::from_secs(1)).await? {
                done += count?;
                break;
            }
            let stats = watcher.stats().await?;
            println!(
                "  {:>5.0} s: {} created, {} alive, {:.1} MiB resident",
                started.elapsed().as_secs_f64(),
                stats.created,
                stats.objects(),
                mib(rss_kib(pid))
            );
        }
    }
    let elapsed = started.elapsed();
    // Releases travel without an answer: wait for the last ones to be applied.
    let mut stats = watcher.stats().await?;
    while stats.objects() > 0 && started.elapsed() < elapsed + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = watcher.stats().await?;
    }
    let after = rss_kib(pid);
    println!(
        "{done} objects created and dropped by {PROCESSES} processes in {:.1} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    println!(
        "manager resident memory: {:.1} MiB before, {:.1} MiB at most, {:.1} MiB after ({:+.1} MiB)",
        mib(before),
        mib(peak),
        mib(after),
        mib(after) - mib(before)
    );
    println!("{stats:?}");
    stop.set().await?;
    server.join().await??;
    Ok(())
}
