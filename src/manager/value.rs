//! [`ValueProxy`]: one value held by a manager, both sides: the proxy every process uses and
//! the store side that applies its operations in the manager's process.
//!
//! Python's `Manager().Value(typecode, value)` holds one value in the manager's server
//! process, read and written through the proxy's `value` attribute, each access a round trip.
//! A [`ValueProxy<T>`] is the same for any serde type `T`: [`get`](ValueProxy::get) reads it,
//! [`set`](ValueProxy::set) replaces it, each sending one [`ValueOp`].
//!
//! # Semantics
//!
//! - The value is kept encoded (postcard); the manager never needs `T`. It always exists: it
//!   is created with an initial value, and nothing removes it.
//! - Each operation is atomic and answered at once, under the manager's hub lock.
//! - A value read is a **copy**; `v.set(f(v.get()))` races with other writers. Python's
//!   manager `Value` offers nothing against that (it takes a `lock` argument and ignores it);
//!   [`update`](ValueProxy::update) is the atomic form: it runs a registered `#[worker]`
//!   function `fn(T) -> T` in the manager's process, under the hub lock.
//! - An update function that is not registered, panics or waits is answered with an
//!   `InvalidState` failure, and the value is left unchanged.

use std::marker::PhantomData;

use super::entry::{
    RequestItems, Target, maybe, proxy_impls, run_update, take, unexpected, update_name,
};
use crate::error::Result;
use crate::protocol::encode;
use crate::protocol::store::ValueOp;
use crate::shared::hub::Reply;
use crate::worker::{Value, Worker};

// ---------------------------------------------------------------------------------------------
// The store side.

/// A value in the store, encoded.
pub(super) struct ValueState {
    encoded: Vec<u8>,
}

impl ValueState {
    pub(super) fn new(encoded: Vec<u8>) -> Self {
        ValueState { encoded }
    }

    /// Applies one operation: the reply to send, or (as `Err`) a failure.
    pub(super) fn apply(&mut self, op: ValueOp, mut items: RequestItems) -> Result<Reply, Reply> {
        let value = &mut self.encoded;
        Ok(match op {
            ValueOp::Load => maybe(Some(value.clone())),
            ValueOp::Replace => maybe(Some(std::mem::replace(value, take(&mut items, "value")?))),
            ValueOp::Update { worker } => {
                *value = run_update(&worker, value)?;
                maybe(Some(value.clone()))
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy.

/// One value held by a [`Manager`](super::Manager): Python's `Manager().Value(typecode, v)`,
/// for any serde type. Reads return **copies**; use [`update`](Self::update) to change it
/// atomically.
///
/// ```no_run
/// #[multiproc::worker]
/// fn double(n: u64) -> u64 { n * 2 }
///
/// # async fn demo() -> multiproc::Result<()> {
/// let manager = multiproc::Manager::start().await?;
/// let v = manager.value(21u64).await?;
/// assert_eq!(v.update(double).await?, 42);
/// # Ok(()) }
/// ```
pub struct ValueProxy<T> {
    target: Target,
    types: PhantomData<fn() -> T>,
}

proxy_impls!(ValueProxy<T>);

impl<T: Value> ValueProxy<T> {
    /// A copy of the value.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(v: multiproc::ValueProxy<u64>) -> multiproc::Result<()> {
    /// println!("{}", v.get().await?);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<T> {
        self.target
            .maybe(ValueOp::Load, Vec::new())
            .await?
            .ok_or_else(|| unexpected("manager value", &"no value"))
    }

    /// Replaces the value; returns the previous one.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the write may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(v: multiproc::ValueProxy<u64>) -> multiproc::Result<()> {
    /// let old = v.set(7).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, value: T) -> Result<T> {
        let items = vec![encode(&value, "a value")?];
        self.target
            .maybe(ValueOp::Replace, items)
            .await?
            .ok_or_else(|| unexpected("manager value", &"no previous value"))
    }

    /// Atomically replaces the value with `worker(value)`, run on the server; returns the new
    /// value. See [`DictProxy::update`](super::DictProxy::update) for what `worker` may do.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::update`](super::DictProxy::update).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the update may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// #[multiproc::worker]
    /// fn increment(n: u64) -> u64 { n + 1 }
    ///
    /// # async fn demo(v: multiproc::ValueProxy<u64>) -> multiproc::Result<()> {
    /// let now = v.update(increment).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update<W, M>(&self, worker: W) -> Result<T>
    where
        W: Worker<M, Args = (T,), Output = T>,
    {
        let _ = worker;
        let op = ValueOp::Update {
            worker: update_name::<W, M>()?,
        };
        self.target
            .maybe(op, Vec::new())
            .await?
            .ok_or_else(|| unexpected("manager value", &"no value after an update"))
    }
}
