//! Process names and the counter behind them. The only test in its binary, so no other test
//! moves the counter while it reads it.

use multiproc::{Process, Run, async_trait, worker};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn my_name() -> String {
    multiproc::current_process().name
}

#[worker]
async fn grandchild_names() -> (String, String, Option<String>) {
    let _unstarted = Process::new(my_name, ());
    let second = Process::new(my_name, ()).start().await.unwrap();
    let from_inside = second.join().await.unwrap();
    (
        second.name().to_string(),
        from_inside,
        multiproc::parent_process().map(|p| p.name),
    )
}

/// A `Run` type: its processes are named after it, as Python names a `Process` subclass's.
#[derive(Serialize, Deserialize)]
struct Worker;

#[multiproc::process]
#[async_trait]
impl Run for Worker {
    type Output = String;

    async fn run(self) -> String {
        multiproc::current_process().name
    }
}

#[tokio::test]
async fn names_follow_pythons_counter() {
    assert_eq!(multiproc::current_process().name, "MainProcess");
    assert!(multiproc::parent_process().is_none());

    let first = Process::new(my_name, ());
    let named = Process::new(my_name, ()).name("custom");
    let third = Process::new(my_name, ());
    let number = |builder_name: &str| {
        builder_name
            .trim_start_matches("Process-")
            .parse::<u32>()
            .unwrap()
    };
    let first = within(first.start()).await.unwrap();
    let third = within(third.start()).await.unwrap();
    let named = within(named.start()).await.unwrap();
    assert_eq!(
        number(third.name()),
        number(first.name()) + 2,
        "every construction counts"
    );
    assert_eq!(within(first.join()).await.unwrap(), first.name());
    assert_eq!(within(named.join()).await.unwrap(), "custom");

    let parent = within(Process::new(grandchild_names, ()).start())
        .await
        .unwrap();
    let (outside, inside, grandparent) = within(parent.join()).await.unwrap();
    assert_eq!(outside, format!("{}:2", parent.name()));
    assert_eq!(inside, outside);
    assert_eq!(grandparent.as_deref(), Some("MainProcess"));

    let worker = within(Process::from_run(Worker).start()).await.unwrap();
    assert_eq!(
        worker.name(),
        format!("Worker-{}", number(parent.name()) + 1),
        "a Run type names its processes, on the counter Process-N uses"
    );
    assert_eq!(within(worker.join()).await.unwrap(), worker.name());
}
