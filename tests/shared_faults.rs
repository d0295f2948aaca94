//! A process that serves queues and locks stops (SIGSTOP) or dies (SIGKILL) under its
//! callers: every timed call returns within its bound, nothing granted late is kept by
//! nobody, an untimed call to a dead hub fails instead of hanging, and a lock in shared
//! memory keeps working between the processes that remain.

use std::time::{Duration, Instant};

use multiproc::{
    BoundedSemaphore, Condition, ErrorKind, Event, Lock, Process, Queue, RLock, Semaphore, worker,
};

multiproc::test_support!();

mod common;
use common::within;

/// What a timed call may take beyond its bound here: the promise is 100 ms; the rest is room
/// for a loaded machine.
const SLACK: Duration = Duration::from_millis(600);

/// How long the serving child stays stopped: far beyond every bound, so a call that waits for
/// the hub cannot pass for one that kept its bound.
const STALL: Duration = Duration::from_secs(4);

/// Objects served by the child that created them.
type Served = (Queue<u32>, Lock, Semaphore, Event, Condition);

#[worker]
async fn serve_objects(handles: Queue<Served>) {
    let served = (
        Queue::new(),
        Lock::new(),
        Semaphore::new(1),
        Event::new(),
        Condition::new(),
    );
    handles.put(served).await.unwrap();
    std::future::pending::<()>().await;
}

#[worker]
async fn serve_more(handles: Queue<(RLock, BoundedSemaphore, multiproc::Barrier)>) {
    let served = (
        RLock::new(),
        BoundedSemaphore::new(1),
        multiproc::Barrier::new(2),
    );
    handles.put(served).await.unwrap();
    std::future::pending::<()>().await;
}

/// Stops a child for as long as it lives; resumes and kills it when dropped, so a failing
/// test leaves nothing stopped behind.
struct Stopped(u32);

