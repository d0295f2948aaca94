//! Pool faults: panics, killed and exiting workers, failing map items, failing initializers,
//! results that cannot come back. Every one answers within a bound; none hangs.

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus, Pool, worker};
use serde::{Serialize, Serializer};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn boom(x: u64) -> u64 {
    if x == 7 {
        panic!("item {x} is unlucky");
    }
    x
}

#[worker]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[worker]
fn my_pid_then_sleep(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[worker]
fn failing_init() {
    panic!("the initializer cannot start");
}

#[worker]
fn big_result(bytes: usize) -> Vec<u8> {
    vec![1; bytes]
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unserializable refuses"))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[worker]
fn unserializable() -> Unserializable {
    Unserializable
}

async fn pool(processes: usize) -> Pool {
    within(Pool::builder().processes(processes).build())
        .await
        .unwrap()
}

/// Waits (at most `limit`) until the pool serves with its full size again, none of `gone`
/// among its workers.
async fn full_again(pool: &Pool, gone: u32, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let pids = pool.pids();
        if pids.len() == pool.processes() && !pids.contains(&gone) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the pool was not back to {} workers within {limit:?}: {pids:?}",
            pool.processes()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_panic_reaches_its_caller_and_the_worker_survives() {
    let pool = pool(1).await;
    let pid = pool.pids()[0];
    let started = Instant::now();
    let error = within(pool.apply(boom, (7,))).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(error.is_panic(), "{error}");
    let panic = error.panic_info().unwrap();
    assert_eq!(panic.message, "item 7 is unlucky");
    assert!(
        panic
            .location
            .as_deref()
            .unwrap()
            .contains("pool_faults.rs"),
        "{panic:?}"
    );
    assert!(panic.process.starts_with("PoolWorker-"), "{panic:?}");
    assert_eq!(within(pool.apply(square, (3,))).await.unwrap(), 9);
    assert_eq!(pool.pids(), [pid], "the same worker serves on");
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_map_with_one_failing_item_reports_it_and_the_rest_ran() {
    let pool = pool(2).await;
    let error = within(pool.map(boom, 0..20u64).chunksize(3))
        .await
        .unwrap_err();
    assert!(error.is_panic(), "{error}");
    assert!(error.to_string().contains("item 7 is unlucky"), "{error}");
    // The other items ran: with imap, every item's outcome is visible.
    use futures::StreamExt;
    let outcomes: Vec<_> = within(pool.imap(boom, 0..20u64).chunksize(3).collect()).await;
    assert_eq!(outcomes.len(), 20);
    for (x, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(value) => assert_eq!(value, x as u64),
            Err(error) => assert!(x == 7 && error.is_panic(), "{x}: {error}"),
        }
    }
    let squares = within(pool.map(square, 0..20u64)).await.unwrap();
    assert_eq!(squares[19], 361);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_killed_worker_fails_only_its_calls_and_is_replaced() {
    let pool = pool(2).await;
    // Two calls on an idle pool go to different workers (least busy first). The short one
    // names its worker, so the long one runs on the other, which is then killed mid-task.
    let victim = pool.apply_async(my_pid_then_sleep, (3_000,));
    let survivor = pool.apply_async(my_pid_then_sleep, (300,));
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    let survivor_pid = within(survivor).await.unwrap();
    let victim_pid = *pids.iter().find(|&&p| p != survivor_pid).unwrap();
    let started = Instant::now();
    unsafe { libc::kill(victim_pid as i32, libc::SIGKILL) };
    let error = within(victim).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_worker_died(), "{error}");
    assert_eq!(error.pid(), Some(victim_pid));
    assert_eq!(error.exit_status(), Some(ExitStatus::Signal(9)));
    assert!(
        error.to_string().contains(&victim_pid.to_string()),
        "{error}"
    );
    full_again(&pool, victim_pid, Duration::from_secs(2)).await;
    let squares = within(pool.map(square, 0..100u64)).await.unwrap();
    assert_eq!(squares[10], 100);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_worker_that_exits_fails_its_call_only() {
    let pool = pool(2).await;
    let others: Vec<_> = (0..20u64).map(|x| pool.apply_async(square, (x,))).collect();
    let started = Instant::now();
    let error = within(pool.apply(exit_with, (5,))).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(error.is_worker_died(), "{error}");
    assert_eq!(error.exit_status(), Some(ExitStatus::Code(5)));
    let gone = error.pid().unwrap();
    for (x, handle) in others.into_iter().enumerate() {
        // Calls the exiting worker held but had not started run on the other worker.
        assert_eq!(within(handle).await.unwrap(), (x * x) as u64);
    }
    full_again(&pool, gone, Duration::from_secs(2)).await;
    assert_eq!(within(pool.apply(square, (9,))).await.unwrap(), 81);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn an_initializer_that_always_fails_fails_build_in_bounded_time() {
    let started = Instant::now();
    let error = within(
        Pool::builder()
            .processes(2)
            .initializer(failing_init, ())
            .build(),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_panic(), "{error}");
    assert!(
        error.to_string().contains("the initializer cannot start"),
        "{error}"
    );
    assert!(error.to_string().contains("10 failed"), "{error}");
}

#[tokio::test]
async fn a_result_that_cannot_come_back_fails_its_caller_only() {
    let pool = within(
        Pool::builder()
            .processes(1)
            .max_frame_len(64 * 1024)
            .build(),
    )
    .await
    .unwrap();
    let error = within(pool.apply(unserializable, ())).await.unwrap_err();
    assert!(error.is_serialization(), "{error}");
    let error = within(pool.apply(big_result, (1 << 20,)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::FrameTooLarge, "{error}");
    let error = within(pool.apply(big_result_len, (vec![0u8; 1 << 20],)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::FrameTooLarge, "{error}");
    assert_eq!(within(pool.apply(square, (2,))).await.unwrap(), 4);
    within(pool.terminate()).await.unwrap();
}

#[worker]
fn big_result_len(bytes: Vec<u8>) -> usize {
    bytes.len()
}

#[worker]
fn exit_on(x: u64) -> u64 {
    if x == 13 {
        std::process::exit(3);
    }
    x
}

#[tokio::test]
async fn a_killed_worker_fails_the_call_it_ran_and_its_other_calls_run_elsewhere() {
    let pool = pool(1).await;
    let victim = pool.pids()[0];
    // The long call runs; the quick ones wait in the same worker's window, already sent.
    let running = pool.apply_async(my_pid_then_sleep, (10_000,));
    let held: Vec<_> = (0..3u64).map(|x| pool.apply_async(square, (x,))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let error = within(running).await.unwrap_err();
    assert!(error.is_worker_died(), "{error}");
    assert_eq!(error.pid(), Some(victim));
    assert!(error.to_string().contains("my_pid_then_sleep"), "{error}");
    for (x, handle) in held.into_iter().enumerate() {
        assert_eq!(within(handle).await.unwrap(), (x * x) as u64);
    }
    full_again(&pool, victim, Duration::from_secs(2)).await;
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_map_loses_only_the_chunk_whose_worker_died() {
    use futures::StreamExt;
    let pool = pool(2).await;
    let error = within(pool.map(exit_on, 0..40u64).chunksize(4))
        .await
        .unwrap_err();
    assert!(error.is_worker_died(), "{error}");
    assert_eq!(error.exit_status(), Some(ExitStatus::Code(3)));
    // Item by item: only the chunk holding item 13 (items 12 to 15) failed; every other
    // chunk, those its worker held included, ran, in input order.
    let outcomes: Vec<_> = within(pool.imap(exit_on, 0..40u64).chunksize(4).collect()).await;
    assert_eq!(outcomes.len(), 40);
    for (x, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(value) => assert_eq!(value, x as u64),
            Err(error) => assert!(
                (12..16).contains(&x) && error.is_worker_died(),
                "{x}: {error}"
            ),
        }
    }
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn calls_sent_to_a_worker_that_just_died_run_elsewhere() {
    let pool = pool(1).await;
    let victim = pool.pids()[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    // Sent before the pool notices the death: written to a dead worker, or refused by its
    // closed connection. Either way they run on its replacement; none is `Closed`.
    let calls: Vec<_> = (0..8u64).map(|x| pool.apply_async(square, (x,))).collect();
    for (x, call) in calls.into_iter().enumerate() {
        assert_eq!(within(call).await.unwrap(), (x * x) as u64);
    }
    full_again(&pool, victim, Duration::from_secs(2)).await;
    within(pool.terminate()).await.unwrap();
}
