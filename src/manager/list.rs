//! [`ListProxy`]: a list held by a manager, both sides: the proxy every process uses and the
//! store side that applies its operations in the manager's process.
//!
//! Python's `Manager().list()` is a `list` living in the manager's server process, reached
//! through a `ListProxy` whose every method is a round trip. A [`ListProxy<T>`] is the same
//! with a typed item: it holds no data, only which store and which entry (a [`Target`]); each
//! method sends one [`ListOp`] and decodes the answer.
//!
//! # Semantics
//!
//! - Items are kept encoded (postcard); the manager never needs `T`.
//! - Indexes are resolved in the manager, so concurrent pushes from many processes all land
//!   and every process sees one order. Out of range, [`get`](ListProxy::get),
//!   [`remove`](ListProxy::remove) and [`update`](ListProxy::update) find nothing,
//!   [`set`](ListProxy::set) fails (Python's `IndexError`) and [`insert`](ListProxy::insert)
//!   appends (as Python's `insert` does).
//! - Each operation is atomic and answered at once, under the manager's hub lock;
//!   [`extend`](ListProxy::extend) appends all its items in one operation.
//! - An item read is a **copy**; [`update`](ListProxy::update) changes an item atomically by
//!   running a registered `#[worker]` function `fn(T) -> T` in the manager's process.
//! - [`sort`](ListProxy::sort) cannot run in the manager, which cannot compare items it holds
//!   only encoded. The list therefore carries a *generation*, bumped by every operation that
//!   may change it: a sort reads the items and the generation at once, sorts them locally and
//!   writes them back only if the generation has not moved ([`ListOp::ReplaceIf`]), retrying
//!   otherwise. The result is as if the sort had been atomic.
//! - A request that does not fit (a missing value item, an update function that is not
//!   registered, panics or waits) is answered with an `InvalidState` failure and changes
//!   nothing.

use std::marker::PhantomData;

use super::entry::{
    RequestItems, Target, decode_all, invalid, maybe, proxy_impls, run_update, take, unexpected,
    update_name,
};
use crate::error::Result;
use crate::protocol::encode;
use crate::protocol::hub::Answer;
use crate::protocol::store::ListOp;
use crate::shared::hub::Reply;
use crate::worker::{Value, Worker};

// ---------------------------------------------------------------------------------------------
// The store side.

/// A list's items in the store, encoded, with the generation [`ListOp::ReplaceIf`] checks.
#[derive(Default)]
pub(super) struct ListState {
    items: Vec<Vec<u8>>,
    /// Bumped by every operation that may change the list, even one that found nothing to
    /// change (a `pop` on an empty list): a spurious retry of a sort is harmless, a missed
    /// change is not.
    generation: u64,
}

impl ListState {
    /// Applies one operation: the reply to send, or (as `Err`) a failure.
    pub(super) fn apply(&mut self, op: ListOp, mut items: RequestItems) -> Result<Reply, Reply> {
        let changes = !matches!(op, ListOp::Get { .. } | ListOp::Len | ListOp::Snapshot);
        let list = &mut self.items;
        let reply = match op {
            ListOp::Push => {
                list.extend(items.by_ref());
                Reply::ok(Answer::Count(list.len() as u64))
            }
            ListOp::Pop => maybe(list.pop()),
            ListOp::Get { index } => maybe(slot(list, index).cloned()),
            ListOp::Set { index } => {
                let value = take(&mut items, "value")?;
                let len = list.len();
                let Some(slot) = slot(list, index) else {
                    return Err(invalid(format!(
                        "index {index} is out of range for a list of {len} items"
                    )));
                };
                *slot = value;
                Reply::ok(Answer::Done)
            }
            ListOp::Insert { index } => {
                let value = take(&mut items, "value")?;
                let at = usize::try_from(index).unwrap_or(usize::MAX).min(list.len());
                list.insert(at, value);
                Reply::ok(Answer::Done)
            }
            ListOp::Remove { index } => {
                let at = usize::try_from(index).unwrap_or(usize::MAX);
                maybe((at < list.len()).then(|| list.remove(at)))
            }
            ListOp::Update { index, worker } => {
                let Some(slot) = slot(list, index) else {
                    // Out of range: nothing changed, as `get` would find nothing.
                    return Ok(maybe(None));
                };
                *slot = run_update(&worker, slot)?;
                maybe(Some(slot.clone()))
            }
            ListOp::Reverse => {
                list.reverse();
                Reply::ok(Answer::Done)
            }
            ListOp::Snapshot => {
                let mut all = Vec::with_capacity(list.len() + 1);
                all.push(self.generation.to_le_bytes().to_vec());
                all.extend(list.iter().cloned());
                Reply::items(all)
            }
            ListOp::ReplaceIf { generation } => {
                if generation != self.generation {
                    return Ok(Reply::ok(Answer::Flag(false)));
                }
                *list = items.by_ref().collect();
                Reply::ok(Answer::Flag(true))
            }
            ListOp::Len => Reply::ok(Answer::Count(list.len() as u64)),
            ListOp::Clear => {
                list.clear();
                Reply::ok(Answer::Done)
            }
        };
        if changes {
            self.generation += 1;
        }
        Ok(reply)
    }
}

/// The item at `index`, if it is in range.
fn slot(list: &mut [Vec<u8>], index: u64) -> Option<&mut Vec<u8>> {
    usize::try_from(index).ok().and_then(|i| list.get_mut(i))
}

// ---------------------------------------------------------------------------------------------
// The proxy.

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

proxy_impls!(ListProxy<T>);

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
        match self.target.call(ListOp::Push, items).await?.outcome {
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
        self.target.maybe(ListOp::Pop, Vec::new()).await
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
        let op = ListOp::Get {
            index: index as u64,
        };
        self.target.maybe(op, Vec::new()).await
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
        let op = ListOp::Set {
            index: index as u64,
        };
        self.send_item(op, &item).await
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
        let op = ListOp::Insert {
            index: index as u64,
        };
        self.send_item(op, &item).await
    }

    /// Sends `op` with `item` as its one item.
    async fn send_item(&self, op: ListOp, item: &T) -> Result<()> {
        let items = vec![encode(item, "a list item")?];
        self.target.call(op, items).await?;
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
        let op = ListOp::Remove {
            index: index as u64,
        };
        self.target.maybe(op, Vec::new()).await
    }

    /// Replaces the item at `index` with `worker(item)`, atomically on the server, and returns
    /// the new item; `Ok(None)` (and nothing changed) when `index` is out of range. The
    /// race-free form of `l.set(i, f(l.get(i)))`, which loses concurrent writes. `worker` is
    /// a `#[worker]` function `fn(T) -> T`; see [`DictProxy::update`](super::DictProxy::update) for what it may do.
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
        let op = ListOp::Update {
            index: index as u64,
            worker: update_name::<W, M>()?,
        };
        self.target.maybe(op, Vec::new()).await
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
        Ok(self.target.count(ListOp::Len).await? as usize)
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
        self.target.call(ListOp::Reverse, Vec::new()).await?;
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
        self.target.call(ListOp::Clear, Vec::new()).await?;
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
        let items = self.target.items(ListOp::Snapshot, Vec::new()).await?;
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
            let op = ListOp::ReplaceIf { generation };
            if self.target.flag(op, items).await? {
                return Ok(());
            }
        }
    }
}
