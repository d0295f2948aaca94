//! Pool benchmarks, each beside its anchors measured in the same run: Python's
//! `multiprocessing.Pool` (through `python3`, skipped with a note when absent), procspawn's
//! pool, and a raw Unix-socket exchange between two processes.
//!
//! ```text
//! cargo bench --bench pool
//! ```
//!
//! Prints a markdown table: each figure, its anchors, the ratio, and the goal from issue 4.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use multiproc::{Pool, worker};
use serde_bytes::ByteBuf;

const RAW_CHILD_ENV: &str = "MULTIPROC_BENCH_RAW_CHILD";
const MIB: usize = 1 << 20;

#[worker]
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[worker]
fn buf_len(buf: ByteBuf) -> u64 {
    buf.len() as u64
}

#[worker]
fn spin_ms(ms: u64) -> u64 {
    // Busy, not asleep: the point is CPU-bound work.
    let started = Instant::now();
    let mut x = 0u64;
    while started.elapsed() < Duration::from_millis(ms) {
        for i in 0..1_000 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
    }
    x
}

#[worker]
fn my_pid() -> u32 {
    std::process::id()
}

fn main() {
    if let Ok(path) = std::env::var(RAW_CHILD_ENV) {
        raw_echo_child(&path);
        return;
    }
    // multiproc first: in its own children it never returns; in procspawn's children it
    // returns at once and procspawn takes over.
    multiproc::init();
    procspawn::init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let rows = runtime.block_on(run());
    print_table(&rows);
}

struct Row {
    name: &'static str,
    unit: &'static str,
    ours: f64,
    /// (anchor name, figure)
    anchors: Vec<(&'static str, Option<f64>)>,
    /// Goal text and the ratio it is about: ours / anchor (or anchor / ours for times).
    goal: &'static str,
    higher_is_better: bool,
}

async fn run() -> Vec<Row> {
    eprintln!("running Python's anchors ...");
    let python = python_figures();
    if python.is_none() {
        eprintln!("note: python3 not found or failed; Python anchors skipped");
    }
    let py = |key: &str| python.as_ref().and_then(|p| p.get(key).copied());
    let mut rows = Vec::new();

    eprintln!("multiproc: start ...");
    let mut starts = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let pool = Pool::builder().processes(2).build().await.unwrap();
        pool.apply(square, (3,)).await.unwrap();
        starts.push(started.elapsed().as_secs_f64() * 1e3);
        pool.terminate().await.unwrap();
    }

    let pool = Pool::builder().processes(2).build().await.unwrap();
    pool.map(square, 0..100_000u64).await.unwrap();

