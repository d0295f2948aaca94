//! Condition and Barrier across processes; a barrier's action and `is_broken`.

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

/// Where `record_arrival`, the action of one test's barrier, writes: named by the test
/// process's pid, the same in the children it starts.
fn action_log() -> std::path::PathBuf {
    let root = multiproc::parent_process().map_or(std::process::id(), |parent| parent.pid);
    std::env::temp_dir().join(format!("multiproc-barrier-action-{root}"))
}

#[worker]
fn record_arrival() {
    use std::io::Write;
    // Slow, so that a party released before the action ended would see nothing written.
    std::thread::sleep(Duration::from_millis(100));
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(action_log())
        .unwrap();
    writeln!(log, "{}", std::process::id()).unwrap();
}

#[worker]
async fn refuse_to_proceed() {
    tokio::time::sleep(Duration::from_millis(10)).await;
    panic!("the action refuses");
}

#[worker]
fn stall() {
    std::thread::sleep(Duration::from_secs(60));
}

/// Waits at the barrier, then reads what its action wrote: (index, pid, log lines).
#[worker]
async fn meet_and_read_the_log(barrier: Barrier) -> (usize, u32, Vec<u32>) {
    let index = barrier.wait_timeout(Duration::from_secs(10)).await.unwrap();
    let log = std::fs::read_to_string(action_log()).unwrap_or_default();
    let pids = log.lines().map(|line| line.parse().unwrap()).collect();
    (index, std::process::id(), pids)
}

#[worker]
async fn wait_and_report(barrier: Barrier) -> Result<usize, String> {
    barrier.wait().await.map_err(|error| error.to_string())
}

#[tokio::test]
async fn the_last_party_runs_the_action_before_anyone_is_released() {
    let _ = std::fs::remove_file(action_log());
    let barrier = Barrier::with_action(3, record_arrival);
    for round in 1..=2 {
        let mut children = Vec::new();
        for _ in 0..2 {
            children.push(
                within(Process::new(meet_and_read_the_log, (barrier.clone(),)).start())
                    .await
                    .unwrap(),
            );
        }
        let index = within(barrier.wait()).await.unwrap();
        let mut parties = vec![(index, std::process::id(), read_log())];
        for p in children {
            parties.push(within(p.join()).await.unwrap());
        }
        parties.sort();
        let indices: Vec<usize> = parties.iter().map(|party| party.0).collect();
        assert_eq!(indices, [0, 1, 2]);
        for (_, _, log) in &parties {
            assert_eq!(
                log.len(),
                round,
                "every party sees this round's action done"
            );
        }
        let (_, last_pid, log) = &parties[2];
        assert_eq!(
            log[round - 1],
            *last_pid,
            "the party with the last index ran it"
        );
    }
    assert!(!within(barrier.is_broken()).await.unwrap());
    let _ = std::fs::remove_file(action_log());
}

fn read_log() -> Vec<u32> {
    let log = std::fs::read_to_string(action_log()).unwrap_or_default();
    log.lines().map(|line| line.parse().unwrap()).collect()
}

#[tokio::test]
async fn a_failed_action_breaks_the_barrier_until_reset() {
    let barrier = Barrier::with_action(2, refuse_to_proceed);
    let child = within(Process::new(wait_and_report, (barrier.clone(),)).start())
        .await
        .unwrap();
    while within(barrier.n_waiting()).await.unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // This party arrives last, so the action runs here and panics.
    let error = within(barrier.wait()).await.unwrap_err();
    assert!(error.is_broken_barrier(), "{error}");
    assert!(error.to_string().contains("the action refuses"), "{error}");
    let in_child = within(child.join()).await.unwrap().unwrap_err();
    assert!(in_child.contains("broken"), "{in_child}");
    assert!(within(barrier.is_broken()).await.unwrap());
    within(barrier.reset()).await.unwrap();
    assert!(!within(barrier.is_broken()).await.unwrap());
}

#[tokio::test]
async fn a_party_killed_while_running_the_action_breaks_the_barrier() {
    let barrier = Barrier::with_action(2, stall);
    let waiting = tokio::spawn({
        let barrier = barrier.clone();
        async move { barrier.wait().await }
    });
    while within(barrier.n_waiting()).await.unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The child arrives last and runs the action, which stalls.
    let p = within(Process::new(meet, (barrier.clone(),)).start())
        .await
        .unwrap();
    while within(barrier.n_waiting()).await.unwrap() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!within(barrier.is_broken()).await.unwrap());
    p.kill();
    let _ = within(p.join()).await;
    let error = within(waiting).await.unwrap().unwrap_err();
    assert!(error.is_broken_barrier(), "{error}");
    assert!(within(barrier.is_broken()).await.unwrap());
}

