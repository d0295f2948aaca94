//! Process: serde attributes that need a self-describing format. Values travel as postcard,
//! which is not self-describing; what each such attribute does on the way to a child and back.

use multiproc::{Process, worker};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

mod common;
use common::within;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Untagged {
    Number(u64),
    Text(String),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Inner {
    depth: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Flattened {
    id: u32,
    #[serde(flatten)]
    inner: Inner,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Skipping {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<u32>,
    count: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SkippingZero {
    #[serde(skip_serializing_if = "is_zero")]
    retries: u32,
    label: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[worker]
fn echo_untagged(value: Untagged) -> Untagged {
    value
}

#[worker]
fn make_untagged() -> Untagged {
    Untagged::Number(3)
}

#[worker]
fn echo_flattened(value: Flattened) -> Flattened {
    value
}

#[worker]
fn make_flattened() -> Flattened {
    Flattened {
        id: 1,
        inner: Inner { depth: 2 },
    }
}

#[worker]
fn echo_skipping(value: Skipping) -> Skipping {
    value
}

#[worker]
fn echo_skipping_zero(value: SkippingZero) -> SkippingZero {
    value
}

/// Starts `worker` on `args` and waits for its result.
async fn run_in_child<W, M>(worker: W, args: W::Args) -> multiproc::Result<W::Output>
where
    W: multiproc::Worker<M>,
{
    let process = within(Process::new(worker, args).start()).await?;
    within(process.join()).await
}

/// Asserts that `outcome` is a serialization error whose message names `what`.
fn assert_serialization_error<T: std::fmt::Debug>(outcome: multiproc::Result<T>, what: &str) {
    let error = outcome.unwrap_err();
    assert!(error.is_serialization(), "{error}");
    assert!(error.to_string().contains(what), "{error}");
}

#[tokio::test]
async fn an_untagged_enum_argument_is_a_serialization_error_in_the_child() {
    let outcome = run_in_child(echo_untagged, (Untagged::Text("x".into()),)).await;
    assert_serialization_error(outcome, "arguments");
}

#[tokio::test]
async fn an_untagged_enum_result_is_a_serialization_error_in_the_parent() {
    assert_serialization_error(run_in_child(make_untagged, ()).await, "result");
}

#[tokio::test]
async fn a_flattened_argument_is_a_serialization_error_before_the_call() {
    // A worker is a plain function too: called here, it makes the value to send.
    let outcome = run_in_child(echo_flattened, (make_flattened(),)).await;
    assert_serialization_error(outcome, "echo_flattened");
}

#[tokio::test]
async fn a_flattened_result_is_a_serialization_error_from_the_child() {
    assert_serialization_error(run_in_child(make_flattened, ()).await, "result");
}

#[tokio::test]
async fn a_skipped_field_shifts_the_fields_after_it_into_an_error() {
    let skipped = Skipping {
        id: 1,
        note: None,
        count: 5,
    };
    // `count` is read as `note`'s discriminant, which 5 cannot be.
    assert_serialization_error(run_in_child(echo_skipping, (skipped,)).await, "arguments");
    // Nothing is skipped when the field has a value, so the value arrives whole.
    let kept = Skipping {
        id: 1,
        note: Some(2),
        count: 5,
    };
    let echoed = run_in_child(echo_skipping, (kept,)).await.unwrap();
    assert_eq!(echoed.note, Some(2));
    assert_eq!(echoed.count, 5);
}

/// When the shifted bytes happen to decode, the child gets a wrong value and no error: the
/// skipped `retries` takes the label's length (2), and the label's first byte (1) becomes
/// its length. Postcard cannot see this; only a serializer that refuses skipped fields could.
#[tokio::test]
#[ignore = "a known gap: a skipped field can decode silently as a wrong value (issue 15)"]
async fn a_skipped_field_never_arrives_as_a_wrong_value() {
    let value = SkippingZero {
        retries: 0,
        label: "\u{1}A".into(),
    };
    let outcome = run_in_child(echo_skipping_zero, (value,)).await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(|error| error.is_serialization()),
        "{outcome:?}"
    );
}
