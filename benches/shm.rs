//! Locks, events and queues whose state is in shared memory, against Python's
//! `multiprocessing` (fork context) measured in the same run: the goals of issue 14.
//!
//! Run with `cargo bench --bench shm`. Figures go in `benches/RESULTS-shm.md`.
//!
//! Every figure is the median of several runs; a figure measured in a child is timed by the
//! child (starting it is not counted), in Python as here.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, SinkExt};
use multiproc::{Event, Lock, Process, Queue, worker};

/// Operations per timed run of the single-process figures, as in issue 14.
const OPS: u64 = 20_000;
/// Timed runs per figure; the median is reported.
const RUNS: usize = 5;
/// Sequential puts per run: one round trip each, so fewer than `OPS`.
const PUTS: u64 = 10_000;
/// Items per run of the queue throughput figure.
const ITEMS: u64 = 100_000;
/// Acquire, increment, release per process in the contended hand-off.
const HANDOFFS: u64 = 500_000;
/// Round trips per run of the strict hand-off, where every acquire waits for the other side.
const PING_PONGS: u64 = 2_000;

/// `RUNS` rates of `OPS` acquire + release of `lock`, in this process.
async fn lock_rates(lock: &Lock) -> Vec<f64> {
    drop(lock.acquire().await.unwrap()); // map the cell before timing
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..OPS {
            drop(lock.acquire().await.unwrap());
        }
        rates.push(OPS as f64 / started.elapsed().as_secs_f64());
    }
    rates
}

#[worker]
async fn lock_in_child(lock: Lock) -> Vec<f64> {
    lock_rates(&lock).await
}

#[worker]
async fn is_set_in_child(event: Event) -> Vec<f64> {
    event.is_set().await.unwrap();
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..OPS {
            std::hint::black_box(event.is_set().await.unwrap());
        }
        rates.push(OPS as f64 / started.elapsed().as_secs_f64());
    }
    rates
}

/// Puts `PUTS` items one by one, each awaited; returns puts per second, timed here.
#[worker]
async fn put_one_by_one(queue: Queue<u64>) -> f64 {
    queue.put(u64::MAX).await.unwrap(); // connect before timing
    let started = Instant::now();
    for n in 0..PUTS {
        queue.put(n).await.unwrap();
    }
    PUTS as f64 / started.elapsed().as_secs_f64()
}

#[worker]
async fn feed(mut queue: Queue<u64>) {
    let mut items = futures::stream::iter((0..ITEMS).map(Ok));
    queue.send_all(&mut items).await.unwrap();
}

/// A `u64` counter in a file mapped by every process that opens it: the plain shared memory
/// a user has without `Value`, and what Python's `RawValue` is.
struct SharedCounter {
    file: std::fs::File,
    word: *mut AtomicU64,
}

impl SharedCounter {
    fn open(path: &str) -> Self {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        file.set_len(8).unwrap();
        // SAFETY: a fresh shared mapping of an 8-byte file, unmapped on drop; only reached
        // through `AtomicU64`.
        let word = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(word, libc::MAP_FAILED);
        SharedCounter {
            file,
            word: word.cast(),
        }
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: mapped for as long as `self` lives.
        unsafe { &*self.word }
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, no longer borrowed.
        unsafe { libc::munmap(self.word.cast(), 8) };
        let _ = &self.file;
    }
}