impl Stopped {
    /// Returns once the child is stopped: a signal takes effect when the kernel next
    /// schedules it, and a request read before that would be answered.
    fn new(pid: u32) -> Self {
        signal(pid, libc::SIGSTOP);
        let stopped = Stopped(pid);
        let started = Instant::now();
        while !is_stopped(pid) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{pid} did not stop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// Whether every thread of `pid` is stopped, as `/proc` tells.
fn is_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().all(|thread| {
        let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Runs `call`, asserting it returns within `bound` plus [`SLACK`].
async fn within_bound<F: std::future::Future>(bound: Duration, what: &str, call: F) -> F::Output {
    let started = Instant::now();
    let output = within(call).await;
    let took = started.elapsed();
    assert!(
        took <= bound + SLACK,
        "{what} took {took:?}, beyond its bound of {bound:?}"
    );
    output
}

async fn start_server() -> (Process<()>, Served) {
    let handles = Queue::new();
    let child = within(Process::new(serve_objects, (handles.clone(),)).start())
        .await
        .unwrap();
    let served = within(handles.get()).await.unwrap();
    (child, served)
}

#[tokio::test]
async fn timed_calls_to_a_stopped_hub_keep_their_bound_and_give_back_late_grants() {
    let (child, (queue, lock, semaphore, event, condition)) = start_server().await;
    within(queue.put(1)).await.unwrap();
    within(queue.put(2)).await.unwrap();
    let mut guard = within(condition.acquire()).await.unwrap();
    // The lock is in shared memory: free, it is taken without asking its process at all;
    // held, its waiters park at that process.
    within(lock.acquire()).await.unwrap().forget();
    within(semaphore.acquire()).await.unwrap().forget();
    let bound = Duration::from_secs(1);
    let resumed = Instant::now() + STALL;
    let stopped = Stopped::new(child.pid());

    let error = within_bound(bound, "get_timeout", queue.get_timeout(bound))
        .await
        .unwrap_err();
    assert!(error.is_empty(), "{error}");
    let acquired = within_bound(bound, "acquire_timeout", lock.acquire_timeout(bound)).await;
    assert!(acquired.unwrap().is_none());
    let permit = within_bound(
        bound,
        "semaphore acquire_timeout",
        semaphore.acquire_timeout(bound),
    )
    .await;
    assert!(permit.unwrap().is_none());
    let set = within_bound(bound, "wait_timeout", event.wait_timeout(bound)).await;
    assert!(!set.unwrap());
    let waited = within_bound(bound, "condition wait_timeout", guard.wait_timeout(bound)).await;
    assert_eq!(
        waited.unwrap_err().kind(),
        ErrorKind::Timeout,
        "a condition whose process does not answer cannot give its lock back"
    );

    tokio::time::sleep_until(resumed.into()).await;
    drop(stopped);
    // Each late grant is given back as soon as it reaches this process: the item to the head
    // of its queue, the lock, the permit.
    within(async {
        while queue.len().await.unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(within(queue.get()).await.unwrap(), 1);
    assert_eq!(within(queue.get()).await.unwrap(), 2);
    within(lock.release()).await.unwrap();
    let lock_guard = within(lock.acquire_timeout(Duration::from_secs(5))).await;
    assert!(lock_guard.unwrap().is_some(), "the lock is free again");
    within(semaphore.release()).await.unwrap();
    let permit = within(semaphore.acquire_timeout(Duration::from_secs(5))).await;
    assert!(permit.unwrap().is_some(), "the permit is free again");
    drop(guard);
    let condition_guard = within(condition.acquire()).await.unwrap();
    drop(condition_guard);
    child.kill();
    let _ = within(child.join()).await;
}

#[tokio::test]
async fn timed_waits_of_the_other_primitives_keep_their_bound() {
    let handles = Queue::new();
    let child = within(Process::new(serve_more, (handles.clone(),)).start())
        .await
        .unwrap();
    let (rlock, semaphore, barrier) = within(handles.get()).await.unwrap();
    // Held by another task, so that this one's acquire must park at the stopped process.
    let (taken, held) = tokio::sync::oneshot::channel();
    let (give_back, given_back) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn({
        let rlock = rlock.clone();
        async move {
            let guard = rlock.acquire().await.unwrap();
            taken.send(()).unwrap();
            let _ = given_back.await;
            drop(guard);
        }
    });
    within(held).await.unwrap();
    within(semaphore.acquire()).await.unwrap().forget();
    // Opens this process's connection to the child's hub while it still answers.
    within(barrier.n_waiting()).await.unwrap();
    let bound = Duration::from_millis(500);
    let stopped = Stopped::new(child.pid());
    let acquired = within_bound(bound, "rlock acquire_timeout", rlock.acquire_timeout(bound)).await;
    assert!(acquired.unwrap().is_none());
    let permit = within_bound(
        bound,
        "bounded semaphore acquire_timeout",
        semaphore.acquire_timeout(bound),
    )
    .await;
    assert!(permit.unwrap().is_none());
    let passed = within_bound(bound, "barrier wait_timeout", barrier.wait_timeout(bound)).await;
    assert_eq!(passed.unwrap_err().kind(), ErrorKind::BrokenBarrier);
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(stopped);
    give_back.send(()).unwrap();
    within(holder).await.unwrap();
    let guard = within(rlock.acquire_timeout(Duration::from_secs(5))).await;
    assert!(guard.unwrap().is_some(), "the rlock is free again");
    within(semaphore.release()).await.unwrap();
    let permit = within(semaphore.acquire_timeout(Duration::from_secs(5))).await;
    assert!(permit.unwrap().is_some(), "the permit is free again");
    child.kill();
    let _ = within(child.join()).await;
}

#[tokio::test]
async fn an_untimed_call_to_a_killed_hub_fails_within_a_second() {
    let (child, (queue, lock, _, _, _)) = start_server().await;
    within(lock.acquire()).await.unwrap().forget();
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    let acquiring = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire().await.map(drop) }
    });
    // Both requests are sent (the get to the hub, the acquire parks there too, the lock
    // being held), then a request on the same connection comes back after them.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    within(queue.len()).await.unwrap();
    child.kill();
    let error = within_bound(Duration::from_secs(1), "a parked get", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert!(error.is_closed(), "{error}");
    // The lock is in shared memory: its waiter goes on waiting (without the dead process)
    // and takes it once this process releases it.
    within(lock.release()).await.unwrap();
    within_bound(
        Duration::from_secs(1),
        "a waiter of a dead hub's lock",
        acquiring,
    )
    .await
    .unwrap()
    .unwrap();
    let error = within_bound(Duration::from_secs(1), "a later call", queue.len())
        .await
        .unwrap_err();
    assert!(error.is_closed(), "{error}");
    let _ = within(child.join()).await;
}

#[tokio::test]
async fn an_untimed_call_to_a_stopped_then_killed_hub_fails_within_a_second() {
    let (child, (queue, _, _, _, _)) = start_server().await;
    within(queue.len()).await.unwrap();
    let stopped = Stopped::new(child.pid());
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill();
    drop(stopped);
    let error = within_bound(
        Duration::from_secs(1),
        "a get sent to a stopped hub",
        waiting,
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(error.is_closed(), "{error}");
    let _ = within(child.join()).await;
}
