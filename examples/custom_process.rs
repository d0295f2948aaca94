//! A type of yours that carries its own state into the child and runs there: the analogue of
//! subclassing Python's `Process` and overriding `run`.
//!
//! ```sh
//! cargo run --example custom_process
//! ```

use multiproc::{Process, Run, async_trait};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct PrimeCounter {
    below: u64,
}

#[multiproc::process]
#[async_trait]
impl Run for PrimeCounter {
    type Output = usize;

    async fn run(self) -> usize {
        let me = multiproc::current_process();
        println!(
            "{} (pid {}) counting primes below {}",
            me.name, me.pid, self.below
        );
        (2..self.below)
            .filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
            .count()
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let small = Process::from_run(PrimeCounter { below: 1_000 })
        .start()
        .await?;
    let large = Process::from_run(PrimeCounter { below: 200_000 })
        .name("big-counter")
        .start()
        .await?;
    println!("{}: {} primes", small.name(), small.join().await?);
    println!("{}: {} primes", large.name(), large.join().await?);
    Ok(())
}
