//! SharedValue, SharedArray, RawValue, RawArray and AtomicValue across processes, and a
//! holder killed inside a value's locked section.

use std::sync::atomic::Ordering;

use multiproc::bytemuck::{Pod, Zeroable};
use multiproc::{
    AtomicValue, Event, Manager, Namespace, Pool, Process, RawArray, RawValue, SharedArray,
    SharedValue, worker,
};

multiproc::test_support!();

mod common;
use common::within;

/// A type of the user's own, made plain data with the re-exported derive.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "multiproc::bytemuck")]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

const PART: usize = 1024;

#[worker]
async fn increment(counter: SharedValue<u64>, times: u64) {
    for _ in 0..times {
        *counter.lock().await.unwrap() += 1;
    }
}

#[worker]
async fn fill_part(squares: SharedArray<u64>, part: usize) {
    let mut elements = squares.lock().await.unwrap();
    for i in part * PART..(part + 1) * PART {
        elements[i] = (i * i) as u64;
    }
}

#[worker]
async fn set_raw(flag: RawValue<u32>, samples: RawArray<u16>, point: SharedValue<Point>) {
    flag.set(7);
    samples.write_at(1, &[10, 20]);
    point.set(Point { x: 1.5, y: -2.0 }).await.unwrap();
}

#[worker]
fn count_atomically(hits: AtomicValue<u64>, times: u64) {
    for _ in 0..times {
        hits.fetch_add(1, Ordering::Relaxed);
    }
}

#[worker]
async fn increment_from_namespace(shared: Namespace) {
    let counter: SharedValue<u64> = shared.get("counter").await.unwrap().unwrap();
    *counter.lock().await.unwrap() += 1;
}

#[worker]
async fn die_half_way(value: SharedValue<[u64; 2]>, inside: Event) {
    let mut pair = value.lock().await.unwrap();
    pair[0] = 1;
    inside.set().await.unwrap();
    std::future::pending::<()>().await;
    pair[1] = 1;
}

#[tokio::test]
async fn a_value_incremented_under_its_lock_by_several_processes_ends_exact() {
    let counter = SharedValue::new(0u64).unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        let child = within(Process::new(increment, (counter.clone(), 1000)).start())
            .await
            .unwrap();
        children.push(child);
    }
    // In a task of this process too (the guard is held across an await in a spawned task).
    within(tokio::spawn(increment(counter.clone(), 1000)))
        .await
        .unwrap();
    for child in children {
        within(child.join()).await.unwrap();
    }
    assert_eq!(within(counter.get()).await.unwrap(), 4000);
}

#[tokio::test]
async fn pool_workers_fill_disjoint_parts_of_an_array() {
    let squares = SharedArray::<u64>::new(4 * PART).unwrap();
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let parts = (0..4).map(|part| (squares.clone(), part));
    within(pool.starmap(fill_part, parts).chunksize(1))
        .await
        .unwrap();
    let expected: Vec<u64> = (0..4 * PART).map(|i| (i * i) as u64).collect();
    assert_eq!(within(squares.to_vec()).await.unwrap(), expected);
}

#[tokio::test]
async fn raw_values_and_arrays_are_shared_without_a_lock() {
    let flag = RawValue::new(0u32).unwrap();
    let samples = RawArray::<u16>::from_slice(&[1, 2, 3, 4]).unwrap();
    let point = SharedValue::new(Point { x: 0.0, y: 0.0 }).unwrap();
    let child =
        within(Process::new(set_raw, (flag.clone(), samples.clone(), point.clone())).start())
            .await
            .unwrap();
    within(child.join()).await.unwrap();
    assert_eq!(flag.get(), 7);
    assert_eq!(samples.to_vec(), [1, 10, 20, 4]);
    assert_eq!(
        within(point.get()).await.unwrap(),
        Point { x: 1.5, y: -2.0 }
    );
}

#[tokio::test]
async fn atomic_values_count_across_processes_without_a_lock() {
    let hits = AtomicValue::new(0u64).unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        let child = within(Process::new(count_atomically, (hits.clone(), 10_000)).start())
            .await
            .unwrap();
        children.push(child);
    }
    for child in children {
        within(child.join()).await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 30_000);
}

#[tokio::test]
async fn a_holder_killed_inside_the_locked_section_leaves_owner_died() {
    let value = SharedValue::new([0u64; 2]).unwrap();
    let inside = Event::new();
    let child = within(Process::new(die_half_way, (value.clone(), inside.clone())).start())
        .await
        .unwrap();
    within(inside.wait()).await.unwrap();
    assert!(
        within(value.get_lock().try_acquire())
            .await
            .unwrap()
            .is_none()
    );
    child.kill();
    let _ = within(child.join()).await;
    let pair = within(value.lock()).await.unwrap();
    assert!(pair.owner_died(), "the next holder is told");
    assert_eq!(*pair, [1, 0], "what the dead holder wrote, half-way");
    drop(pair);
    assert!(
        !within(value.lock()).await.unwrap().owner_died(),
        "told once"
    );
}

#[tokio::test]
async fn a_value_kept_in_a_manager_namespace_is_the_same_value() {
    let manager = within(Manager::start()).await.unwrap();
    let shared = within(manager.namespace()).await.unwrap();
    let counter = SharedValue::new(41u64).unwrap();
    within(shared.set("counter", counter.clone()))
        .await
        .unwrap();
    let child = within(Process::new(increment_from_namespace, (shared.clone(),)).start())
        .await
        .unwrap();
    within(child.join()).await.unwrap();
    assert_eq!(within(counter.get()).await.unwrap(), 42);
}
