//! Manager dicts: real processes write, nothing is lost, errors are clear.

use std::time::{Duration, Instant};

use multiproc::{DictProxy, Event, Manager, Process, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn fill(d: DictProxy<u64, String>, from: u64, count: u64) {
    for n in from..from + count {
        d.insert(n, format!("v{n}")).await.unwrap();
    }
}

#[worker]
fn increment(n: u64) -> u64 {
    n + 1
}

#[worker]
fn explode(_n: u64) -> u64 {
    panic!("no increments today")
}

#[worker]
async fn waits(n: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    n
}

fn not_registered(n: u64) -> u64 {
    n
}

#[worker]
async fn count_up(d: DictProxy<String, u64>, times: u64) {
    for _ in 0..times {
        d.update_or(&"hits".to_string(), 0, increment)
            .await
            .unwrap();
    }
}

#[worker]
async fn read_back(d: DictProxy<u64, String>, key: u64) -> Option<String> {
    d.get(&key).await.unwrap()
}

#[tokio::test]
async fn basic_operations_mirror_a_map() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, String>()).await.unwrap();
    assert_eq!(within(d.insert(1, "one".into())).await.unwrap(), None);
    assert_eq!(
        within(d.insert(1, "uno".into())).await.unwrap(),
        Some("one".to_string())
    );
    assert_eq!(within(d.get(&1)).await.unwrap(), Some("uno".to_string()));
    assert_eq!(
        within(d.get(&2)).await.unwrap(),
        None,
        "missing is Ok(None)"
    );
    assert!(within(d.contains_key(&1)).await.unwrap());
    within(d.extend([(2, "two".to_string()), (3, "three".to_string())]))
        .await
        .unwrap();
    assert_eq!(within(d.len()).await.unwrap(), 3);
    let mut keys = within(d.keys()).await.unwrap();
    keys.sort();
    assert_eq!(keys, [1, 2, 3]);
    assert_eq!(within(d.values()).await.unwrap().len(), 3);
    assert_eq!(within(d.remove(&2)).await.unwrap(), Some("two".to_string()));
    assert_eq!(within(d.remove(&2)).await.unwrap(), None);
    let mut snapshot = within(d.snapshot()).await.unwrap();
    snapshot.sort();
    assert_eq!(snapshot, [(1, "uno".to_string()), (3, "three".to_string())]);
    // A child sees the same dict.
    let p = within(Process::new(read_back, (d.clone(), 3)).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), Some("three".to_string()));
    within(d.clear()).await.unwrap();
    assert!(within(d.is_empty()).await.unwrap());
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_value_read_is_a_copy() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u8, Vec<u32>>()).await.unwrap();
    within(d.insert(0, vec![1])).await.unwrap();
    let mut copy = within(d.get(&0)).await.unwrap().unwrap();
    copy.push(2);
    assert_eq!(within(d.get(&0)).await.unwrap(), Some(vec![1]));
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn eight_processes_insert_8000_keys_and_lose_none() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, String>()).await.unwrap();
    let mut children = Vec::new();
    for i in 0..8 {
        children.push(
            within(Process::new(fill, (d.clone(), i * 1000, 1000)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        within(child.join()).await.unwrap();
    }
    assert_eq!(within(d.len()).await.unwrap(), 8000);
    let snapshot = within(d.snapshot()).await.unwrap();
    for (k, v) in snapshot {
        assert_eq!(v, format!("v{k}"));
    }
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn update_is_atomic_across_processes() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<String, u64>()).await.unwrap();
    let mut children = Vec::new();
    for _ in 0..4 {
        children.push(
            within(Process::new(count_up, (d.clone(), 250)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        within(child.join()).await.unwrap();
    }
    assert_eq!(
        within(d.get(&"hits".to_string())).await.unwrap(),
        Some(1000)
    );
    // Missing key: nothing runs.
    assert_eq!(
        within(d.update(&"nobody".to_string(), increment))
            .await
            .unwrap(),
        None
    );
    // A panicking update leaves the value alone and the server serving.
    let error = within(d.update(&"hits".to_string(), explode))
        .await
        .unwrap_err();
    assert!(error.message().contains("no increments today"), "{error}");
    assert_eq!(
        within(d.get(&"hits".to_string())).await.unwrap(),
        Some(1000)
    );
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn calls_after_shutdown_fail_quickly_and_clearly() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, u64>()).await.unwrap();
    within(d.insert(1, 1)).await.unwrap();
    let pid = manager.pid().unwrap();
    within(manager.shutdown()).await.unwrap();
    let started = Instant::now();
    let error = within(d.get(&1)).await.unwrap_err();
    assert!(error.is_closed(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        within(manager.dict::<u8, u8>())
            .await
            .unwrap_err()
            .is_closed()
    );
    // The server process is gone (reaped).
    // SAFETY: signal 0 only checks whether the pid exists.
    assert_eq!(unsafe { libc::kill(pid as i32, 0) }, -1);
}

#[tokio::test]
async fn dropping_the_manager_stops_its_process() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, u64>()).await.unwrap();
    within(d.insert(1, 1)).await.unwrap();
    drop(manager);
    // The proxy notices the server's exit, without hanging.
    let error = within(async {
        loop {
            match d.get(&1).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(error) => return error,
            }
        }
    })
    .await;
    assert!(error.is_closed(), "{error:?}");
}

/// Runs in another process: once told, calls the proxy until it fails; reports whether it
/// failed as closed, the error, and how long after being told, in milliseconds.
#[worker]
async fn call_until_closed(d: DictProxy<u64, u64>, told: Event) -> (bool, String, u128) {
    told.wait().await.unwrap();
    let started = Instant::now();
    loop {
        if let Err(error) = d.get(&1).await {
            return (
                error.is_closed(),
                error.to_string(),
                started.elapsed().as_millis(),
            );
        }
    }
}

#[tokio::test]
async fn after_dropping_the_manager_every_proxy_call_fails_within_a_second() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, u64>()).await.unwrap();
    within(d.insert(1, 1)).await.unwrap();
    let told = Event::new();
    let child = within(Process::new(call_until_closed, (d.clone(), told.clone())).start())
        .await
        .unwrap();
    drop(manager);
    // The very next call, as promised, and in another process within a second.
    let dropped = Instant::now();
    let error = within(d.get(&1)).await.unwrap_err();
    // Closed either way: retired ("shut down"), or the process already gone ("exited").
    assert!(error.is_closed(), "{error:?}");
    assert!(dropped.elapsed() < Duration::from_secs(1));
    within(told.set()).await.unwrap();
    let (closed, error, millis) = within(child.join()).await.unwrap();
    assert!(closed, "{error}");
    assert!(millis < 1000, "{error} came after {millis} ms");
}

