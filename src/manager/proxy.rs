//! Typed proxies to a manager's dicts, lists, namespaces and values.
//!
//! A proxy is the pair (store handle, entry id) plus the Rust types its values decode to. It
//! holds no data: every method is a round trip to the manager's process (or, in the process
//! that serves the manager, a call under the hub's lock). **A value read out of a proxy is a
//! copy**: mutating it changes nothing in the manager until it is written back, and writing
//! it back races with other writers; use `update` for read-modify-write.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{EntryId, EntryOp, StoreOp};
use crate::error::{Error, Result};
use crate::protocol::{decode, encode};
use crate::registry::{WORKER_HINT, ensure_registered};
use crate::shared::client::{self, Handle};
use crate::shared::hub::{Items, Reply};
use crate::shared::wire::{Answer, Op};
use crate::worker::{Value, Worker, worker_name};

/// The untyped part of every proxy: which store, which entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Target {
    pub(crate) store: Handle,
    pub(crate) entry: EntryId,
}

impl Target {
    fn what(&self, kind: &str) -> String {
        format!("manager {kind} {}", self.entry)
    }

    /// Sends one operation and returns the answer's items, or the failure as an error.
    async fn call(&self, kind: &str, op: EntryOp, items: Items) -> Result<Reply> {
        let op = Op::Manager(StoreOp::On {
            entry: self.entry,
            op,
        });
        let reply = client::call(&self.store, op, items, None).await?;
        match reply.outcome {
            Ok(_) => Ok(reply),
            Err(failure) => Err(failure.into_error(&self.what(kind))),
        }
    }

    async fn items(&self, kind: &str, op: EntryOp, items: Items) -> Result<Items> {
        Ok(self.call(kind, op, items).await?.items)
    }

    async fn maybe<T: DeserializeOwned>(
        &self,
        kind: &str,
        op: EntryOp,
        items: Items,
    ) -> Result<Option<T>> {
        let items = self.items(kind, op, items).await?;
        items
            .first()
            .map(|bytes| decode(bytes, "a value from the manager"))
            .transpose()
    }

    async fn count(&self, kind: &str, op: EntryOp) -> Result<u64> {
        match self.call(kind, op, Vec::new()).await?.outcome {
            Ok(Answer::Count(n)) => Ok(n),
            other => Err(unexpected(&self.what(kind), &other)),
        }
    }

    async fn flag(&self, kind: &str, op: EntryOp, items: Items) -> Result<bool> {
        match self.call(kind, op, items).await?.outcome {
            Ok(Answer::Flag(flag)) => Ok(flag),
            other => Err(unexpected(&self.what(kind), &other)),
        }
    }
}

fn unexpected(what: &str, answer: &impl fmt::Debug) -> Error {
    Error::new(
        crate::ErrorKind::Protocol,
        format!("{what}: an unexpected answer from the manager: {answer:?}"),
    )
}

fn decode_all<T: DeserializeOwned>(items: &[Vec<u8>]) -> Result<Vec<T>> {
    items
        .iter()
        .map(|bytes| decode(bytes, "a value from the manager"))
        .collect()
}

/// The registered name of an update function `fn(T) -> T`.
fn update_name<W: Worker<M>, M>() -> Result<String> {
    Ok(ensure_registered(worker_name::<W, M>(), WORKER_HINT)?.to_string())
}

/// `Clone`, `Debug`, `Serialize`, `Deserialize` and `PartialEq` for a proxy, without bounds on
/// its type parameters (the proxy holds none of them).
macro_rules! proxy_impls {
    ($proxy:ident < $($param:ident),* >, $kind:literal) => {
        impl<$($param),*> $proxy<$($param),*> {
            pub(crate) fn from_target(target: Target) -> Self {
                $proxy { target, types: PhantomData }
            }
        }

        impl<$($param),*> Clone for $proxy<$($param),*> {
            fn clone(&self) -> Self {
                Self::from_target(self.target.clone())
            }
        }

        impl<$($param),*> fmt::Debug for $proxy<$($param),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($proxy))
                    .field("manager", &self.target.store.hub)
                    .field("id", &self.target.entry)
                    .finish()
            }
        }

        impl<$($param),*> PartialEq for $proxy<$($param),*> {
            fn eq(&self, other: &Self) -> bool {
                self.target == other.target
            }
        }

        impl<$($param),*> Eq for $proxy<$($param),*> {}

        impl<$($param),*> Serialize for $proxy<$($param),*> {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                self.target.serialize(serializer)
            }
        }

        impl<'de, $($param),*> Deserialize<'de> for $proxy<$($param),*> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                Target::deserialize(deserializer).map(Self::from_target)
            }
        }
    };
}

