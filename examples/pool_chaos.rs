//! Chaos: about 100,000 small tasks over a minute while a random worker is SIGKILLed every
//! 100 ms, then the figures: every kill fails at most the call it interrupted (calls the
//! killed worker held but had not started run elsewhere), no call is refused as `Closed` or
//! left waiting, the pool ends at its size, and no child outlives it.
//!
//! ```text
//! cargo run --release --example pool_chaos [seconds] [tasks]
//! ```

use std::time::Duration;

#[path = "../tests/pool_chaos/soak.rs"]
mod soak;

#[multiproc::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(60, |s| s.parse().expect("seconds"));
    let tasks: u64 = args.next().map_or(100_000, |s| s.parse().expect("tasks"));
    let soak = soak::Soak {
        processes: 4,
        duration: Duration::from_secs(seconds),
        tasks,
        kill_every: Duration::from_millis(100),
        callers: 16,
    };
    println!("{soak:?}");
    let figures = soak::run(soak).await;
    println!("{figures}");
    let held = figures.worker_died <= figures.kills
        && figures.most_failed_by_one_death <= 1
        && figures.closed == 0
        && figures.wrong == 0
        && figures.unresolved == 0
        && figures.final_size == soak.processes
        && figures.children_left == 0;
    println!("claims {}", if held { "held" } else { "FAILED" });
    if !held {
        std::process::exit(1);
    }
}