/// Waits for `go`, then `HANDOFFS` times: takes `lock`, adds one to the counter with a plain
/// load and store (so a lost update would show a broken lock), and releases.
#[worker]
async fn increment_under_lock(lock: Lock, path: String, ready: Queue<()>, go: Event) {
    let counter = SharedCounter::open(&path);
    drop(lock.acquire().await.unwrap());
    ready.put(()).await.unwrap();
    go.wait().await.unwrap();
    for _ in 0..HANDOFFS {
        let _guard = lock.acquire().await.unwrap();
        let word = counter.word();
        word.store(word.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// The child's side of the strict hand-off: takes `ping` once the parent releases it, then
/// releases `pong`, which the parent waits for; once untimed, then `PING_PONGS` times.
#[worker]
async fn pong_side(ping: Lock, pong: Lock) {
    for _ in 0..=PING_PONGS {
        ping.acquire().await.unwrap().forget();
        pong.release().await.unwrap();
    }
}

/// Pairs per second of the two atomic operations any lock in shared memory needs, a
/// compare-and-swap to take a word and one to give it back, with nothing around them: the
/// floor under the `Lock` figures on this machine, measured as they are.
fn atomic_floor() -> f64 {
    let word = AtomicU64::new(0);
    let word = std::hint::black_box(&word);
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..OPS {
            let taken = word.compare_exchange(0, 4, Ordering::Acquire, Ordering::Relaxed);
            std::hint::black_box(taken).unwrap();
            let given = word.compare_exchange(4, 0, Ordering::Release, Ordering::Relaxed);
            std::hint::black_box(given).unwrap();
        }
        rates.push(OPS as f64 / started.elapsed().as_secs_f64());
    }
    median(rates)
}

/// Acquire + release per second in the creating process.
async fn lock_here() -> f64 {
    median(lock_rates(&Lock::new()).await)
}

/// Acquire + release per second in a child, of a lock the parent created.
async fn lock_from_child() -> f64 {
    let p = Process::new(lock_in_child, (Lock::new(),))
        .start()
        .await
        .unwrap();
    median(p.join().await.unwrap())
}

async fn is_set_from_child() -> f64 {
    let p = Process::new(is_set_in_child, (Event::new(),))
        .start()
        .await
        .unwrap();
    median(p.join().await.unwrap())
}

/// Sequential puts per second in a child while this process drains the queue.
async fn sequential_put() -> f64 {
    let mut rates = Vec::with_capacity(3);
    for _ in 0..3 {
        let queue = Queue::new();
        let p = Process::new(put_one_by_one, (queue.clone(),))
            .start()
            .await
            .unwrap();
        for _ in 0..=PUTS {
            queue.get().await.unwrap();
        }
        rates.push(p.join().await.unwrap());
    }
    median(rates)
}

/// Items per second from a child's `send_all` to this process's `get`, start included.
async fn queue_throughput() -> f64 {
    let mut rates = Vec::with_capacity(3);
    for _ in 0..3 {
        let queue = Queue::new();
        let started = Instant::now();
        let p = Process::new(feed, (queue.clone(),)).start().await.unwrap();
        for _ in 0..ITEMS {
            queue.get().await.unwrap();
        }
        rates.push(ITEMS as f64 / started.elapsed().as_secs_f64());
        p.join().await.unwrap();
    }
    median(rates)
}

/// Lock hand-offs per second between 2 children incrementing one counter, from the moment
/// both are ready to both having exited; panics unless the total is exact.
async fn handoff() -> f64 {
    let dir = std::env::temp_dir().join(format!("multiproc-shm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("counter").display().to_string();
    let mut rates = Vec::with_capacity(3);
    for _ in 0..3 {
        let _ = std::fs::remove_file(&path);
        let counter = SharedCounter::open(&path);
        let (lock, ready, go) = (Lock::new(), Queue::new(), Event::new());
        let mut children = Vec::new();
        for _ in 0..2 {
            let args = (lock.clone(), path.clone(), ready.clone(), go.clone());
            children.push(
                Process::new(increment_under_lock, args)
                    .start()
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..2 {
            ready.get().await.unwrap();
        }
        let started = Instant::now();
        go.set().await.unwrap();
        for p in children {
            p.join().await.unwrap();
        }
        rates.push((2 * HANDOFFS) as f64 / started.elapsed().as_secs_f64());
        assert_eq!(counter.word().load(Ordering::SeqCst), 2 * HANDOFFS);
    }
    let _ = std::fs::remove_dir_all(&dir);
    median(rates)
}

/// Round trips per second of two locks passed between this process and a child: each side
/// releases a lock the other waits for, so every acquire parks and is woken (no spin wins).
async fn ping_pong() -> f64 {
    let mut rates = Vec::with_capacity(3);
    for _ in 0..3 {
        let (ping, pong) = (Lock::new(), Lock::new());
        ping.acquire().await.unwrap().forget();
        pong.acquire().await.unwrap().forget();
        let p = Process::new(pong_side, (ping.clone(), pong.clone()))
            .start()
            .await
            .unwrap();
        let mut started = Instant::now();
        for round in 0..=PING_PONGS {
            if round == 1 {
                started = Instant::now();
            }
            ping.release().await.unwrap();
            pong.acquire().await.unwrap().forget();
        }
        rates.push(PING_PONGS as f64 / started.elapsed().as_secs_f64());
        p.join().await.unwrap();
    }
    median(rates)
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(|a, b| a.partial_cmp(b).unwrap());
    figures[figures.len() / 2]
}

// Python ---------------------------------------------------------------------------------

/// Python's figures, each printed by one script as the median of its runs.
const PY_LOCK_HERE: &str = r#"
import multiprocessing as mp, time
if __name__ == '__main__':
    l = mp.get_context('fork').Lock(); n = 20000; runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): l.acquire(); l.release()
        runs.append(n / (time.perf_counter() - t))
    print(sorted(runs)[2])
"#;

const PY_LOCK_CHILD: &str = r#"
import multiprocessing as mp, time
def loop(l, out):
    l.acquire(); l.release(); n = 20000; runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): l.acquire(); l.release()
        runs.append(n / (time.perf_counter() - t))
    out.put(sorted(runs)[2])
if __name__ == '__main__':
    ctx = mp.get_context('fork'); out = ctx.Queue()
    p = ctx.Process(target=loop, args=(ctx.Lock(), out)); p.start()
    print(out.get()); p.join()
"#;

const PY_IS_SET_CHILD: &str = r#"
import multiprocessing as mp, time
def loop(e, out):
    e.is_set(); n = 20000; runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): e.is_set()
        runs.append(n / (time.perf_counter() - t))
    out.put(sorted(runs)[2])
if __name__ == '__main__':
    ctx = mp.get_context('fork'); out = ctx.Queue()
    p = ctx.Process(target=loop, args=(ctx.Event(), out)); p.start()
    print(out.get()); p.join()
"#;

const PY_SEQUENTIAL_PUT: &str = r#"
import multiprocessing as mp, time
def feed(q, n, out):
    q.put(-1)
    t = time.perf_counter()
    for i in range(n): q.put(i)
    out.put(n / (time.perf_counter() - t))
if __name__ == '__main__':
    ctx = mp.get_context('fork'); n = 10000; runs = []
    for _ in range(3):
        q = ctx.Queue(); out = ctx.Queue()
        p = ctx.Process(target=feed, args=(q, n, out)); p.start()
        for _ in range(n + 1): q.get()
        runs.append(out.get()); p.join()
    print(sorted(runs)[1])
"#;

const PY_QUEUE_THROUGHPUT: &str = r#"
import multiprocessing as mp, time
def feed(q, n):
    for i in range(n): q.put(i)
if __name__ == '__main__':
    ctx = mp.get_context('fork'); n = 100000; runs = []
    for _ in range(3):
        q = ctx.Queue()
        t = time.perf_counter(); p = ctx.Process(target=feed, args=(q, n)); p.start()
        for _ in range(n): q.get()
        runs.append(n / (time.perf_counter() - t)); p.join()
    print(sorted(runs)[1])
"#;

const PY_HANDOFF: &str = r#"
import multiprocessing as mp, time
def work(l, v, ready, go, n):
    l.acquire(); l.release(); ready.release(); go.wait()
    for _ in range(n):
        l.acquire(); v.value += 1; l.release()
if __name__ == '__main__':
    ctx = mp.get_context('fork'); n = 500000; runs = []
    for _ in range(3):
        l = ctx.Lock(); v = ctx.RawValue('Q', 0); ready = ctx.Semaphore(0); go = ctx.Event()
        ps = [ctx.Process(target=work, args=(l, v, ready, go, n)) for _ in range(2)]
        for p in ps: p.start()
        for p in ps: ready.acquire()
        t = time.perf_counter(); go.set()
        for p in ps: p.join()
        runs.append(2 * n / (time.perf_counter() - t))
        assert v.value == 2 * n
    print(sorted(runs)[1])
"#;

const PY_PING_PONG: &str = r#"
import multiprocessing as mp, time
def pong_side(ping, pong, n):
    for _ in range(n + 1): ping.acquire(); pong.release()
if __name__ == '__main__':
    ctx = mp.get_context('fork'); n = 2000; runs = []
    for _ in range(3):
        ping = ctx.Lock(); pong = ctx.Lock(); ping.acquire(); pong.acquire()
        p = ctx.Process(target=pong_side, args=(ping, pong, n)); p.start()
        ping.release(); pong.acquire()
        t = time.perf_counter()
        for _ in range(n): ping.release(); pong.acquire()
        runs.append(n / (time.perf_counter() - t)); p.join()
    print(sorted(runs)[1])
"#;

// Report ---------------------------------------------------------------------------------

struct Row {
    name: String,
    ours: f64,
    python: Option<f64>,
    /// The ratio to Python that issue 14 asks for, if it sets one.
    goal: Option<f64>,
}

fn print_table(rows: &[Row], floor: f64) {
    println!();
    println!("| operation | multiproc | Python (fork) | ratio | goal |");
    println!("|---|---|---|---|---|");
    for row in rows {
        let (python, ratio) = match row.python {
            Some(python) => (rate(python), Some(row.ours / python)),
            None => ("skipped (no python3)".into(), None),
        };
        let goal = match (row.goal, ratio) {
            (None, _) => "none set".into(),
            (Some(goal), None) => format!(">= {goal}x"),
            (Some(goal), Some(ratio)) => {
                let verdict = if ratio >= goal { "met" } else { "missed" };
                format!(">= {goal}x: {verdict}")
            }
        };
        let ratio = ratio.map_or("-".into(), |ratio| format!("**{ratio:.2}x**"));
        println!(
            "| {} | {} | {python} | {ratio} | {goal} |",
            row.name,
            rate(row.ours)
        );
    }
    println!();
    println!("Medians of several runs; a ratio above 1 means multiproc is faster than Python.");
    println!(
        "Floor of a lock here: a compare-and-swap to take a word and one to give it back, {} \
         ({:.1} ns); a `Lock` in the creating process runs at {:.2}x of it.",
        rate(floor),
        1e9 / floor,
        rows[0].ours / floor
    );
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else {
        format!("{:.1} k/s", per_second / 1e3)
    }
}

fn main() {
    multiproc::init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let limit = Duration::from_secs(60);
    let ours = runtime.block_on(async {
        let _warm_up = tokio::time::timeout(limit, lock_from_child()).await;
        let mut figures = vec![atomic_floor(), lock_here().await];
        for figure in [
            lock_from_child().boxed_local(),
            is_set_from_child().boxed_local(),
            handoff().boxed_local(),
            ping_pong().boxed_local(),
            sequential_put().boxed_local(),
            queue_throughput().boxed_local(),
        ] {
            figures.push(tokio::time::timeout(limit, figure).await.unwrap());
        }
        figures
    });
    let rows = [
        (
            format!("`Lock` acquire + release, {OPS} times in the creating process"),
            Some(10.0),
            PY_LOCK_HERE,
        ),
        (
            format!("`Lock` acquire + release, {OPS} times in a child (lock made by the parent)"),
            Some(10.0),
            PY_LOCK_CHILD,
        ),
        (
            format!("`Event::is_set`, {OPS} times in a child"),
            Some(10.0),
            PY_IS_SET_CHILD,
        ),
        (
            format!(
                "2 processes passing a `Lock` back and forth: acquire, increment a shared u64, release, {HANDOFFS} times each (total checked)"
            ),
            Some(1.0),
            PY_HANDOFF,
        ),
        (
            format!(
                "strict hand-off: 2 locks passed between parent and child, every acquire waits for the other side ({PING_PONGS} round trips)"
            ),
            None,
            PY_PING_PONG,
        ),
        (
            format!(
                "sequential `Queue::put` of a u64 from a child, {PUTS} times, the parent draining"
            ),
            Some(5.0),
            PY_SEQUENTIAL_PUT,
        ),
        (
            format!("`Queue` throughput child to parent, {ITEMS} u64 (child: `send_all`)"),
            Some(20.0),
            PY_QUEUE_THROUGHPUT,
        ),
    ];
    let floor = ours[0];
    let rows: Vec<Row> = rows
        .into_iter()
        .zip(ours.into_iter().skip(1))
        .map(|((name, goal, script), ours)| Row {
            name,
            ours,
            python: common::python_figure(script),
            goal,
        })
        .collect();
    print_table(&rows, floor);
}
