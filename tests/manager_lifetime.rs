//! Manager objects live as long as a proxy holds them, in any process: dropped proxies free
//! their objects, a dead process's references go with it, a proxy in transit keeps its
//! object, and a stale proxy is an error rather than another object's data.

use std::time::Duration;

use multiproc::{DictProxy, ErrorKind, Event, Manager, ManagerStats, Process, Queue, worker};

multiproc::test_support!();

mod common;
use common::within;

/// Asks the manager's stats until `done` holds; the test fails after `common::LIMIT`.
/// References are released without an answer, so what another process dropped shows a
/// little later.
async fn stats_until(manager: &Manager, done: impl Fn(&ManagerStats) -> bool) -> ManagerStats {
    within(async {
        loop {
            let stats = manager.stats().await.unwrap();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[worker]
async fn read_from_queue(q: Queue<DictProxy<u64, String>>) -> Option<String> {
    let d = q.get().await.unwrap();
    d.get(&1).await.unwrap()
}

#[worker]
async fn hold_until_killed(dicts: Vec<DictProxy<u64, u64>>, ready: Event) {
    for d in &dicts {
        d.insert(0, 0).await.unwrap();
    }
    ready.set().await.unwrap();
    std::future::pending::<()>().await;
}

#[worker]
async fn send_back(d: DictProxy<u64, String>, back: Queue<DictProxy<u64, String>>) {
    back.put(d).await.unwrap();
}

#[tokio::test]
async fn dropped_proxies_free_their_objects() {
    const OBJECTS: u64 = 20_000;
    const TASKS: u64 = 8;
    let manager = std::sync::Arc::new(within(Manager::start()).await.unwrap());
    let baseline = within(manager.stats()).await.unwrap();
    assert_eq!(baseline.objects(), 0);

    let held: Vec<DictProxy<u64, u64>> = within(async {
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(manager.dict().await.unwrap());
        }
        held
    })
    .await;
    let stats = within(manager.stats()).await.unwrap();
    assert_eq!(stats.dicts, 100, "{stats:?}");
    let clones: Vec<_> = held.to_vec();
    drop(held);
    let stats = within(manager.stats()).await.unwrap();
    assert_eq!(stats.dicts, 100, "clones hold their objects: {stats:?}");
    drop(clones);

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let manager = manager.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..OBJECTS / TASKS {
                match (task + n) % 4 {
                    0 => {
                        let d = manager.dict::<u64, u64>().await.unwrap();
                        d.insert(n, n).await.unwrap();
                    }
                    1 => {
                        let l = manager.list::<u64>().await.unwrap();
                        l.push(n).await.unwrap();
                    }
                    2 => {
                        let ns = manager.namespace().await.unwrap();
                        ns.set("n", n).await.unwrap();
                    }
                    _ => {
                        let v = manager.value(n).await.unwrap();
                        assert_eq!(v.get().await.unwrap(), n);
                    }
                }
            }
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }
    let end = stats_until(&manager, |stats| stats.objects() == baseline.objects()).await;
    assert_eq!(end.references, 0, "{end:?}");
    assert_eq!(end.created, OBJECTS + 100, "{end:?}");
    assert_eq!(end.freed, OBJECTS + 100, "{end:?}");
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_proxy_sent_through_a_queue_outlives_its_sender() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, String>()).await.unwrap();
    within(d.insert(1, "one".into())).await.unwrap();
    let q = Queue::new();
    within(q.put(d.clone())).await.unwrap();
    drop(d);
    // The copy in the queue holds the dict: the reference the sender lent.
    let stats = within(manager.stats()).await.unwrap();
    assert_eq!(
        (stats.dicts, stats.references, stats.lent),
        (1, 1, 1),
        "{stats:?}"
    );

    let child = within(Process::new(read_from_queue, (q,)).start())
        .await
        .unwrap();
    assert_eq!(within(child.join()).await.unwrap(), Some("one".into()));
    let stats = stats_until(&manager, |stats| stats.objects() == 0).await;
    assert_eq!(
        (stats.references, stats.lent, stats.freed),
        (0, 0, 1),
        "{stats:?}"
    );
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_killed_process_references_are_dropped() {
    let manager = within(Manager::start()).await.unwrap();
    let mut dicts = Vec::new();
    for _ in 0..50 {
        dicts.push(within(manager.dict::<u64, u64>()).await.unwrap());
    }
    let ready = Event::new();
    let child = within(Process::new(hold_until_killed, (dicts, ready.clone())).start())
        .await
        .unwrap();
    within(ready.wait()).await.unwrap();
    // The child took over the references lent with its arguments; this process's own went
    // with the arguments once sent.
    let held = stats_until(&manager, |stats| stats.lent == 0).await;
    assert_eq!((held.dicts, held.references), (50, 50), "{held:?}");
    assert_eq!(held.connections, 2, "this process and the child: {held:?}");

    child.kill();
    assert!(within(child.join()).await.is_err(), "killed");
    let after = stats_until(&manager, |stats| stats.objects() == 0).await;
    assert_eq!(after.references, 0, "{after:?}");
    assert_eq!(after.connections, 1, "only this process is left: {after:?}");
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_stale_proxy_is_an_error_never_another_objects_data() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict::<u64, String>()).await.unwrap();
    within(d.insert(1, "old".into())).await.unwrap();
    let back = Queue::new();
    let child = within(Process::new(send_back, (d, back.clone())).start())
        .await
        .unwrap();
    within(child.join()).await.unwrap();
    // Nobody holds the dict any longer: the child lent its reference with the copy it put on
    // the queue, and that reference went with the child.
    stats_until(&manager, |stats| stats.objects() == 0).await;
    let stale = within(back.get()).await.unwrap();
    let error = within(stale.get(&1)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Closed, "{error}");
    assert!(error.to_string().contains("freed"), "{error}");

    // Ids are never reused: a new dict is another object, which the stale proxy never reaches.
    let fresh = within(manager.dict::<u64, String>()).await.unwrap();
    within(fresh.insert(1, "new".into())).await.unwrap();
    assert_ne!(fresh, stale);
    assert_eq!(
        within(stale.get(&1)).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    within(manager.shutdown()).await.unwrap();
}

#[tokio::test]
async fn named_and_hosted_objects_live_as_long_as_the_manager() {
    let manager = within(Manager::start()).await.unwrap();
    let d = within(manager.dict_named::<u64, u64>("kept"))
        .await
        .unwrap();
    within(d.insert(1, 1)).await.unwrap();
    drop(d);
    let q = within(manager.queue::<u64>()).await.unwrap();
    within(q.put(7)).await.unwrap();
    let stats = stats_until(&manager, |stats| stats.references == 0).await;
    assert_eq!(
        (stats.dicts, stats.named, stats.hosted),
        (1, 1, 1),
        "{stats:?}"
    );
    let again = within(manager.dict_named::<u64, u64>("kept"))
        .await
        .unwrap();
    assert_eq!(within(again.get(&1)).await.unwrap(), Some(1));
    assert_eq!(within(q.get()).await.unwrap(), 7);
    within(manager.shutdown()).await.unwrap();
}
