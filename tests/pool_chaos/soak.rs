//! The chaos soak, shared by `tests/pool_chaos.rs` and `examples/pool_chaos.rs`: small calls
//! (`apply`s and small `map`s) at a steady pace while a side task SIGKILLs a random worker
//! at a fixed period, then the figures that say whether every fault cost exactly the call it
//! hit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, worker};

/// A small task: a couple of milliseconds, so that workers often hold calls not started yet
/// when they are killed, and a value that proves it ran on its input.
#[worker]
fn chaos_task(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x * 2 + 1
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Soak {
    pub processes: usize,
    /// How long calls are submitted (and workers killed).
    pub duration: Duration,
    /// Tasks (items) submitted over `duration`, at an even pace.
    pub tasks: u64,
    pub kill_every: Duration,
    /// Callers submitting at once.
    pub callers: usize,
}

/// What happened. Each operation (one `apply`, one `map` of [`MAP_ITEMS`]) counts once.
#[derive(Debug, Default)]
pub struct Figures {
    pub tasks: u64,
    pub operations: u64,
    pub ok: u64,
    pub worker_died: u64,
    /// The most operations that failed with the death of one worker (by its pid).
    pub most_failed_by_one_death: u64,
    pub closed: u64,
    /// Errors of any other kind, and results that were not the task's.
    pub wrong: u64,
    pub kills: u64,
    /// Operations still waiting 10 s after the load stopped.
    pub unresolved: u64,
    pub final_size: usize,
    /// Children of this process still alive 5 s after the pool was dropped.
    pub children_left: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "tasks submitted       {}", self.tasks)?;
        writeln!(
            f,
            "operations resolved   {} in {:.1?}",
            self.operations, self.elapsed
        )?;
        writeln!(f, "  ok                  {}", self.ok)?;
        writeln!(f, "  WorkerDied          {}", self.worker_died)?;
        writeln!(f, "    most by one death {}", self.most_failed_by_one_death)?;
        writeln!(f, "  Closed              {}", self.closed)?;
        writeln!(f, "  other / wrong value {}", self.wrong)?;
        writeln!(f, "workers SIGKILLed     {}", self.kills)?;
        writeln!(f, "unresolved after 10 s {}", self.unresolved)?;
        writeln!(f, "pool size at the end  {}", self.final_size)?;
        write!(f, "children after drop   {}", self.children_left)
    }
}

/// Items of each `map` (one operation in ten), in chunks of [`MAP_CHUNK`].
const MAP_ITEMS: u64 = 20;
const MAP_CHUNK: usize = 2;

#[derive(Default)]
struct Counters {
    tasks: AtomicU64,
    ok: AtomicU64,
    worker_died: AtomicU64,
    died_by_pid: Mutex<HashMap<u32, u64>>,
    closed: AtomicU64,
    wrong: AtomicU64,
    kills: AtomicU64,
    in_flight: AtomicU64,
}

/// Runs the soak on a new pool and returns its figures.
pub async fn run(soak: Soak) -> Figures {
    let pool = Pool::builder()
        .processes(soak.processes)
        .build()
        .await
        .expect("the pool starts");
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let end = started + soak.duration;
    let pace = soak.duration / u32::try_from(soak.tasks).expect("a task count under 2^32");
    let mut callers: Vec<_> = (0..soak.callers)
        .map(|caller| {
            let pool = pool.clone();
            let counters = counters.clone();
            tokio::spawn(call_until(
                pool,
                counters,
                caller as u64,
                started,
                end,
                soak,
                pace,
            ))
        })
        .collect();
    let killer = tokio::spawn(kill_until(
        pool.clone(),
        counters.clone(),
        end,
        soak.kill_every,
    ));
    let _ = killer.await;
    let all_done = futures::future::join_all(callers.iter_mut());
    let _ = tokio::time::timeout(Duration::from_secs(10), all_done).await;
    let unresolved = counters.in_flight.load(Ordering::SeqCst);
    // Callers still waiting hold the pool: they go, so that dropping it stops the workers.
    for caller in &callers {
        caller.abort();
    }
    let elapsed = started.elapsed();
    let final_size = settled_size(&pool).await;
    drop(pool);
    let children_left = children_after_drop().await;
    Figures {
        tasks: counters.tasks.load(Ordering::SeqCst),
        operations: counters.ok.load(Ordering::SeqCst)
            + counters.worker_died.load(Ordering::SeqCst)
            + counters.closed.load(Ordering::SeqCst)
            + counters.wrong.load(Ordering::SeqCst),
        ok: counters.ok.load(Ordering::SeqCst),
        worker_died: counters.worker_died.load(Ordering::SeqCst),
        most_failed_by_one_death: counters
            .died_by_pid
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0),
        closed: counters.closed.load(Ordering::SeqCst),
        wrong: counters.wrong.load(Ordering::SeqCst),
        kills: counters.kills.load(Ordering::SeqCst),
        unresolved,
        final_size,
        children_left,
        elapsed,
    }
}

/// Submits operations at the soak's pace until `end`: task `n` starts no earlier than
/// `started + n × pace`.
async fn call_until(
    pool: Pool,
    counters: Arc<Counters>,
    caller: u64,
    started: Instant,
    end: Instant,
    soak: Soak,
    pace: Duration,
) {
    for round in 0.. {
        let items = if (caller + round).is_multiple_of(10) {
            MAP_ITEMS
        } else {
            1
        };
        let first = counters.tasks.fetch_add(items, Ordering::SeqCst);
        if first + items > soak.tasks || Instant::now() >= end {
            counters.tasks.fetch_sub(items, Ordering::SeqCst);
            return;
        }
        tokio::time::sleep_until((started + pace * first as u32).into()).await;
        counters.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = if items == 1 {
            pool.apply(chaos_task, (first,))
                .await
                .map(|value| vec![value])
        } else {
            pool.map(chaos_task, first..first + items)
                .chunksize(MAP_CHUNK)
                .await
        };
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        let counter = match outcome {
            Ok(values)
                if values
                    .iter()
                    .copied()
                    .eq((first..first + items).map(|x| x * 2 + 1)) =>
            {
                &counters.ok
            }
            Err(error) if error.kind() == ErrorKind::WorkerDied => {
                let pid = error.pid().unwrap_or(0);
                *counters.died_by_pid.lock().unwrap().entry(pid).or_default() += 1;
                &counters.worker_died
            }
            Err(error) if error.kind() == ErrorKind::Closed => &counters.closed,
            _ => &counters.wrong,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// SIGKILLs a random worker every `period` until `end`.
async fn kill_until(pool: Pool, counters: Arc<Counters>, end: Instant, period: Duration) {
    let mut random = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    while Instant::now() < end {
        ticks.tick().await;
        let pids = pool.pids();
        if pids.is_empty() {
            continue;
        }
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let pid = pids[(random % pids.len() as u64) as usize];
        // SAFETY: kill has no memory preconditions; the pid is a live worker of ours.
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
            counters.kills.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The pool's size once its replacements have started (waiting at most 5 s).
async fn settled_size(pool: &Pool) -> usize {
    let waited = Instant::now();
    while pool.pids().len() != pool.processes() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.pids().len()
}

/// The children of this process still alive, waiting at most 5 s for them to go.
async fn children_after_drop() -> usize {
    let waited = Instant::now();
    loop {
        let children = children();
        if children == 0 || waited.elapsed() > Duration::from_secs(5) {
            return children;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes whose parent is this one, from `/proc`.
fn children() -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // The fields after the command name, which may hold spaces: state, ppid, ...
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(1) == Some(me.as_str())
        })
        .count()
}
