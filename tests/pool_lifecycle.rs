//! Pool lifecycle: sizes, names, initializer, max_tasks_per_child, close/join, terminate,
//! drop. Every test checks that no worker is left running.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, worker};

multiproc::test_support!();

mod common;
use common::within;

static LEVEL: AtomicU64 = AtomicU64::new(0);

#[worker]
fn set_level(level: u64) {
    LEVEL.store(level, Ordering::SeqCst);
}

#[worker]
fn level_and_pid() -> (u64, u32) {
    (LEVEL.load(Ordering::SeqCst), std::process::id())
}

#[worker]
fn my_name(_x: u64) -> String {
    multiproc::current_process().name
}

#[worker]
fn pid_of(_x: u64) -> u32 {
    std::process::id()
}

#[worker]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker]
fn die() {
    std::process::exit(3);
}

fn alive(pid: u32) -> bool {
    // A reaped child has no /proc entry (its pid is not reused this quickly).
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn invalid_sizes_are_clear_errors() {
    let error = Pool::builder().processes(0).build().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let error = Pool::builder()
        .processes(1)
        .max_tasks_per_child(0)
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}

#[tokio::test]
async fn workers_are_named_pool_worker_n() {
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let names = within(pool.map(my_name, 0..8u64).chunksize(1))
        .await
        .unwrap();
    for name in &names {
        assert!(name.starts_with("PoolWorker-"), "{name}");
    }
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn the_default_size_is_cpu_count() {
    let pool = within(Pool::new()).await.unwrap();
    assert_eq!(pool.processes(), multiproc::cpu_count());
    assert_eq!(pool.pids().len(), multiproc::cpu_count());
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn the_initializer_runs_in_every_worker_replacements_included() {
    let pool = within(
        Pool::builder()
            .processes(2)
            .initializer(set_level, (42,))
            .build(),
    )
    .await
    .unwrap();
    let first = within(pool.apply(level_and_pid, ())).await.unwrap();
    assert_eq!(first.0, 42);
    // Kill a worker: its replacement must be initialized too.
    let error = within(pool.apply(die, ())).await.unwrap_err();
    assert!(error.is_worker_died(), "{error}");
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let (level, pid) = within(pool.apply(level_and_pid, ())).await.unwrap();
        assert_eq!(level, 42, "worker {pid} was not initialized");
        seen.insert(pid);
    }
    assert!(!seen.contains(&error.pid().unwrap()));
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn max_tasks_per_child_counts_items() {
    let pool = within(Pool::builder().processes(2).max_tasks_per_child(2).build())
        .await
        .unwrap();
    // Ten sequential applies, two per worker: five workers.
    let mut pids = HashSet::new();
    for x in 0..10u64 {
        pids.insert(within(pool.apply(pid_of, (x,))).await.unwrap());
    }
    assert_eq!(pids.len(), 5, "{pids:?}");
    // Ten items in chunks of one, and in the default chunks of two: five workers each time.
    let by_item: HashSet<u32> = within(pool.map(pid_of, 0..10u64).chunksize(1))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(by_item.len(), 5, "{by_item:?}");
    let by_chunk: HashSet<u32> = within(pool.map(pid_of, 0..10u64))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(by_chunk.len(), 5, "{by_chunk:?}");
    assert_eq!(pool.processes(), 2);
    within(pool.terminate()).await.unwrap();
    for pid in pids.iter().chain(&by_item).chain(&by_chunk) {
        assert!(!alive(*pid), "worker {pid} outlived the pool");
    }
}

#[tokio::test]
async fn join_needs_close_and_waits_for_submitted_work() {
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let pids = pool.pids();
    let error = within(pool.join()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidState, "{error}");
    let pending: Vec<_> = (0..6).map(|_| pool.apply_async(sleep_ms, (50,))).collect();
    pool.close();
    let error = within(pool.apply(sleep_ms, (1,))).await.unwrap_err();
    assert!(error.is_closed(), "{error}");
    within(pool.join()).await.unwrap();
    for handle in pending {
        assert_eq!(within(handle).await.unwrap(), 50);
    }
    for pid in pids {
        assert!(!alive(pid), "worker {pid} is still running after join");
    }
    within(pool.join()).await.unwrap();
}

#[tokio::test]
async fn terminate_cancels_pending_calls_and_stops_every_worker() {
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let pids = pool.pids();
    let pending: Vec<_> = (0..12)
        .map(|_| pool.apply_async(sleep_ms, (10_000,)))
        .collect();
    let started = Instant::now();
    let terminating = tokio::spawn({
        let pool = pool.clone();
        async move { pool.terminate().await }
    });
    for handle in pending {
        let error = within(handle).await.unwrap_err();
        assert!(error.is_cancelled(), "{error}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    within(terminating).await.unwrap().unwrap();
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived terminate");
    }
    let error = within(pool.apply(sleep_ms, (1,))).await.unwrap_err();
    assert!(error.is_closed(), "{error}");
    within(pool.join()).await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_workers() {
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let pids = pool.pids();
    let clone = pool.clone();
    drop(pool);
    assert_eq!(within(clone.apply(sleep_ms, (1,))).await.unwrap(), 1);
    drop(clone);
    for pid in pids {
        let started = Instant::now();
        while alive(pid) {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "worker {pid} outlived its pool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
