//! A producer and a consumer sharing a Namespace, with an Event hosted by the same manager:
//! Python's `manager.Namespace()` and `manager.Event()`.
//!
//! ```sh
//! cargo run --example manager_namespace
//! ```

use multiproc::{Event, Manager, Namespace, Process, worker};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

#[worker]
async fn producer(ns: Namespace, ready: Event) {
    ns.set("count", 3u32).await.expect("the manager is up");
    ns.set(
        "latest",
        Reading {
            sensor: "roof".into(),
            celsius: 21.5,
        },
    )
    .await
    .expect("the manager is up");
    ns.set("tags", vec!["outdoor", "north"])
        .await
        .expect("the manager is up");
    println!("producer: namespace filled, setting the event");
    ready.set().await.expect("the manager is up");
}

#[worker]
async fn consumer(ns: Namespace, ready: Event) -> String {
    ready.wait().await.expect("the manager is up");
    let count: u32 = ns.get("count").await.expect("up").unwrap_or(0);
    let latest: Option<Reading> = ns.get("latest").await.expect("up");
    let tags: Vec<String> = ns.get("tags").await.expect("up").unwrap_or_default();
    format!("consumer: count={count} latest={latest:?} tags={tags:?}")
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let manager = Manager::start().await?;
    let ns = manager.namespace().await?;
    let ready = manager.event().await?;

    let consumer = Process::new(consumer, (ns.clone(), ready.clone()))
        .start()
        .await?;
    let producer = Process::new(producer, (ns.clone(), ready.clone()))
        .start()
        .await?;
    producer.join().await?;
    println!("{}", consumer.join().await?);
    println!("fields: {:?}", ns.fields().await?);

    manager.shutdown().await
}
