//! Two stages synchronised with a Condition: stage 1 prepares, then wakes every stage-2 process.
//!
//! ```sh
//! cargo run --example condition
//! ```

use std::time::Duration;

use multiproc::{Condition, Event, Process, worker};

#[worker]
async fn stage_1(condition: Condition, stage_2_ready: Vec<Event>) {
    for ready in &stage_2_ready {
        ready.wait().await.expect("the parent serves the events");
    }
    let guard = condition
        .acquire()
        .await
        .expect("the parent serves the condition");
    println!("stage_1: done and ready for stage 2");
    guard.notify_all().await.expect("stage_1 holds the lock");
}

#[worker]
async fn stage_2(condition: Condition, ready: Event) {
    let me = multiproc::current_process().name;
    let mut guard = condition
        .acquire()
        .await
        .expect("the parent serves the condition");
    println!("{me}: waiting for stage 1");
    ready.set().await.expect("the parent serves the event");
    let notified = guard
        .wait_timeout(Duration::from_secs(10))
        .await
        .expect("the parent serves the condition");
    println!("{me}: running (notified: {notified})");
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let condition = Condition::new();
    let ready: Vec<Event> = (0..2).map(|_| Event::new()).collect();
    let mut stage_2s = Vec::new();
    for (i, event) in ready.iter().enumerate() {
        stage_2s.push(
            Process::new(stage_2, (condition.clone(), event.clone()))
                .name(format!("s2-{i}"))
                .start()
                .await?,
        );
    }
    // Each stage 2 sets its event while holding the lock and releases it only in `wait`, so
    // once stage 1 has the lock, every stage 2 is waiting.
    let s1 = Process::new(stage_1, (condition.clone(), ready))
        .name("s1")
        .start()
        .await?;
    s1.join().await?;
    for p in stage_2s {
        p.join().await?;
    }
    Ok(())
}
