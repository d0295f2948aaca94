//! A message passed from a child through a Queue, as in Python's tutorial, with no async at
//! all. The async version is `queue_message`.
//!
//! ```python
//! def f(q):
//!     q.put([42, None, 'hello'])
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     p = Process(target=f, args=(q,))
//!     p.start()
//!     print(q.get())    # prints "[42, None, 'hello']"
//!     p.join()
//! ```
//!
//! ```sh
//! cargo run --example sync_queue_message
//! ```

use multiproc::blocking::{Process, Queue};
use multiproc::worker;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    answer: u32,
    nothing: Option<String>,
    greeting: String,
}

#[worker]
fn f(q: Queue<Message>) {
    let message = Message {
        answer: 42,
        nothing: None,
        greeting: "hello".into(),
    };
    // Returns once the parent holds the message: exiting right after loses nothing.
    q.put(message).expect("the parent serves the queue");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    let q = Queue::new();
    let p = Process::new(f, (q.clone(),)).start()?;
    println!("{:?}", q.get()?);
    p.join()
}
