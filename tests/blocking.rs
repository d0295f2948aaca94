//! The blocking API under plain `#[test]`s, with no tokio runtime: plain `fn` workers in real
//! children using blocking queues, locks, events, pipes and manager proxies; a pool driven from
//! sync code; timeouts; and the panic that refuses a blocking call inside an async context.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use multiproc::blocking::{
    Barrier, Condition, DictProxy, Event, JoinableQueue, Lock, Manager, PipeEnd, Pool, Process,
    Queue, Semaphore, pipe,
};
use multiproc::worker;

multiproc::test_support!();

/// The longest any test body may take before it fails as hung.
const LIMIT: Duration = Duration::from_secs(30);

/// A wait that is expected to time out.
const SHORT: Duration = Duration::from_millis(200);

/// Runs `body` on a thread of its own, failing the test if it takes longer than [`LIMIT`]: the
/// waits with no timeout of their own (a `map`, a `join`) are bounded by it.
fn within<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(body)));
    });
    match finished.recv_timeout(LIMIT) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("timed out: a test body took longer than {LIMIT:?}"),
    }
}

/// The message of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => panic
            .downcast::<&str>()
            .map(|message| message.to_string())
            .unwrap_or_default(),
    }
}

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[worker]
fn sleep_then_square(ms: u64, x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    x * x
}

/// A plain `fn` worker that waits for the parent's event, takes the lock, and reports
/// through the queue: every blocking form it uses runs with no runtime in the child.
#[worker]
fn report_under_lock(go: Event, lock: Lock, reports: Queue<String>) -> bool {
    let started = go.wait_timeout(LIMIT).unwrap();
    let guard = lock
        .acquire_timeout(LIMIT)
        .unwrap()
        .expect("the lock is free");
    reports
        .put(format!("{} reporting", multiproc::current_process().name))
        .unwrap();
    drop(guard);
    started
}

#[test]
fn a_plain_worker_uses_a_blocking_event_lock_and_queue() {
    within(|| {
        let (go, lock, reports) = (Event::new(), Lock::new(), Queue::new());
        let p = Process::new(
            report_under_lock,
            (go.clone(), lock.clone(), reports.clone()),
        )
        .name("reporter")
        .start()
        .unwrap();
        go.set().unwrap();
        assert_eq!(reports.get_timeout(LIMIT).unwrap(), "reporter reporting");
        assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(true));
        // The child's guard was released when it was dropped.
        assert!(!lock.is_locked().unwrap());
    });
}

#[worker]
fn try_lock(lock: Lock) -> bool {
    lock.try_acquire().unwrap().is_some()
}

#[test]
fn a_blocking_lock_guard_releases_on_drop() {
    within(|| {
        let lock = Lock::new();
        let guard = lock.acquire().unwrap();
        let held = Process::new(try_lock, (lock.clone(),)).start().unwrap();
        assert_eq!(held.join_timeout(LIMIT).unwrap(), Some(false));
        drop(guard);
        let freed = Process::new(try_lock, (lock.clone(),)).start().unwrap();
        assert_eq!(freed.join_timeout(LIMIT).unwrap(), Some(true));
    });
}

#[worker]
fn fill(d: DictProxy<u32, String>, n: u32) {
    d.insert(n, format!("from {n}")).unwrap();
}

#[test]
fn a_plain_worker_uses_a_blocking_manager_proxy() {
    within(|| {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u32, String>().unwrap();
        let children: Vec<_> = (0..3)
            .map(|n| Process::new(fill, (d.clone(), n)).start().unwrap())
            .collect();
        for child in children {
            child
                .join_timeout(LIMIT)
                .unwrap()
                .expect("the child finished");
        }
        assert_eq!(d.len().unwrap(), 3);
        assert_eq!(d.get(&2).unwrap(), Some("from 2".to_string()));
        let hosted = manager.queue::<u32>().unwrap();
        hosted.put(1).unwrap();
        assert_eq!(hosted.get_timeout(LIMIT).unwrap(), 1);
        manager.shutdown().unwrap();
        assert!(d.len().unwrap_err().is_closed());
    });
}

