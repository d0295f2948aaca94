//! Consumers draining a JoinableQueue of tasks, one poison pill each, with results on a second
//! queue: Python's `Consumer`/`Task` tutorial example.
//!
//! ```sh
//! cargo run --example task_queue
//! ```

use std::time::Duration;

use multiproc::{JoinableQueue, Process, Queue, worker};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Task {
    a: u64,
    b: u64,
}

#[worker]
async fn consumer(tasks: JoinableQueue<Option<Task>>, results: Queue<String>) {
    let me = multiproc::current_process().name;
    loop {
        let task = tasks.get().await.expect("the parent serves the queue");
        let Some(task) = task else {
            println!("{me}: exiting");
            tasks.task_done().await.expect("one task_done per get");
            break;
        };
        println!("{me}: {} * {}", task.a, task.b);
        tokio::time::sleep(Duration::from_millis(10)).await; // pretend it takes time
        let answer = format!("{} * {} = {}", task.a, task.b, task.a * task.b);
        results
            .put(answer)
            .await
            .expect("the parent serves the queue");
        tasks.task_done().await.expect("one task_done per get");
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let tasks = JoinableQueue::new();
    let results = Queue::new();
    let consumers = multiproc::cpu_count() * 2;
    println!("creating {consumers} consumers");
    let mut children = Vec::new();
    for _ in 0..consumers {
        children.push(
            Process::new(consumer, (tasks.clone(), results.clone()))
                .start()
                .await?,
        );
    }
    const JOBS: u64 = 10;
    for i in 0..JOBS {
        tasks.put(Some(Task { a: i, b: i })).await?;
    }
    for _ in 0..consumers {
        tasks.put(None).await?; // a poison pill for each consumer
    }
    tasks.join().await?;
    for _ in 0..JOBS {
        println!("result: {}", results.get().await?);
    }
    for p in children {
        p.join().await?;
        println!("{} exited with {:?}", p.name(), p.exitcode());
    }
    Ok(())
}
