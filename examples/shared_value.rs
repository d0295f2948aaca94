//! Python's `Value` counter: four processes add to one number in shared memory, each
//! increment under the value's lock, and the total comes out exact. An `AtomicValue` counts
//! the same way without a lock.
//!
//! ```sh
//! cargo run --example shared_value
//! ```

use std::sync::atomic::Ordering;

use multiproc::{AtomicValue, Process, SharedValue, worker};

const INCREMENTS: u64 = 10_000;

#[worker]
async fn count(counter: SharedValue<u64>, fast: AtomicValue<u64>) {
    for _ in 0..INCREMENTS {
        // `+=` reads, adds and writes back: the lock makes the three one step.
        *counter.lock().await.expect("the lock's process is alive") += 1;
        fast.fetch_add(1, Ordering::Relaxed);
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let counter = SharedValue::new(0u64)?;
    let fast = AtomicValue::new(0u64)?;
    let mut children = Vec::new();
    for _ in 0..4 {
        children.push(
            Process::new(count, (counter.clone(), fast.clone()))
                .start()
                .await?,
        );
    }
    for child in children {
        child.join().await?;
    }
    let total = counter.get().await?;
    println!("under the lock: {total} (expected {})", 4 * INCREMENTS);
    println!("atomic: {}", fast.load(Ordering::Relaxed));
    assert_eq!(total, 4 * INCREMENTS);
    assert_eq!(fast.load(Ordering::Relaxed), 4 * INCREMENTS);
    Ok(())
}
