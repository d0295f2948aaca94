//! `terminate()` sends SIGTERM: `is_alive()` stays true and `exitcode()` stays `None` until the
//! child is reaped, then the exit code is -15, as in Python.
//!
//! ```sh
//! cargo run --example terminate
//! ```

use std::time::Duration;

use multiproc::{Process, worker};

#[worker]
fn forever() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let p = Process::new(forever, ()).start().await?;
    println!("before:     {p:?} alive={}", p.is_alive());
    p.terminate();
    println!("terminated: {p:?} alive={}", p.is_alive());
    let outcome = p.join().await;
    println!("joined:     {p:?} alive={}", p.is_alive());
    println!("join() says: {}", outcome.unwrap_err());
    println!("exitcode: {:?}", p.exitcode());
    Ok(())
}
