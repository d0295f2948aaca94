//! Pool: map, starmap, imap, imap_unordered; chunking and order.

use std::time::Duration;

use futures::StreamExt;
use multiproc::{Pool, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[worker]
fn slow_inverse(x: u64) -> u64 {
    // Earlier items take longer, so completion order differs from input order.
    std::thread::sleep(Duration::from_millis(40 - x * 10));
    x
}

#[worker]
fn pid_of(_x: u64) -> u32 {
    std::process::id()
}

async fn pool(processes: usize) -> Pool {
    within(Pool::builder().processes(processes).build())
        .await
        .unwrap()
}

#[tokio::test]
async fn map_keeps_input_order() {
    let pool = pool(2).await;
    let squares = within(pool.map(square, 0..10_000u64)).await.unwrap();
    assert_eq!(squares, (0..10_000u64).map(|x| x * x).collect::<Vec<_>>());
    let squares = within(pool.map(square, vec![3, 1, 2]).chunksize(1))
        .await
        .unwrap();
    assert_eq!(squares, [9, 1, 4]);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn empty_input_gives_empty_output() {
    let pool = pool(1).await;
    let squares = within(pool.map(square, Vec::<u64>::new())).await.unwrap();
    assert!(squares.is_empty());
    let streamed: Vec<_> = within(pool.imap(square, Vec::<u64>::new()).collect()).await;
    assert!(streamed.is_empty());
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn chunksize_zero_is_invalid_input() {
    let pool = pool(1).await;
    let error = within(pool.map(square, vec![1]).chunksize(0))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::InvalidInput, "{error}");
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn starmap_takes_argument_tuples() {
    let pool = pool(2).await;
    let sums = within(pool.starmap(add, vec![(1, 2), (3, 4)]))
        .await
        .unwrap();
    assert_eq!(sums, [3, 7]);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn map_spreads_work_over_the_workers() {
    let pool = pool(2).await;
    let pids = within(pool.map(pid_of, 0..64u64).chunksize(1))
        .await
        .unwrap();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let mut workers = pool.pids();
    workers.sort_unstable();
    assert_eq!(distinct, workers);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn imap_is_ordered_and_imap_unordered_is_not() {
    let pool = pool(4).await;
    let ordered: Vec<u64> = within(
        pool.imap(slow_inverse, 0..4u64)
            .chunksize(1)
            .map(|r| r.unwrap())
            .collect(),
    )
    .await;
    assert_eq!(ordered, [0, 1, 2, 3]);
    let unordered: Vec<u64> = within(
        pool.imap_unordered(slow_inverse, 0..4u64)
            .chunksize(1)
            .map(|r| r.unwrap())
            .collect(),
    )
    .await;
    let mut sorted = unordered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3]);
    assert_ne!(
        unordered,
        [0, 1, 2, 3],
        "completion order follows task length"
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn imap_pulls_a_lazy_input_with_a_bounded_window() {
    let pool = pool(2).await;
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = pulled.clone();
    // An endless input: only what the window allows may be pulled.
    let inputs = (0u64..).inspect(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let mut stream = pool.imap(square, inputs).chunksize(10);
    let mut taken = Vec::new();
    while taken.len() < 25 {
        taken.push(within(stream.next()).await.unwrap().unwrap());
    }
    assert_eq!(taken, (0..25u64).map(|x| x * x).collect::<Vec<_>>());
    let pulled = pulled.load(std::sync::atomic::Ordering::SeqCst);
    // 25 consumed + at most 2 × 2 workers chunks of 10 ahead.
    assert!(pulled <= 30 + 2 * 2 * 10, "pulled {pulled} items");
    drop(stream);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn imap_stream_takes_a_stream_input() {
    let pool = pool(2).await;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let inputs = tokio_stream_of(receiver);
    let mut stream = pool.imap_stream(square, inputs, true);
    for x in 0..5u64 {
        sender.send(x).unwrap();
        // Each item comes back before the next is sent: a partial chunk is not held back.
        assert_eq!(within(stream.next()).await.unwrap().unwrap(), x * x);
    }
    drop(sender);
    assert!(within(stream.next()).await.is_none());
    within(pool.terminate()).await.unwrap();
}

fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<u64>,
) -> impl futures::Stream<Item = u64> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test]
async fn imap_of_many_items_completes() {
    let pool = pool(2).await;
    let total = within(
        pool.imap_unordered(square, 0..200_000u64)
            .fold(0u64, |sum, r| async move { sum + r.unwrap() % 1000 }),
    )
    .await;
    assert_eq!(total, (0..200_000u64).map(|x| x * x % 1000).sum::<u64>());
    within(pool.terminate()).await.unwrap();
}
