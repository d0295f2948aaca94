//! A tokio service: many concurrent requests `.await` `pool.map` on CPU-bound work while a
//! timer task keeps ticking on time, because the work runs in worker processes, not on the
//! runtime's threads.
//!
//! ```text
//! cargo run --release --example tokio_service
//! ```

use std::time::{Duration, Instant};

use multiproc::{Pool, worker};

#[worker]
fn busy_sum(n: u64) -> u64 {
    // About a few milliseconds of pure CPU per item.
    (0..n * 200_000).fold(0u64, |sum, i| std::hint::black_box(sum.wrapping_add(i)))
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let pool = Pool::new().await?;

    // The heartbeat: it should tick every 10 ms whatever the pool is doing.
    let ticker = tokio::spawn(async {
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut worst = Duration::ZERO;
        let mut last = Instant::now();
        for _ in 0..150 {
            interval.tick().await;
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
        worst
    });

    let started = Instant::now();
    let requests: Vec<_> = (0..32u64)
        .map(|request| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let sums = pool
                    .map(busy_sum, (1..=20).map(|i| i + request % 3))
                    .await?;
                Ok::<_, multiproc::Error>((
                    request,
                    sums.iter().fold(0u64, |a, b| a.wrapping_add(*b)),
                ))
            })
        })
        .collect();
    for request in requests {
        let (request, checksum) = request.await.expect("the request task")?;
        println!(
            "request {request:2} done after {:?} (checksum {checksum:x})",
            started.elapsed()
        );
    }
    let worst = ticker.await.expect("the ticker");
    println!("the 10 ms timer's longest gap while the pool worked: {worst:?}");
    pool.close();
    pool.join().await?;
    Ok(())
}
