//! Queue: items cross processes, none is lost, errors are distinct, backpressure is real.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use multiproc::{Event, Process, Queue, worker};
use serde::{Serialize, Serializer};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn put_then_exit(queue: Queue<String>) {
    queue.put("last words".to_string()).await.unwrap();
    // Python loses the item here: its feeder thread never gets to write it.
    std::process::exit(0);
}

#[worker]
async fn produce(queue: Queue<u64>, count: u64) {
    for n in 0..count {
        queue.put(n).await.unwrap();
    }
}

#[worker]
async fn produce_through_sink(mut queue: Queue<u64>, count: u64) {
    let mut items = futures::stream::iter((0..count).map(Ok));
    queue.send_all(&mut items).await.unwrap();
    queue.flush().await.unwrap();
}

#[worker]
async fn consume(queue: Queue<u64>, count: u64) -> u64 {
    let mut sum = 0;
    for _ in 0..count {
        sum += queue.get().await.unwrap();
    }
    sum
}

#[worker]
async fn take_two_through_a_stream(mut queue: Queue<u64>) -> Vec<u64> {
    let first = queue.next().await.unwrap().unwrap();
    let second = queue.next().await.unwrap().unwrap();
    // The stream read ahead; dropping the handle gives the rest back before the child exits.
    vec![first, second]
}

#[worker]
async fn fill_bounded(queue: Queue<u64>, started: Event, count: u64) {
    started.set().await.unwrap();
    for n in 0..count {
        queue.put(n).await.unwrap();
    }
}

#[tokio::test]
async fn put_then_exit_loses_nothing() {
    let queue = Queue::new();
    let p = within(Process::new(put_then_exit, (queue.clone(),)).start())
        .await
        .unwrap();
    // The worker never returned, so join reports its exit; the item is what matters.
    let _ = within(p.join()).await;
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(within(queue.get()).await.unwrap(), "last words");
}

