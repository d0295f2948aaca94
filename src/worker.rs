//! The traits behind `#[worker]` and `#[multiproc::process]`; their guide is on the
//! [`worker`](crate::worker) attribute.

use std::future::Future;
use std::marker::PhantomData;

use futures::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that can cross a process boundary: serde in both directions, owned, sendable.
///
/// Arguments, results and the items of queues and pipes travel as
/// [postcard](https://docs.rs/postcard), a compact format that is not self-describing: the
/// bytes carry no field names, tags or lengths of structs, so the receiver decodes them only by
/// following the type. Serde attributes that need a self-describing format therefore fail at
/// run time, not at compile time:
///
/// - `#[serde(untagged)]` (and internally tagged enums, `#[serde(tag = "...")]`): the receiving
///   side cannot decode the value; the call fails with an
///   [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) error ("a feature that
///   PostCard will never implement").
/// - `#[serde(flatten)]`: the sending side (the parent for arguments, the child for a
///   result) cannot encode it, as it is a map of unknown length; the call fails with a
///   serialization error.
/// - `#[serde(skip_serializing_if = "...")]`: the field is left out when the condition holds,
///   and the receiver reads the next field's bytes in its place. Usually the shifted bytes do
///   not decode and the call fails with a serialization error, but when they happen to decode,
///   the receiver gets a **wrong value and no error**. Do not use it on a type sent between
///   processes.
///
/// `#[serde(skip)]`, `default`, `rename`, `with` and externally tagged enums (serde's
/// default) work as usual.
pub trait Value: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Value for T {}

/// A function that can run in a child process. Implemented for every `fn` and `async fn`
/// (up to 8 arguments) whose arguments and result are [`Value`]s; only those marked
/// `#[worker]` are registered and can actually run.
///
/// `Marker` distinguishes the blanket implementations (plain or async, by arity) and is
/// always inferred.
pub trait Worker<Marker>: Copy + Send + Sync + 'static {
    /// The arguments, as a tuple: `(u64,)` for `fn square(x: u64)`.
    type Args: Value;
    /// What the function returns (for an `async fn`, what its future resolves to).
    type Output: Value;

    /// Whether this is a plain `fn`, which runs to completion without a runtime.
    #[doc(hidden)]
    const PLAIN: bool;

    #[doc(hidden)]
    fn invoke(self, args: Self::Args) -> LocalBoxFuture<'static, Self::Output>;

    /// Runs a plain `fn` to completion without a future; `Err` gives the arguments back for
    /// an `async fn`, which must be awaited through [`invoke`](Worker::invoke).
    #[doc(hidden)]
    fn invoke_blocking(self, args: Self::Args) -> Result<Self::Output, Self::Args>;
}

/// Markers that keep the blanket [`Worker`] implementations apart.
#[doc(hidden)]
pub mod markers {
    use super::PhantomData;

    /// A plain `fn` taking `Args`.
    #[derive(Debug)]
    pub struct Plain<Args>(PhantomData<Args>);
    /// An `async fn` taking `Args`.
    #[derive(Debug)]
    pub struct Async<Args>(PhantomData<Args>);
}

thread_local! {
    static RUNNING_PLAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside a plain `fn` worker called by this crate. A pool worker calls
/// one from its serving runtime, whose context is then current although the function cannot
/// await: the [`blocking`](crate::blocking) forms are allowed there.
pub(crate) fn running_plain() -> bool {
    RUNNING_PLAIN.with(std::cell::Cell::get)
}

/// Runs a plain `fn` worker, marked as such for [`running_plain`] (until it returns or
/// unwinds).
fn run_plain<R>(function: impl FnOnce() -> R) -> R {
    struct Unmark(bool);
    impl Drop for Unmark {
        fn drop(&mut self) {
            RUNNING_PLAIN.with(|running| running.set(self.0));
        }
    }
    let _unmark = Unmark(RUNNING_PLAIN.with(|running| running.replace(true)));
    function()
}

macro_rules! impl_worker {
    ($($arg:ident: $ty:ident),*) => {
        impl<F, R, $($ty),*> Worker<markers::Plain<($($ty,)*)>> for F
        where
            F: Fn($($ty),*) -> R + Copy + Send + Sync + 'static,
            R: Value,
            $($ty: Value,)*
        {
            type Args = ($($ty,)*);
            type Output = R;
            const PLAIN: bool = true;

            #[allow(clippy::unused_unit)]
            fn invoke(self, ($($arg,)*): Self::Args) -> LocalBoxFuture<'static, R> {
                Box::pin(async move { run_plain(|| self($($arg),*)) })
            }

            #[allow(clippy::unused_unit)]
            fn invoke_blocking(self, ($($arg,)*): Self::Args) -> Result<R, Self::Args> {
                Ok(run_plain(|| self($($arg),*)))
            }
        }

        impl<F, Fut, $($ty),*> Worker<markers::Async<($($ty,)*)>> for F
        where
            F: Fn($($ty),*) -> Fut + Copy + Send + Sync + 'static,
            Fut: Future + 'static,
            Fut::Output: Value,
            $($ty: Value,)*
        {
            type Args = ($($ty,)*);
            type Output = Fut::Output;
            const PLAIN: bool = false;

            fn invoke(self, ($($arg,)*): Self::Args) -> LocalBoxFuture<'static, Fut::Output> {
                Box::pin(self($($arg),*))
            }

            fn invoke_blocking(self, args: Self::Args) -> Result<Fut::Output, Self::Args> {
                Err(args)
            }
        }
    };
}

impl_worker!();
impl_worker!(a: A);
impl_worker!(a: A, b: B);
impl_worker!(a: A, b: B, c: C);
impl_worker!(a: A, b: B, c: C, d: D);
impl_worker!(a: A, b: B, c: C, d: D, e: E);
impl_worker!(a: A, b: B, c: C, d: D, e: E, f: G);
impl_worker!(a: A, b: B, c: C, d: D, e: E, f: G, g: H);
impl_worker!(a: A, b: B, c: C, d: D, e: E, f: G, g: H, h: I);

/// The name a worker is registered under: the path of its function item.
pub(crate) fn worker_name<W: Worker<M>, M>() -> &'static str {
    std::any::type_name::<W>()
}

/// A type of yours that carries its state into a child and runs there: the analogue of
/// subclassing Python's `Process` and overriding `run`.
///
/// Register the implementation with `#[multiproc::process]` and start it with
/// [`Process::from_run`](crate::Process::from_run). The value is serialized, sent to the
/// child, and `run` is awaited there; its output comes back through
/// [`join`](crate::Process::join).
///
/// ```no_run
/// use multiproc::{Process, Queue, Run, async_trait};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greeter { name: String }
///
/// #[multiproc::process]
/// #[async_trait]
/// impl Run for Greeter {
///     type Output = String;
///     async fn run(self) -> String { format!("hello, {}", self.name) }
/// }
///
/// # async fn demo() -> multiproc::Result<()> {
/// let p = Process::from_run(Greeter { name: "world".into() }).start().await?;
/// assert_eq!(p.join().await?, "hello, world");
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait Run: Value {
    /// What `run` returns to the parent's [`join`](crate::Process::join).
    type Output: Value;

    /// The body of the process.
    async fn run(self) -> Self::Output;
}
