//! Queue and Lock throughput across processes, with anchors measured in the same run.
//!
//! Run with `cargo bench --bench queue`.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures::SinkExt;
use multiproc::{JoinableQueue, Lock, Process, Queue, worker};

const ITEMS: u64 = 100_000;

#[worker]
async fn feed(mut queue: Queue<u64>, count: u64) {
    let mut items = futures::stream::iter((0..count).map(Ok));
    queue.send_all(&mut items).await.unwrap();
}

#[worker]
async fn feed_joinable(mut queue: JoinableQueue<u64>, count: u64) {
    let mut items = futures::stream::iter((0..count).map(Ok));
    queue.send_all(&mut items).await.unwrap();
}

#[worker]
async fn feed_one_by_one(queue: Queue<u64>, count: u64) {
    for n in 0..count {
        queue.put(n).await.unwrap();
    }
}

#[worker]
fn raw_writer(path: String, count: u64) {
    let mut socket = std::os::unix::net::UnixStream::connect(path).unwrap();
    for n in 0..count {
        let mut message = [0u8; 16];
        message[..8].copy_from_slice(&n.to_le_bytes());
        socket.write_all(&message).unwrap();
    }
}

/// `Queue::len` asks the queue's hub (an `Event` is in shared memory: no round trip).
#[worker]
async fn ask_repeatedly(queue: Queue<u64>, count: u64) -> f64 {
    queue.len().await.unwrap(); // connect first
    let started = Instant::now();
    for _ in 0..count {
        queue.len().await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The first call to the parent's hub (connect, handshake, call) and a later one, in ns.
#[worker]
async fn first_and_later_call(queue: Queue<u64>) -> (u64, u64) {
    let started = Instant::now();
    queue.len().await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    queue.len().await.unwrap();
    (first.as_nanos() as u64, started.elapsed().as_nanos() as u64)
}

#[worker]
fn raw_echo(path: String, count: u64) {
    let mut socket = std::os::unix::net::UnixStream::connect(path).unwrap();
    let mut message = [0u8; 16];
    for _ in 0..count {
        socket.read_exact(&mut message).unwrap();
        socket.write_all(&message).unwrap();
    }
}

#[worker]
async fn lock_loop(lock: Lock, rounds: u64) {
    for _ in 0..rounds {
        drop(lock.acquire().await.unwrap());
    }
}

/// What connecting to a hub costs a child: the median of its first call minus a later one.
async fn connect_cost() -> Duration {
    const CHILDREN: usize = 40;
    let queue = Queue::<u64>::new();
    let mut costs = Vec::with_capacity(CHILDREN);
    for _ in 0..CHILDREN {
        let p = Process::new(first_and_later_call, (queue.clone(),))
            .start()
            .await
            .unwrap();
        let (first, later) = p.join().await.unwrap();
        costs.push(Duration::from_nanos(first.saturating_sub(later)));
    }
    costs.sort();
    costs[CHILDREN / 2]
}

async fn queue_rate() -> f64 {
    let queue = Queue::new();
    let started = Instant::now();
    let p = Process::new(feed, (queue.clone(), ITEMS))
        .start()
        .await
        .unwrap();
    for _ in 0..ITEMS {
        queue.get().await.unwrap();
    }
    let rate = ITEMS as f64 / started.elapsed().as_secs_f64();
    p.join().await.unwrap();
    rate
}

async fn sequential_rate() -> f64 {
    const COUNT: u64 = 10_000;
    let queue = Queue::new();
    let started = Instant::now();
    let p = Process::new(feed_one_by_one, (queue.clone(), COUNT))
        .start()
        .await
        .unwrap();
    for _ in 0..COUNT {
        queue.get().await.unwrap();
    }
    let rate = COUNT as f64 / started.elapsed().as_secs_f64();
    p.join().await.unwrap();
    rate
}

async fn local_rate() -> f64 {
    let queue = Queue::new();
    let started = Instant::now();
    for n in 0..ITEMS {
        queue.put(n).await.unwrap();
        queue.get().await.unwrap();
    }
    ITEMS as f64 / started.elapsed().as_secs_f64()
}

async fn joinable_rate() -> f64 {
    let queue = JoinableQueue::new();
    let started = Instant::now();
    let p = Process::new(feed_joinable, (queue.clone(), ITEMS))
        .start()
        .await
        .unwrap();
    for _ in 0..ITEMS {
        queue.get().await.unwrap();
        queue.task_done().await.unwrap();
    }
    queue.join().await.unwrap();
    let rate = ITEMS as f64 / started.elapsed().as_secs_f64();
    p.join().await.unwrap();
    rate
}

async fn raw_rate() -> f64 {
    let path = std::env::temp_dir().join(format!("multiproc-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let started = Instant::now();
    let p = Process::new(raw_writer, (path.display().to_string(), ITEMS))
        .start()
        .await
        .unwrap();
    let (mut socket, _) = listener.accept().unwrap();
    let mut message = [0u8; 16];
    for _ in 0..ITEMS {
        socket.read_exact(&mut message).unwrap();
    }
    let rate = ITEMS as f64 / started.elapsed().as_secs_f64();
    p.join().await.unwrap();
    let _ = std::fs::remove_file(&path);
    rate
}

/// Round trips per second of a 16-byte ping-pong over a Unix socket between two processes.
async fn raw_round_trip_rate() -> f64 {
    const COUNT: u64 = 10_000;
    let path = std::env::temp_dir().join(format!("multiproc-bench-rt-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let p = Process::new(raw_echo, (path.display().to_string(), COUNT))
        .start()
        .await
        .unwrap();
    let (mut socket, _) = listener.accept().unwrap();
    let mut message = [0u8; 16];
    let started = Instant::now();
    for _ in 0..COUNT {
        socket.write_all(&message).unwrap();
        socket.read_exact(&mut message).unwrap();
    }
    let rate = COUNT as f64 / started.elapsed().as_secs_f64();
    p.join().await.unwrap();
    let _ = std::fs::remove_file(&path);
    rate
}

/// Round trips per second of one request at a time from a child to an idle hub.
async fn hub_round_trip_rate() -> f64 {
    let p = Process::new(ask_repeatedly, (Queue::<u64>::new(), 10_000))
        .start()
        .await
        .unwrap();
    p.join().await.unwrap()
}

async fn lock_rate() -> f64 {
    const ROUNDS: u64 = 5_000;
    let lock = Lock::new();
    let started = Instant::now();
    let a = Process::new(lock_loop, (lock.clone(), ROUNDS))
        .start()
        .await
        .unwrap();
    let b = Process::new(lock_loop, (lock.clone(), ROUNDS))
        .start()
        .await
        .unwrap();
    a.join().await.unwrap();
    b.join().await.unwrap();
    (2 * ROUNDS) as f64 / started.elapsed().as_secs_f64()
}

const PY_QUEUE: &str = r#"
import multiprocessing as mp, time
def feed(q, n):
    for i in range(n): q.put(i)
if __name__ == '__main__':
    q = mp.Queue(); n = 100000
    t = time.perf_counter(); p = mp.Process(target=feed, args=(q, n)); p.start()
    for _ in range(n): q.get()
    r = n / (time.perf_counter() - t); p.join(); print(r)
"#;

const PY_JOINABLE: &str = r#"
import multiprocessing as mp, time
def feed(q, n):
    for i in range(n): q.put(i)
if __name__ == '__main__':
    q = mp.JoinableQueue(); n = 100000
    t = time.perf_counter(); p = mp.Process(target=feed, args=(q, n)); p.start()
    for _ in range(n): q.get(); q.task_done()
    q.join(); r = n / (time.perf_counter() - t); p.join(); print(r)
"#;

const PY_LOCK: &str = r#"
import multiprocessing as mp, time
def loop(l, n):
    for _ in range(n):
        l.acquire(); l.release()
if __name__ == '__main__':
    l = mp.Lock(); n = 5000
    t = time.perf_counter()
    ps = [mp.Process(target=loop, args=(l, n)) for _ in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
    print(2 * n / (time.perf_counter() - t))
"#;

fn ratio(ours: f64, anchor: Option<f64>, name: &str) -> String {
    match anchor {
        Some(anchor) => format!("{:.2}x {name} ({:.0}/s)", ours / anchor, anchor),
        None => format!("{name}: skipped (python3 not found)"),
    }
}

fn main() {
    multiproc::init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let _warm_up = tokio::time::timeout(Duration::from_secs(30), queue_rate()).await;
        let raw = raw_rate().await;
        let queue = queue_rate().await;
        let joinable = joinable_rate().await;
        let lock = lock_rate().await;
        let sequential = sequential_rate().await;
        let raw_round_trips = raw_round_trip_rate().await;
        let hub_round_trips = hub_round_trip_rate().await;
        let local = local_rate().await;
        let connect = connect_cost().await;
        let py_queue = common::python_figure(PY_QUEUE);
        let py_joinable = common::python_figure(PY_JOINABLE);
        let py_lock = common::python_figure(PY_LOCK);
        println!("raw 16-byte messages over a Unix socket: {raw:.0}/s");
        println!(
            "Queue, {ITEMS} items child -> parent: {queue:.0} items/s; {}; {:.2}x raw",
            ratio(queue, py_queue, "Python mp.Queue"),
            queue / raw
        );
        println!(
            "JoinableQueue, {ITEMS} items + task_done: {joinable:.0} items/s; {}",
            ratio(joinable, py_joinable, "Python mp.JoinableQueue")
        );
        println!(
            "Queue, sequential put().await from a child (through the shared-memory ring): {sequential:.0} items/s; {}",
            ratio(sequential, py_queue, "Python mp.Queue")
        );
        println!(
            "  raw 16-byte ping-pong over a Unix socket: {raw_round_trips:.0}/s ({:.1} us); sequential put is {:.2}x of it",
            1e6 / raw_round_trips,
            sequential / raw_round_trips
        );
        println!(
            "Hub round trip from a child to an idle hub (Queue::len): {hub_round_trips:.0}/s ({:.1} us); {:.2}x the raw ping-pong's time",
            1e6 / hub_round_trips,
            raw_round_trips / hub_round_trips
        );
        println!(
            "Connecting a child to a hub (its first call minus a later one, median): {:.1} us",
            connect.as_secs_f64() * 1e6
        );
        println!("Queue, put + get in the creating process (no socket): {local:.0} pairs/s");
        println!(
            "Lock acquire/release from 2 processes: {lock:.0}/s; {}",
            ratio(lock, py_lock, "Python mp.Lock")
        );
    });
}
