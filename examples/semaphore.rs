//! A Semaphore limiting concurrency to 2 of 5 processes, with an active-count printed by each.
//!
//! ```sh
//! cargo run --example semaphore
//! ```

use std::time::Duration;

use multiproc::{Process, Queue, Semaphore, worker};

#[worker]
async fn worker_with_permit(semaphore: Semaphore, active: Queue<i32>) {
    let me = multiproc::current_process().name;
    let _permit = semaphore
        .acquire()
        .await
        .expect("the parent serves the semaphore");
    active.put(1).await.expect("the parent serves the queue");
    println!("{me}: running");
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("{me}: done");
    active.put(-1).await.expect("the parent serves the queue");
    // The permit goes back when `_permit` is dropped.
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let semaphore = Semaphore::new(2);
    let active = Queue::new();
    let mut children = Vec::new();
    for i in 0..5 {
        children.push(
            Process::new(worker_with_permit, (semaphore.clone(), active.clone()))
                .name(format!("worker-{i}"))
                .start()
                .await?,
        );
    }
    let (mut running, mut most) = (0, 0);
    for _ in 0..10 {
        running += active.get().await?;
        most = most.max(running);
        println!("main: {running} running");
    }
    for p in children {
        p.join().await?;
    }
    println!("at most {most} ran at once");
    assert!(most <= 2);
    Ok(())
}
