//! Children started by a program's main thread die with it, even when it is `SIGKILL`ed.
//!
//! Linux's parent death signal follows the *thread* that started a child, and a child started
//! by the main thread relies on it alone. The test harness runs tests (and the children of a
//! test binary) on other threads, so this file is a program of its own (`harness = false`)
//! whose main thread starts the children. It answers the few arguments that `cargo test` and
//! `cargo nextest` use to list and run its one test.

use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc::worker;

#[path = "common/pids.rs"]
mod pids;
use pids::{kill_and_expect_children_gone, start_children_and_wait};

const TEST_NAME: &str = "children_of_a_killed_main_thread_die_with_it";
const SCENARIO: &str = "--scenario";

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    if has(SCENARIO) {
        return scenario();
    }
    // Words that are not the values of options (`--format terse`) filter tests by name.
    let takes_value = [
        "--format",
        "--logfile",
        "--skip",
        "--test-threads",
        "--color",
        "-Z",
    ];
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|&(i, arg)| {
            !arg.starts_with('-') && (i == 0 || !takes_value.contains(&args[i - 1].as_str()))
        })
        .map(|(_, arg)| arg)
        .collect();
    let selected = !has("--ignored")
        && (filters.is_empty()
            || filters.iter().any(|filter| {
                if has("--exact") {
                    filter.as_str() == TEST_NAME
                } else {
                    TEST_NAME.contains(filter.as_str())
                }
            }));
    if has("--list") {
        if selected {
            println!("{TEST_NAME}: test");
        }
        return;
    }
    if selected {
        children_of_a_killed_main_thread_die_with_it();
        println!("test {TEST_NAME} ... ok");
    }
}

/// The parent to be killed: starts a daemon and a plain child from its main thread, prints
/// their pids, and waits.
fn scenario() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(start_children_and_wait(sleep_ms));
}

fn children_of_a_killed_main_thread_die_with_it() {
    let parent = Command::new(std::env::current_exe().unwrap())
        .arg(SCENARIO)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    kill_and_expect_children_gone(parent);
}