/// A dict held by a [`Manager`](super::Manager): Python's `Manager().dict()`.
///
/// Keys and values are stored encoded (postcard). Two keys are the same key when their
/// encodings are equal, which holds for every type whose equal values encode equally (all
/// the usual ones; not floats' `0.0`/`-0.0` or `NaN`). [`keys`](Self::keys) and
/// [`snapshot`](Self::snapshot) list entries in the order of their encoded keys, which is
/// neither insertion order (as in Python) nor, in general, `K`'s `Ord` order.
///
/// Every method is one round trip; each is atomic on the server. What a read returns is a
/// **copy**: `d.get(&k).await?.unwrap().push(1)` changes the local copy only. To change a
/// value in place, use [`update`](Self::update), which runs a `#[worker]` function on the
/// server under the manager's lock.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let manager = multiproc::Manager::start().await?;
/// let d = manager.dict::<u32, String>().await?;
/// d.insert(1, "one".into()).await?;
/// assert_eq!(d.get(&1).await?, Some("one".to_string()));
/// assert_eq!(d.get(&2).await?, None);
/// # Ok(()) }
/// ```
pub struct DictProxy<K, V> {
    target: Target,
    types: PhantomData<fn() -> (K, V)>,
}

proxy_impls!(DictProxy<K, V>, "dict");

const DICT: &str = "dict";

