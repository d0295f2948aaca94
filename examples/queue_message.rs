//! A message object passed to a worker through a Queue: Python's tutorial
//! (`q.put([42, None, 'hello'])` in a child, `q.get()` in the parent).
//!
//! ```sh
//! cargo run --example queue_message
//! ```

use multiproc::{Process, Queue, worker};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    answer: u32,
    nothing: Option<String>,
    greeting: String,
}

#[worker]
async fn send_message(queue: Queue<Message>) {
    let message = Message {
        answer: 42,
        nothing: None,
        greeting: "hello".into(),
    };
    queue
        .put(message)
        .await
        .expect("the parent serves the queue");
    // Returning at once is safe: `put` resolved only once the parent's hub held the message.
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let queue = Queue::new();
    let p = Process::new(send_message, (queue.clone(),)).start().await?;
    println!("received from {}: {:?}", p.name(), queue.get().await?);
    p.join().await?;
    Ok(())
}
