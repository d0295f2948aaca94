//! A process killed in the middle of a get breaks nothing for the others.

use multiproc::{Event, Process, Queue, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn get_forever(queue: Queue<u32>, waiting: Event) -> u32 {
    waiting.set().await.unwrap();
    queue.get().await.unwrap()
}

#[worker]
async fn put_into_full(queue: Queue<u32>, waiting: Event) {
    waiting.set().await.unwrap();
    queue.put(99).await.unwrap();
}

#[worker]
async fn put_large(queue: Queue<Vec<u8>>) {
    queue.put(vec![7u8; 1 << 20]).await.unwrap();
}

#[worker]
async fn get_one(queue: Queue<u32>) -> u32 {
    queue.get().await.unwrap()
}

#[tokio::test]
async fn a_consumer_killed_mid_get_takes_no_item_with_it() {
    let queue = Queue::new();
    let waiting = Event::new();
    let p = within(Process::new(get_forever, (queue.clone(), waiting.clone())).start())
        .await
        .unwrap();
    within(waiting.wait()).await.unwrap();
    p.kill();
    let _ = within(p.join()).await;
    within(queue.put(5)).await.unwrap();
    let q = within(Process::new(get_one, (queue.clone(),)).start())
        .await
        .unwrap();
    assert_eq!(within(q.join()).await.unwrap(), 5);
}

#[tokio::test]
async fn a_handle_whose_hub_is_gone_fails_instead_of_hanging() {
    // Simulated with an id the hub never handed out: the hub answers at once.
    let queue: Queue<u32> = Queue::new();
    let bytes = postcard::to_stdvec(&queue).unwrap();
    let mut forged = bytes.clone();
    *forged.last_mut().unwrap() = 0x7f;
    let stranger: Queue<u32> = postcard::from_bytes(&forged).unwrap();
    let error = within(stranger.get()).await.unwrap_err();
    assert!(error.is_closed(), "{error}");
}

#[tokio::test]
async fn a_producer_killed_mid_put_breaks_nothing_else() {
    let queue = Queue::bounded(1);
    within(queue.put(1)).await.unwrap();
    let waiting = Event::new();
    let p = within(Process::new(put_into_full, (queue.clone(), waiting.clone())).start())
        .await
        .unwrap();
    within(waiting.wait()).await.unwrap();
    p.kill();
    let _ = within(p.join()).await;
    assert_eq!(within(queue.get()).await.unwrap(), 1);
    // The killed producer's put reached the hub whole or not at all (its item may land if the
    // hub freed room before it saw the death); either way the queue keeps working.
    // Room is handed to a parked put in the same step as the get that frees it.
    match within(queue.try_get()).await {
        Ok(item) => assert_eq!(item, 99),
        Err(error) => assert!(error.is_empty(), "{error}"),
    }
    within(queue.put(2)).await.unwrap();
    assert_eq!(within(queue.get()).await.unwrap(), 2);
    assert!(within(queue.try_get()).await.unwrap_err().is_empty());
}

#[tokio::test]
async fn joining_a_child_that_put_a_large_item_does_not_deadlock() {
    let queue = Queue::new();
    let p = within(Process::new(put_large, (queue.clone(),)).start())
        .await
        .unwrap();
    // Python deadlocks here: its child waits for the item to be read before it can exit.
    within(p.join()).await.unwrap();
    assert_eq!(within(queue.get()).await.unwrap().len(), 1 << 20);
}
