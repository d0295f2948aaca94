//! JoinableQueue: task_done and join across processes.

use multiproc::{JoinableQueue, Process, Queue, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn consumer(tasks: JoinableQueue<Option<u64>>, results: Queue<u64>) {
    while let Some(n) = tasks.get().await.unwrap() {
        results.put(n * n).await.unwrap();
        tasks.task_done().await.unwrap();
    }
    tasks.task_done().await.unwrap();
}

#[tokio::test]
async fn join_returns_once_consumers_mark_every_task_done() {
    let tasks = JoinableQueue::new();
    let results = Queue::new();
    let mut consumers = Vec::new();
    for _ in 0..2 {
        consumers.push(
            within(Process::new(consumer, (tasks.clone(), results.clone())).start())
                .await
                .unwrap(),
        );
    }
    for n in 0..20u64 {
        within(tasks.put(Some(n))).await.unwrap();
    }
    for _ in 0..2 {
        within(tasks.put(None)).await.unwrap();
    }
    within(tasks.join()).await.unwrap();
    let mut sum = 0;
    for _ in 0..20 {
        sum += within(results.get()).await.unwrap();
    }
    assert_eq!(sum, (0..20u64).map(|n| n * n).sum::<u64>());
    for p in consumers {
        within(p.join()).await.unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
}

#[tokio::test]
async fn an_extra_task_done_is_an_error_and_the_queue_stays_usable() {
    let tasks = JoinableQueue::new();
    within(tasks.put(1u32)).await.unwrap();
    within(tasks.get()).await.unwrap();
    within(tasks.task_done()).await.unwrap();
    let error = within(tasks.task_done()).await.unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidState, "{error}");
    within(tasks.join()).await.unwrap();
    within(tasks.put(2)).await.unwrap();
    assert_eq!(within(tasks.get()).await.unwrap(), 2);
}
