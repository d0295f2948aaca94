//! `forward_tracing` sends the children's `tracing` events to this process's subscriber, here
//! `tracing-subscriber`'s `fmt`, each with `process.name` and `process.pid`, inside the span
//! the call was made in.
//!
//! ```sh
//! cargo run --example tracing_forward
//! ```
//!
//! prints, among the pool's lifecycle events:
//!
//! ```text
//! INFO batch{size=4}: tracing_forward: squaring x=3 process.name="PoolWorker-2" process.pid=4242
//! ```

use std::future::IntoFuture;

use multiproc::{Pool, worker};
use tracing::Instrument;

#[worker]
fn square(x: u64) -> u64 {
    tracing::info!(x, "squaring");
    x * x
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    // Before the pool starts: its workers are told at start-up.
    multiproc::forward_tracing(tracing::Level::INFO);
    let pool = Pool::builder().processes(2).build().await?;
    let squares = pool
        .map(square, 0..4u64)
        .chunksize(1)
        .into_future()
        .instrument(tracing::info_span!("batch", size = 4))
        .await?;
    tracing::info!(?squares, "the map returned");
    pool.close();
    pool.join().await?;
    Ok(())
}
