//! A progress bar over 100,000 items driven by `imap_unordered`: the Rust form of Python's
//! `for r in tqdm(pool.imap_unordered(f, xs))`.
//!
//! ```text
//! cargo run --release --example progress
//! ```

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use multiproc::{Pool, worker};

#[worker]
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    const ITEMS: u64 = 100_000;
    let pool = Pool::new().await?;
    let bar = ProgressBar::new(ITEMS).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} items, {per_sec}, eta {eta}")
            .expect("a valid template"),
    );
    let mut results = pool.imap_unordered(collatz_steps, 1..=ITEMS);
    let mut longest = 0;
    while let Some(steps) = results.next().await {
        longest = longest.max(steps?);
        bar.inc(1);
    }
    bar.finish();
    println!("the longest Collatz chain below {ITEMS} takes {longest} steps");
    pool.close();
    pool.join().await?;
    Ok(())
}
