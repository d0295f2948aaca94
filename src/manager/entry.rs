//! One entry of the store, from both sides: what every proxy holds to reach it, and what every
//! kind's store side uses to read a request and answer it.
//!
//! A manager's dicts, lists, namespaces and values are *entries* of one hub object, the
//! [store](super::store), each under an [`EntryId`]. A proxy ([`DictProxy`](super::DictProxy),
//! [`ListProxy`](super::ListProxy), [`Namespace`](super::Namespace),
//! [`ValueProxy`](super::ValueProxy)) is a [`Target`] (the store's handle and the entry's id)
//! plus the Rust types its values decode to; [`Target`] sends one operation and turns the
//! answer into a typed result or an [`Error`]. The kinds differ only in their operations and
//! how they decode answers, which their own modules hold (`dict.rs`, `list.rs`,
//! `namespace.rs`, `value.rs`), each with the store side that applies those operations.
//!
//! The store side never waits and never panics on a client's input: each operation is
//! answered at once, and a request that does not fit (an item missing, a worker that is not
//! registered) is answered with an `InvalidState` failure. A kind's `apply` returns
//! `Result<Reply, Reply>` so that `?` can end it with such a failure; the store sends
//! whichever reply it gets.
//!
//! `update` operations run a registered `#[worker]` function `fn(V) -> V` on an encoded value,
//! under the hub's lock (which is what makes them atomic): [`run_update`] and [`updated`].

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::reference::{self, Reference};
use crate::error::{Error, Result};
use crate::protocol::decode;
use crate::protocol::hub::{Answer, Failure, Op};
use crate::protocol::store::{EntryId, EntryOp, StoreOp};
use crate::registry::{WORKER_HINT, ensure_registered};
use crate::shared::client::{self, Handle};
use crate::shared::hub::{Items, Reply};
use crate::worker::{Worker, worker_name};

// ---------------------------------------------------------------------------------------------
// The proxy side.

/// The untyped part of every proxy: which store, which entry, as one counted
/// [`Reference`] shared with the proxy's clones. Serializing it lends a reference, and
/// deserializing claims one (see [`reference`](super::reference)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    reference: Arc<Reference>,
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.reference.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        Ok(Target {
            reference: reference::deserialize(deserializer)?,
        })
    }
}

impl Target {
    /// The proxy of an entry whose reference the store counted when it answered.
    pub(super) fn counted(store: Handle, entry: EntryId) -> Self {
        Target {
            reference: Reference::counted(store, entry),
        }
    }

    /// The store's handle.
    pub(super) fn store(&self) -> &Handle {
        &self.reference.store
    }

    /// The entry's id within the store.
    pub(super) fn entry(&self) -> EntryId {
        self.reference.entry
    }

    fn what(&self, op: &EntryOp) -> String {
        format!("manager {} {}", op.kind().name(), self.entry())
    }

    /// Sends one operation and returns the answer, or the failure as an error.
    pub(super) async fn call(&self, op: impl Into<EntryOp>, items: Items) -> Result<Reply> {
        let op = op.into();
        let what = self.what(&op);
        let op = Op::Manager(StoreOp::On {
            entry: self.entry(),
            op,
        });
        let reply = client::call(self.store(), op, items, None).await?;
        match reply.outcome {
            Ok(_) => Ok(reply),
            Err(failure) => Err(failure.into_error(&what)),
        }
    }

    /// Sends one operation and returns the answer's items.
    pub(super) async fn items(&self, op: impl Into<EntryOp>, items: Items) -> Result<Items> {
        Ok(self.call(op, items).await?.items)
    }

    /// Sends one operation whose answer is one value or none, and decodes it.
    pub(super) async fn maybe<T: DeserializeOwned>(
        &self,
        op: impl Into<EntryOp>,
        items: Items,
    ) -> Result<Option<T>> {
        let items = self.items(op, items).await?;
        items
            .first()
            .map(|bytes| decode(bytes, "a value from the manager"))
            .transpose()
    }

