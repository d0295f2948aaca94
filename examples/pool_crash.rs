//! A worker killed in the middle of a task: its caller gets an error naming the pid and the
//! signal, the worker is replaced, and the pool goes on working. (Python's pool hangs here.)
//!
//! ```text
//! cargo run --example pool_crash
//! ```

use std::time::Duration;

use multiproc::{Pool, worker};

#[worker]
fn slow_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;
    println!("workers: {:?}", pool.pids());

    // Two calls go to the two workers; the short one tells which worker it ran on.
    let doomed = pool.apply_async(slow_pid, (5_000,));
    let short = pool.apply(slow_pid, (100,)).await?;
    let victim = pool
        .pids()
        .into_iter()
        .find(|&pid| pid != short)
        .expect("two workers");
    println!("killing worker {victim} in the middle of its task");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };

    match doomed.await {
        Ok(pid) => println!("unexpected: the task finished on {pid}"),
        Err(error) => println!(
            "the caller got: {error}\n  (worker died: {}, pid {:?}, status {:?})",
            error.is_worker_died(),
            error.pid(),
            error.exit_status()
        ),
    }

    let squares = pool.map(square, 0..10u64).await?;
    println!("the pool still works: {squares:?}");
    // The replacement starts in the background; give it up to 2 s to join the pool.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while pool.pids().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("workers now (the killed one replaced): {:?}", pool.pids());
    pool.terminate().await?;
    Ok(())
}
