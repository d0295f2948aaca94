//! A dict and a list in a manager process, filled by 10 processes: Python's
//!
//! ```python
//! def f(d, l, i):
//!     d[i] = i * i
//!     l.append(i)
//!
//! with Manager() as manager:
//!     d, l = manager.dict(), manager.list()
//!     ps = [Process(target=f, args=(d, l, i)) for i in range(10)]
//!     ...
//! ```
//!
//! ```sh
//! cargo run --example manager_dict
//! ```

use multiproc::{DictProxy, ListProxy, Manager, Process, worker};

#[worker]
async fn fill(d: DictProxy<u32, u32>, l: ListProxy<u32>, i: u32) {
    d.insert(i, i * i).await.expect("the manager is up");
    l.push(i).await.expect("the manager is up");
}

#[worker]
fn add_one(n: u32) -> u32 {
    n + 1
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let manager = Manager::start().await?;
    println!("started the manager, pid {}", manager.pid().unwrap_or(0));
    let d = manager.dict::<u32, u32>().await?;
    let l = manager.list::<u32>().await?;

    let mut children = Vec::new();
    for i in 0..10 {
        children.push(
            Process::new(fill, (d.clone(), l.clone(), i))
                .start()
                .await?,
        );
    }
    for child in children {
        child.join().await?;
    }

    let mut squares = d.snapshot().await?;
    squares.sort();
    println!("dict: {squares:?}");
    // The list's order is the order the children's pushes reached the manager.
    println!("list (arrival order): {:?}", l.snapshot().await?);
    l.sort().await?;
    println!("list (sorted): {:?}", l.snapshot().await?);

    // A value read out of a proxy is a copy: changing it changes nothing in the manager...
    let mut nine = d.get(&3).await?.expect("3 was inserted");
    nine += 100;
    println!(
        "local copy {nine}, manager still has {:?}",
        d.get(&3).await?
    );
    // ... while `update` changes it in place, atomically, on the server.
    println!("after update: {:?}", d.update(&3, add_one).await?);

    manager.shutdown().await
}
