//! Chaos: small calls for half a minute while a random worker is SIGKILLed every 100 ms.
//! Every kill costs at most the one call it interrupted (no pid is named by two failures); every other call completes, none is
//! refused as `Closed`, none is left waiting, the pool keeps its size, and no child outlives
//! it. `cargo run --release --example pool_chaos` runs the full minute and prints the figures.

use std::time::Duration;

multiproc::test_support!();

#[path = "pool_chaos/soak.rs"]
mod soak;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kill_fails_at_most_the_call_it_interrupted() {
    let soak = soak::Soak {
        processes: 4,
        duration: Duration::from_secs(30),
        tasks: 40_000,
        kill_every: Duration::from_millis(100),
        callers: 16,
    };
    let figures = tokio::time::timeout(Duration::from_secs(90), soak::run(soak))
        .await
        .expect("the soak ends within its bounds");
    println!("{figures}");
    assert!(figures.kills >= 200, "{figures}");
    assert!(figures.worker_died <= figures.kills, "{figures}");
    assert!(figures.most_failed_by_one_death <= 1, "{figures}");
    assert_eq!(figures.closed, 0, "{figures}");
    assert_eq!(figures.wrong, 0, "{figures}");
    assert_eq!(figures.unresolved, 0, "{figures}");
    assert_eq!(figures.final_size, soak.processes, "{figures}");
    assert_eq!(figures.children_left, 0, "{figures}");
    assert!(figures.ok > figures.operations / 2, "{figures}");
}
