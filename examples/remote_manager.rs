//! A manager served over TCP on 127.0.0.1 by this process and reached from another process,
//! which proves the authkey with Python 3.12's mutual HMAC challenge: Python's
//! `BaseManager(address=("", 50000), authkey=b"abracadabra")` server and client.
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
    let queue = manager
        .list_named::<String>("jobs")
        .await
        .map_err(|e| e.to_string())?;
    for n in 0..jobs {
        queue
            .push(format!("job {n} from pid {}", std::process::id()))
            .await
            .map_err(|e| e.to_string())?;
    }
    // A wrong key is refused by the server (and would be, both ways, by us).
    let refused = Manager::connect(addr, b"open sesame").await.unwrap_err();
    Ok(format!(
        "client pushed {jobs} jobs; a wrong key got: {refused}"
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

    let p = Process::new(client, (addr, 3)).start().await?;
    match p.join().await? {
        Ok(report) => println!("{report}"),
        Err(error) => println!("the client failed: {error}"),
    }

    let jobs = server.list_named::<String>("jobs").await?;
    for job in jobs.snapshot().await? {
        println!("server got: {job}");
    }
    server.shutdown().await
}