    eprintln!("multiproc: throughput ...");
    let throughput = median((0..5).map(|_| {
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            pool.map(square, 0..100_000u64).await.unwrap();
            100_000.0 / started.elapsed().as_secs_f64()
        }
    }))
    .await;
    rows.push(Row {
        name: "small-task throughput: map(square), 100,000 u64, 2 workers",
        unit: "items/s",
        ours: throughput,
        anchors: vec![("Python", py("throughput"))],
        goal: ">= 5x Python",
        higher_is_better: true,
    });

    eprintln!("multiproc: per-task overhead ...");
    let per_task = median((0..3).map(|_| {
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            pool.map(square, 0..20_000u64).chunksize(1).await.unwrap();
            20_000.0 / started.elapsed().as_secs_f64()
        }
    }))
    .await;
    rows.push(Row {
        name: "per-task overhead: map(square) chunksize 1, 20,000 items",
        unit: "items/s",
        ours: per_task,
        anchors: vec![("Python", py("per_task")), ("procspawn", None)],
        goal: ">= 5x Python",
        higher_is_better: true,
    });

    eprintln!("multiproc: latency ...");
    for x in 0..200u64 {
        pool.apply(square, (x,)).await.unwrap();
    }
    let started = Instant::now();
    for x in 0..2_000u64 {
        pool.apply(square, (x,)).await.unwrap();
    }
    let latency = started.elapsed().as_secs_f64() * 1e6 / 2_000.0;
    let raw = RawPeer::start();
    let raw_latency = raw.ping_pong_us(2_000, 48);
    rows.push(Row {
        name: "round trip: 2,000 sequential apply(square)",
        unit: "us",
        ours: latency,
        anchors: vec![
            ("Python", py("latency_us")),
            ("procspawn", None),
            ("raw socket", Some(raw_latency)),
        ],
        goal: "<= 2.5x raw socket",
        higher_is_better: false,
    });

    eprintln!("multiproc: payload ...");
    // One untimed round first: the allocator's first megabyte buffers in each process cost
    // page faults (about 650 MB/s cold); later rounds measure the steady state.
    let warm_up: Vec<ByteBuf> = (0..64).map(|_| ByteBuf::from(vec![7u8; MIB])).collect();
    pool.map(buf_len, warm_up).chunksize(1).await.unwrap();
    let payload = median((0..3).map(|_| {
        let pool = pool.clone();
        async move {
            let buffers: Vec<ByteBuf> = (0..64).map(|_| ByteBuf::from(vec![7u8; MIB])).collect();
            let started = Instant::now();
            let lens = pool.map(buf_len, buffers).chunksize(1).await.unwrap();
            assert!(lens.iter().all(|&len| len == MIB as u64));
            64.0 * MIB as f64 / started.elapsed().as_secs_f64() / 1e6
        }
    }))
    .await;
    let raw_payload = raw.payload_mbs(64, MIB);
    rows.push(Row {
        name: "payload: 64 x 1 MiB byte buffers as arguments",
        unit: "MB/s",
        ours: payload,
        anchors: vec![
            ("Python", py("payload_mbs")),
            ("procspawn", None),
            ("raw socket", Some(raw_payload)),
        ],
        goal: ">= 0.5x raw socket",
        higher_is_better: true,
    });
    drop(raw);

    rows.push(Row {
        name: "pool start: 2 workers to first result",
        unit: "ms",
        ours: median_of(starts),
        anchors: vec![
            ("Python fork", py("start_fork_ms")),
            ("Python spawn", py("start_spawn_ms")),
            ("procspawn", None),
        ],
        goal: "<= procspawn",
        higher_is_better: false,
    });

    eprintln!("multiproc: idle worker memory ...");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = vm_rss_mib(pool.pids()[0]);
    rows.push(Row {
        name: "resident memory of an idle worker",
        unit: "MiB",
        ours: rss,
        anchors: vec![("Python", py("rss_mib")), ("procspawn", None)],
        goal: "<= 4 MiB",
        higher_is_better: false,
    });

    eprintln!("multiproc: parent memory over a 10^7-item imap ...");
    let (growth, imap_rate) = imap_memory(&pool).await;
    eprintln!("  ({:.1} M items/s)", imap_rate / 1e6);
    rows.push(Row {
        name: "parent memory growth over imap(square) of 10^7 lazy u64",
        unit: "MiB",
        ours: growth,
        // No anchor: Python's imap reads its whole input ahead, and collecting the results
        // alone would take 76 MiB.
        anchors: Vec::new(),
        goal: "flat: <= 16 MiB",
        higher_is_better: false,
    });
    pool.terminate().await.unwrap();

    eprintln!("multiproc: CPU-bound scaling ...");
    let mut seconds = Vec::new();
    for processes in [1, 2] {
        let pool = Pool::builder().processes(processes).build().await.unwrap();
        let started = Instant::now();
        pool.map(spin_ms, vec![50u64; 40]).await.unwrap();
        seconds.push(started.elapsed().as_secs_f64());
        pool.terminate().await.unwrap();
    }
    rows.push(Row {
        name: "CPU-bound scaling: 40 x 50 ms, 2 workers vs 1",
        unit: "x speedup",
        ours: seconds[0] / seconds[1],
        anchors: vec![("ideal", Some(2.0))],
        goal: ">= 1.9",
        higher_is_better: true,
    });

    // procspawn last: its pools leave threads behind that would disturb the figures above.
    eprintln!("procspawn ...");
    type Measure = fn() -> f64;
    let procspawn: [(&str, Measure); 5] = [
        ("per-task", procspawn_per_task),
        ("round trip", procspawn_latency_us),
        ("payload", procspawn_payload_mbs),
        ("pool start", procspawn_start_ms),
        ("resident", procspawn_rss_mib),
    ];
    for (prefix, measure) in procspawn {
        let figure = measure();
        for row in rows.iter_mut().filter(|row| row.name.starts_with(prefix)) {
            for anchor in row.anchors.iter_mut().filter(|a| a.0 == "procspawn") {
                anchor.1 = Some(figure);
            }
        }
    }
    rows
}

