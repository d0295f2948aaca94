//! [`Namespace`]: a bag of named fields held by a manager, both sides: the proxy every process
//! uses and the store side that applies its operations in the manager's process.
//!
//! Python's `Manager().Namespace()` is an object whose attributes live in the manager's server
//! process: `ns.x = 10` in one process, `ns.x` in another. Rust has no dynamic attributes, so
//! a [`Namespace`] names its fields with strings: [`set`](Namespace::set),
//! [`get`](Namespace::get), [`remove`](Namespace::remove) and [`fields`](Namespace::fields),
//! each sending one [`NamespaceOp`].
//!
//! # Semantics
//!
//! - Each field holds a value of any serde type, kept encoded (postcard), and is read as the
//!   type the caller asks for. Asking for another type than was stored is a `Serialization`
//!   error (or, for types that happen to share an encoding, a wrong value): keep one type per
//!   field, as Python code usually does.
//! - The namespace itself is untyped, so it is `Namespace`, not generic like the other
//!   proxies; its fields are listed in name order.
//! - Each operation is atomic and answered at once, under the manager's hub lock.
//! - A field read is a **copy**; [`update`](Namespace::update) and
//!   [`update_or`](Namespace::update_or) change a field atomically by running a registered
//!   `#[worker]` function `fn(T) -> T` in the manager's process, which Python cannot do.
//! - A request that does not fit (a missing value item, an update function that is not
//!   registered, panics or waits) is answered with an `InvalidState` failure and changes
//!   nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::entry::{
    RequestItems, Target, decode_all, maybe, take, unexpected, update_name, updated,
};
use crate::error::Result;
use crate::protocol::encode;
use crate::protocol::store::NamespaceOp;
use crate::shared::hub::Reply;
use crate::worker::Worker;

// ---------------------------------------------------------------------------------------------
// The store side.

/// A namespace's fields in the store, values encoded, ordered by name.
#[derive(Default)]
pub(super) struct NamespaceState {
    fields: BTreeMap<String, Vec<u8>>,
}

