//! [`task_id`]: the id of the cluster task a worker runs in, for workers that must be
//! idempotent under at-least-once delivery.
//!
//! The id reaches the child process without a change to the parent–child protocol: a node
//! calls the internal worker [`WITH_TASK`], registered like any `#[worker]`, whose arguments
//! carry the task id, the real worker's name and its encoded arguments. In the child it runs
//! the real worker inside a task-local scope holding the id. A local pool never goes through
//! it, so there `task_id()` is `None`.

use crate::error::RemoteError;
use crate::protocol::cluster::WithTask;
use crate::protocol::encode;
use crate::registry::{self, WorkerEntry};

tokio::task_local! {
    static TASK_ID: String;
}

/// The registered name of the internal worker that runs a task's batch under its id.
pub(crate) const WITH_TASK: &str = "multiproc::cluster::with_task";

inventory::submit! {
    WorkerEntry::new(|| WITH_TASK, with_task, false)
}

/// The id of the cluster task this worker runs in, inside a `#[worker]` run by a
/// [`Node`](super::Node); `None` elsewhere (a local pool, a [`Process`](crate::Process), the
/// main process).
///
/// A task is delivered *at least once* (see the [cluster docs](super)): a task whose node
/// died after running it but before acknowledging it runs again, elsewhere, with the same
/// id. A worker with side effects can use the id to do them once, for instance as the key of
/// an insert that ignores duplicates. All items of one chunk of a `map` run in one task, so
/// they share its id; combine it with something of the item's own if the effects are per
/// item.
///
/// ```no_run
/// #[multiproc::worker]
/// fn charge(account: u64, cents: u64) {
///     let key = multiproc::cluster::task_id().unwrap_or_default();
///     // insert (key, account, cents) unless the key is there already
///     # let _ = (key, account, cents);
/// }
/// ```
pub fn task_id() -> Option<String> {
    TASK_ID.try_with(Clone::clone).ok()
}

/// The payload of a [`WITH_TASK`] call that runs `payload`, a batch for `worker`, as `task`.
pub(crate) fn with_task_payload(
    task: &str,
    worker: &str,
    payload: &[u8],
) -> crate::Result<Vec<u8>> {
    encode(
        &WithTask {
            task,
            worker,
            payload,
        },
        "a task",
    )
}

/// The dispatcher of [`WITH_TASK`], in the child: the batch's own dispatcher, run with the
/// task's id in scope. Its reply is the batch's reply, unchanged.
fn with_task(
    payload: &[u8],
    _batch: bool,
) -> futures::future::LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>> {
    // Borrowed from the frame, so the batch is not copied again.
    let call = match WithTask::decode(payload) {
        Ok(call) => call,
        Err(error) => {
            let error = RemoteError::Serialization(error.to_string());
            return Box::pin(async move { Err(error) });
        }
    };
    let Some(registry::Registered { dispatch, .. }) = registry::lookup(call.worker) else {
        let error = RemoteError::UnknownWorker(format!("`{}` is not registered", call.worker));
        return Box::pin(async move { Err(error) });
    };
    // The dispatcher decodes the arguments now; the worker runs when the future is polled,
    // inside the scope.
    Box::pin(TASK_ID.scope(call.task.to_string(), dispatch(call.payload, true)))
}
