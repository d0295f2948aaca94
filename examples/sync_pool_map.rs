//! A pool with an initializer, as in Python's tutorial, with no async at all: every worker
//! sets up its state once, then squares its share of the input. The async version is
//! `pool_map`.
//!
//! ```python
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     with Pool(5) as p:
//!         print(p.map(f, [1, 2, 3]))
//! ```
//!
//! ```sh
//! cargo run --example sync_pool_map
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::blocking::Pool;
use multiproc::worker;

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
fn f(x: u64) -> u64 {
    x * x
}

#[worker]
fn square_plus_offset(x: u64) -> u64 {
    x * x + OFFSET.load(Ordering::SeqCst)
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    let p = Pool::builder().processes(5).build()?;
    println!("{:?}", p.map(f, [1, 2, 3])?);

    let pool = Pool::builder()
        .processes(4)
        .initializer(set_offset, (1_000,))
        .build()?;
    let results = pool.map(square_plus_offset, 0..10u64)?;
    println!("map(square_plus_offset, 0..10) = {results:?}");
    let results = pool.map(square_plus_offset, 0..100_000u64)?;
    println!(
        "map over 100,000 items: first {}, last {}",
        results[0],
        results[results.len() - 1]
    );
    let first_big = pool
        .imap(square_plus_offset, 0..u64::MAX)
        .find(|square| square.as_ref().is_ok_and(|square| *square > 1_000_000));
    println!("imap over an endless input, first above a million: {first_big:?}");
    pool.close();
    pool.join()
}
