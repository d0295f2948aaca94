//! Process: exit codes, terminate and kill, join_timeout, start-up faults.

use std::time::{Duration, Instant};

use multiproc::{ExitStatus, Process, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker]
fn exit_with(code: i32) {
    std::process::exit(code)
}

#[worker]
fn boom(message: String) -> u32 {
    panic!("{message}")
}

#[worker]
fn abort() {
    std::process::abort()
}

#[worker]
fn segfault() {
    // SAFETY: not safe at all; this worker exists to die of SIGSEGV.
    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) }
}

#[worker]
async fn recurse(depth: u32) -> Result<u32, String> {
    match Process::new(recurse, (depth + 1,)).start().await {
        Ok(child) => child.join().await.map_err(|e| e.to_string())?,
        Err(error) => Err(format!("{depth}: {error}")),
    }
}

#[tokio::test]
async fn normal_return_is_exit_code_zero() {
    let p = within(Process::new(sleep_ms, (0,)).start()).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(p.exit_status(), Some(ExitStatus::Code(0)));
}

#[tokio::test]
async fn process_exit_code_is_reported() {
    let p = within(Process::new(exit_with, (5,)).start()).await.unwrap();
    let error = within(p.join()).await.unwrap_err();
    assert!(error.is_worker_died(), "{error}");
    assert_eq!(error.exit_status(), Some(ExitStatus::Code(5)));
    assert_eq!(error.pid(), Some(p.pid()));
    assert_eq!(p.exitcode(), Some(5));
}

#[tokio::test]
async fn a_panic_is_exit_code_one_with_message_and_location() {
    let p = within(Process::new(boom, ("kaboom".to_string(),)).start())
        .await
        .unwrap();
    let error = within(p.join()).await.unwrap_err();
    assert!(error.is_panic(), "{error}");
    let panic = error.panic_info().unwrap();
    assert_eq!(panic.message, "kaboom");
    assert!(
        panic
            .location
            .as_deref()
            .unwrap()
            .contains("process_exit.rs"),
        "{panic:?}"
    );
    assert_eq!(panic.process, p.name());
    assert_eq!(p.exitcode(), Some(1));
}

#[tokio::test]
async fn terminate_gives_minus_fifteen() {
    let p = within(Process::new(sleep_ms, (60_000,)).start())
        .await
        .unwrap();
    assert!(p.is_alive());
    p.terminate();
    let error = within(p.join()).await.unwrap_err();
    assert!(error.is_worker_died(), "{error}");
    assert_eq!(p.exitcode(), Some(-15));
    assert!(!p.is_alive());
    p.terminate(); // a reaped process ignores signals
}

#[tokio::test]
async fn kill_gives_minus_nine() {
    let p = within(Process::new(sleep_ms, (60_000,)).start())
        .await
        .unwrap();
    p.kill();
    let error = within(p.join()).await.unwrap_err();
    assert_eq!(error.exit_status(), Some(ExitStatus::Signal(9)));
    assert_eq!(p.exitcode(), Some(-9));
}

#[tokio::test]
async fn abort_and_segfault_give_their_signals() {
    let aborted = within(Process::new(abort, ()).start()).await.unwrap();
    let crashed = within(Process::new(segfault, ()).start()).await.unwrap();
    assert!(within(aborted.join()).await.unwrap_err().is_worker_died());
    assert!(within(crashed.join()).await.unwrap_err().is_worker_died());
    assert_eq!(aborted.exitcode(), Some(-6));
    assert_eq!(crashed.exitcode(), Some(-11));
}

#[tokio::test]
async fn join_timeout_returns_while_the_child_runs() {
    let p = within(Process::new(sleep_ms, (60_000,)).start())
        .await
        .unwrap();
    let started = Instant::now();
    let early = within(p.join_timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(early.is_none());
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.kill();
    assert!(within(p.join()).await.is_err());

    let quick = within(Process::new(sleep_ms, (10,)).start()).await.unwrap();
    assert_eq!(
        within(quick.join_timeout(Duration::from_secs(10)))
            .await
            .unwrap(),
        Some(10)
    );
}

#[tokio::test]
async fn a_child_that_cannot_connect_in_time_is_a_spawn_error() {
    let started = Instant::now();
    let error = Process::new(sleep_ms, (0,))
        .start_timeout(Duration::from_millis(500))
        .stall_at_start_for_tests()
        .start()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::Spawn, "{error}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let pid = error.pid().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the child was not reaped"
    );
}

#[tokio::test]
async fn arguments_over_the_frame_limit_are_refused_at_the_call_site() {
    let error = Process::new(sleep_ms, (1,))
        .max_frame_len(4)
        .start()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::FrameTooLarge, "{error}");
}

#[tokio::test]
async fn runaway_recursion_is_stopped() {
    let p = within(Process::new(recurse, (1,)).start()).await.unwrap();
    let message = within(p.join()).await.unwrap().unwrap_err();
    assert!(message.contains("nested 16 deep"), "{message}");
}

/// A value whose serialization always fails, as a type with a non-string map key would.
struct Unserializable;

impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[worker]
fn takes_unserializable(_value: Unserializable) {}

#[worker]
fn returns_unserializable() -> Unserializable {
    Unserializable
}

#[tokio::test]
async fn a_value_that_fails_to_serialize_is_an_error_at_the_call_site() {
    let error = Process::new(takes_unserializable, (Unserializable,))
        .start()
        .await
        .unwrap_err();
    assert!(error.is_serialization(), "{error}");
    assert!(error.to_string().contains("arguments"), "{error}");

    let p = within(Process::new(returns_unserializable, ()).start())
        .await
        .unwrap();
    let error = within(p.join())
        .await
        .err()
        .expect("the result cannot be serialized");
    assert!(error.is_serialization(), "{error}");
    assert!(error.to_string().contains("result"), "{error}");
}

#[worker]
fn bytes_of_len(len: usize) -> Vec<u8> {
    vec![7; len]
}

#[tokio::test]
async fn a_result_over_the_frame_limit_is_an_error_at_join() {
    let p = within(
        Process::new(bytes_of_len, (64 * 1024,))
            .max_frame_len(16 * 1024)
            .start(),
    )
    .await
    .unwrap();
    let error = within(p.join()).await.unwrap_err();
    assert_eq!(error.kind(), multiproc::ErrorKind::FrameTooLarge, "{error}");
    assert!(error.to_string().contains("bytes_of_len"), "{error}");
    assert_eq!(within(p.join()).await.map(|_| ()).ok(), None);
    assert_eq!(p.exitcode(), Some(0));
}
