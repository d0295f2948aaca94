//! Pool: the result handles, `AsyncResult` (apply_async) and `MapResult` (map_async,
//! starmap_async): Python's ready / successful / wait / get(timeout), and handles that
//! borrow nothing.

use std::time::Duration;

use multiproc::{MapResult, Pool, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn sleep_then(ms: u64, value: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    value
}

#[worker]
fn fail_on_three(x: u64) -> u64 {
    assert_ne!(x, 3, "three is refused");
    x
}

#[worker]
fn record_slowly(path: String, value: u64) -> u64 {
    use std::io::Write;
    std::thread::sleep(Duration::from_millis(100));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(file, "{value}").unwrap();
    value
}

async fn pool(processes: usize) -> Pool {
    within(Pool::builder().processes(processes).build())
        .await
        .unwrap()
}

#[tokio::test]
async fn wait_and_successful_leave_the_result_in_the_handle() {
    let pool = pool(1).await;
    let mut handle = pool.apply_async(sleep_then, (300, 7));
    assert_eq!(handle.successful(), None, "not ready: no answer yet");
    assert!(!handle.wait_timeout(Duration::from_millis(20)).await);
    assert!(!handle.ready());
    assert!(handle.wait_timeout(common::LIMIT).await);
    assert!(handle.ready());
    assert_eq!(handle.successful(), Some(true));
    within(handle.wait()).await;
    assert_eq!(within(&mut handle).await.unwrap(), 7);
    assert_eq!(handle.successful(), Some(true), "still known once taken");
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_failed_or_cancelled_call_is_not_successful() {
    let pool = pool(1).await;
    let mut failed = pool.apply_async(fail_on_three, (3,));
    within(failed.wait()).await;
    assert_eq!(failed.successful(), Some(false));
    let error = within(failed).await.unwrap_err();
    assert!(error.is_panic(), "{error}");

    let mut cancelled = pool.apply_async(sleep_then, (60_000, 0));
    cancelled.cancel();
    assert_eq!(cancelled.successful(), Some(false));
    assert!(within(cancelled).await.unwrap_err().is_cancelled());
    within(pool.terminate()).await.unwrap();
}

/// Starts a map whose handle outlives both the pool handle and the input it came from.
fn squares_of(pool: Pool, items: u64) -> MapResult<u64> {
    let inputs: Vec<u64> = (0..items).collect();
    pool.map_async(square, inputs)
}

#[tokio::test]
async fn map_async_gives_a_static_handle() {
    let pool = pool(2).await;
    let mut squares = squares_of(pool.clone(), 1000);
    let task = tokio::spawn(async move {
        assert!(squares.wait_timeout(common::LIMIT).await);
        assert_eq!(squares.successful(), Some(true));
        squares.await
    });
    let squares = within(task).await.unwrap().unwrap();
    assert_eq!(squares, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());

    let sums = pool.starmap_async(sleep_then, vec![(50, 1), (0, 2), (10, 3)]);
    assert_eq!(within(sums).await.unwrap(), [1, 2, 3]);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn map_async_runs_without_being_polled() {
    let pool = pool(1).await;
    let mut slow = pool.map_async(square, vec![1, 2]);
    // Nothing polls the handle: `successful` answers once the map's task is done.
    within(async {
        while slow.successful().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(
        within(slow.get_timeout(Duration::from_secs(5)))
            .await
            .unwrap(),
        [1, 4]
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_failed_item_fails_the_map_async() {
    let pool = pool(2).await;
    let mut results = pool.map_async(fail_on_three, 0..10u64);
    within(results.wait()).await;
    assert_eq!(results.successful(), Some(false));
    let error = within(results).await.unwrap_err();
    assert!(error.is_panic(), "{error}");
    assert!(error.to_string().contains("three is refused"), "{error}");

    pool.close();
    let refused = within(pool.map_async(square, vec![1])).await.unwrap_err();
    assert!(refused.is_closed(), "{refused}");
    within(pool.join()).await.unwrap();
}

#[tokio::test]
async fn get_timeout_on_a_map_async_leaves_the_map_running() {
    let pool = pool(1).await;
    let mut results = pool.starmap_async(sleep_then, vec![(300, 1), (0, 2)]);
    let error = within(results.get_timeout(Duration::from_millis(20)))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(within(results).await.unwrap(), [1, 2]);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn dropping_a_map_async_withdraws_its_unsent_chunks() {
    let pool = pool(1).await;
    let path = std::env::temp_dir().join(format!("multiproc-map-drop-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path_str = path.to_string_lossy().into_owned();
    let items: Vec<_> = (0..40).map(|i| (path_str.clone(), i)).collect();
    let results = pool.starmap(record_slowly, items).chunksize(1).submit();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(results);
    // Queued behind whatever the worker already held, so it ends after those.
    within(pool.apply(sleep_then, (0, 0))).await.unwrap();
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    let ran = written.lines().count();
    assert!(
        ran < 40,
        "{ran} of 40 items ran after the handle was dropped"
    );
    let _ = std::fs::remove_file(&path);
    within(pool.terminate()).await.unwrap();
}