impl<K: Value, V: Value> DictProxy<K, V> {
    /// Inserts `value` under `key`, returning the value it replaced.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down;
    /// [`Serialization`](crate::ErrorKind::Serialization) if the key or value does not encode.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the insert may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// assert_eq!(d.insert(1, "one".into()).await?, None);
    /// assert_eq!(d.insert(1, "uno".into()).await?, Some("one".into()));
    /// # Ok(()) }
    /// ```
    pub async fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let items = vec![encode(&key, "a dict key")?, encode(&value, "a dict value")?];
        self.target.maybe(DICT, EntryOp::Insert, items).await
    }

    /// A copy of the value under `key`; `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down;
    /// [`Serialization`](crate::ErrorKind::Serialization) if the stored value does not
    /// decode as `V`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// if let Some(name) = d.get(&1).await? {
    ///     println!("1 is {name}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        let items = vec![encode(key, "a dict key")?];
        self.target.maybe(DICT, EntryOp::Get, items).await
    }

    /// Removes `key`, returning its value; `Ok(None)` when there was none.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the removal may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// let gone = d.remove(&1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, key: &K) -> Result<Option<V>> {
        let items = vec![encode(key, "a dict key")?];
        self.target.maybe(DICT, EntryOp::Remove, items).await
    }

    /// Whether `key` is present.
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
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// assert!(!d.contains_key(&7).await?);
    /// # Ok(()) }
    /// ```
    pub async fn contains_key(&self, key: &K) -> Result<bool> {
        let items = vec![encode(key, "a dict key")?];
        self.target.flag(DICT, EntryOp::ContainsKey, items).await
    }

    /// The number of entries.
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
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// println!("{} entries", d.len().await?);
    /// # Ok(()) }
    /// ```
    pub async fn len(&self) -> Result<usize> {
        Ok(self.target.count(DICT, EntryOp::Len).await? as usize)
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// assert!(d.is_empty().await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// A copy of every key, in the order of their encodings (see the type's docs).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// let keys: Vec<u32> = d.keys().await?;
    /// # Ok(()) }
    /// ```
    pub async fn keys(&self) -> Result<Vec<K>> {
        decode_all(&self.target.items(DICT, EntryOp::Keys, Vec::new()).await?)
    }

    /// A copy of every value, in the order of their keys' encodings.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// let values: Vec<String> = d.values().await?;
    /// # Ok(()) }
    /// ```
    pub async fn values(&self) -> Result<Vec<V>> {
        decode_all(&self.target.items(DICT, EntryOp::Values, Vec::new()).await?)
    }

    /// A copy of every entry, taken atomically, in the order of the keys' encodings.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// let local: std::collections::HashMap<u32, String> = d.snapshot().await?.into_iter().collect();
    /// # Ok(()) }
    /// ```
    pub async fn snapshot(&self) -> Result<Vec<(K, V)>> {
        let items = self.target.items(DICT, EntryOp::Items, Vec::new()).await?;
        items
            .chunks(2)
            .map(|pair| match pair {
                [key, value] => Ok((
                    decode(key, "a dict key from the manager")?,
                    decode(value, "a dict value from the manager")?,
                )),
                _ => Err(unexpected("manager dict", &"an odd number of items")),
            })
            .collect()
    }

    /// Inserts every pair in one request, atomically.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the inserts may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// d.extend([(1, "one".to_string()), (2, "two".to_string())]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut items = Vec::new();
        for (key, value) in pairs {
            items.push(encode(&key, "a dict key")?);
            items.push(encode(&value, "a dict value")?);
        }
        self.target.call(DICT, EntryOp::InsertMany, items).await?;
        Ok(())
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the clear may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(d: multiproc::DictProxy<u32, String>) -> multiproc::Result<()> {
    /// d.clear().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<()> {
        self.target.call(DICT, EntryOp::Clear, Vec::new()).await?;
        Ok(())
    }

    /// Atomically replaces the value under `key` with `worker(value)`, run on the server;
    /// returns the new value, or `Ok(None)` (and runs nothing) when the key is missing.
    ///
    /// `worker` is a `#[worker]` function `fn(V) -> V`. It runs in the manager's process under
    /// the manager's lock, so no other request interleaves: it must be quick and must not
    /// wait (a plain `fn`, or an `async fn` that never awaits).
    ///
    /// # Errors
    ///
    /// [`UnknownWorker`](crate::ErrorKind::UnknownWorker) if `worker` has no `#[worker]`;
    /// [`InvalidState`](crate::ErrorKind::InvalidState) if it panics or waits (the value is
    /// left unchanged); [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
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
    /// # async fn demo(d: multiproc::DictProxy<String, u64>) -> multiproc::Result<()> {
    /// d.insert("hits".into(), 0).await?;
    /// assert_eq!(d.update(&"hits".into(), increment).await?, Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn update<W, M>(&self, key: &K, worker: W) -> Result<Option<V>>
    where
        W: Worker<M, Args = (V,), Output = V>,
    {
        let _ = worker;
        let op = EntryOp::Update {
            worker: update_name::<W, M>()?,
        };
        let items = vec![encode(key, "a dict key")?];
        self.target.maybe(DICT, op, items).await
    }

    /// Like [`update`](Self::update), but a missing key is first inserted with `default`, so
    /// the worker always runs; returns the new value. `d.update_or(&k, 0, increment)` is a
    /// race-free counter.
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
    /// # async fn demo(d: multiproc::DictProxy<String, u64>) -> multiproc::Result<()> {
    /// let hits = d.update_or(&"hits".into(), 0, increment).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_or<W, M>(&self, key: &K, default: V, worker: W) -> Result<V>
    where
        W: Worker<M, Args = (V,), Output = V>,
    {
        let _ = worker;
        let op = EntryOp::Update {
            worker: update_name::<W, M>()?,
        };
        let items = vec![
            encode(key, "a dict key")?,
            encode(&default, "a dict value")?,
        ];
        self.target
            .maybe(DICT, op, items)
            .await?
            .ok_or_else(|| unexpected("manager dict", &"no value after an update"))
    }
}

/// A list held by a [`Manager`](super::Manager): Python's `Manager().list()`.
///
/// Items are stored encoded; indexes are resolved on the server, so concurrent pushes from
/// many processes all land and each sees one order. Reads return **copies**: mutating an item
/// you read changes nothing until you [`set`](Self::set) it back, and setting it back races
/// with other writers; [`update`](Self::update) changes an item in place, atomically.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let manager = multiproc::Manager::start().await?;
/// let l = manager.list::<u64>().await?;
/// l.extend([3, 1, 2]).await?;
/// l.sort().await?;
/// assert_eq!(l.snapshot().await?, [1, 2, 3]);
/// # Ok(()) }
/// ```
pub struct ListProxy<T> {
    target: Target,
    types: PhantomData<fn() -> T>,
}

proxy_impls!(ListProxy<T>, "list");

const LIST: &str = "list";

