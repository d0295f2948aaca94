//! [`DictProxy`]: a dict held by a manager, both sides: the proxy every process uses and the
//! store side that applies its operations in the manager's process.
//!
//! Python's `Manager().dict()` is a `dict` living in the manager's server process, reached
//! through a `DictProxy` whose every method is a round trip. This is the same design with
//! typed keys and values: a [`DictProxy<K, V>`] holds no data, only which store and which
//! entry (a [`Target`]); each method sends one [`DictOp`] and decodes the answer.
//!
//! # Semantics
//!
//! - Keys and values are kept encoded (postcard); the manager never needs `K` or `V`. Two keys
//!   are the same key when their encodings are equal, which holds for every type whose equal
//!   values encode equally (all the usual ones; not floats' `0.0`/`-0.0` or `NaN`).
//! - The dict is ordered by encoded key, so [`keys`](DictProxy::keys),
//!   [`values`](DictProxy::values) and [`snapshot`](DictProxy::snapshot) list entries in that
//!   order: neither insertion order (as in Python) nor, in general, `K`'s `Ord` order.
//! - Each operation is atomic: it runs under the manager's hub lock, answered at once, never
//!   waiting. [`extend`](DictProxy::extend) inserts all its pairs in one operation, and
//!   [`snapshot`](DictProxy::snapshot) reads every entry in one.
//! - A value read is a **copy**, as in Python. [`update`](DictProxy::update) and
//!   [`update_or`](DictProxy::update_or) are the atomic read-modify-write Python lacks: they
//!   run a registered `#[worker]` function `fn(V) -> V` in the manager's process, on the
//!   stored encoding, under the same lock.
//! - A request that does not fit (a missing key or value item, an update function that is not
//!   registered, panics or waits) is answered with an `InvalidState` failure and changes
//!   nothing.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use super::entry::{
    RequestItems, Target, decode_all, maybe, proxy_impls, take, unexpected, update_name, updated,
};
use crate::error::Result;
use crate::protocol::hub::Answer;
use crate::protocol::store::DictOp;
use crate::protocol::{decode, encode};
use crate::shared::hub::Reply;
use crate::worker::{Value, Worker};

// ---------------------------------------------------------------------------------------------
// The store side.

/// A dict's entries in the store, keys and values encoded, ordered by encoded key.
#[derive(Default)]
pub(super) struct DictState {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl DictState {
    /// Applies one operation: the reply to send, or (as `Err`) a failure.
    pub(super) fn apply(&mut self, op: DictOp, mut items: RequestItems) -> Result<Reply, Reply> {
        let entries = &mut self.entries;
        Ok(match op {
            DictOp::Insert => {
                let key = take(&mut items, "key")?;
                maybe(entries.insert(key, take(&mut items, "value")?))
            }
            DictOp::Get => maybe(entries.get(&take(&mut items, "key")?).cloned()),
            DictOp::Remove => maybe(entries.remove(&take(&mut items, "key")?)),
            DictOp::ContainsKey => Reply::ok(Answer::Flag(
                entries.contains_key(&take(&mut items, "key")?),
            )),
            DictOp::Keys => Reply::items(entries.keys().cloned().collect()),
            DictOp::Values => Reply::items(entries.values().cloned().collect()),
            DictOp::Entries => Reply::items(
                entries
                    .iter()
                    .flat_map(|(key, value)| [key.clone(), value.clone()])
                    .collect(),
            ),
            DictOp::InsertMany => {
                while let Ok(key) = take(&mut items, "key") {
                    let value = take(&mut items, "value")?;
                    entries.insert(key, value);
                }
                Reply::ok(Answer::Done)
            }
            DictOp::Update { worker } => {
                let key = take(&mut items, "key")?;
                let new = updated(&worker, entries.get(&key), items.next())?;
                if let Some(new) = &new {
                    entries.insert(key, new.clone());
                }
                maybe(new)
            }
            DictOp::Len => Reply::ok(Answer::Count(entries.len() as u64)),
            DictOp::Clear => {
                entries.clear();
                Reply::ok(Answer::Done)
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy.

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

proxy_impls!(DictProxy<K, V>);

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
        self.target.maybe(DictOp::Insert, items).await
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
        self.target.maybe(DictOp::Get, items).await
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
        self.target.maybe(DictOp::Remove, items).await
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
        self.target.flag(DictOp::ContainsKey, items).await
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
        Ok(self.target.count(DictOp::Len).await? as usize)
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
        decode_all(&self.target.items(DictOp::Keys, Vec::new()).await?)
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
        decode_all(&self.target.items(DictOp::Values, Vec::new()).await?)
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
        let items = self.target.items(DictOp::Entries, Vec::new()).await?;
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
        self.target.call(DictOp::InsertMany, items).await?;
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
        self.target.call(DictOp::Clear, Vec::new()).await?;
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
        let op = DictOp::Update {
            worker: update_name::<W, M>()?,
        };
        let items = vec![encode(key, "a dict key")?];
        self.target.maybe(op, items).await
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
        let op = DictOp::Update {
            worker: update_name::<W, M>()?,
        };
        let items = vec![
            encode(key, "a dict key")?,
            encode(&default, "a dict value")?,
        ];
        self.target
            .maybe(op, items)
            .await?
            .ok_or_else(|| unexpected("manager dict", &"no value after an update"))
    }
}
