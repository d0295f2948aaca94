//! Panics in children: what the caller learns of them. A child captures its backtrace when
//! `RUST_BACKTRACE` is set in its environment (inherited from this process), and the error
//! carries it to the caller, from a `Process` and from a pool worker alike.
//!
//! The tests set and remove `RUST_BACKTRACE` in this process for the children to inherit, so
//! they are one test, run in sequence: no other test of this binary reads the variable.

use multiproc::{Error, Pool, Process, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn divide_by_zero_deep_down(divisor: u64) -> u64 {
    if divisor == 0 {
        panic!("cannot divide by zero");
    }
    100 / divisor
}

#[worker]
async fn panic_after_awaiting(message: String) {
    tokio::task::yield_now().await;
    panic!("{message}");
}

/// The backtrace of a panic error, checked to be one.
fn backtrace_of(error: &Error) -> Option<String> {
    assert!(error.is_panic(), "{error}");
    let panic = error.panic_info().expect("a panic error carries its panic");
    assert!(
        panic
            .location
            .as_deref()
            .unwrap()
            .contains("process_panics.rs"),
        "{panic:?}"
    );
    panic.backtrace().map(str::to_string)
}

/// The panic errors of a `Process`, a pool's `apply` of an `async fn`, and a pool's `map`
/// (a plain `fn` over a batch), with the functions that panicked in each.
async fn panics_of_each_kind_of_child() -> Vec<(Error, &'static str)> {
    let process = within(Process::new(divide_by_zero_deep_down, (0,)).start())
        .await
        .unwrap();
    let from_process = within(process.join()).await.unwrap_err();
    let pool = within(Pool::builder().processes(1).build()).await.unwrap();
    let from_apply = within(pool.apply(panic_after_awaiting, ("awaited".to_string(),)))
        .await
        .unwrap_err();
    let from_map = within(pool.map(divide_by_zero_deep_down, vec![5, 0, 4]))
        .await
        .unwrap_err();
    within(pool.terminate()).await.unwrap();
    vec![
        (from_process, "divide_by_zero_deep_down"),
        (from_apply, "panic_after_awaiting"),
        (from_map, "divide_by_zero_deep_down"),
    ]
}

#[tokio::test]
async fn a_panic_carries_the_backtrace_only_when_the_child_has_rust_backtrace() {
    // SAFETY: this is the binary's only test (besides the child helper, which never runs in
    // this process), so no other thread reads the environment meanwhile.
    unsafe {
        std::env::remove_var("RUST_LIB_BACKTRACE");
        std::env::remove_var("RUST_BACKTRACE");
    }
    for (error, _) in panics_of_each_kind_of_child().await {
        assert_eq!(backtrace_of(&error), None, "{error}");
        assert!(!error.to_string().contains("stack backtrace"), "{error}");
    }

    // SAFETY: as above.
    unsafe { std::env::set_var("RUST_BACKTRACE", "1") };
    for (error, function) in panics_of_each_kind_of_child().await {
        let backtrace = backtrace_of(&error).unwrap_or_else(|| panic!("no backtrace: {error}"));
        let first_frames: Vec<&str> = backtrace.lines().take(12).collect();
        assert!(
            first_frames
                .iter()
                .any(|line| line.contains(&format!("process_panics::{function}"))),
            "the backtrace does not name `{function}` near its top:\n{backtrace}"
        );
        assert!(
            !backtrace.contains("multiproc::registry"),
            "the dispatcher's frames are left out:\n{backtrace}"
        );
        let shown = error.to_string();
        assert!(shown.contains("stack backtrace:"), "{shown}");
        assert!(shown.contains(function), "{shown}");
    }
}
