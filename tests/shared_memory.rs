//! SharedMemory across processes: written by children and pool workers, opened by name,
//! outliving its creator, and refused where it cannot be mapped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::{ErrorKind, Event, Pool, Process, Queue, SharedMemory, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn write_under_lock(block: SharedMemory, text: String) {
    let mut bytes = block.lock().await.unwrap();
    bytes[..text.len()].copy_from_slice(text.as_bytes());
}

#[worker]
fn write_part_and_count(block: SharedMemory, part: usize) {
    block.write_at(part * 8, &[part as u8 + 1; 8]);
    block.atomics::<u64>()[16].fetch_add(1, Ordering::SeqCst);
}

#[worker]
async fn answer_by_name(name: String) -> String {
    let block = SharedMemory::open(&name).unwrap();
    let mut question = [0; 5];
    block.read_at(0, &mut question);
    let mut bytes = block.lock().await.unwrap();
    bytes[100..103].copy_from_slice(b"yes");
    String::from_utf8(question.to_vec()).unwrap()
}

#[worker]
fn name_of_a_block_of_mine() -> String {
    SharedMemory::new(64).unwrap().name()
}

#[worker]
async fn create_and_send(blocks: Queue<SharedMemory>, received: Option<Event>) {
    let block = SharedMemory::new(4096).unwrap();
    block.write_at(4000, b"from a process now gone");
    blocks.put(block.clone()).await.unwrap();
    if let Some(received) = received {
        received.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_child_writes_under_the_lock_and_the_parent_reads() {
    let block = SharedMemory::new(32).unwrap();
    let child =
        within(Process::new(write_under_lock, (block.clone(), "from the child".into())).start())
            .await
            .unwrap();
    within(child.join()).await.unwrap();
    let bytes = within(block.lock()).await.unwrap();
    assert_eq!(&bytes[..14], b"from the child");
    assert!(!bytes.owner_died());
}

#[tokio::test]
async fn pool_workers_write_their_parts_and_count_with_atomics() {
    let block = SharedMemory::new(256).unwrap();
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let parts = (0..8).map(|part| (block.clone(), part));
    within(pool.starmap(write_part_and_count, parts).chunksize(1))
        .await
        .unwrap();
    for part in 0..8 {
        let mut bytes = [0; 8];
        block.read_at(part * 8, &mut bytes);
        assert_eq!(bytes, [part as u8 + 1; 8], "part {part}");
    }
    assert_eq!(block.atomics::<u64>()[16].load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn a_child_opens_the_block_by_its_name_alone() {
    let block = SharedMemory::new(128).unwrap();
    block.write_at(0, b"ready");
    let child = within(Process::new(answer_by_name, (block.name(),)).start())
        .await
        .unwrap();
    assert_eq!(within(child.join()).await.unwrap(), "ready");
    let mut answer = [0; 3];
    block.read_at(100, &mut answer);
    assert_eq!(&answer, b"yes");
}

#[tokio::test]
async fn a_name_that_names_no_block_is_not_found() {
    let child = within(Process::new(name_of_a_block_of_mine, ()).start())
        .await
        .unwrap();
    let freed = within(child.join()).await.unwrap();
    let block = SharedMemory::new(8).unwrap();
    let name = block.name();
    let mut other_token: Vec<&str> = name.split('.').collect();
    let zeros = "0".repeat(32);
    other_token[2] = &zeros;
    for wrong in [
        "psm_0123abcd".to_string(),
        "multiproc-1.2.3.4".to_string(),
        other_token.join("."),
        freed,
    ] {
        let error = SharedMemory::open(&wrong).expect_err(&wrong);
        assert_eq!(error.kind(), ErrorKind::NotFound, "{wrong}: {error}");
    }
}

#[tokio::test]
async fn a_block_outlives_its_creator_in_a_process_that_holds_it() {
    let blocks = Queue::new();
    let received = Event::new();
    let child =
        within(Process::new(create_and_send, (blocks.clone(), Some(received.clone()))).start())
            .await
            .unwrap();
    let block = within(blocks.get()).await.unwrap();
    within(received.set()).await.unwrap();
    within(child.join()).await.unwrap();
    let mut text = [0; 23];
    block.read_at(4000, &mut text);
    assert_eq!(&text, b"from a process now gone");
    // The lock is in the block: it still works, though its waiters' hub died with the creator.
    let mut bytes = within(block.lock()).await.unwrap();
    bytes[0] = 1;
    assert!(!bytes.owner_died());
}

#[tokio::test]
async fn a_handle_whose_holders_all_exited_fails_to_deserialize() {
    let blocks = Queue::new();
    let child = within(Process::new(create_and_send, (blocks.clone(), None)).start())
        .await
        .unwrap();
    within(child.join()).await.unwrap();
    let error = within(blocks.get()).await.expect_err("no process holds it");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(
        error.message().contains("cannot be opened here"),
        "the error says why: {error}"
    );
}

const OTHER_USER_SCENARIO: &str = "a_block_held_by_another_user";
const OTHER_USER_VAR: &str = "MULTIPROC_TEST_OTHER_USER";

/// Run by [`a_block_of_another_user_is_refused`] as user `nobody`: creates a block, prints its
/// name and waits to be killed. Without the variable, returns at once.
#[tokio::test]
#[ignore = "run as another user by a_block_of_another_user_is_refused"]
async fn a_block_held_by_another_user() {
    if std::env::var_os(OTHER_USER_VAR).is_none() {
        return;
    }
    let block = SharedMemory::new(64).unwrap();
    println!("NAME {}", block.name());
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[test]
fn a_block_of_another_user_is_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: starting a process as another user needs root");
        return;
    }
    let mut other = Command::new(std::env::current_exe().unwrap())
        .args([OTHER_USER_SCENARIO, "--exact", "--ignored", "--nocapture"])
        .env(OTHER_USER_VAR, "1")
        .uid(65534)
        .gid(65534)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(other.stdout.take().unwrap());
    let opened = lines
        .recv_timeout(common::LIMIT)
        .map(|name| SharedMemory::open(name.strip_prefix("NAME ").unwrap_or(&name)));
    other.kill().unwrap();
    other.wait().unwrap();
    let opened = opened.expect("the other user's process printed its block's name");
    let error = opened.expect_err("a block of another user");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
}

const UNRELATED_SCENARIO: &str = "an_unrelated_program_waits_for_the_lock";
const UNRELATED_VAR: &str = "MULTIPROC_TEST_BLOCK_NAME";

/// Run by [`a_program_outside_the_tree_opens_by_name_and_waits_for_the_lock`] as a program of
/// its own (not a child of this crate: another key, no parent): opens the block named in the
/// variable, waits for its lock and writes under it. Without the variable, returns at once.
#[tokio::test]
#[ignore = "run as a program of its own by a_program_outside_the_tree_opens_by_name_..."]
async fn an_unrelated_program_waits_for_the_lock() {
    let Ok(name) = std::env::var(UNRELATED_VAR) else {
        return;
    };
    let block = SharedMemory::open(&name).unwrap();
    let held = within(block.get_lock().try_acquire()).await.unwrap();
    assert!(held.is_none(), "the test holds the lock");
    println!("OPENED");
    let mut bytes = within(block.lock()).await.unwrap();
    bytes[..4].copy_from_slice(b"done");
}

#[tokio::test]
async fn a_program_outside_the_tree_opens_by_name_and_waits_for_the_lock() {
    let block = SharedMemory::new(16).unwrap();
    let guard = within(block.lock()).await.unwrap();
    let mut other = Command::new(std::env::current_exe().unwrap())
        .args([UNRELATED_SCENARIO, "--exact", "--ignored", "--nocapture"])
        .env(UNRELATED_VAR, block.name())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(other.stdout.take().unwrap());
    let opened = tokio::task::spawn_blocking(move || lines.recv_timeout(common::LIMIT));
    assert_eq!(within(opened).await.unwrap().as_deref(), Ok("OPENED"));
    // It found the lock held; give it time to start waiting for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(guard);
    let status = within(tokio::task::spawn_blocking(move || other.wait()))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the program failed: {status}");
    let mut written = [0; 4];
    block.read_at(0, &mut written);
    assert_eq!(&written, b"done");
}

/// The lines a scenario prints for the test (`NAME ...`, `OPENED`; libtest's own are left
/// out), read to the end on a thread of their own so that the scenario never writes to a closed
/// pipe.
fn read_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("NAME ") || line == "OPENED" {
                let _ = sender.send(line);
            }
        }
    });
    lines
}
