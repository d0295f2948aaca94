//! `map` with an initializer, as in Python's tutorial: every worker sets up its state once,
//! then squares its share of the input.
//!
//! ```text
//! cargo run --example pool_map
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::{Pool, worker};

/// Set once per worker by the initializer.
static OFFSET: AtomicU64 = AtomicU64::new(0);

#[worker]
fn set_offset(offset: u64) {
    OFFSET.store(offset, Ordering::SeqCst);
    println!(
        "{} (pid {}) initialized with offset {offset}",
        multiproc::current_process().name,
        std::process::id()
    );
}

#[worker]
fn square_plus_offset(x: u64) -> u64 {
    x * x + OFFSET.load(Ordering::SeqCst)
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let pool = Pool::builder()
        .processes(4)
        .initializer(set_offset, (1_000,))
        .build()
        .await?;
    let results = pool.map(square_plus_offset, 0..10u64).await?;
    println!("map(square_plus_offset, 0..10) = {results:?}");
    let results = pool.map(square_plus_offset, 0..100_000u64).await?;
    println!(
        "map over 100,000 items: first {}, last {}",
        results[0],
        results[results.len() - 1]
    );
    pool.close();
    pool.join().await?;
    Ok(())
}