    /// Sends one operation answered with a `Count`.
    pub(super) async fn count(&self, op: impl Into<EntryOp>) -> Result<u64> {
        let op = op.into();
        let what = self.what(&op);
        match self.call(op, Vec::new()).await?.outcome {
            Ok(Answer::Count(n)) => Ok(n),
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Sends one operation answered with a `Flag`.
    pub(super) async fn flag(&self, op: impl Into<EntryOp>, items: Items) -> Result<bool> {
        let op = op.into();
        let what = self.what(&op);
        match self.call(op, items).await?.outcome {
            Ok(Answer::Flag(flag)) => Ok(flag),
            other => Err(unexpected(&what, &other)),
        }
    }
}

/// The error for an answer that does not fit the request: a bug, or another build's server.
pub(super) fn unexpected(what: &str, answer: &impl fmt::Debug) -> Error {
    Error::new(
        crate::ErrorKind::Protocol,
        format!("{what}: an unexpected answer from the manager: {answer:?}"),
    )
}

/// Decodes every item of an answer.
pub(super) fn decode_all<T: DeserializeOwned>(items: &[Vec<u8>]) -> Result<Vec<T>> {
    items
        .iter()
        .map(|bytes| decode(bytes, "a value from the manager"))
        .collect()
}

/// The registered name of an update function `fn(T) -> T`.
pub(super) fn update_name<W: Worker<M>, M>() -> Result<String> {
    Ok(ensure_registered(worker_name::<W, M>(), WORKER_HINT)?.to_string())
}

/// `from_target`, `Clone`, `Debug`, `Serialize`, `Deserialize` and `PartialEq` for a proxy
/// `struct P<T..> { target: Target, types: PhantomData<..> }`, without bounds on its type
/// parameters (the proxy holds none of them).
macro_rules! proxy_impls {
    ($proxy:ident < $($param:ident),* >) => {
        impl<$($param),*> $proxy<$($param),*> {
            pub(crate) fn from_target(target: Target) -> Self {
                $proxy { target, types: std::marker::PhantomData }
            }
        }

        impl<$($param),*> Clone for $proxy<$($param),*> {
            fn clone(&self) -> Self {
                Self::from_target(self.target.clone())
            }
        }

        impl<$($param),*> std::fmt::Debug for $proxy<$($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($proxy))
                    .field("manager", &self.target.store().hub)
                    .field("id", &self.target.entry())
                    .finish()
            }
        }

        impl<$($param),*> PartialEq for $proxy<$($param),*> {
            fn eq(&self, other: &Self) -> bool {
                self.target == other.target
            }
        }

        impl<$($param),*> Eq for $proxy<$($param),*> {}

        impl<$($param),*> serde::Serialize for $proxy<$($param),*> {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.target, serializer)
            }
        }

        impl<'de, $($param),*> serde::Deserialize<'de> for $proxy<$($param),*> {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                <super::entry::Target as serde::Deserialize>::deserialize(deserializer)
                    .map(Self::from_target)
            }
        }
    };
}

pub(super) use proxy_impls;

// ---------------------------------------------------------------------------------------------
// The store side.

/// A request's items, read in order by a kind's `apply`.
pub(super) type RequestItems = std::vec::IntoIter<Vec<u8>>;

/// A failure answered to a request that does not fit its entry.
pub(super) fn invalid(message: impl Into<String>) -> Reply {
    Reply::failed(Failure::InvalidState(message.into()))
}

/// The answer "this value, or none": zero or one item.
pub(super) fn maybe(item: Option<Vec<u8>>) -> Reply {
    Reply::items(item.into_iter().collect())
}

/// The request's next item; a failure naming `what` when there is none.
pub(super) fn take(items: &mut RequestItems, what: &str) -> Result<Vec<u8>, Reply> {
    items
        .next()
        .ok_or_else(|| invalid(format!("the request carries no {what}")))
}

/// Applies the registered worker `name` to `value`: `fn(V) -> V`, whose encoded argument
/// tuple `(V,)` is `V`'s encoding. The worker must finish without waiting: it runs under the
/// hub's lock, which is what makes the update atomic.
pub(super) fn run_update(name: &str, value: &[u8]) -> Result<Vec<u8>, Reply> {
    let Some(registered) = crate::registry::lookup(name) else {
        return Err(invalid(format!(
            "`{name}` is not registered in the manager's process; mark it #[worker]"
        )));
    };
    match registered.call_now(value, false) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(invalid(format!(
            "the update function `{name}` failed: {}",
            error.into_error()
        ))),
        Err(_awaits) => Err(invalid(format!(
            "the update function `{name}` awaited; update functions run under the manager's \
             lock and must complete without waiting (use a plain fn)"
        ))),
    }
}

/// Applies the registered worker `name` to `current`, or to `default` when there is no
/// current value: the new value, or `None` when there is neither (nothing to update).
pub(super) fn updated(
    name: &str,
    current: Option<&Vec<u8>>,
    default: Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, Reply> {
    match (current, default) {
        (Some(value), _) => run_update(name, value).map(Some),
        (None, Some(default)) => run_update(name, &default).map(Some),
        (None, None) => Ok(None),
    }
}
