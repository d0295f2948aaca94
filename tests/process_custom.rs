//! Daemons, custom Run types and active_children.

use std::time::Duration;

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
async fn try_to_have_children() -> String {
    match Process::new(my_name, ()).start().await {
        Ok(_) => "started a child".to_string(),
        Err(error) => error.to_string(),
    }
}

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[derive(Serialize, Deserialize)]
struct Counter {
    label: String,
    upto: u32,
}

#[multiproc::process]
#[async_trait]
impl Run for Counter {
    type Output = (String, u32);

    async fn run(self) -> (String, u32) {
        let sum = (1..=self.upto).sum();
        (
            format!("{} in {}", self.label, multiproc::current_process().name),
            sum,
        )
    }
}

#[tokio::test]
async fn a_daemon_cannot_have_children() {
    let daemon = within(Process::new(try_to_have_children, ()).daemon(true).start())
        .await
        .unwrap();
    assert!(daemon.is_daemon());
    let message = within(daemon.join()).await.unwrap();
    assert!(
        message.contains("daemonic processes are not allowed to have children"),
        "{message}"
    );
}

#[tokio::test]
async fn a_run_type_carries_its_state_into_the_child() {
    let p = within(
        Process::from_run(Counter {
            label: "sum".into(),
            upto: 10,
        })
        .start(),
    )
    .await
    .unwrap();
    let (label, sum) = within(p.join()).await.unwrap();
    assert_eq!(label, format!("sum in {}", p.name()));
    assert_eq!(sum, 55);
}

#[tokio::test]
async fn active_children_lists_running_children_until_they_are_reaped() {
    let p = within(Process::new(sleep_ms, (60_000,)).start())
        .await
        .unwrap();
    assert!(
        multiproc::active_children()
            .iter()
            .any(|c| c.pid == p.pid() && c.name == p.name())
    );
    p.kill();
    assert!(within(p.join()).await.is_err());
    assert!(
        !multiproc::active_children()
            .iter()
            .any(|c| c.pid == p.pid())
    );
    assert!(multiproc::cpu_count() >= 1);
}
