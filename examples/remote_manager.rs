//! A manager served over TCP on 127.0.0.1 by this process and reached from another process,
//! which proves the authkey with Python 3.12's mutual HMAC challenge: Python's
//! `BaseManager(address=("", 50000), authkey=b"abracadabra")` server with a registered
//! `get_queue`, and a client that puts into the queue while the server takes out of it.
//!
//! The example re-runs itself as the client (through `Process`), so one command shows both
//! sides; across machines, run `Manager::serve` on one host and `Manager::connect` on another.
//!
//! ```sh
//! cargo run --example remote_manager
//! ```

use std::net::SocketAddr;

use multiproc::{Manager, Process, worker};

const AUTHKEY: &[u8] = b"abracadabra";

#[worker]
async fn client(addr: SocketAddr, jobs: u32) -> Result<String, String> {
    let manager = Manager::connect(addr, AUTHKEY)
        .await
        .map_err(|e| e.to_string())?;
    // The same queue the server took by this name: a hosted queue, reached over TCP.
    let queue = manager
        .queue_named::<String>("jobs")
        .await
        .map_err(|e| e.to_string())?;
    for n in 0..jobs {
        queue
            .put(format!("job {n} from pid {}", std::process::id()))
            .await
            .map_err(|e| e.to_string())?;
    }
    // No more jobs: the server's `get` fails once the queue is drained.
    queue.close().await.map_err(|e| e.to_string())?;
    // A dict, found by name too, for a summary.
    let stats = manager
        .dict_named::<String, u32>("stats")
        .await
        .map_err(|e| e.to_string())?;
    stats
        .insert("sent".into(), jobs)
        .await
        .map_err(|e| e.to_string())?;
    // A wrong key is refused by the server (and would be, both ways, by us).
    let refused = Manager::connect(addr, b"open sesame").await.unwrap_err();
    Ok(format!(
        "client put {jobs} jobs; a wrong key got: {refused}"
    ))
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    // Port 0: the system picks a free port; `local_addr` tells which.
    let server = Manager::serve("127.0.0.1:0".parse().expect("an address"), AUTHKEY).await?;
    let addr = server
        .local_addr()
        .expect("a served manager has an address");
    println!("serving on {addr}");
    let jobs = server.queue_named::<String>("jobs").await?;

    let p = Process::new(client, (addr, 3)).start().await?;
    // Taken as the client puts them, until it closes the queue.
    while let Ok(job) = jobs.get().await {
        println!("server got: {job}");
    }
    match p.join().await? {
        Ok(report) => println!("{report}"),
        Err(error) => println!("the client failed: {error}"),
    }
    let stats = server.dict_named::<String, u32>("stats").await?;
    println!(
        "the client says it sent {:?} jobs",
        stats.get(&"sent".into()).await?
    );
    server.shutdown().await
}