#[test]
fn a_sync_caller_maps_and_applies_on_a_pool() {
    within(|| {
        let pool = Pool::builder().processes(2).build().unwrap();
        assert_eq!(pool.map(square, 0..100u64).unwrap()[9], 81);
        let chunked = pool.map_with(square, vec![1, 2, 3], |map| map.chunksize(1));
        assert_eq!(chunked.unwrap(), [1, 4, 9]);
        assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), [3, 7]);
        assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
        let pending = pool.apply_async(add, (2, 3));
        assert_eq!(pending.get().unwrap(), 5);
        let squares: Vec<u64> = pool.imap(square, 0..10u64).map(Result::unwrap).collect();
        assert_eq!(squares, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
        let mut unordered: Vec<u64> = pool
            .imap_unordered(square, 0..10u64)
            .map(Result::unwrap)
            .collect();
        unordered.sort_unstable();
        assert_eq!(unordered, squares);
        pool.close();
        pool.join().unwrap();
        assert!(pool.apply(square, (1,)).unwrap_err().is_closed());
    });
}

#[worker]
fn put_from_pool(reports: Queue<u64>, x: u64) {
    reports.put(x * 10).unwrap();
}

#[test]
fn a_plain_pool_worker_uses_a_blocking_queue() {
    within(|| {
        // A pool worker calls its functions from its serving runtime; a plain `fn` may block
        // there all the same.
        let pool = Pool::builder().processes(1).build().unwrap();
        let reports = Queue::new();
        pool.apply(put_from_pool, (reports.clone(), 4)).unwrap();
        assert_eq!(reports.get_timeout(LIMIT).unwrap(), 40);
    });
}

#[test]
fn a_process_starts_joins_and_times_out_a_join() {
    within(|| {
        let p = Process::new(sleep_then_square, (1_000, 7)).start().unwrap();
        assert!(p.is_alive());
        assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
        assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(49));
        assert_eq!(p.join().unwrap(), 49, "joining again gives the same result");
        assert_eq!(p.exitcode(), Some(0));
        assert!(!p.is_alive());

        let stopped = Process::new(sleep_then_square, (60_000, 1))
            .start()
            .unwrap();
        stopped.terminate();
        assert!(stopped.join().unwrap_err().is_worker_died());
        assert_eq!(stopped.exitcode(), Some(-15));
    });
}

#[test]
fn blocking_timeouts_return_when_nothing_comes() {
    within(|| {
        let queue = Queue::<u32>::new();
        let started = Instant::now();
        assert!(queue.get_timeout(SHORT).unwrap_err().is_empty());
        assert!(started.elapsed() >= SHORT);

        let event = Event::new();
        assert!(!event.wait_timeout(SHORT).unwrap());

        let lock = Lock::new();
        let _held = lock.acquire().unwrap();
        // Blocking callers of one process are one owner (no tokio task tells them apart),
        // so the contender is another process.
        let contender = Process::new(try_lock, (lock.clone(),)).start().unwrap();
        assert_eq!(contender.join_timeout(LIMIT).unwrap(), Some(false));

        let semaphore = Semaphore::new(1);
        let _permit = semaphore.acquire().unwrap();
        assert!(semaphore.acquire_timeout(SHORT).unwrap().is_none());

        let pool = Pool::builder().processes(1).build().unwrap();
        let mut pending = pool.apply_async(sleep_then_square, (1_000, 3));
        assert!(pending.get_timeout(SHORT).unwrap_err().is_timeout());
        assert_eq!(pending.get_timeout(LIMIT).unwrap(), 9);
        let overdue = pool.apply_with(sleep_then_square, (60_000, 1), |apply| apply.timeout(SHORT));
        assert!(overdue.unwrap_err().is_timeout());
    });
}

#[worker]
fn echo_twice(end: PipeEnd<String>, barrier: Barrier) -> usize {
    let message = end.recv_timeout(LIMIT).unwrap();
    end.send(format!("{message} {message}")).unwrap();
    barrier.wait_timeout(LIMIT).unwrap()
}

