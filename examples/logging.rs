//! `log_to_stderr` prints lifecycle events in Python's format, `[INFO/Process-1] ...`, for this
//! process and every child started afterwards; application `tracing` events too.
//!
//! ```sh
//! cargo run --example logging
//! ```

use multiproc::{Process, worker};

#[worker]
fn work(x: u64) -> u64 {
    tracing::info!("squaring {x}");
    x * x
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    multiproc::log_to_stderr(tracing::Level::INFO);
    let p = Process::new(work, (9,)).start().await?;
    let result = p.join().await?;
    tracing::info!("the child returned {result}");
    Ok(())
}
