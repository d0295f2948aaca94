//! Process lifecycle seen from outside: what happens when the parent exits or is killed, and
//! what logging prints. Each case runs a scenario (an ignored test of this file) in a fresh
//! copy of this test binary acting as the parent, and watches it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::{Process, worker};

multiproc::test_support!();

#[path = "common/pids.rs"]
mod pids;
use pids::{kill_and_expect_children_gone, read_pids, start_children_and_wait, wait_until_dead};

#[worker]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker]
fn log_something() -> u32 {
    tracing::info!("hello from the worker");
    7
}

#[worker]
fn log_at_every_level() {
    tracing::error!("an error");
    tracing::warn!("a warning");
    tracing::info!("some news");
    tracing::debug!("a detail");
    tracing::trace!("a finer detail");
}

/// Starts the scenario `name` as a parent process of its own.
fn scenario(name: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_with_limit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the scenario did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
#[ignore = "a scenario, run by exit_terminates_daemons_and_joins_the_others"]
async fn scenario_exit_with_children() {
    let daemon = Process::new(sleep_ms, (60_000,))
        .daemon(true)
        .start()
        .await
        .unwrap();
    let worker = Process::new(sleep_ms, (1_000,)).start().await.unwrap();
    println!("PID {}", daemon.pid());
    println!("PID {}", worker.pid());
}

#[test]
fn exit_terminates_daemons_and_joins_the_others() {
    let started = Instant::now();
    let mut parent = scenario("scenario_exit_with_children");
    let pids = read_pids(&mut parent, 2);
    let status = wait_with_limit(&mut parent, Duration::from_secs(20));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(1_000),
        "the non-daemon child was not joined: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "the daemon child was not terminated: {took:?}"
    );
    assert!(
        wait_until_dead(&pids, Duration::from_secs(2)),
        "children outlived their parent"
    );
}

#[tokio::test]
#[ignore = "a scenario, run by children_die_with_a_killed_parent"]
async fn scenario_parent_to_be_killed() {
    start_children_and_wait(sleep_ms).await;
}

#[test]
fn children_die_with_a_killed_parent() {
    kill_and_expect_children_gone(scenario("scenario_parent_to_be_killed"));
}

#[tokio::test]
#[ignore = "a scenario, run by log_to_stderr_prints_lifecycle_events_in_python_format"]
async fn scenario_logging() {
    multiproc::log_to_stderr(tracing::Level::INFO);
    let p = Process::new(log_something, ()).start().await.unwrap();
    assert_eq!(p.join().await.unwrap(), 7);
    tracing::info!("done in the parent");
}

#[tokio::test]
#[ignore = "a scenario, run by a_child_prints_pythons_level_names"]
async fn scenario_logging_every_level() {
    multiproc::log_to_stderr(tracing::Level::TRACE);
    let p = Process::new(log_at_every_level, ()).start().await.unwrap();
    p.join().await.unwrap();
}

#[tokio::test]
#[ignore = "a scenario, run by forwarded_events_print_once_under_the_childs_name"]
async fn scenario_logging_forwarded() {
    multiproc::log_to_stderr(tracing::Level::INFO);
    multiproc::forward_tracing(tracing::Level::INFO);
    let p = Process::new(log_something, ()).start().await.unwrap();
    assert_eq!(p.join().await.unwrap(), 7);
}

#[tokio::test]
#[ignore = "a scenario, run by nothing_is_logged_unless_asked"]
async fn scenario_quiet() {
    let p = Process::new(log_something, ()).start().await.unwrap();
    assert_eq!(p.join().await.unwrap(), 7);
    tracing::info!("done in the parent");
}

fn stderr_of(name: &str) -> String {
    let mut parent = scenario(name);
    let status = wait_with_limit(&mut parent, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut parent.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    stderr
}

fn assert_has_lines(stderr: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            stderr.lines().any(|l| l == *line),
            "missing {line:?} in:\n{stderr}"
        );
    }
}

#[test]
fn log_to_stderr_prints_lifecycle_events_in_python_format() {
    assert_has_lines(
        &stderr_of("scenario_logging"),
        &[
            "[INFO/Process-1] child process calling run()",
            "[INFO/Process-1] hello from the worker",
            "[INFO/Process-1] process exiting with exitcode 0",
            "[INFO/MainProcess] done in the parent",
            "[INFO/MainProcess] process shutting down",
        ],
    );
}

#[test]
fn a_child_prints_pythons_level_names() {
    assert_has_lines(
        &stderr_of("scenario_logging_every_level"),
        &[
            "[ERROR/Process-1] an error",
            "[WARNING/Process-1] a warning",
            "[INFO/Process-1] some news",
            "[DEBUG/Process-1] a detail",
            "[SUBDEBUG/Process-1] a finer detail",
        ],
    );
}

#[test]
fn nothing_is_logged_unless_asked() {
    let stderr = stderr_of("scenario_quiet");
    assert!(!stderr.contains("[INFO"), "unexpected output:\n{stderr}");
}

#[test]
fn forwarded_events_print_once_under_the_childs_name() {
    let stderr = stderr_of("scenario_logging_forwarded");
    let line = "[INFO/Process-1] hello from the worker";
    assert_has_lines(
        &stderr,
        &[line, "[INFO/Process-1] child process calling run()"],
    );
    let times = stderr.lines().filter(|l| *l == line).count();
    assert_eq!(
        times, 1,
        "printed by the child and by the parent:\n{stderr}"
    );
}