#[test]
fn a_plain_worker_uses_a_blocking_pipe_and_barrier() {
    within(|| {
        let (here, there) = pipe::<String>();
        let barrier = Barrier::new(2);
        let p = Process::new(echo_twice, (there, barrier.clone()))
            .start()
            .unwrap();
        here.send("hello".into()).unwrap();
        assert_eq!(here.recv_timeout(LIMIT).unwrap(), "hello hello");
        let mine = barrier.wait_timeout(LIMIT).unwrap();
        let theirs = p.join_timeout(LIMIT).unwrap().expect("the child finished");
        assert_eq!(mine + theirs, 1, "the parties' indices are 0 and 1");
        // The child's end closed when it exited: end of file, not a hang.
        assert!(here.recv_timeout(LIMIT).unwrap_err().is_closed());
    });
}

#[worker]
fn work_then_notify(tasks: JoinableQueue<u32>, done: Condition) -> u32 {
    let task = tasks.get_timeout(LIMIT).unwrap();
    tasks.task_done().unwrap();
    let guard = done.acquire().unwrap();
    guard.notify_all().unwrap();
    task
}

#[test]
fn a_plain_worker_uses_a_blocking_joinable_queue_and_condition() {
    within(|| {
        let (tasks, done) = (JoinableQueue::new(), Condition::new());
        // Held before the child starts, so its notify comes only once this wait released it.
        let mut guard = done.acquire().unwrap();
        let p = Process::new(work_then_notify, (tasks.clone(), done.clone()))
            .start()
            .unwrap();
        tasks.put(7).unwrap();
        assert!(
            guard.wait_timeout(LIMIT).unwrap(),
            "notified, not timed out"
        );
        drop(guard);
        tasks.join().unwrap();
        assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(7));
        let mut guard = done.acquire().unwrap();
        assert!(!guard.wait_for(|| false, Some(SHORT)).unwrap());
        assert!(guard.wait_for(|| true, None).unwrap());
    });
}

#[worker]
async fn put_async(queue: multiproc::Queue<u32>, item: u32) {
    queue.put(item).await.unwrap();
}

#[test]
fn a_blocking_handle_converts_to_its_async_twin() {
    within(|| {
        let queue = Queue::<u32>::new();
        let async_queue: multiproc::Queue<u32> = queue.clone().into();
        let p = Process::new(put_async, (async_queue, 5)).start().unwrap();
        assert_eq!(queue.get_timeout(LIMIT).unwrap(), 5);
        p.join_timeout(LIMIT).unwrap().expect("the child finished");
        let back = Queue::from(queue.as_async().clone());
        back.put(6).unwrap();
        assert_eq!(queue.get_timeout(LIMIT).unwrap(), 6);
    });
}

#[test]
fn a_blocking_call_in_an_async_context_panics() {
    within(|| {
        let queue = Queue::<u32>::new();
        queue.put(1).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let panic = std::panic::catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(async { queue.try_get() })
        }))
        .expect_err("a blocking call inside block_on panics");
        let message = panic_message(panic);
        assert!(message.contains("async context"), "{message}");
        // Nothing was taken: the panic came before the call.
        assert_eq!(queue.try_get().unwrap(), 1);
    });
}

#[worker]
async fn block_inside_async(event: Event) {
    let _ = event.set();
}

#[test]
fn a_blocking_call_in_an_async_worker_fails_its_call() {
    within(|| {
        let event = Event::new();
        let p = Process::new(block_inside_async, (event.clone(),))
            .start()
            .unwrap();
        let error = p.join_timeout(LIMIT).unwrap_err();
        assert!(error.is_panic(), "{error}");
        assert!(error.to_string().contains("async context"), "{error}");
        assert!(!event.is_set().unwrap());
    });
}

#[test]
fn an_rlock_belongs_to_the_thread_that_took_it() {
    within(|| {
        let lock = multiproc::blocking::RLock::new();
        let outer = lock.acquire().unwrap();
        let inner = lock.acquire().unwrap();
        let other = lock.clone();
        let from_another_thread = std::thread::spawn(move || {
            let taken = other.try_acquire().unwrap().is_some();
            let released = other.release().is_ok();
            (taken, released)
        })
        .join()
        .unwrap();
        assert_eq!(
            from_another_thread,
            (false, false),
            "another thread neither takes nor releases it"
        );
        drop(inner);
        drop(outer);
        let other = lock.clone();
        let taken = std::thread::spawn(move || other.try_acquire().unwrap().is_some())
            .join()
            .unwrap();
        assert!(taken, "free once the owner let go of every level");
    });
}
