//! Manager lists, namespaces, values and hosted queues/events/locks, used from real processes.

use multiproc::{Event, ListProxy, Lock, Manager, Namespace, Process, Queue, ValueProxy, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn push_range(l: ListProxy<u64>, from: u64, count: u64) {
    for n in from..from + count {
        l.push(n).await.unwrap();
    }
}

#[worker]
async fn produce(ns: Namespace, ready: Event) {
    ns.set("x", 42u32).await.unwrap();
    ns.set("name", "ferris").await.unwrap();
    ns.set("point", (1.5f64, -2i64)).await.unwrap();
    ready.set().await.unwrap();
}

#[worker]
fn add_ten(n: u64) -> u64 {
    n + 10
}

#[worker]
async fn bump(v: ValueProxy<u64>, times: u64) {
    for _ in 0..times {
        v.update(add_ten).await.unwrap();
    }
}

/// Bumps the first two items of `l` and the field "hits" of `ns` by ten, `times` times each.
#[worker]
async fn bump_items_and_field(l: ListProxy<u64>, ns: Namespace, times: u64) {
    for _ in 0..times {
        l.update(0, add_ten).await.unwrap();
        l.update(1, add_ten).await.unwrap();
        ns.update_or("hits", 0u64, add_ten).await.unwrap();
    }
}

#[worker]
async fn hosted_user(q: Queue<String>, lock: Lock, counter: ValueProxy<u64>) {
    let guard = lock.acquire().await.unwrap();
    let now = counter.get().await.unwrap();
    counter.set(now + 1).await.unwrap();
    drop(guard);
    q.put(format!("done {now}")).await.unwrap();
}

#[tokio::test]
async fn list_operations_from_many_processes() {
    let manager = within(Manager::start()).await.unwrap();
    let l = within(manager.list::<u64>()).await.unwrap();
    let mut children = Vec::new();
    for i in 0..4 {
        children.push(
            within(Process::new(push_range, (l.clone(), i * 100, 100)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        within(child.join()).await.unwrap();
    }
    assert_eq!(within(l.len()).await.unwrap(), 400);
    // Sorting by `u64`'s order, not by encoded bytes (postcard's varints would put 128 first).
    within(l.sort()).await.unwrap();
    assert_eq!(
        within(l.snapshot()).await.unwrap(),
        (0..400).collect::<Vec<_>>()
    );
    within(l.reverse()).await.unwrap();
    assert_eq!(within(l.get(0)).await.unwrap(), Some(399));
    assert_eq!(within(l.get(400)).await.unwrap(), None);
    within(l.set(0, 1000)).await.unwrap();
    assert!(
        within(l.set(400, 1))
            .await
            .unwrap_err()
            .message()
            .contains("out of range")
    );
    assert_eq!(within(l.pop()).await.unwrap(), Some(0));
    within(l.insert(0, 7)).await.unwrap();
    assert_eq!(within(l.remove(0)).await.unwrap(), Some(7));
    assert_eq!(within(l.remove(10_000)).await.unwrap(), None);
    assert_eq!(within(l.extend([1, 2])).await.unwrap(), 401);
    within(l.clear()).await.unwrap();
    assert_eq!(within(l.pop()).await.unwrap(), None);
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn namespace_producer_and_consumer() {
    let manager = within(Manager::start()).await.unwrap();
    let ns = within(manager.namespace()).await.unwrap();
    let ready = within(manager.event()).await.unwrap();
    let p = within(Process::new(produce, (ns.clone(), ready.clone())).start())
        .await
        .unwrap();
    within(ready.wait()).await.unwrap();
    assert_eq!(within(ns.get::<u32>("x")).await.unwrap(), Some(42));
    assert_eq!(
        within(ns.get::<String>("name")).await.unwrap(),
        Some("ferris".to_string())
    );
    assert_eq!(
        within(ns.get::<(f64, i64)>("point")).await.unwrap(),
        Some((1.5, -2))
    );
    assert_eq!(within(ns.get::<u32>("missing")).await.unwrap(), None);
    assert_eq!(within(ns.fields()).await.unwrap(), ["name", "point", "x"]);
    assert!(within(ns.remove("x")).await.unwrap());
    assert!(!within(ns.remove("x")).await.unwrap());
    within(p.join()).await.unwrap();
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn value_update_is_atomic() {
    let manager = within(Manager::start()).await.unwrap();
    let v = within(manager.value(0u64)).await.unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            within(Process::new(bump, (v.clone(), 100)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        within(child.join()).await.unwrap();
    }
    assert_eq!(within(v.get()).await.unwrap(), 3000);
    assert_eq!(within(v.set(5)).await.unwrap(), 3000);
    assert_eq!(within(v.get()).await.unwrap(), 5);
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn hosted_queue_lock_and_event_live_in_the_manager() {
    let manager = within(Manager::start()).await.unwrap();
    let q = within(manager.queue::<String>()).await.unwrap();
    let lock = within(manager.lock()).await.unwrap();
    let counter = within(manager.value(0u64)).await.unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            within(Process::new(hosted_user, (q.clone(), lock.clone(), counter.clone())).start())
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(within(q.get()).await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, ["done 0", "done 1", "done 2"]);
    for child in children {
        within(child.join()).await.unwrap();
    }
    // The other hosted kinds are created in the manager too.
    let s = within(manager.semaphore(2)).await.unwrap();
    drop(within(s.acquire()).await.unwrap());
    within(manager.bounded_queue::<u8>(1)).await.unwrap();
    within(manager.joinable_queue::<u8>()).await.unwrap();
    within(manager.rlock()).await.unwrap();
    within(manager.bounded_semaphore(1)).await.unwrap();
    within(manager.condition()).await.unwrap();
    let b = within(manager.barrier(1)).await.unwrap();
    within(b.wait()).await.unwrap();
    // Found by name, as over TCP: one queue, whatever handle reaches it.
    let named = within(manager.queue_named::<String>("mail")).await.unwrap();
    let again = within(manager.queue_named::<String>("mail")).await.unwrap();
    within(named.put("by name".into())).await.unwrap();
    assert_eq!(within(again.get()).await.unwrap(), "by name");
    assert!(within(manager.event_named("mail")).await.is_err());
    within(manager.shutdown()).await.unwrap();
    // Hosted objects die with the manager.
    assert!(within(q.get()).await.unwrap_err().is_closed());
}

#[tokio::test]
async fn list_item_and_namespace_field_updates_are_atomic() {
    let manager = within(Manager::start()).await.unwrap();
    let l = within(manager.list::<u64>()).await.unwrap();
    within(l.extend([0, 5])).await.unwrap();
    let ns = within(manager.namespace()).await.unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            within(Process::new(bump_items_and_field, (l.clone(), ns.clone(), 100)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        within(child.join()).await.unwrap();
    }
    // 300 updates of each, from three processes at once: none lost.
    assert_eq!(within(l.snapshot()).await.unwrap(), [3000, 3005]);
    assert_eq!(within(ns.get::<u64>("hits")).await.unwrap(), Some(3000));
    assert_eq!(
        within(ns.update("hits", add_ten)).await.unwrap(),
        Some(3010)
    );
    // Nothing there: nothing to update, and nothing is created.
    assert_eq!(within(l.update(2, add_ten)).await.unwrap(), None);
    assert_eq!(within(l.len()).await.unwrap(), 2);
    assert_eq!(
        within(ns.update::<u64, _, _>("missing", add_ten))
            .await
            .unwrap(),
        None
    );
    assert_eq!(within(ns.fields()).await.unwrap(), ["hits"]);
    within(manager.shutdown()).await.unwrap();
}