impl<T: Value> ListProxy<T> {
    /// Appends `item`; returns the new length.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down;
    /// [`Serialization`](crate::ErrorKind::Serialization) if `item` does not encode.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the push may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.push(7).await?;
    /// # Ok(()) }
    /// ```
    pub async fn push(&self, item: T) -> Result<usize> {
        self.extend([item]).await
    }

    /// Appends every item in one request, atomically; returns the new length.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the items may or may not have been added.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.extend(0..10).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<usize> {
        let items = items
            .into_iter()
            .map(|item| encode(&item, "a list item"))
            .collect::<Result<Vec<_>>>()?;
        match self.target.call(LIST, EntryOp::Push, items).await?.outcome {
            Ok(Answer::Count(n)) => Ok(n as usize),
            other => Err(unexpected("manager list", &other)),
        }
    }

    /// Removes and returns the last item; `Ok(None)` when the list is empty.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down;
    /// [`Serialization`](crate::ErrorKind::Serialization) if the item does not decode as `T`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: an item popped by a request whose answer is dropped is lost.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// while let Some(item) = l.pop().await? { println!("{item}"); }
    /// # Ok(()) }
    /// ```
    pub async fn pop(&self) -> Result<Option<T>> {
        self.target.maybe(LIST, EntryOp::Pop, Vec::new()).await
    }

    /// A copy of the item at `index`; `Ok(None)` when out of range.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// let first = l.get(0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, index: usize) -> Result<Option<T>> {
        let op = EntryOp::GetAt {
            index: index as u64,
        };
        self.target.maybe(LIST, op, Vec::new()).await
    }

    /// Replaces the item at `index`.
    ///
    /// # Errors
    ///
    /// [`InvalidState`](crate::ErrorKind::InvalidState) when `index` is out of range (as
    /// Python's `IndexError`); [`Closed`](crate::ErrorKind::Closed) once the manager has
    /// shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the write may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.set(0, 42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, index: usize, item: T) -> Result<()> {
        let op = EntryOp::SetAt {
            index: index as u64,
        };
        let items = vec![encode(&item, "a list item")?];
        self.target.call(LIST, op, items).await?;
        Ok(())
    }

    /// Inserts `item` before `index` (at the end when `index` is past it, as in Python).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; the insert may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.insert(0, 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn insert(&self, index: usize, item: T) -> Result<()> {
        let op = EntryOp::InsertAt {
            index: index as u64,
        };
        let items = vec![encode(&item, "a list item")?];
        self.target.call(LIST, op, items).await?;
        Ok(())
    }

    /// Removes and returns the item at `index`; `Ok(None)` when out of range.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: an item removed by a request whose answer is dropped is lost.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// let second = l.remove(1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, index: usize) -> Result<Option<T>> {
        let op = EntryOp::RemoveAt {
            index: index as u64,
        };
        self.target.maybe(LIST, op, Vec::new()).await
    }

    /// Replaces the item at `index` with `worker(item)`, atomically on the server, and returns
    /// the new item; `Ok(None)` (and nothing changed) when `index` is out of range. The
    /// race-free form of `l.set(i, f(l.get(i)))`, which loses concurrent writes. `worker` is
    /// a `#[worker]` function `fn(T) -> T`; see [`DictProxy::update`] for what it may do.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::update`].
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
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.push(0).await?;
    /// assert_eq!(l.update(0, increment).await?, Some(1));
    /// # Ok(()) }
    /// ```
    pub async fn update<W, M>(&self, index: usize, worker: W) -> Result<Option<T>>
    where
        W: Worker<M, Args = (T,), Output = T>,
    {
        let _ = worker;
        let op = EntryOp::UpdateAt {
            index: index as u64,
            worker: update_name::<W, M>()?,
        };
        self.target.maybe(LIST, op, Vec::new()).await
    }

    /// The number of items.
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
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// println!("{} items", l.len().await?);
    /// # Ok(()) }
    /// ```
    pub async fn len(&self) -> Result<usize> {
        Ok(self.target.count(LIST, EntryOp::Len).await? as usize)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// assert!(l.is_empty().await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Reverses the list in place, on the server.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; it may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.reverse().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reverse(&self) -> Result<()> {
        self.target.call(LIST, EntryOp::Reverse, Vec::new()).await?;
        Ok(())
    }

    /// Removes every item.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) once the manager has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in that nothing is lost locally; it may or may not have happened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.clear().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<()> {
        self.target.call(LIST, EntryOp::Clear, Vec::new()).await?;
        Ok(())
    }

    /// A copy of every item, taken atomically.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// let local: Vec<u64> = l.snapshot().await?;
    /// # Ok(()) }
    /// ```
    pub async fn snapshot(&self) -> Result<Vec<T>> {
        Ok(self.versioned().await?.1)
    }

    async fn versioned(&self) -> Result<(u64, Vec<T>)> {
        let items = self
            .target
            .items(LIST, EntryOp::Snapshot, Vec::new())
            .await?;
        let Some((generation, items)) = items.split_first() else {
            return Err(unexpected("manager list", &"no generation"));
        };
        let generation = <[u8; 8]>::try_from(generation.as_slice())
            .map_err(|_| unexpected("manager list", &"a malformed generation"))?;
        Ok((u64::from_le_bytes(generation), decode_all(items)?))
    }

    /// Sorts the list by `T`'s `Ord`.
    ///
    /// The server holds items encoded, and sorting encodings is wrong for most types
    /// (postcard's variable-length integers order 256 before 255). So the items are sorted
    /// here, by `T`'s own order, and written back only if no other request changed the list
    /// meanwhile; otherwise it retries. The result is as if the sort had been atomic.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the list is either sorted or left as it was.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.sort().await?;
    /// # Ok(()) }
    /// ```
    pub async fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp).await
    }

    /// Sorts the list with `compare`, as [`sort`](Self::sort) does.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the list is either sorted or left as it was.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(l: multiproc::ListProxy<u64>) -> multiproc::Result<()> {
    /// l.sort_by(|a, b| b.cmp(a)).await?; // descending
    /// # Ok(()) }
    /// ```
    pub async fn sort_by(
        &self,
        mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering,
    ) -> Result<()> {
        loop {
            let (generation, mut items) = self.versioned().await?;
            items.sort_by(&mut compare);
            let items = items
                .iter()
                .map(|item| encode(item, "a list item"))
                .collect::<Result<Vec<_>>>()?;
            let op = EntryOp::ReplaceIf { generation };
            if self.target.flag(LIST, op, items).await? {
                return Ok(());
            }
        }
    }
}

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
            .field("manager", &self.target.store.hub)
            .field("id", &self.target.entry)
            .finish()
    }
}