async fn median<F: std::future::Future<Output = f64>>(runs: impl Iterator<Item = F>) -> f64 {
    let mut figures = Vec::new();
    for run in runs {
        figures.push(run.await);
    }
    median_of(figures)
}

fn median_of(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(|a, b| a.partial_cmp(b).unwrap());
    figures[figures.len() / 2]
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| benchmark | multiproc | anchors | ratio | goal |");
    println!("|---|---|---|---|---|");
    for row in rows {
        let anchors: Vec<String> = row
            .anchors
            .iter()
            .map(|(name, figure)| match figure {
                Some(figure) => format!("{name} {}", fmt(*figure)),
                None => format!("{name}: skipped"),
            })
            .collect();
        let ratios: Vec<String> = row
            .anchors
            .iter()
            .filter_map(|(name, figure)| {
                let figure = (*figure)?;
                let ratio = if row.higher_is_better {
                    row.ours / figure
                } else {
                    figure / row.ours
                };
                Some(format!("{ratio:.2}x {name}"))
            })
            .collect();
        println!(
            "| {} | {} {} | {} | {} | {} |",
            row.name,
            fmt(row.ours),
            row.unit,
            anchors.join("; "),
            ratios.join("; "),
            row.goal
        );
    }
    println!();
    println!(
        "Ratios are \"times better\": above 1 means multiproc is faster (or smaller) than the anchor."
    );
}

fn fmt(figure: f64) -> String {
    if figure >= 100.0 {
        format!("{figure:.0}")
    } else {
        format!("{figure:.2}")
    }
}

const ITEMS_10M: u64 = 10_000_000;