impl NamespaceState {
    /// Applies one operation: the reply to send, or (as `Err`) a failure.
    pub(super) fn apply(
        &mut self,
        op: NamespaceOp,
        mut items: RequestItems,
    ) -> Result<Reply, Reply> {
        let fields = &mut self.fields;
        Ok(match op {
            NamespaceOp::Set { name } => maybe(fields.insert(name, take(&mut items, "value")?)),
            NamespaceOp::Get { name } => maybe(fields.get(&name).cloned()),
            NamespaceOp::Remove { name } => maybe(fields.remove(&name)),
            NamespaceOp::Update { name, worker } => {
                let new = updated(&worker, fields.get(&name), items.next())?;
                if let Some(new) = &new {
                    fields.insert(name, new.clone());
                }
                maybe(new)
            }
            NamespaceOp::Fields => Reply::items(
                fields
                    .keys()
                    .map(|name| encode(name, "a field name").expect("a string encodes"))
                    .collect(),
            ),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy.

/// A namespace held by a [`Manager`](super::Manager): Python's `Manager().Namespace()`, a bag
/// of named fields, each of any serde type.
///
/// A field is read as the type you ask for; asking for another type than was stored is a
/// [`Serialization`](crate::ErrorKind::Serialization) error (or, for types that happen to
/// share an encoding, a wrong value: keep one type per field). Reads return **copies**;
/// [`update`](Self::update) changes a field in place, atomically.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let manager = multiproc::Manager::start().await?;
/// let ns = manager.namespace().await?;
/// ns.set("x", 10u32).await?;
/// ns.set("name", "ferris").await?;
/// assert_eq!(ns.get::<u32>("x").await?, Some(10));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    target: Target,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("manager", &self.target.store().hub)
            .field("id", &self.target.entry())
            .finish()
    }
}

impl Namespace {
    pub(crate) fn from_target(target: Target) -> Self {
        Namespace { target }
    }

    /// Sets field `name` to `value`.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down;
    /// [`Serialization`](crate::ErrorKind::Serialization) if `value` does not encode.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the write may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: multiproc::Namespace) -> multiproc::Result<()> {
    /// ns.set("ready", true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set<T: Serialize>(&self, name: &str, value: T) -> Result<()> {
        let op = NamespaceOp::Set {
            name: name.to_string(),
        };
        let items = vec![encode(&value, "a namespace field")?];
        self.target.call(op, items).await?;
        Ok(())
    }

    /// A copy of field `name` as a `T`; `Ok(None)` when it is not set.
    ///
    /// # Errors
    ///
    /// [`Serialization`](crate::ErrorKind::Serialization) if the field does not decode as
    /// `T`; [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: multiproc::Namespace) -> multiproc::Result<()> {
    /// let x: Option<u32> = ns.get("x").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let op = NamespaceOp::Get {
            name: name.to_string(),
        };
        self.target.maybe(op, Vec::new()).await
    }

    /// Removes field `name`; returns whether it was set.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the removal may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: multiproc::Namespace) -> multiproc::Result<()> {
    /// ns.remove("x").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let op = NamespaceOp::Remove {
            name: name.to_string(),
        };
        Ok(!self.target.items(op, Vec::new()).await?.is_empty())
    }

    /// Replaces field `name` with `worker(field)`, atomically on the server, and returns the
    /// new value; `Ok(None)` (and nothing changed) when the field is not set. `worker` is a
    /// `#[worker]` function `fn(T) -> T`, `T` the field's type; see [`DictProxy::update`](super::DictProxy::update) for
    /// what it may do.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::update`](super::DictProxy::update); [`InvalidState`](crate::ErrorKind::InvalidState) if the field
    /// does not decode as `T` in the worker (the field is left unchanged).
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
    /// # async fn demo(ns: multiproc::Namespace) -> multiproc::Result<()> {
    /// ns.set("hits", 0u64).await?;
    /// assert_eq!(ns.update("hits", increment).await?, Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn update<T, W, M>(&self, name: &str, worker: W) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        W: Worker<M, Args = (T,), Output = T>,
    {
        let _ = worker;
        self.update_field::<T, W, M>(name, None).await
    }

    /// [`update`](Self::update), starting from `default` when there is one and the field is
    /// not set.
    async fn update_field<T, W, M>(&self, name: &str, default: Option<&T>) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        W: Worker<M, Args = (T,), Output = T>,
    {
        let op = NamespaceOp::Update {
            name: name.to_string(),
            worker: update_name::<W, M>()?,
        };
        let items = match default {
            Some(default) => vec![encode(default, "a namespace field")?],
            None => Vec::new(),
        };
        self.target.maybe(op, items).await
    }

    /// Like [`update`](Self::update), but a field that is not set starts as `default`, so the
    /// worker always runs; returns the new value. `ns.update_or("hits", 0u64, increment)` is
    /// a race-free counter.
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update).
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
    /// # async fn demo(ns: multiproc::Namespace) -> multiproc::Result<()> {
    /// let hits = ns.update_or("hits", 0u64, increment).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_or<T, W, M>(&self, name: &str, default: T, worker: W) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        W: Worker<M, Args = (T,), Output = T>,
    {
        let _ = worker;
        self.update_field::<T, W, M>(name, Some(&default))
            .await?
            .ok_or_else(|| unexpected("manager namespace", &"no value after an update"))
    }

    /// The names of the fields that are set, in order.
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
    /// # async fn demo(ns: multiproc::Namespace) -> multiproc::Result<()> {
    /// for name in ns.fields().await? { println!("{name}"); }
    /// # Ok(()) }
    /// ```
    pub async fn fields(&self) -> Result<Vec<String>> {
        decode_all(&self.target.items(NamespaceOp::Fields, Vec::new()).await?)
    }
}
