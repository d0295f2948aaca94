//! Manager dict throughput from a child process, with anchors measured in the same run:
//! Python's `Manager().dict()` and a raw Unix-socket ping-pong.
//!
//! Run with `cargo bench --bench manager`. Figures go in `benches/RESULTS-manager.md`.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use multiproc::{DictProxy, Manager, Process, worker};

const INSERTS: u64 = 10_000;
/// Requests in flight at once in the pipelined variant.
const IN_FLIGHT: usize = 64;

/// Sequential inserts, each awaited before the next; returns inserts per second, timed in
/// the child so that starting it is not counted (as in the Python anchor).
#[worker]
async fn sequential(d: DictProxy<u64, u64>, count: u64) -> f64 {
    d.insert(u64::MAX, 0).await.unwrap(); // connect before timing
    let started = Instant::now();
    for n in 0..count {
        d.insert(n, n).await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The same inserts with `IN_FLIGHT` requests outstanding, over the one connection.
#[worker]
async fn pipelined(d: DictProxy<u64, u64>, count: u64) -> f64 {
    d.insert(u64::MAX, 0).await.unwrap();
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|n| {
            let d = &d;
            async move { d.insert(n, n).await.unwrap() }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|_| async {})
        .await;
    count as f64 / started.elapsed().as_secs_f64()
}

/// 16-byte requests answered by 16-byte replies over a Unix socket, one at a time.
#[worker]
fn raw_ping(path: String, count: u64) -> f64 {
    let mut socket = std::os::unix::net::UnixStream::connect(path).unwrap();
    let mut message = [0u8; 16];
    let started = Instant::now();
    for n in 0..count {
        message[..8].copy_from_slice(&n.to_le_bytes());
        socket.write_all(&message).unwrap();
        socket.read_exact(&mut message).unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn dict_rate(pipeline: bool) -> f64 {
    let manager = Manager::start().await.unwrap();
    let d = manager.dict::<u64, u64>().await.unwrap();
    let rate = if pipeline {
        Process::new(pipelined, (d.clone(), INSERTS))
            .start()
            .await
            .unwrap()
            .join()
            .await
    } else {
        Process::new(sequential, (d.clone(), INSERTS))
            .start()
            .await
            .unwrap()
            .join()
            .await
    }
    .unwrap();
    assert_eq!(d.len().await.unwrap() as u64, INSERTS + 1);
    manager.shutdown().await.unwrap();
    rate
}

async fn raw_rate() -> f64 {
    let path = std::env::temp_dir().join(format!("multiproc-mbench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let p = Process::new(raw_ping, (path.display().to_string(), INSERTS))
        .start()
        .await
        .unwrap();
    // The echo side runs on its own thread: the parent's runtime keeps supervising the child.
    let echo = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut message = [0u8; 16];
        for _ in 0..INSERTS {
            socket.read_exact(&mut message).unwrap();
            socket.write_all(&message).unwrap();
        }
    });
    let rate = p.join().await.unwrap();
    echo.join().unwrap();
    let _ = std::fs::remove_file(&path);
    rate
}

const PY_DICT: &str = r#"
import multiprocessing as mp, time
def fill(d, n, out):
    d[-1] = 0
    t = time.perf_counter()
    for i in range(n): d[i] = i
    out.put(n / (time.perf_counter() - t))
if __name__ == '__main__':
    with mp.Manager() as m:
        d = m.dict(); out = mp.Queue()
        p = mp.Process(target=fill, args=(d, 10000, out)); p.start()
        r = out.get(); p.join(); print(r)
"#;

fn main() {
    multiproc::init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let limit = Duration::from_secs(120);
        let _warm_up = tokio::time::timeout(limit, dict_rate(false)).await;
        let sequential = tokio::time::timeout(limit, dict_rate(false)).await.unwrap();
        let pipelined = tokio::time::timeout(limit, dict_rate(true)).await.unwrap();
        let raw = tokio::time::timeout(limit, raw_rate()).await.unwrap();
        let py = common::python_figure(PY_DICT);
        println!(
            "{INSERTS} sequential dict inserts from a child: {sequential:.0}/s ({:.1} us each)",
            1e6 / sequential
        );
        match py {
            Some(py) => println!(
                "  Python Manager().dict(): {py:.0}/s -> {:.2}x Python",
                sequential / py
            ),
            None => println!("  Python Manager().dict(): skipped (python3 not found)"),
        }
        println!(
            "  raw Unix-socket ping-pong: {raw:.0}/s ({:.1} us each) -> a manager insert costs {:.2}x a raw round trip",
            1e6 / raw,
            raw / sequential
        );
        println!(
            "{INSERTS} pipelined dict inserts ({IN_FLIGHT} in flight): {pipelined:.0}/s -> {:.2}x sequential{}",
            pipelined / sequential,
            py.map(|py| format!(", {:.2}x Python", pipelined / py)).unwrap_or_default()
        );
    });
}
