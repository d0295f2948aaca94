//! Daemon processes: terminated (not joined) when the parent exits, and not allowed to start
//! children of their own. Non-daemon children are joined before the parent exits.
//!
//! ```sh
//! cargo run --example daemon
//! ```

use std::time::Duration;

use multiproc::{Process, worker};

#[worker]
fn tick(label: String, times: u32) {
    for i in 1..=times {
        println!("{label}: tick {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("{label}: finished");
}

#[worker]
async fn try_to_start_a_child() -> String {
    match Process::new(tick, ("grandchild".into(), 1)).start().await {
        Ok(_) => "started a child".into(),
        Err(error) => format!("refused: {error}"),
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let daemon = Process::new(tick, ("daemon".into(), 1_000))
        .daemon(true)
        .start()
        .await?;
    let worker = Process::new(tick, ("non-daemon".into(), 3)).start().await?;
    println!(
        "started {} (daemon) and {} (non-daemon)",
        daemon.name(),
        worker.name()
    );

    let checker = Process::new(try_to_start_a_child, ())
        .daemon(true)
        .start()
        .await?;
    println!("a daemon trying to have a child: {}", checker.join().await?);

    println!("main returns now: the daemon is terminated, the non-daemon is joined first");
    Ok(())
}
