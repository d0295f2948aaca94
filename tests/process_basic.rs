//! Process: arguments in, results out, names, join semantics.

use multiproc::{Process, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn describe(name: String, count: u32, tags: Vec<String>) -> String {
    format!("{name}:{count}:{}", tags.join(","))
}

#[worker]
async fn async_len(text: String) -> usize {
    // A runtime with timers, able to run spawned tasks.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    tokio::spawn(async move { text.len() }).await.unwrap()
}

#[worker]
fn fallible(ok: bool) -> Result<u32, String> {
    if ok { Ok(7) } else { Err("no luck".into()) }
}

#[worker]
fn whoami() -> (String, u32, Option<String>) {
    let me = multiproc::current_process();
    (me.name, me.pid, multiproc::parent_process().map(|p| p.name))
}

#[tokio::test]
async fn returns_the_workers_result() {
    let p = within(Process::new(square, (7,)).start()).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), 49);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
}

#[tokio::test]
async fn several_arguments_travel_as_a_tuple() {
    let p = within(
        Process::new(
            describe,
            ("bob".to_string(), 3, vec!["a".into(), "b".into()]),
        )
        .start(),
    )
    .await
    .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), "bob:3:a,b");
}

#[tokio::test]
async fn async_workers_run_too() {
    let p = within(Process::new(async_len, ("hello".to_string(),)).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), 5);
}

#[tokio::test]
async fn a_worker_error_is_a_value() {
    let ok = within(Process::new(fallible, (true,)).start())
        .await
        .unwrap();
    let err = within(Process::new(fallible, (false,)).start())
        .await
        .unwrap();
    assert_eq!(within(ok.join()).await.unwrap(), Ok(7));
    assert_eq!(
        within(err.join()).await.unwrap(),
        Err("no luck".to_string())
    );
    assert_eq!(err.exitcode(), Some(0));
}

#[tokio::test]
async fn joining_again_gives_the_same_result() {
    let p = within(Process::new(square, (5,)).start()).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), 25);
    assert_eq!(within(p.join()).await.unwrap(), 25);
    let clone = p.clone();
    assert_eq!(within(clone.join()).await.unwrap(), 25);
}

#[tokio::test]
async fn names_pids_and_parent_are_seen_by_the_child() {
    let p = within(Process::new(whoami, ()).name("custom").start())
        .await
        .unwrap();
    let (name, pid, parent) = within(p.join()).await.unwrap();
    assert_eq!(name, "custom");
    assert_eq!(pid, p.pid());
    assert_ne!(pid, std::process::id());
    assert_eq!(parent.as_deref(), Some("MainProcess"));
}

#[tokio::test]
async fn an_unregistered_function_is_a_typed_error() {
    fn not_a_worker(x: u64) -> u64 {
        x
    }
    let error = Process::new(not_a_worker, (1,)).start().await.unwrap_err();
    assert!(error.is_unknown_worker(), "{error}");
    let error = Process::new(|x: u64| x, (1,)).start().await.unwrap_err();
    assert!(error.is_unknown_worker(), "{error}");
    assert!(error.to_string().contains("closure"), "{error}");
}

#[worker]
fn fails_with_a_multiproc_error(timeout: bool) -> multiproc::Result<u32> {
    if timeout {
        Err(multiproc::Error::new(
            multiproc::ErrorKind::Timeout,
            "took too long",
        ))
    } else {
        Ok(1)
    }
}

#[tokio::test]
async fn a_worker_may_return_a_multiproc_result() {
    let p = within(Process::new(fails_with_a_multiproc_error, (true,)).start())
        .await
        .unwrap();
    let inner = within(p.join()).await.unwrap().unwrap_err();
    assert!(inner.is_timeout(), "{inner}");
    assert_eq!(inner.message(), "took too long");
}

/// How many bytes the child finds on its standard input.
#[worker]
fn bytes_on_stdin() -> usize {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn a_childs_stdin_is_empty() {
    // As in Python, a child's standard input is /dev/null: the socket that brought the key
    // and the calls was moved off it before any user code ran.
    let process = within(Process::new(bytes_on_stdin, ()).start())
        .await
        .unwrap();
    assert_eq!(within(process.join()).await.unwrap(), 0);
}
