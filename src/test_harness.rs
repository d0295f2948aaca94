//! Child processes from integration tests, under both `cargo test` and `cargo nextest run`.
//!
//! A test binary has no `main` of the user's to put [`init`](crate::init) in. The
//! [`test_support!`](crate::test_support) line adds a test named `__multiproc_child` that
//! calls it, and registers a [`TestHarness`] naming that test. When a harness is registered,
//! a child is started as `<test binary> <module>::__multiproc_child --exact`, so libtest runs
//! only the helper, which serves the child's calls; no test body ever runs in a child.

use std::process::Stdio;

/// The `test_support!()` helper test of a test binary.
#[doc(hidden)]
#[derive(Debug)]
pub struct TestHarness {
    module_path: &'static str,
}

impl TestHarness {
    #[doc(hidden)]
    pub const fn new(module_path: &'static str) -> Self {
        TestHarness { module_path }
    }

    /// The helper's test name as libtest knows it: the module path without the crate name.
    fn test_name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_, rest)) => format!("{rest}::__multiproc_child"),
            None => "__multiproc_child".to_string(),
        }
    }

    /// Makes `command` run only the helper test. The child's stdout is discarded unless the
    /// runner shows the tests' output, as it would be for a test body.
    pub(crate) fn configure(&self, command: &mut tokio::process::Command) {
        command.args([
            &self.test_name(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        if !output_shown() {
            command.stdout(Stdio::null());
        }
    }
}

inventory::collect!(TestHarness);

/// The harness of this test binary; `None` in an application.
pub(crate) fn harness() -> Option<&'static TestHarness> {
    inventory::iter::<TestHarness>.into_iter().next()
}

/// Whether the test runner shows the test's output (nextest always runs with `--nocapture`).
fn output_shown() -> bool {
    std::env::args().any(|arg| arg == "--nocapture" || arg == "--show-output")
}

/// Lets the tests of one test file start child processes. One line, at the top level of the
/// file; see "Testing your own crate" in the crate docs.
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        fn __multiproc_child() {
            $crate::init()
        }

        #[cfg(test)]
        $crate::__private::inventory::submit! {
            $crate::__private::TestHarness::new(::core::module_path!())
        }
    };
}