#[tokio::test]
async fn abort_is_seen_by_is_broken_in_every_process() {
    let barrier = Barrier::new(2);
    assert!(!within(barrier.is_broken()).await.unwrap());
    within(barrier.abort()).await.unwrap();
    assert!(within(barrier.is_broken()).await.unwrap());
    let child = within(Process::new(wait_and_report, (barrier.clone(),)).start())
        .await
        .unwrap();
    let error = within(child.join()).await.unwrap().unwrap_err();
    assert!(error.contains("broken"), "{error}");
}

#[worker]
async fn dawdle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_wait_that_gives_up_during_the_action_breaks_the_barrier() {
    // One party: every wait is the last, and runs the action.
    let barrier = Barrier::with_action(1, dawdle);
    assert_eq!(within(barrier.wait()).await.unwrap(), 0);

    let error = within(barrier.wait_timeout(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(error.is_broken_barrier(), "{error}");
    assert!(within(barrier.is_broken()).await.unwrap());

    within(barrier.reset()).await.unwrap();
    let dropped = tokio::time::timeout(Duration::from_millis(50), barrier.wait()).await;
    assert!(dropped.is_err(), "the action outlasts the timeout");
    within(async {
        while !barrier.is_broken().await.unwrap() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits on a condition built on `lock`; reports whether it was notified, and that it held
/// the lock again when the wait returned.
#[worker]
async fn wait_on_a_lock(
    condition: Condition,
    lock: multiproc::Lock,
    waiting: Queue<u32>,
) -> (bool, bool) {
    let mut guard = condition.acquire().await.unwrap();
    waiting.put(1).await.unwrap();
    let notified = guard.wait_timeout(Duration::from_secs(10)).await.unwrap();
    let held_again = lock.try_acquire().await.unwrap().is_none();
    (notified, held_again)
}

#[tokio::test]
async fn a_condition_on_an_existing_lock_gives_it_back_while_it_waits() {
    let lock = multiproc::Lock::new();
    let condition = Condition::with_lock(&lock).unwrap();
    let waiting = Queue::new();
    let child = within(
        Process::new(
            wait_on_a_lock,
            (condition.clone(), lock.clone(), waiting.clone()),
        )
        .start(),
    )
    .await
    .unwrap();
    within(waiting.get()).await.unwrap();
    // The waiter gave the lock back: this process takes it, through the lock itself.
    let guard = within(lock.acquire()).await.unwrap();
    drop(guard);
    let guard = within(condition.acquire()).await.unwrap();
    within(guard.notify(1)).await.unwrap();
    drop(guard);
    assert_eq!(within(child.join()).await.unwrap(), (true, true));
    // Notify needs the lock, as in Python.
    let error = within(condition.notify(1)).await.unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
}

#[tokio::test]
async fn a_condition_on_an_rlock_gives_back_every_level_and_takes_them_all_again() {
    let lock = multiproc::RLock::new();
    let condition = Condition::with_rlock(&lock).unwrap();
    let outer = within(lock.acquire()).await.unwrap();
    let mut guard = within(condition.acquire()).await.unwrap();
    let other_task = tokio::spawn({
        let lock = lock.clone();
        async move { lock.try_acquire().await.unwrap().is_some() }
    });
    assert!(!within(other_task).await.unwrap(), "held, by another task");
    // While this task waits (and times out), another task can take the lock.
    let taker = tokio::spawn({
        let lock = lock.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            lock.try_acquire().await.unwrap().is_some()
        }
    });
    assert!(
        !within(guard.wait_timeout(Duration::from_millis(300)))
            .await
            .unwrap()
    );
    assert!(
        within(taker).await.unwrap(),
        "the wait gave back both levels"
    );
    drop(guard);
    let held = tokio::spawn({
        let lock = lock.clone();
        async move { lock.try_acquire().await.unwrap().is_some() }
    });
    assert!(
        !within(held).await.unwrap(),
        "the outer level is held again"
    );
    drop(outer);
}

#[tokio::test]
async fn a_condition_on_a_managers_lock_is_refused() {
    let manager = within(multiproc::Manager::start()).await.unwrap();
    let lock = within(manager.lock()).await.unwrap();
    let error = Condition::with_lock(&lock).unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidInput, "{error}");
}
