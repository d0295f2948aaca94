//! A process killed in the middle of a get breaks nothing for the others.

use std::time::Duration;

use multiproc::{Event, Process, Queue, worker};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("timed out")
}

#[worker]
async fn get_forever(queue: Queue<u32>, waiting: Event) -> u32 {
    waiting.set().await.unwrap();
    queue.get().await.unwrap()
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
