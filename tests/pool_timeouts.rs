//! Deadlines and cancelling: a task past its deadline fails with `Timeout` and its worker is
//! replaced; a cancelled call is withdrawn if it has not started, stopped if it has. Nothing
//! else is affected either way.

use std::time::{Duration, Instant};

use futures::StreamExt;
use multiproc::{ErrorKind, Pool, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker]
async fn sleep_ms_async(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// Sleeps `ms`, then leaves a mark, `<path>-<value>`: a call whose running can be seen
/// afterwards.
#[worker]
fn mark(path: String, value: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(format!("{path}-{value}"), b"").unwrap();
    value
}

/// A path of this test's own for [`mark`]s.
fn scratch(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("multiproc-{name}-{}", std::process::id()));
    path.to_string_lossy().into_owned()
}

/// Whether `mark(path, value, _)` ran; removes its mark.
fn marked(path: &str, value: u64) -> bool {
    std::fs::remove_file(format!("{path}-{value}")).is_ok()
}

async fn pool(processes: usize) -> Pool {
    within(Pool::builder().processes(processes).build())
        .await
        .unwrap()
}

/// Waits (at most 5 s) until the pool serves with its full size again, without `gone`.
async fn replaced(pool: &Pool, gone: u32) {
    let started = Instant::now();
    while pool.pids().len() != pool.processes() || pool.pids().contains(&gone) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{gone} was not replaced: {:?}",
            pool.pids()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_call_past_its_deadline_times_out_and_only_its_worker_is_replaced() {
    let pool = pool(1).await;
    let victim = pool.pids()[0];
    let started = Instant::now();
    let hung = pool
        .apply(sleep_ms, (60_000,))
        .timeout(Duration::from_millis(300))
        .submit();
    // Held by the same worker, behind the hung call: they run on its replacement.
    let behind: Vec<_> = (0..3u64).map(|x| pool.apply_async(square, (x,))).collect();
    let error = within(hung).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.to_string().contains("sleep_ms"), "{error}");
    assert_eq!(error.pid(), Some(victim));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    for (x, handle) in behind.into_iter().enumerate() {
        assert_eq!(within(handle).await.unwrap(), (x * x) as u64);
    }
    replaced(&pool, victim).await;
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_deadline_counts_from_the_start_not_from_the_queue() {
    let pool = pool(1).await;
    // All four are sent at once; the last waits 600 ms behind the others, but runs for
    // 200 ms only.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            pool.apply(sleep_ms, (200,))
                .timeout(Duration::from_millis(500))
                .submit()
        })
        .collect();
    for call in calls {
        assert_eq!(within(call).await.unwrap(), 200);
    }
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn an_async_worker_past_its_deadline_times_out() {
    let pool = pool(1).await;
    let error = within(
        pool.apply(sleep_ms_async, (60_000,))
            .timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.to_string().contains("sleep_ms_async"), "{error}");
    assert_eq!(within(pool.apply(square, (4,))).await.unwrap(), 16);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_map_chunk_past_its_deadline_fails_its_items_only() {
    let pool = pool(2).await;
    let inputs = vec![10, 10, 10, 60_000, 10, 10, 10, 10];
    let error = within(
        pool.map(sleep_ms, inputs.clone())
            .chunksize(1)
            .timeout_per_task(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    // With chunks of two, the chunk may run two deadlines: only it fails.
    let outcomes: Vec<_> = within(
        pool.imap(sleep_ms, inputs.clone())
            .chunksize(2)
            .timeout_per_task(Duration::from_millis(500))
            .collect(),
    )
    .await;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(ms) => assert_eq!(ms, inputs[index]),
            Err(error) => assert!(
                (2..4).contains(&index) && error.kind() == ErrorKind::Timeout,
                "{index}: {error}"
            ),
        }
    }
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn the_pool_default_deadline_applies_and_a_call_may_override_it() {
    let pool = within(
        Pool::builder()
            .processes(1)
            .task_timeout(Duration::from_millis(300))
            .build(),
    )
    .await
    .unwrap();
    let error = within(pool.apply(sleep_ms, (60_000,))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let longer = pool.apply(sleep_ms, (600,)).timeout(Duration::from_secs(5));
    assert_eq!(within(longer).await.unwrap(), 600);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_running_call_stops_it_and_replaces_its_worker() {
    let pool = pool(1).await;
    let victim = pool.pids()[0];
    let mut running = pool.apply_async(sleep_ms, (60_000,));
    let behind = pool.apply_async(square, (7,));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    running.cancel();
    let error = within(running).await.unwrap_err();
    assert!(error.is_cancelled(), "{error}");
    assert_eq!(within(behind).await.unwrap(), 49);
    assert!(started.elapsed() < Duration::from_secs(2));
    replaced(&pool, victim).await;
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_call_not_started_withdraws_it_and_kills_nothing() {
    let pool = pool(1).await;
    let worker_pid = pool.pids()[0];
    let path = scratch("cancel");
    let busy = pool.apply_async(sleep_ms, (500,));
    // Sent to the worker's window, behind the busy call: not started yet.
    let mut held = pool.apply_async(mark, (path.clone(), 1, 0));
    let kept = pool.apply_async(mark, (path.clone(), 2, 0));
    // Queued in the pool (the window holds four calls).
    let fillers: Vec<_> = (0..4).map(|_| pool.apply_async(sleep_ms, (1,))).collect();
    let mut queued = pool.apply_async(mark, (path.clone(), 3, 0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.cancel();
    queued.cancel();
    assert!(within(held).await.unwrap_err().is_cancelled());
    assert!(within(queued).await.unwrap_err().is_cancelled());
    assert_eq!(within(busy).await.unwrap(), 500);
    assert_eq!(within(kept).await.unwrap(), 2);
    for filler in fillers {
        within(filler).await.unwrap();
    }
    assert!(marked(&path, 2));
    assert!(
        !marked(&path, 1) && !marked(&path, 3),
        "a withdrawn call must not run"
    );
    assert_eq!(pool.pids(), [worker_pid], "no worker was killed");
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn dropping_a_handle_withdraws_a_call_not_started_and_never_stops_one_running() {
    let pool = pool(1).await;
    let worker_pid = pool.pids()[0];
    let path = scratch("drop");
    let running = pool.apply_async(mark, (path.clone(), 1, 400));
    let held = pool.apply_async(mark, (path.clone(), 2, 0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(running);
    drop(held);
    // Runs after both on the one worker.
    assert_eq!(within(pool.apply(square, (3,))).await.unwrap(), 9);
    assert!(marked(&path, 1), "a running call finishes");
    assert!(!marked(&path, 2), "a call not started is withdrawn");
    assert_eq!(pool.pids(), [worker_pid], "no worker was killed");
    within(pool.terminate()).await.unwrap();
}
