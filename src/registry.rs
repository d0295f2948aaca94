//! The registry of `#[worker]` functions and `#[multiproc::process]` types.
//!
//! Each registration is an [`inventory`] entry holding the worker's name, a monomorphized
//! dispatcher that decodes the arguments, runs the function under `catch_unwind`, and encodes
//! the result, and whether the worker is a plain `fn` (whose dispatch future is ready at its
//! first poll, so it needs no runtime). The registry is the same in parent and child because
//! they are the same binary; lookups go through a map built on first use.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::LocalBoxFuture;

use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::protocol::{BatchResults, decode, encode};
use crate::worker::{Run, Worker};

/// Runs a registered worker on an encoded argument tuple (or, batched, a `Vec` of them).
#[doc(hidden)]
pub type DispatchFn = fn(&[u8], bool) -> Call;

/// One registration. Built by the `#[worker]` and `#[multiproc::process]` macros.
#[doc(hidden)]
#[derive(Debug)]
pub struct WorkerEntry {
    name: fn() -> &'static str,
    registered: Registered,
}

impl WorkerEntry {
    #[doc(hidden)]
    pub const fn new(name: fn() -> &'static str, dispatch: DispatchFn, plain: bool) -> Self {
        WorkerEntry {
            name,
            registered: Registered { dispatch, plain },
        }
    }
}

/// What the registry knows of a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registered {
    pub(crate) dispatch: DispatchFn,
    /// A plain `fn`: its dispatch future is ready at its first poll, and touches no runtime.
    pub(crate) plain: bool,
}

/// A worker's call in progress: the future its dispatcher returned.
pub(crate) type Call = LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>>;

impl Registered {
    /// Starts a call and polls it once, right here, with no runtime: a plain `fn`'s call is
    /// done by then. A call that awaits is handed back, to be driven further or refused.
    pub(crate) fn call_now(
        &self,
        payload: &[u8],
        batch: bool,
    ) -> Result<Result<Vec<u8>, RemoteError>, Call> {
        let mut call = (self.dispatch)(payload, batch);
        match call
            .as_mut()
            .poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
        {
            Poll::Ready(outcome) => Ok(outcome),
            Poll::Pending => Err(call),
        }
    }
}

/// Whether `worker` is a plain `fn`; the `#[worker]` macro records it in the registry.
#[doc(hidden)]
pub const fn is_plain<W: Worker<M>, M>(_worker: &W) -> bool {
    W::PLAIN
}

inventory::collect!(WorkerEntry);

struct Registry {
    by_name: HashMap<&'static str, Registered>,
    duplicates: Vec<&'static str>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut duplicates = Vec::new();
        for entry in inventory::iter::<WorkerEntry> {
            let name = (entry.name)();
            if by_name.insert(name, entry.registered).is_some() {
                duplicates.push(name);
            }
        }
        Registry {
            by_name,
            duplicates,
        }
    })
}

/// Panics, naming them, if two registrations share a name. Called by `init()`.
pub(crate) fn check_duplicates() {
    let duplicates = &registry().duplicates;
    assert!(
        duplicates.is_empty(),
        "multiproc: these workers are registered more than once: {duplicates:?}; \
         remove the repeated #[worker] or #[multiproc::process]"
    );
}

pub(crate) fn lookup(name: &str) -> Option<Registered> {
    registry().by_name.get(name).copied()
}

/// Checks at the call site that `name` is registered, so an unregistered function fails
/// before anything is sent.
pub(crate) fn ensure_registered(name: &'static str, hint: &str) -> Result<&'static str> {
    if lookup(name).is_some() {
        Ok(name)
    } else if name.contains("{{closure}}") {
        Err(Error::new(
            ErrorKind::UnknownWorker,
            format!(
                "`{name}` is a closure; only functions marked #[worker] can run in a child process"
            ),
        ))
    } else {
        Err(Error::new(
            ErrorKind::UnknownWorker,
            format!("`{name}` is not registered; {hint}"),
        ))
    }
}

pub(crate) const WORKER_HINT: &str = "mark the function with #[multiproc::worker]";
pub(crate) const RUN_HINT: &str = "mark its `impl Run` with #[multiproc::process]";

async fn caught<T>(future: impl std::future::Future<Output = T>) -> Result<T, RemoteError> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| RemoteError::Panic(crate::panic::take(payload)))
}

fn remote(error: Error) -> RemoteError {
    RemoteError::Serialization(error.to_string())
}

/// The dispatcher `#[worker]` registers for `worker`.
#[doc(hidden)]
pub fn dispatch_worker<W: Worker<M>, M>(
    worker: W,
    payload: &[u8],
    batch: bool,
) -> LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>> {
    if batch {
        let inputs: Result<Vec<W::Args>> = decode(payload, "a batch of worker arguments");
        Box::pin(async move {
            let mut inputs = inputs.map_err(remote)?.into_iter();
            let mut outputs = BatchResults::with_capacity(inputs.len());
            if W::PLAIN {
                // A plain fn runs inline, with no future per item, and under one
                // `catch_unwind` for the whole batch: the item that panicked is recorded,
                // and the items after it run as the rest did.
                while inputs.len() > 0 {
                    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        for args in &mut inputs {
                            let Ok(output) = worker.invoke_blocking(args) else {
                                unreachable!("a plain fn runs to completion inline");
                            };
                            outputs.push_ok(output);
                        }
                    }));
                    if let Err(payload) = ran {
                        outputs.push(Err(RemoteError::Panic(crate::panic::take(payload))));
                    }
                }
            } else {
                for args in inputs {
                    outputs.push(caught(worker.invoke(args)).await);
                }
            }
            outputs.encode("a batch of worker results").map_err(remote)
        })
    } else {
        let args: Result<W::Args> = decode(payload, "the worker's arguments");
        Box::pin(async move {
            let output = caught(worker.invoke(args.map_err(remote)?)).await?;
            encode(&output, "the worker's result").map_err(remote)
        })
    }
}

/// The dispatcher `#[multiproc::process]` registers for `R`.
#[doc(hidden)]
pub fn dispatch_run<R: Run>(
    payload: &[u8],
    _batch: bool,
) -> LocalBoxFuture<'static, Result<Vec<u8>, RemoteError>> {
    let value: Result<R> = decode(payload, "the process value");
    Box::pin(async move {
        let output = caught(value.map_err(remote)?.run()).await?;
        encode(&output, "the process's result").map_err(remote)
    })
}

/// The registered name equal to `name`, as the `'static` string the registry holds.
#[cfg(feature = "nats")]
pub(crate) fn static_name(name: &str) -> Option<&'static str> {
    registry()
        .by_name
        .get_key_value(name)
        .map(|(name, _)| *name)
}

/// Every registered name, sorted.
#[cfg(any(feature = "nats", feature = "fuzzing"))]
pub(crate) fn names() -> Vec<&'static str> {
    let mut names: Vec<_> = registry().by_name.keys().copied().collect();
    names.sort_unstable();
    names
}