#[tokio::test]
async fn items_from_a_child_arrive_in_order() {
    let queue = Queue::new();
    let p = within(Process::new(produce, (queue.clone(), 200)).start())
        .await
        .unwrap();
    for expected in 0..200 {
        assert_eq!(within(queue.get()).await.unwrap(), expected);
    }
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn a_sink_pipelines_and_a_stream_drains() {
    let mut queue = Queue::new();
    let p = within(Process::new(produce_through_sink, (queue.clone(), 5_000)).start())
        .await
        .unwrap();
    within(p.join()).await.unwrap();
    // The child has exited: every item its flush reported is held by the hub.
    assert_eq!(within(queue.len()).await.unwrap(), 5_000);
    within(queue.close()).await.unwrap();
    let items: Vec<u64> = within((&mut queue).map(Result::unwrap).collect()).await;
    assert_eq!(items, (0..5_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_child_consumes_what_the_parent_puts() {
    let queue = Queue::new();
    let p = within(Process::new(consume, (queue.clone(), 100)).start())
        .await
        .unwrap();
    within(queue.put_many(0..100u64)).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), (0..100).sum::<u64>());
}

#[tokio::test]
async fn empty_and_full_and_closed_are_distinct() {
    let queue: Queue<u32> = Queue::bounded(1);
    assert!(within(queue.try_get()).await.unwrap_err().is_empty());
    let started = Instant::now();
    let error = within(queue.get_timeout(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(error.is_empty(), "{error}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    within(queue.try_put(1)).await.unwrap();
    assert!(within(queue.try_put(2)).await.unwrap_err().is_full());
    let error = within(queue.put_timeout(2, Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(error.is_full(), "{error}");
    within(queue.close()).await.unwrap();
    assert!(within(queue.put(3)).await.unwrap_err().is_closed());
    assert_eq!(within(queue.get()).await.unwrap(), 1, "close drains first");
    assert!(within(queue.get()).await.unwrap_err().is_closed());
}

struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

#[derive(Serialize, serde::Deserialize)]
enum Item {
    Fine(u32),
    #[serde(skip_deserializing)]
    Broken(#[serde(serialize_with = "refuse")] u32),
}

fn refuse<S: Serializer>(_: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    Unserializable.serialize(serializer)
}

#[tokio::test]
async fn a_value_that_fails_to_serialize_is_an_error_from_put() {
    let queue = Queue::new();
    let error = within(queue.put(Item::Broken(1))).await.unwrap_err();
    assert!(error.is_serialization(), "{error}");
    within(queue.put(Item::Fine(2))).await.unwrap();
    assert!(matches!(within(queue.get()).await.unwrap(), Item::Fine(2)));
}

#[tokio::test]
async fn a_bounded_queue_holds_back_a_producer_in_another_process() {
    let queue = Queue::bounded(3);
    let started = Event::new();
    let p = within(Process::new(fill_bounded, (queue.clone(), started.clone(), 10)).start())
        .await
        .unwrap();
    within(started.wait()).await.unwrap();
    // The producer can put 3 items, then waits at the hub; wait until it is there.
    while within(queue.len()).await.unwrap() < 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(p.is_alive(), "the producer must be held back");
    assert_eq!(within(queue.len()).await.unwrap(), 3);
    for expected in 0..10 {
        assert_eq!(within(queue.get()).await.unwrap(), expected);
        assert!(within(queue.len()).await.unwrap() <= 3);
    }
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_get_loses_no_item() {
    let queue: Queue<u32> = Queue::new();
    let getter = queue.clone();
    let waiting = tokio::spawn(async move { getter.get().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    waiting.abort();
    let _ = waiting.await;
    within(queue.put(7)).await.unwrap();
    assert_eq!(
        within(queue.get_timeout(Duration::from_secs(5)))
            .await
            .unwrap(),
        7
    );
}

#[tokio::test]
async fn a_stream_gives_back_what_it_read_ahead() {
    let queue = Queue::new();
    within(queue.put_many(0..10u64)).await.unwrap();
    let p = within(Process::new(take_two_through_a_stream, (queue.clone(),)).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), vec![0, 1]);
    for expected in 2..10 {
        assert_eq!(within(queue.try_get()).await.unwrap(), expected);
    }
}

#[worker]
async fn full_and_capacity(queue: Queue<u64>) -> (bool, Option<usize>) {
    (queue.full().await.unwrap(), queue.capacity().await.unwrap())
}

#[tokio::test]
async fn full_and_capacity_are_pythons_in_every_process() {
    let unbounded = Queue::<u64>::new();
    assert_eq!(within(unbounded.capacity()).await.unwrap(), None);
    within(unbounded.put_many(0..100)).await.unwrap();
    assert!(
        !within(unbounded.full()).await.unwrap(),
        "an unbounded queue is never full"
    );

    let bounded = Queue::<u64>::bounded(2);
    assert_eq!(within(bounded.capacity()).await.unwrap(), Some(2));
    assert!(!within(bounded.full()).await.unwrap());
    within(bounded.put(1)).await.unwrap();
    assert!(!within(bounded.full()).await.unwrap());
    within(bounded.put(2)).await.unwrap();
    assert!(within(bounded.full()).await.unwrap());
    assert!(within(bounded.try_put(3)).await.unwrap_err().is_full());

    // A child's handle asks the same queue.
    let child = within(Process::new(full_and_capacity, (bounded.clone(),)).start())
        .await
        .unwrap();
    assert_eq!(within(child.join()).await.unwrap(), (true, Some(2)));
    within(bounded.get()).await.unwrap();
    assert!(!within(bounded.full()).await.unwrap());
    let child = within(Process::new(full_and_capacity, (unbounded.clone(),)).start())
        .await
        .unwrap();
    assert_eq!(within(child.join()).await.unwrap(), (false, None));
}
