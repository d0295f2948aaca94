//! `max_tasks_per_child`: a worker is replaced after a number of tasks (items, here 2). Ten
//! sequential calls on a pool of 2 run on 5 distinct worker processes.
//!
//! ```text
//! cargo run --example pool_maxtasks
//! ```

use std::collections::BTreeSet;

use multiproc::{Pool, worker};

#[worker]
fn whoami(task: u64) -> (u64, String, u32) {
    (task, multiproc::current_process().name, std::process::id())
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(2)
        .build()
        .await?;
    let mut pids = BTreeSet::new();
    for task in 0..10 {
        let (task, name, pid) = pool.apply(whoami, (task,)).await?;
        println!("task {task} ran in {name} (pid {pid})");
        pids.insert(pid);
    }
    println!("{} distinct worker pids: {pids:?}", pids.len());
    pool.terminate().await?;
    Ok(())
}
