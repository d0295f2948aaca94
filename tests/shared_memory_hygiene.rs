//! Nothing of a killed tree's shared memory is left: a parent holding segments (a
//! SharedMemory, a SharedValue in an arena, a large SharedArray in a segment of its own) with
//! children holding them too is `SIGKILL`ed, and 2 s after its children are gone no process
//! holds any of it and `/dev/shm` has nothing new of ours.
//!
//! The parent is this test binary started again on the ignored test [`SCENARIO`], with
//! [`SCENARIO_VAR`] set to a file where it writes the block's name (without it, that test
//! returns at once).

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::{Event, Process, SharedArray, SharedMemory, SharedValue, worker};

multiproc::test_support!();

#[path = "common/pids.rs"]
#[allow(dead_code)] // the helpers for a parent that holds no shared memory are not used here
mod pids;
use pids::{is_running, read_pids, wait_until_dead};

const SCENARIO: &str = "the_parent_to_be_killed";
const SCENARIO_VAR: &str = "MULTIPROC_TEST_SHM_SCENARIO";

#[worker]
async fn hold(
    block: SharedMemory,
    value: SharedValue<u64>,
    array: SharedArray<u64>,
    holding: Event,
) {
    *value.lock().await.unwrap() += 1;
    array.lock().await.unwrap()[0] += 1;
    block.write_at(0, b"held");
    holding.set().await.unwrap();
    std::future::pending::<()>().await;
}

/// The parent to be killed: creates the segments, writes the block's name to a file, starts
/// two children that map them, prints their pids, and waits.
#[tokio::test]
#[ignore = "the parent the other test starts and kills"]
async fn the_parent_to_be_killed() {
    let Some(name_file) = std::env::var_os(SCENARIO_VAR) else {
        return;
    };
    let block = SharedMemory::new(1 << 16).unwrap();
    let value = SharedValue::new(0u64).unwrap();
    let array = SharedArray::<u64>::new(1 << 16).unwrap();
    // Written before the pids are printed, so the test finds it once it has read them.
    std::fs::write(name_file, block.name()).unwrap();
    // Killed with their handles, should this process outlive the test that kills it.
    let mut children = Vec::new();
    for _ in 0..2 {
        let holding = Event::new();
        let args = (block.clone(), value.clone(), array.clone(), holding.clone());
        let child = Process::new(hold, args)
            .kill_on_drop(true)
            .start()
            .await
            .unwrap();
        holding.wait().await.unwrap();
        println!("PID {}", child.pid());
        children.push(child);
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[test]
fn a_killed_tree_leaves_no_shared_memory() {
    let before = ours_in_dev_shm();
    let name_file = std::env::temp_dir().join(format!("multiproc-shm-test-{}", std::process::id()));
    let mut parent = KilledOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([SCENARIO, "--exact", "--ignored", "--nocapture"])
            .env(SCENARIO_VAR, &name_file)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let parent = &mut parent.0;
    let mut tree = read_pids(parent, 2);
    assert!(tree.iter().all(|&pid| is_running(pid)));
    let name = std::fs::read_to_string(&name_file).unwrap();
    let _ = std::fs::remove_file(&name_file);
    // `multiproc-<pid>.<fd>.<token>.<len>`: the segment's memfd is `multiproc-<token>`.
    let token = name.split('.').nth(2).unwrap().to_string();
    let memfd = format!("/memfd:multiproc-{token}");
    assert!(
        !processes_holding(&memfd).is_empty(),
        "the tree holds {memfd}"
    );
    parent.kill().unwrap();
    parent.wait().unwrap();
    tree.push(parent.id());
    assert!(
        wait_until_dead(&tree, Duration::from_secs(2)),
        "the children outlived their parent's SIGKILL"
    );
    std::thread::sleep(Duration::from_secs(2));
    let holders = processes_holding(&memfd);
    assert!(
        holders.is_empty(),
        "processes still hold the killed tree's segment {memfd}: {holders:?}"
    );
    let after = ours_in_dev_shm();
    assert!(
        after.is_subset(&before),
        "new entries of ours in /dev/shm: {:?}",
        after.difference(&before)
    );
}

/// The entries of `/dev/shm` whose names are ours (other programs on the machine may create
/// entries of their own meanwhile).
fn ours_in_dev_shm() -> HashSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.contains("multiproc"))
                .collect()
        })
        .unwrap_or_default()
}

/// The processes that have a descriptor or a mapping whose target starts with `prefix`.
fn processes_holding(prefix: &str) -> HashSet<u32> {
    let mut found = HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let maps = std::fs::read_to_string(entry.path().join("maps")).unwrap_or_default();
        let fds = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok());
        if maps.contains(prefix)
            || fds
                .into_iter()
                .any(|target| target.to_string_lossy().starts_with(prefix))
        {
            found.insert(pid);
        }
    }
    found
}

/// The scenario's process, killed if the test fails before it kills it.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
