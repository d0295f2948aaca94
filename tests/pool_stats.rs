//! `Pool::stats`: the counts and workers a service exports as the pool's health, after real
//! work, a crash, and while a long call runs.

use std::time::{Duration, Instant};

use multiproc::{Pool, PoolStats, worker};

multiproc::test_support!();

mod common;
use common::{LIMIT, within};

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn unlucky_seven(x: u64) -> u64 {
    assert_ne!(x, 7, "seven is unlucky");
    x
}

#[worker]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

async fn pool(processes: usize) -> Pool {
    within(Pool::builder().processes(processes).build())
        .await
        .unwrap()
}

/// The pool's stats once `done` holds of them, failing the test after [`LIMIT`].
async fn stats_once(pool: &Pool, done: impl Fn(&PoolStats) -> bool) -> PoolStats {
    let started = Instant::now();
    loop {
        let stats = pool.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the stats never settled: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_map_counts_its_tasks_and_a_failed_item_alone() {
    let pool = pool(2).await;
    let fresh = pool.stats();
    assert_eq!((fresh.queued, fresh.running, fresh.completed), (0, 0, 0));
    assert_eq!(fresh.workers.len(), 2);

    let squares = within(pool.map(square, 0..100u64).chunksize(10))
        .await
        .unwrap();
    assert_eq!(squares.len(), 100);
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    assert_eq!((stats.completed, stats.failed, stats.restarts), (100, 0, 0));
    let mut pids: Vec<u32> = stats.workers.iter().map(|worker| worker.pid).collect();
    pids.sort_unstable();
    let mut expected = pool.pids();
    expected.sort_unstable();
    assert_eq!(pids, expected);
    assert!(
        stats.workers.iter().all(|worker| worker.running.is_none()),
        "{stats:?}"
    );

    // One chunk of ten, one item of which panics: one task failed, nine completed.
    let error = within(pool.map(unlucky_seven, 0..10u64).chunksize(10))
        .await
        .unwrap_err();
    assert!(error.is_panic(), "{error}");
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed), (109, 1), "{stats:?}");
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_crash_counts_as_a_failed_task_and_a_restart() {
    let pool = pool(1).await;
    let dead = pool.pids()[0];
    let error = within(pool.apply(exit_with, (3,))).await.unwrap_err();
    assert!(error.is_worker_died(), "{error}");
    let stats = stats_once(&pool, |stats| {
        stats.restarts == 1 && stats.workers.len() == 1 && stats.workers[0].pid != dead
    })
    .await;
    assert_eq!((stats.completed, stats.failed), (0, 1), "{stats:?}");
    within(pool.apply(square, (3,))).await.unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.completed, stats.failed, stats.restarts),
        (1, 1, 1),
        "{stats:?}"
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_long_call_shows_with_its_function_while_it_runs() {
    let pool = pool(2).await;
    let mut long = pool.apply_async(sleep_ms, (60_000,));
    let stats = stats_once(&pool, |stats| {
        stats.workers.iter().any(|worker| worker.running.is_some())
    })
    .await;
    assert_eq!((stats.queued, stats.running), (0, 1), "{stats:?}");
    let busy: Vec<_> = stats
        .workers
        .iter()
        .filter_map(|worker| Some((worker.pid, worker.running.as_ref()?)))
        .collect();
    assert_eq!(busy.len(), 1, "{stats:?}");
    let (pid, call) = busy[0];
    assert_eq!(call.function, "pool_stats::sleep_ms");
    assert!(pool.pids().contains(&pid));

    // Stopping it kills its worker: a failed task and a restart.
    long.cancel();
    assert!(within(long).await.unwrap_err().is_cancelled());
    let stats = stats_once(&pool, |stats| stats.restarts == 1 && stats.running == 0).await;
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert!(
        stats.workers.iter().all(|worker| worker.pid != pid),
        "{stats:?}"
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn calls_beyond_what_the_workers_hold_count_as_queued() {
    let pool = pool(1).await;
    let pending: Vec<_> = (0..40)
        .map(|_| pool.apply_async(sleep_ms, (60_000,)))
        .collect();
    let stats = stats_once(&pool, |stats| stats.workers[0].running.is_some()).await;
    assert_eq!(stats.queued + stats.running, 40, "{stats:?}");
    assert!(stats.queued > 0 && stats.running > 0, "{stats:?}");
    within(pool.terminate()).await.unwrap();
    for call in pending {
        assert!(within(call).await.unwrap_err().is_cancelled());
    }
}