#[tokio::test]
async fn a_confused_proxy_gets_an_error_and_the_server_keeps_serving() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, u64>()).await.unwrap();
    within(d.insert(1, 1)).await.unwrap();
    // A dict's proxy decoded as a list's: every list operation is refused, none panics.
    let bytes = postcard::to_stdvec(&d).unwrap();
    let l: multiproc::ListProxy<u64> = postcard::from_bytes(&bytes).unwrap();
    assert!(within(l.push(1)).await.is_err());
    assert!(within(l.pop()).await.is_err());
    assert!(within(l.sort()).await.is_err());
    // A value stored as one type and read as another is a serialization error.
    let ns = within(manager.namespace()).await.unwrap();
    within(ns.set("s", "text")).await.unwrap();
    assert!(
        within(ns.get::<bool>("s"))
            .await
            .unwrap_err()
            .is_serialization()
    );
    assert_eq!(within(d.get(&1)).await.unwrap(), Some(1));
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn update_refuses_waiting_and_unregistered_functions() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, u64>()).await.unwrap();
    within(d.insert(1, 1)).await.unwrap();
    let error = within(d.update(&1, waits)).await.unwrap_err();
    assert!(
        error.message().contains("must complete without waiting"),
        "{error}"
    );
    let error = within(d.update(&1, not_registered)).await.unwrap_err();
    assert!(error.is_unknown_worker(), "{error:?}");
    assert_eq!(within(d.get(&1)).await.unwrap(), Some(1));
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn many_tasks_of_one_process_share_its_connection() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, u64>()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..100 {
                d.insert(t * 100 + n, n).await.unwrap();
            }
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }
    assert_eq!(within(d.len()).await.unwrap(), 1600);
    within(manager.shutdown()).await.unwrap();
}
