//! `multiprocessing.connection`: a listener and a client that share only an address and a
//! key, not a parent. The client here is a second program, started with
//! `std::process::Command`: it inherits nothing from the listener's process.
//!
//! ```sh
//! cargo run --example connection                        # both sides, on a local socket
//! cargo run --example connection -- serve 127.0.0.1:6000
//! cargo run --example connection -- client 127.0.0.1:6000   # in another terminal
//! ```
//!
//! The key is `MULTIPROC_EXAMPLE_KEY` from the environment (a default otherwise); a client
//! with another key is refused before it can send anything.

use multiproc::connection::{Address, Connection, Listener, client};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Add(i64, i64),
    Bye,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sum(i64);

fn key() -> Vec<u8> {
    std::env::var("MULTIPROC_EXAMPLE_KEY")
        .unwrap_or_else(|_| "secret password".to_string())
        .into_bytes()
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("client"), Some(address)) => ask(&address.parse()?).await,
        (Some("serve"), Some(address)) => serve(address.parse()?, false).await,
        _ => serve(Address::random_local(), true).await,
    }
}

/// Listens at `address` and answers one client; with `start_client`, starts that client as
/// a second program.
async fn serve(address: Address, start_client: bool) -> multiproc::Result<()> {
    let listener: Listener<Sum, Request> = Listener::bind(address, &key()).await?;
    println!("[listener] listening at {}", listener.address());
    let started = start_client.then(|| {
        std::process::Command::new(std::env::current_exe().expect("this program's path"))
            .args(["client", &listener.address().to_string()])
            .spawn()
            .expect("starting the client program")
    });
    let conn = listener.accept().await?;
    println!("[listener] a client proved the key");
    while let Request::Add(a, b) = conn.recv().await? {
        conn.send(Sum(a + b)).await?;
    }
    println!("[listener] the client said goodbye");
    if let Some(mut client) = started {
        client.wait().expect("waiting for the client program");
    }
    Ok(())
}

async fn ask(address: &Address) -> multiproc::Result<()> {
    let conn: Connection<Request, Sum> = client(address, &key()).await?;
    for (a, b) in [(2, 3), (40, 2)] {
        conn.send(Request::Add(a, b)).await?;
        let Sum(sum) = conn.recv().await?;
        println!("[client pid {}] {a} + {b} = {sum}", std::process::id());
    }
    conn.send(Request::Bye).await
}
