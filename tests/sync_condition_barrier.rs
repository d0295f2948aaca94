//! Condition and Barrier across processes.

use std::time::{Duration, Instant};

use multiproc::{Barrier, Condition, Event, Process, Queue, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn wait_for_notice(condition: Condition, waiting: Queue<u32>) -> bool {
    let mut guard = condition.acquire().await.unwrap();
    waiting.put(1).await.unwrap();
    guard.wait_timeout(Duration::from_secs(10)).await.unwrap()
}

#[worker]
async fn meet(barrier: Barrier) -> usize {
    barrier.wait_timeout(Duration::from_secs(10)).await.unwrap()
}

#[worker]
async fn wait_then_die(barrier: Barrier, waiting: Event) {
    waiting.set().await.unwrap();
    let _ = barrier.wait().await;
}

#[tokio::test]
async fn notify_all_wakes_every_waiting_child() {
    let condition = Condition::new();
    let waiting = Queue::new();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            within(Process::new(wait_for_notice, (condition.clone(), waiting.clone())).start())
                .await
                .unwrap(),
        );
    }
    for _ in 0..3 {
        within(waiting.get()).await.unwrap();
    }
    // Each child put while holding the lock and then waits, releasing it; taking the lock
    // here means every child is parked in `wait`.
    let guard = within(condition.acquire()).await.unwrap();
    within(guard.notify_all()).await.unwrap();
    drop(guard);
    for p in children {
        assert!(within(p.join()).await.unwrap(), "every wait returned true");
    }
}

#[tokio::test]
async fn wait_timeout_returns_false_and_notify_needs_the_lock() {
    let condition = Condition::new();
    let error = within(condition.notify(1)).await.unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
    let mut guard = within(condition.acquire()).await.unwrap();
    let started = Instant::now();
    assert!(
        !within(guard.wait_timeout(Duration::from_millis(100)))
            .await
            .unwrap()
    );
    assert!(started.elapsed() >= Duration::from_millis(90));
    // The lock is held again: notify works.
    within(guard.notify(1)).await.unwrap();
    let ready = within(guard.wait_for(|| async { true }, Some(Duration::from_millis(10))))
        .await
        .unwrap();
    assert!(ready);
}

#[tokio::test]
async fn a_barrier_releases_all_parties_with_distinct_indices() {
    let barrier = Barrier::new(3);
    let mut children = Vec::new();
    for _ in 0..2 {
        children.push(
            within(Process::new(meet, (barrier.clone(),)).start())
                .await
                .unwrap(),
        );
    }
    let mut indices = vec![within(barrier.wait()).await.unwrap()];
    for p in children {
        indices.push(within(p.join()).await.unwrap());
    }
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2]);
}

#[tokio::test]
async fn a_timeout_breaks_the_barrier_for_everyone() {
    let barrier = Barrier::new(3);
    let other = barrier.clone();
    let waiting = tokio::spawn(async move { other.wait().await });
    while within(barrier.n_waiting()).await.unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let error = within(barrier.wait_timeout(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(error.is_broken_barrier(), "{error}");
    let error = within(waiting).await.unwrap().unwrap_err();
    assert!(error.is_broken_barrier(), "{error}");
    assert!(
        within(barrier.wait())
            .await
            .unwrap_err()
            .is_broken_barrier()
    );
    within(barrier.reset()).await.unwrap();
    assert_eq!(within(barrier.n_waiting()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_party_killed_while_waiting_breaks_the_barrier() {
    let barrier = Barrier::new(3);
    let waiting = Event::new();
    let p = within(Process::new(wait_then_die, (barrier.clone(), waiting.clone())).start())
        .await
        .unwrap();
    within(waiting.wait()).await.unwrap();
    while within(barrier.n_waiting()).await.unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.kill();
    let _ = within(p.join()).await;
    assert!(
        within(barrier.wait())
            .await
            .unwrap_err()
            .is_broken_barrier()
    );
}
