//! Process names and `current_process()`, as in Python: `MainProcess`, then `Process-N` from a
//! counter that advances on every construction, and `Process-N:M` for a child's children.
//!
//! ```sh
//! cargo run --example process_names
//! ```

use multiproc::{Process, worker};

#[worker]
fn report() -> String {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process()
        .map(|p| p.name)
        .unwrap_or_default();
    format!("I am {} (pid {}), my parent is {parent}", me.name, me.pid)
}

#[worker]
async fn start_a_grandchild() -> String {
    let grandchild = Process::new(report, ()).start().await.expect("start");
    grandchild.join().await.expect("join")
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    println!("main: {}", multiproc::current_process().name);
    let first = Process::new(report, ()).start().await?;
    let named = Process::new(report, ())
        .name("worker-with-a-name")
        .start()
        .await?;
    let third = Process::new(report, ()).start().await?;
    for p in [&first, &named, &third] {
        println!("{:<20} -> {}", p.name(), p.join().await?);
    }
    let nested = Process::new(start_a_grandchild, ()).start().await?;
    println!("{:<20} -> {}", nested.name(), nested.join().await?);
    Ok(())
}
