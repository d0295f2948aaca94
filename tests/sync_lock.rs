//! Lock, RLock, Semaphore, BoundedSemaphore across processes, and a holder's death.

use std::time::Duration;

use multiproc::{BoundedSemaphore, Event, Lock, Process, Queue, RLock, Semaphore, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn hold_forever(lock: Lock, holding: Event) {
    lock.acquire().await.unwrap().forget();
    holding.set().await.unwrap();
    std::future::pending::<()>().await;
}

#[worker]
async fn hold_permit_forever(semaphore: Semaphore, holding: Event) {
    semaphore.acquire().await.unwrap().forget();
    holding.set().await.unwrap();
    std::future::pending::<()>().await;
}

#[worker]
async fn take_and_return(lock: Lock) {
    let guard = lock.acquire().await.unwrap();
    drop(guard);
    // Returning at once: the release must still arrive as a release, not as a death.
}

#[worker]
async fn count_under_lock(lock: Lock, counter: Queue<u64>, rounds: u64) {
    for _ in 0..rounds {
        let _guard = lock.acquire().await.unwrap();
        let value = counter.get().await.unwrap();
        counter.put(value + 1).await.unwrap();
    }
}

#[tokio::test]
async fn a_lock_excludes_other_processes() {
    let lock = Lock::new();
    let counter = Queue::new();
    within(counter.put(0u64)).await.unwrap();
    let mut children = Vec::new();
    for _ in 0..2 {
        let p = within(Process::new(count_under_lock, (lock.clone(), counter.clone(), 50)).start())
            .await
            .unwrap();
        children.push(p);
    }
    for p in children {
        within(p.join()).await.unwrap();
    }
    assert_eq!(within(counter.get()).await.unwrap(), 100);
}

#[tokio::test]
async fn a_killed_holder_releases_and_the_next_acquirer_is_told() {
    let lock = Lock::new();
    let holding = Event::new();
    let p = within(Process::new(hold_forever, (lock.clone(), holding.clone())).start())
        .await
        .unwrap();
    within(holding.wait()).await.unwrap();
    assert!(within(lock.try_acquire()).await.unwrap().is_none());
    p.kill();
    let _ = within(p.join()).await;
    let guard = within(lock.acquire_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the hub releases a dead holder's lock");
    assert!(guard.owner_died());
    drop(guard);
    let again = within(lock.acquire()).await.unwrap();
    assert!(!again.owner_died(), "told once");
}

#[tokio::test]
async fn a_killed_holder_returns_its_permits() {
    let semaphore = Semaphore::new(1);
    let holding = Event::new();
    let p = within(Process::new(hold_permit_forever, (semaphore.clone(), holding.clone())).start())
        .await
        .unwrap();
    within(holding.wait()).await.unwrap();
    assert_eq!(within(semaphore.value()).await.unwrap(), 0);
    p.kill();
    let _ = within(p.join()).await;
    let permit = within(semaphore.acquire()).await.unwrap();
    assert!(permit.owner_died());
}

#[tokio::test]
async fn lock_errors_and_timeouts() {
    let lock = Lock::new();
    let error = within(lock.release()).await.unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
    let guard = within(lock.acquire()).await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        within(lock.acquire_timeout(Duration::from_millis(100)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(90));
    drop(guard);
    assert!(within(lock.try_acquire()).await.unwrap().is_some());
}

#[tokio::test]
async fn an_rlock_reenters_and_only_its_owner_releases() {
    let rlock = RLock::new();
    let outer = within(rlock.acquire()).await.unwrap();
    let inner = within(rlock.acquire()).await.unwrap();
    drop(inner);
    assert!(within(rlock.is_locked()).await.unwrap());
    let other = rlock.clone();
    let error = tokio::spawn(async move { other.release().await })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
    drop(outer);
    // The release travels without waiting; the next request is answered after it.
    assert!(!within(rlock.is_locked()).await.unwrap());
}

#[tokio::test]
async fn semaphores_count_and_a_bounded_one_refuses_extra_releases() {
    let semaphore = Semaphore::new(1);
    within(semaphore.release()).await.unwrap();
    assert_eq!(within(semaphore.value()).await.unwrap(), 2);
    let bounded = BoundedSemaphore::new(2);
    let a = within(bounded.acquire()).await.unwrap();
    let _b = within(bounded.acquire()).await.unwrap();
    assert!(within(bounded.try_acquire()).await.unwrap().is_none());
    drop(a);
    assert!(
        within(bounded.acquire_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .is_some()
    );
    let full = BoundedSemaphore::new(1);
    let error = within(full.release()).await.unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
}

#[tokio::test]
async fn a_guard_dropped_just_before_exit_is_a_release_not_a_death() {
    let lock = Lock::new();
    for _ in 0..5 {
        let p = within(Process::new(take_and_return, (lock.clone(),)).start())
            .await
            .unwrap();
        within(p.join()).await.unwrap();
        let guard = within(lock.acquire()).await.unwrap();
        assert!(!guard.owner_died());
    }
}
