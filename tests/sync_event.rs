//! Event across processes, with and without timeout.

use std::time::{Duration, Instant};

use multiproc::{Event, Process, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn wait_for(event: Event) -> bool {
    event.wait_timeout(Duration::from_secs(10)).await.unwrap()
}

#[worker]
fn set_from_a_sync_worker(event: Event) {
    // A sync worker blocks its runtime; the shared-objects thread still carries the request,
    // so a plain executor can drive it.
    futures::executor::block_on(event.set()).unwrap();
}

#[tokio::test]
async fn a_child_wakes_when_the_parent_sets() {
    let event = Event::new();
    let p = within(Process::new(wait_for, (event.clone(),)).start())
        .await
        .unwrap();
    within(event.set()).await.unwrap();
    assert!(within(p.join()).await.unwrap());
    assert!(within(event.is_set()).await.unwrap());
}

#[tokio::test]
async fn the_parent_wakes_when_a_child_sets() {
    let event = Event::new();
    let p = within(Process::new(set_from_a_sync_worker, (event.clone(),)).start())
        .await
        .unwrap();
    within(event.wait()).await.unwrap();
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn wait_timeout_returns_false_in_time_and_clear_resets() {
    let event = Event::new();
    let started = Instant::now();
    assert!(
        !within(event.wait_timeout(Duration::from_millis(200)))
            .await
            .unwrap()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    within(event.set()).await.unwrap();
    assert!(
        within(event.wait_timeout(Duration::from_millis(10)))
            .await
            .unwrap()
    );
    within(event.clear()).await.unwrap();
    assert!(!within(event.is_set()).await.unwrap());
}
