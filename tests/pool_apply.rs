//! Pool: apply, apply_async, many concurrent callers, cancellation of queued calls.

use std::time::Duration;

use multiproc::{Pool, worker};

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
fn describe(name: String, count: u32) -> String {
    format!("{name}:{count}")
}

async fn pool(processes: usize) -> Pool {
    within(Pool::builder().processes(processes).build())
        .await
        .unwrap()
}

#[tokio::test]
async fn apply_returns_the_result() {
    let pool = pool(1).await;
    assert_eq!(within(pool.apply(square, (5,))).await.unwrap(), 25);
    assert_eq!(
        within(pool.apply(describe, ("x".into(), 3))).await.unwrap(),
        "x:3"
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn apply_async_is_a_future_with_ready() {
    let pool = pool(2).await;
    let mut handle = pool.apply_async(sleep_then, (200, 7));
    assert!(!handle.ready());
    assert_eq!(within(&mut handle).await.unwrap(), 7);
    let quick = pool.apply_async(square, (3,));
    let nine = within(quick).await.unwrap();
    assert_eq!(nine, 9);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn get_timeout_times_out_and_the_call_goes_on() {
    let pool = pool(1).await;
    let mut handle = pool.apply_async(sleep_then, (500, 7));
    let started = std::time::Instant::now();
    let error = within(handle.get_timeout(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(400), "{waited:?}");
    assert_eq!(
        within(handle.get_timeout(Duration::from_secs(10)))
            .await
            .unwrap(),
        7
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn many_tasks_share_one_pool() {
    let pool = pool(2).await;
    let mut tasks = Vec::new();
    for caller in 0..32u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let squares = pool.map(square, caller..caller + 100).await.unwrap();
            let single = pool.apply(square, (caller,)).await.unwrap();
            (caller, squares, single)
        }));
    }
    for task in tasks {
        let (caller, squares, single) = within(task).await.unwrap();
        assert_eq!(
            squares,
            (caller..caller + 100).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(single, caller * caller);
    }
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn an_apply_is_not_starved_by_a_big_map() {
    let pool = pool(1).await;
    // 40 chunks of 25 ms each: about a second of work queued ahead of the apply.
    let big = tokio::spawn({
        let pool = pool.clone();
        async move { pool.map(sleep_then_one, 0..40u64).chunksize(1).await }
    });
    tokio::task::yield_now().await;
    let started = std::time::Instant::now();
    assert_eq!(within(pool.apply(square, (4,))).await.unwrap(), 16);
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "the apply waited {:?} behind the map",
        started.elapsed()
    );
    within(big).await.unwrap().unwrap();
    within(pool.terminate()).await.unwrap();
}

#[worker]
fn sleep_then_one(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(25));
    x
}

#[worker]
fn record(path: String, value: u64) -> u64 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(file, "{value}").unwrap();
    value
}

#[tokio::test]
async fn dropping_a_handle_withdraws_a_queued_call() {
    let pool = pool(1).await;
    let path = std::env::temp_dir().join(format!("multiproc-withdraw-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path_str = path.to_string_lossy().into_owned();
    // Fill the one worker's window so later calls stay queued in the parent.
    let busy: Vec<_> = (0..4)
        .map(|_| pool.apply_async(sleep_then, (100, 0)))
        .collect();
    let withdrawn = pool.apply_async(record, (path_str.clone(), 1));
    drop(withdrawn);
    let kept = pool.apply_async(record, (path_str.clone(), 2));
    assert_eq!(within(kept).await.unwrap(), 2);
    for handle in busy {
        within(handle).await.unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written, "2\n", "the withdrawn call must not run");
    let _ = std::fs::remove_file(&path);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn an_unregistered_function_fails_at_the_call_site() {
    fn not_a_worker(x: u64) -> u64 {
        x
    }
    let pool = pool(1).await;
    let error = within(pool.apply(not_a_worker, (1,))).await.unwrap_err();
    assert!(error.is_unknown_worker(), "{error}");
    let error = within(pool.map(not_a_worker, vec![1])).await.unwrap_err();
    assert!(error.is_unknown_worker(), "{error}");
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_quick_reply_does_not_wait_for_a_long_call_behind_it() {
    let pool = pool(1).await;
    // Both calls sit in the one worker's window; the quick one's reply must not be held back
    // while the long one runs.
    let quick = pool.apply_async(square, (5,));
    let long = pool.apply_async(sleep_then, (3_000, 1));
    let started = std::time::Instant::now();
    assert_eq!(within(quick).await.unwrap(), 25);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "the quick reply waited {:?}",
        started.elapsed()
    );
    drop(long);
    within(pool.terminate()).await.unwrap();
}
