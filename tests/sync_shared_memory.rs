//! Locks, events and semaphores in shared memory: what is free is taken without a message to
//! the creator, a holder that dies is found without the creator, and the objects keep
//! working between the processes that remain after their creator exits.

use std::time::{Duration, Instant};

use multiproc::{BoundedSemaphore, Event, Lock, Process, Queue, RLock, Semaphore, worker};

multiproc::test_support!();

mod common;
use common::within;

type Objects = (Lock, RLock, Event, Semaphore, BoundedSemaphore);

/// Creates the objects, hands them over, and waits to be stopped or killed.
#[worker]
async fn create_objects(handles: Queue<Objects>) {
    let objects = (
        Lock::new(),
        RLock::new(),
        Event::new(),
        Semaphore::new(2),
        BoundedSemaphore::new(1),
    );
    handles.put(objects).await.unwrap();
    std::future::pending::<()>().await;
}

#[worker]
async fn hold_and_report(lock: Lock, semaphore: Semaphore, holding: Event) {
    lock.acquire().await.unwrap().forget();
    semaphore.acquire().await.unwrap().forget();
    holding.set().await.unwrap();
    std::future::pending::<()>().await;
}

#[worker]
async fn wait_and_count(lock: Lock, started: Event, done: Queue<bool>) {
    started.set().await.unwrap();
    let guard = lock.acquire().await.unwrap();
    done.put(guard.owner_died()).await.unwrap();
}

/// SIGSTOP, resumed (then killed) on drop so that a failing test leaves nothing stopped.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        // SAFETY: kill with a valid signal; the pid is our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('T')
        }) {
            assert!(Instant::now() < deadline, "the child did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

async fn start_creator() -> (Process<()>, Objects) {
    let handles = Queue::new();
    let child = within(Process::new(create_objects, (handles.clone(),)).start())
        .await
        .unwrap();
    let objects = within(handles.get()).await.unwrap();
    (child, objects)
}

/// A child holding a new lock and a permit of a new semaphore (of one), until killed.
async fn start_holder() -> (Process<()>, Lock, Semaphore) {
    let (lock, semaphore, holding) = (Lock::new(), Semaphore::new(1), Event::new());
    let args = (lock.clone(), semaphore.clone(), holding.clone());
    let p = within(Process::new(hold_and_report, args).start())
        .await
        .unwrap();
    within(holding.wait()).await.unwrap();
    (p, lock, semaphore)
}

#[tokio::test]
async fn what_is_free_is_taken_while_the_creator_is_stopped() {
    let (child, (lock, rlock, event, semaphore, bounded)) = start_creator().await;
    let stopped = Stopped::new(child.pid());
    // Each of these would wait on the stopped creator if it took a round trip.
    within(async {
        for _ in 0..1000 {
            drop(lock.acquire().await.unwrap());
            let outer = rlock.acquire().await.unwrap();
            drop(rlock.acquire().await.unwrap());
            drop(outer);
            drop(semaphore.acquire().await.unwrap());
            drop(bounded.acquire().await.unwrap());
        }
        assert!(!lock.is_locked().await.unwrap());
        assert!(!event.is_set().await.unwrap());
        event.set().await.unwrap();
        assert!(event.is_set().await.unwrap());
        assert!(event.wait_timeout(Duration::ZERO).await.unwrap());
        event.clear().await.unwrap();
        assert_eq!(semaphore.value().await.unwrap(), 2);
        let error = bounded.release().await.unwrap_err();
        assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
    })
    .await;
    drop(stopped);
    child.kill();
    let _ = within(child.join()).await;
}

#[tokio::test]
async fn a_holder_killed_with_nobody_waiting_is_found_by_the_next_taker() {
    let (p, lock, semaphore) = start_holder().await;
    p.kill();
    let _ = within(p.join()).await;
    // A try finds the dead holder at once.
    let guard = within(lock.try_acquire())
        .await
        .unwrap()
        .expect("a dead holder's lock is taken back");
    assert!(guard.owner_died());
    let permit = within(semaphore.try_acquire())
        .await
        .unwrap()
        .expect("a dead holder's permit comes back");
    assert!(permit.owner_died());
}

#[tokio::test]
async fn a_waiter_in_another_process_gets_a_killed_holders_lock_within_a_second() {
    let (holder, lock, _) = start_holder().await;
    let (started, done) = (Event::new(), Queue::new());
    let waiter = within(
        Process::new(
            wait_and_count,
            (lock.clone(), started.clone(), done.clone()),
        )
        .start(),
    )
    .await
    .unwrap();
    within(started.wait()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    holder.kill();
    let owner_died = within(done.get()).await.unwrap();
    let took = killed.elapsed();
    assert!(owner_died, "the waiter is told");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}; the goal is 1 s"
    );
    within(waiter.join()).await.unwrap();
    let _ = within(holder.join()).await;
}

#[tokio::test]
async fn objects_keep_working_after_their_creator_exits() {
    let (child, (lock, _, event, semaphore, _)) = start_creator().await;
    child.kill();
    let _ = within(child.join()).await;
    let guard = within(lock.acquire()).await.unwrap();
    let waiting = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire().await.map(|guard| guard.owner_died()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(guard);
    assert!(!within(waiting).await.unwrap().unwrap());
    let setter = tokio::spawn({
        let event = event.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            event.set().await
        }
    });
    assert!(
        within(event.wait_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    within(setter).await.unwrap().unwrap();
    let first = within(semaphore.acquire()).await.unwrap();
    let _second = within(semaphore.acquire()).await.unwrap();
    assert!(
        within(semaphore.acquire_timeout(Duration::from_millis(50)))
            .await
            .unwrap()
            .is_none()
    );
    drop(first);
    assert!(within(semaphore.try_acquire()).await.unwrap().is_some());
}