const NAMESPACE: &str = "namespace";

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
        let op = EntryOp::SetField {
            name: name.to_string(),
        };
        let items = vec![encode(&value, "a namespace field")?];
        self.target.call(NAMESPACE, op, items).await?;
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
        let op = EntryOp::GetField {
            name: name.to_string(),
        };
        self.target.maybe(NAMESPACE, op, Vec::new()).await
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
        let op = EntryOp::RemoveField {
            name: name.to_string(),
        };
        Ok(!self
            .target
            .items(NAMESPACE, op, Vec::new())
            .await?
            .is_empty())
    }

    /// Replaces field `name` with `worker(field)`, atomically on the server, and returns the
    /// new value; `Ok(None)` (and nothing changed) when the field is not set. `worker` is a
    /// `#[worker]` function `fn(T) -> T`, `T` the field's type; see [`DictProxy::update`] for
    /// what it may do.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::update`]; [`InvalidState`](crate::ErrorKind::InvalidState) if the field
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
        let op = EntryOp::UpdateField {
            name: name.to_string(),
            worker: update_name::<W, M>()?,
        };
        let items = match default {
            Some(default) => vec![encode(default, "a namespace field")?],
            None => Vec::new(),
        };
        self.target.maybe(NAMESPACE, op, items).await
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
        decode_all(
            &self
                .target
                .items(NAMESPACE, EntryOp::Fields, Vec::new())
                .await?,
        )
    }
}

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

proxy_impls!(ValueProxy<T>, "value");

const VALUE: &str = "value";

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
            .maybe(VALUE, EntryOp::Load, Vec::new())
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
            .maybe(VALUE, EntryOp::Store, items)
            .await?
            .ok_or_else(|| unexpected("manager value", &"no previous value"))
    }

    /// Atomically replaces the value with `worker(value)`, run on the server; returns the new
    /// value. See [`DictProxy::update`] for what `worker` may do.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::update`].
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
        let op = EntryOp::Update {
            worker: update_name::<W, M>()?,
        };
        self.target
            .maybe(VALUE, op, Vec::new())
            .await?
            .ok_or_else(|| unexpected("manager value", &"no value after an update"))
    }
}
