//! An Event set by the parent, waited for by children with and without a timeout.
//!
//! ```sh
//! cargo run --example event
//! ```

use std::time::Duration;

use multiproc::{Event, Process, worker};

#[worker]
async fn wait_for_event(event: Event) -> String {
    event.wait().await.expect("the parent serves the event");
    format!(
        "wait_for_event: event.is_set() -> {}",
        event.is_set().await.unwrap()
    )
}

#[worker]
async fn wait_for_event_timeout(event: Event, timeout_ms: u64) -> String {
    let set = event
        .wait_timeout(Duration::from_millis(timeout_ms))
        .await
        .expect("the parent serves the event");
    format!("wait_for_event_timeout: wait returned {set} after {timeout_ms} ms")
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let event = Event::new();
    let blocking = Process::new(wait_for_event, (event.clone(),))
        .name("block")
        .start()
        .await?;
    let timing_out = Process::new(wait_for_event_timeout, (event.clone(), 200))
        .name("nonblock")
        .start()
        .await?;
    println!("main: waiting before calling set()");
    tokio::time::sleep(Duration::from_millis(500)).await;
    event.set().await?;
    println!("main: event is set");
    println!("{}", timing_out.join().await?);
    println!("{}", blocking.join().await?);
    Ok(())
}
