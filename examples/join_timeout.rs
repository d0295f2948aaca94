//! `join_timeout` returns within its timeout even while the child runs; the child can then be
//! joined again later.
//!
//! ```sh
//! cargo run --example join_timeout
//! ```

use std::time::{Duration, Instant};

use multiproc::{Process, worker};

#[worker]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1_500));
    x * x
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let p = Process::new(slow_square, (12,)).start().await?;
    let started = Instant::now();
    let early = p.join_timeout(Duration::from_millis(500)).await?;
    println!(
        "after {:?}: {:?}, alive: {}, exitcode: {:?}",
        started.elapsed(),
        early,
        p.is_alive(),
        p.exitcode()
    );
    let late = p.join_timeout(Duration::from_secs(5)).await?;
    println!(
        "after {:?}: {:?}, exitcode: {:?}",
        started.elapsed(),
        late,
        p.exitcode()
    );
    Ok(())
}
