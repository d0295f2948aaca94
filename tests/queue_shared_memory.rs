//! Puts from another process go through shared memory: held as soon as `put` returns (even
//! if the producer is SIGKILLed the next instant), in order with the puts too large for the
//! ring, seen by every later request, and waking a getter that waits.

use std::time::{Duration, Instant};

use multiproc::{JoinableQueue, Process, Queue, worker};

multiproc::test_support!();

mod common;
use common::within;

/// Puts `count` numbers, then kills its own process the instant the last put returned.
#[worker]
async fn put_then_sigkill(queue: Queue<u64>, count: u64) {
    for n in 0..count {
        queue.put(n).await.unwrap();
    }
    // SAFETY: kill with a valid signal on this very process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Puts small and large items in turn: the large ones cannot take the ring.
#[worker]
async fn put_mixed(queue: Queue<Vec<u8>>, count: u64) {
    for n in 0..count {
        let len = if n % 10 == 9 { 200_000 } else { 8 };
        queue.put(vec![n as u8; len]).await.unwrap();
    }
}

#[worker]
async fn put_later(queue: Queue<u64>, delay_ms: u64) {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    queue.put(7).await.unwrap();
}

#[worker]
async fn put_joinable(queue: JoinableQueue<u64>, count: u64) {
    for n in 0..count {
        queue.put(n).await.unwrap();
    }
}

#[tokio::test]
async fn puts_of_a_producer_killed_right_after_them_are_all_kept_in_order() {
    let queue = Queue::new();
    let count = 20_000;
    let p = within(Process::new(put_then_sigkill, (queue.clone(), count)).start())
        .await
        .unwrap();
    let error = within(p.join()).await.unwrap_err();
    assert_eq!(
        error.exit_status(),
        Some(multiproc::ExitStatus::Signal(9)),
        "{error}"
    );
    for expected in 0..count {
        assert_eq!(within(queue.get()).await.unwrap(), expected);
    }
    assert!(within(queue.try_get()).await.unwrap_err().is_empty());
}

#[tokio::test]
async fn large_puts_stay_in_order_with_the_small_ones() {
    let queue = Queue::new();
    let p = within(Process::new(put_mixed, (queue.clone(), 100)).start())
        .await
        .unwrap();
    within(p.join()).await.unwrap();
    assert_eq!(within(queue.len()).await.unwrap(), 100);
    for n in 0..100u64 {
        let item = within(queue.get()).await.unwrap();
        assert_eq!(item[0], n as u8, "item {n} out of order");
        assert_eq!(item.len(), if n % 10 == 9 { 200_000 } else { 8 });
    }
}

#[tokio::test]
async fn a_waiting_getter_is_woken_by_a_put_through_the_ring() {
    let queue = Queue::new();
    let p = within(Process::new(put_later, (queue.clone(), 300)).start())
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(within(queue.get()).await.unwrap(), 7);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    within(p.join()).await.unwrap();
    // A second round: the ring is attached now, and the getter parks first.
    let p = within(Process::new(put_later, (queue.clone(), 300)).start())
        .await
        .unwrap();
    assert_eq!(within(queue.get()).await.unwrap(), 7);
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn a_joinable_queue_counts_what_came_through_the_ring() {
    let queue = JoinableQueue::new();
    let p = within(Process::new(put_joinable, (queue.clone(), 50)).start())
        .await
        .unwrap();
    within(p.join()).await.unwrap();
    let joined = tokio::spawn({
        let queue = queue.clone();
        async move { queue.join().await }
    });
    for _ in 0..50 {
        within(queue.get()).await.unwrap();
        tokio::task::yield_now().await;
        assert!(
            !joined.is_finished(),
            "join returned before every task was done"
        );
        within(queue.task_done()).await.unwrap();
    }
    within(joined).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_closed_queue_refuses_puts_through_the_ring() {
    let queue: Queue<u64> = Queue::new();
    let p = within(Process::new(put_joinable_like, (queue.clone(),)).start())
        .await
        .unwrap();
    // The child attached its ring with its first put and waits for the close.
    assert_eq!(within(queue.get()).await.unwrap(), 1);
    within(queue.close()).await.unwrap();
    let refused = within(p.join()).await.unwrap();
    assert!(refused, "a put after close fails with Closed");
}

#[worker]
async fn put_joinable_like(queue: Queue<u64>) -> bool {
    queue.put(1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match queue.put(2).await {
            Ok(()) => {}
            Err(error) => return error.is_closed(),
        }
    }
    false
}

#[worker]
async fn serve_a_queue(handles: Queue<Queue<u64>>) {
    handles.put(Queue::new()).await.unwrap();
    std::future::pending::<()>().await;
}

/// A child serving a new queue, to which this process has put 0 (attaching its ring).
async fn start_queue_server() -> (Process<()>, Queue<u64>) {
    let handles = Queue::new();
    let child = within(Process::new(serve_a_queue, (handles.clone(),)).start())
        .await
        .unwrap();
    let queue = within(handles.get()).await.unwrap();
    within(queue.put(0)).await.unwrap();
    (child, queue)
}

#[tokio::test]
async fn a_put_takes_no_round_trip_once_the_ring_is_attached() {
    let (child, queue) = start_queue_server().await;
    // SAFETY: kill with a valid signal on our own child.
    unsafe { libc::kill(child.pid() as i32, libc::SIGSTOP) };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Each put would wait for the stopped process if it were a round trip.
    within(async {
        for n in 1..1000 {
            queue.put(n).await.unwrap();
        }
    })
    .await;
    // SAFETY: as above.
    unsafe { libc::kill(child.pid() as i32, libc::SIGCONT) };
    assert_eq!(within(queue.len()).await.unwrap(), 1000);
    child.kill();
    let _ = within(child.join()).await;
}

#[tokio::test]
async fn a_put_through_the_ring_of_a_dead_hub_fails_closed() {
    let (child, queue) = start_queue_server().await;
    child.kill();
    let _ = within(child.join()).await;
    // The connection's reader sees the hub's socket close a moment after the death.
    let deadline = Instant::now() + Duration::from_secs(2);
    let error = loop {
        match within(queue.put(1)).await {
            Err(error) => break error,
            Ok(()) => assert!(
                Instant::now() < deadline,
                "puts to a dead hub still succeed"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(error.is_closed(), "{error}");
}