/// The parent's peak resident growth while an `imap` streams 10^7 lazily produced items
/// (results summed, not kept), and the items per second.
async fn imap_memory(pool: &Pool) -> (f64, f64) {
    use futures::StreamExt;
    let me = std::process::id();
    let before = vm_rss_mib(me);
    let peak = std::sync::Arc::new(std::sync::Mutex::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = vm_rss_mib(me);
                {
                    let mut peak = peak.lock().unwrap();
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let mut results = pool.imap(square, 0..ITEMS_10M);
    let mut sum = 0u64;
    while let Some(result) = results.next().await {
        sum = sum.wrapping_add(result.unwrap());
    }
    let rate = ITEMS_10M as f64 / started.elapsed().as_secs_f64();
    assert_ne!(sum, 0);
    sampling.abort();
    let peak = *peak.lock().unwrap();
    ((peak - before).max(0.0), rate)
}

fn vm_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

// procspawn ----------------------------------------------------------------------------------

fn procspawn_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn procspawn_len(buf: ByteBuf) -> u64 {
    buf.len() as u64
}

fn procspawn_pid(_: ()) -> u32 {
    std::process::id()
}

fn procspawn_start_ms() -> f64 {
    let mut figures = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let pool = procspawn::Pool::new(2).unwrap();
        pool.spawn(3u64, procspawn_square).join().unwrap();
        figures.push(started.elapsed().as_secs_f64() * 1e3);
        pool.kill();
    }
    median_of(figures)
}

fn procspawn_per_task() -> f64 {
    let pool = procspawn::Pool::new(2).unwrap();
    pool.spawn(1u64, procspawn_square).join().unwrap();
    let started = Instant::now();
    // In waves: each pending procspawn job holds its own IPC channels (file descriptors).
    for wave in 0..(20_000u64 / 250) {
        let handles: Vec<_> = (wave * 250..(wave + 1) * 250)
            .map(|x| pool.spawn(x, procspawn_square))
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }
    let figure = 20_000.0 / started.elapsed().as_secs_f64();
    pool.kill();
    figure
}

fn procspawn_latency_us() -> f64 {
    let pool = procspawn::Pool::new(2).unwrap();
    for x in 0..200u64 {
        pool.spawn(x, procspawn_square).join().unwrap();
    }
    let started = Instant::now();
    for x in 0..2_000u64 {
        pool.spawn(x, procspawn_square).join().unwrap();
    }
    let figure = started.elapsed().as_secs_f64() * 1e6 / 2_000.0;
    pool.kill();
    figure
}

fn procspawn_payload_mbs() -> f64 {
    let pool = procspawn::Pool::new(2).unwrap();
    pool.spawn(ByteBuf::from(vec![1u8; 16]), procspawn_len)
        .join()
        .unwrap();
    let buffers: Vec<ByteBuf> = (0..64).map(|_| ByteBuf::from(vec![7u8; MIB])).collect();
    let started = Instant::now();
    // Two at a time: procspawn blocks when more large arguments are queued than it has workers
    // and nobody joins.
    let mut buffers = buffers.into_iter();
    loop {
        let handles: Vec<_> = buffers
            .by_ref()
            .take(2)
            .map(|buf| pool.spawn(buf, procspawn_len))
            .collect();
        if handles.is_empty() {
            break;
        }
        for handle in handles {
            assert_eq!(handle.join().unwrap(), MIB as u64);
        }
    }
    let figure = 64.0 * MIB as f64 / started.elapsed().as_secs_f64() / 1e6;
    pool.kill();
    figure
}

fn procspawn_rss_mib() -> f64 {
    let pool = procspawn::Pool::new(1).unwrap();
    let pid = pool.spawn((), procspawn_pid).join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let figure = vm_rss_mib(pid);
    pool.kill();
    figure
}

// A raw Unix socket between two processes --------------------------------------------------

/// Another process of this binary answering length-prefixed messages over a Unix socket:
/// the floor under any IPC round trip or transfer.
struct RawPeer {
    stream: UnixStream,
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl RawPeer {
    fn start() -> Self {
        let path =
            std::env::temp_dir().join(format!("multiproc-bench-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(RAW_CHILD_ENV, &path)
            .spawn()
            .unwrap();
        let (stream, _) = listener.accept().unwrap();
        RawPeer {
            stream,
            child,
            path,
        }
    }

    /// Mean round trip of `bytes`-byte messages echoed back.
    fn ping_pong_us(&self, rounds: usize, bytes: usize) -> f64 {
        let mut me = self.try_clone();
        let message = vec![3u8; bytes];
        let mut answer = Vec::new();
        for _ in 0..200 {
            me.exchange(&message, &mut answer);
        }
        let started = Instant::now();
        for _ in 0..rounds {
            me.exchange(&message, &mut answer);
        }
        started.elapsed().as_secs_f64() * 1e6 / rounds as f64
    }

    /// Throughput of `count` messages of `bytes` bytes, each answered with a short reply.
    fn payload_mbs(&self, count: usize, bytes: usize) -> f64 {
        let mut me = self.try_clone();
        let message = vec![7u8; bytes];
        let mut answer = Vec::new();
        me.exchange(&message, &mut answer);
        let started = Instant::now();
        for _ in 0..count {
            me.exchange(&message, &mut answer);
        }
        (count * bytes) as f64 / started.elapsed().as_secs_f64() / 1e6
    }

    fn try_clone(&self) -> RawPeerRef {
        RawPeerRef {
            stream: self.stream.try_clone().unwrap(),
        }
    }
}

struct RawPeerRef {
    stream: UnixStream,
}

impl RawPeerRef {
    fn exchange(&mut self, message: &[u8], answer: &mut Vec<u8>) {
        RawPeer::exchange_on(&mut self.stream, message, answer)
    }
}

impl RawPeer {
    fn exchange_on(stream: &mut UnixStream, message: &[u8], answer: &mut Vec<u8>) {
        let mut frame = Vec::with_capacity(4 + message.len());
        frame.extend_from_slice(&(message.len() as u32).to_le_bytes());
        frame.extend_from_slice(message);
        stream.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        answer.resize(u32::from_le_bytes(len) as usize, 0);
        stream.read_exact(answer).unwrap();
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The raw peer: echoes messages of up to 64 bytes, answers longer ones with their length.
fn raw_echo_child(path: &str) {
    let mut stream = UnixStream::connect(path).unwrap();
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        body.resize(u32::from_le_bytes(len) as usize, 0);
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let answer: &[u8] = if body.len() <= 64 { &body } else { &body[..8] };
        let mut frame = Vec::with_capacity(4 + answer.len());
        frame.extend_from_slice(&(answer.len() as u32).to_le_bytes());
        frame.extend_from_slice(answer);
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

// Python -------------------------------------------------------------------------------------

const PYTHON_SCRIPT: &str = r#"
import json, os, sys, time
from multiprocessing import Pool, get_context

def square(x): return x * x
def blen(b): return len(b)
def getpid(): return os.getpid()

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

def median(xs):
    xs = sorted(xs); return xs[len(xs) // 2]

if __name__ == "__main__":
    out = {}
    starts = []
    for _ in range(3):
        t = time.perf_counter(); p = Pool(2); p.apply(square, (1,))
        starts.append((time.perf_counter() - t) * 1e3); p.terminate(); p.join()
    out["start_fork_ms"] = median(starts)
    p = Pool(2)
    p.map(square, range(100000))
    runs = []
    for _ in range(5):
        t = time.perf_counter(); p.map(square, range(100000)); runs.append(100000 / (time.perf_counter() - t))
    out["throughput"] = median(runs)
    runs = []
    for _ in range(3):
        t = time.perf_counter(); p.map(square, range(20000), chunksize=1); runs.append(20000 / (time.perf_counter() - t))
    out["per_task"] = median(runs)
    for i in range(200): p.apply(square, (i,))
    t = time.perf_counter()
    for i in range(2000): p.apply(square, (i,))
    out["latency_us"] = (time.perf_counter() - t) / 2000 * 1e6
    runs = []
    for _ in range(3):
        bufs = [bytes([7]) * (1 << 20) for _ in range(64)]
        t = time.perf_counter(); p.map(blen, bufs, chunksize=1); runs.append(64 * (1 << 20) / (time.perf_counter() - t) / 1e6)
    out["payload_mbs"] = median(runs)
    pid = p.apply(getpid); time.sleep(0.2); out["rss_mib"] = rss(pid)
    p.terminate(); p.join()
    ctx = get_context("spawn")
    t = time.perf_counter(); q = ctx.Pool(2); q.apply(square, (1,))
    out["start_spawn_ms"] = (time.perf_counter() - t) * 1e3
    q.terminate(); q.join()
    print(json.dumps(out))
"#;

/// Python's figures by key, or `None` without a working `python3`.
fn python_figures() -> Option<std::collections::HashMap<String, f64>> {
    let script = std::env::temp_dir().join(format!("multiproc-bench-{}.py", std::process::id()));
    std::fs::write(&script, PYTHON_SCRIPT).ok()?;
    let output = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .ok();
    let _ = std::fs::remove_file(&script);
    let output = output?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    // The output is one flat JSON object of numbers: {"key": 1.5, ...}.
    let text = String::from_utf8_lossy(&output.stdout);
    let text = text.trim().trim_start_matches('{').trim_end_matches('}');
    Some(
        text.split(',')
            .filter_map(|pair| {
                let (key, value) = pair.split_once(':')?;
                Some((
                    key.trim().trim_matches('"').to_string(),
                    value.trim().parse().ok()?,
                ))
            })
            .collect(),
    )
}
