//! `map`, `starmap`, `imap` and `imap_unordered`: inputs cut into chunks, one call per chunk.
//!
//! A chunk travels as one batch call: its payload is the postcard encoding of the chunk's
//! argument tuples, and its reply holds one `Result` per item, so one item's panic fails that
//! item only. For a one-argument worker the items are encoded as they are: postcard writes a
//! tuple as its fields one after the other, so `[T]` and `[(T,)]` have the same bytes, and
//! `map` never wraps its items.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesOrdered, FuturesUnordered, Stream, StreamExt};

use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::protocol::{BatchResults, decode, encode_list};
use crate::registry::{self, WORKER_HINT};
use crate::worker::{Value, Worker, worker_name};

use super::pool_worker::MAX_WINDOW;
use super::scheduler::Job;
use super::{MapResult, Pool, reply};

/// The largest default chunk of an `imap`, so that its window stays small even for a huge
/// input.
pub(crate) const MAX_DEFAULT_IMAP_CHUNK: usize = 1024;

/// `ceil(items / (4 × processes))`, at least 1: Python's default, from the configured size.
pub(crate) fn default_chunksize(items: usize, processes: usize) -> usize {
    items.div_ceil(4 * processes).max(1)
}

/// The pending result of [`Pool::map`] or [`Pool::starmap`]: await it, after setting the
/// chunk size if you like.
#[must_use = "a map does nothing until awaited"]
pub struct Map<'a, W, M, T> {
    pool: &'a Pool,
    inputs: Vec<T>,
    chunksize: Option<usize>,
    task_timeout: Option<Duration>,
    _worker: PhantomData<fn() -> (W, M)>,
}

impl<'a, W: Worker<M>, M, T: Value> Map<'a, W, M, T> {
    pub(super) fn new(pool: &'a Pool, worker: W, inputs: Vec<T>) -> Self {
        let _ = worker;
        Map {
            pool,
            inputs,
            chunksize: None,
            task_timeout: None,
            _worker: PhantomData,
        }
    }

    /// Sends the input in chunks of `items` (default `ceil(n / (4 × processes))`). 1 sends
    /// each item on its own, which balances uneven tasks best; larger chunks cost less per
    /// item. 0 makes the map fail with an [`InvalidInput`](ErrorKind::InvalidInput) error.
    pub fn chunksize(mut self, items: usize) -> Self {
        self.chunksize = Some(items);
        self
    }

    /// A deadline for each task (overriding the pool's
    /// [`task_timeout`](super::PoolBuilder::task_timeout)). Tasks travel in chunks, and a
    /// chunk of `n` items may run `n × timeout` from its start in a worker: a chunk past that
    /// fails each of its items with a [`Timeout`](ErrorKind::Timeout) error naming the
    /// function, and its worker is killed and replaced. The other chunks are not affected:
    /// those the killed worker held but had not started run on other workers. With
    /// `chunksize(1)` the deadline is exactly per task.
    pub fn timeout_per_task(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }
}

impl<W, M, T> Map<'_, W, M, T>
where
    W: Worker<M>,
    M: 'static,
    T: Value,
{
    /// Starts the map now, in a tokio task of its own, and returns a `'static` handle to its
    /// results (what [`map_async`](Pool::map_async) and
    /// [`starmap_async`](Pool::starmap_async) do).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn submit(self) -> MapResult<W::Output> {
        let Map {
            pool,
            inputs,
            chunksize,
            task_timeout,
            _worker,
        } = self;
        let pool = pool.clone();
        MapResult::spawn(async move {
            let map = Map {
                pool: &pool,
                inputs,
                chunksize,
                task_timeout,
                _worker,
            };
            map.await
        })
    }
}

impl<'a, W, M, T> IntoFuture for Map<'a, W, M, T>
where
    W: Worker<M>,
    M: 'a,
    T: Value,
{
    type Output = Result<Vec<W::Output>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Map {
                pool,
                inputs,
                chunksize,
                task_timeout,
                ..
            } = self;
            let name = registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT)?;
            let items = inputs.len();
            if items == 0 {
                return Ok(Vec::new());
            }
            let chunksize = resolve_chunksize(chunksize, items, pool.processes())?;
            let what = format!("a chunk of arguments of `{name}`");
            let group = pool.new_group();
            // Chunks are encoded as the window has room, not all at once: a map of large
            // values holds a few chunks' worth of encoded bytes, not a copy of its input.
            let window = MAP_WINDOW_PER_WORKER * pool.processes();
            let byte_budget = MAP_BYTES_PER_WORKER * pool.processes();
            // Chunks by index: a slice iterator would make this future need `T: Sync`.
            let mut chunk_starts = (0..items).step_by(chunksize).enumerate();
            let mut running = FuturesUnordered::new();
            let mut encoded_bytes = 0;
            let mut arrived = BTreeMap::new();
            let mut results = MapResults::with_capacity(items);
            loop {
                if running.len() <= window / 2 && encoded_bytes <= byte_budget / 2 {
                    let mut jobs = Vec::new();
                    while running.len() < window
                        && (running.is_empty() || encoded_bytes < byte_budget)
                    {
                        let Some((index, start)) = chunk_starts.next() else {
                            break;
                        };
                        let chunk = &inputs[start..(start + chunksize).min(items)];
                        let payload = encode_list(chunk, chunk.first(), chunk.len(), &what)?;
                        let bytes = payload.len();
                        encoded_bytes += bytes;
                        let (mut job, receiver) = Job::new(name, payload, true, chunk.len());
                        job.task_timeout = task_timeout;
                        jobs.push(job);
                        let len = chunk.len();
                        running.push(async move { (index, len, bytes, reply(receiver).await) });
                    }
                    if !jobs.is_empty() {
                        pool.submit(group, jobs)?;
                    }
                }
                let Some((index, len, bytes, reply)) = running.next().await else {
                    break;
                };
                encoded_bytes -= bytes;
                arrived.insert(index, (reply, len));
                // Results are gathered in input order, as they become contiguous.
                while let Some((reply, len)) = arrived.remove(&results.chunks()) {
                    results.add_chunk(reply, len);
                }
            }
            results.finish()
        })
    }
}

/// The chunk size of a map: the caller's, or `ceil(items / (4 × workers))`.
pub(crate) fn resolve_chunksize(
    requested: Option<usize>,
    items: usize,
    workers: usize,
) -> Result<usize> {
    match requested {
        Some(0) => Err(Error::new(
            ErrorKind::InvalidInput,
            "a chunk size must be at least 1; chunksize(0) was given",
        )),
        Some(chunksize) => Ok(chunksize),
        None => Ok(default_chunksize(items, workers.max(1))),
    }
}

/// Chunks a map keeps sent or encoded per worker: twice the largest window, so that every
/// worker always has its next calls queued.
const MAP_WINDOW_PER_WORKER: usize = 2 * MAX_WINDOW;

/// Encoded bytes a map keeps sent or queued per worker, whatever the number of chunks: a map
/// of large values holds a few of them at a time, not a copy of its whole input.
const MAP_BYTES_PER_WORKER: usize = 16 * 1024 * 1024;

/// A map's result gathered from its chunks' replies, in input order: every item's value, or
/// the first error (every chunk still runs, as in Python).
pub(crate) struct MapResults<T> {
    values: Vec<T>,
    first_error: Option<Error>,
    chunks: usize,
}

impl<T: Value> MapResults<T> {
    pub(crate) fn with_capacity(items: usize) -> Self {
        MapResults {
            values: Vec::with_capacity(items),
            first_error: None,
            chunks: 0,
        }
    }

    /// The number of chunks added so far: the index of the next one.
    pub(crate) fn chunks(&self) -> usize {
        self.chunks
    }

    /// Adds the reply to the next chunk, of `len` items.
    pub(crate) fn add_chunk(&mut self, reply: Result<Vec<u8>>, len: usize) {
        self.chunks += 1;
        match decode_chunk::<T>(reply, len) {
            Ok(BatchResults::AllOk(mut values)) => self.values.append(&mut values),
            Ok(BatchResults::Each(outcomes)) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(value) => self.values.push(value),
                        Err(error) => {
                            self.first_error.get_or_insert(error.into_error());
                        }
                    }
                }
            }
            Err(error) => {
                self.first_error.get_or_insert(error);
            }
        }
    }

    pub(crate) fn finish(self) -> Result<Vec<T>> {
        match self.first_error {
            Some(error) => Err(error),
            None => Ok(self.values),
        }
    }
}

/// A chunk's reply, checked to hold `len` results.
fn decode_chunk<T: Value>(reply: Result<Vec<u8>>, len: usize) -> Result<BatchResults<T>> {
    let results: BatchResults<T> = decode(&reply?, "the results of a chunk")?;
    if results.len() != len {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "a chunk of {len} items came back with {} results",
                results.len()
            ),
        ));
    }
    Ok(results)
}

/// A chunk's reply as one result per item; an undecodable reply fails every item.
fn chunk_outcomes<T: Value>(reply: Result<Vec<u8>>, len: usize) -> Vec<Result<T>> {
    match decode_chunk(reply, len) {
        Ok(BatchResults::AllOk(values)) => values.into_iter().map(Ok).collect(),
        Ok(BatchResults::Each(outcomes)) => outcomes
            .into_iter()
            .map(|outcome| outcome.map_err(RemoteError::into_error))
            .collect(),
        Err(error) => (0..len).map(|_| Err(error.clone())).collect(),
    }
}

impl<W, M, T> fmt::Debug for Map<'_, W, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("worker", &std::any::type_name::<W>())
            .field("items", &self.inputs.len())
            .field("chunksize", &self.chunksize)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

/// An encoded chunk and its number of items.
type Chunk = Result<(Vec<u8>, usize)>;

/// Builds the chunk stream once the chunk size is known (at the first poll).
type MakeChunks = Box<dyn FnOnce(usize) -> BoxStream<'static, Chunk> + Send>;

type ChunkResults<T> = BoxFuture<'static, Vec<Result<T>>>;

/// The results of [`Pool::imap`], [`Pool::imap_unordered`] or [`Pool::imap_stream`]: a
/// [`Stream`] of one `Result` per input item.
///
/// It keeps its pool alive. Dropping it withdraws the chunks not yet sent and stops pulling
/// the input.
#[must_use = "streams do nothing unless polled"]
pub struct Imap<T> {
    pool: Pool,
    worker: Result<&'static str>,
    chunksize: usize,
    task_timeout: Option<Duration>,
    make_chunks: Option<MakeChunks>,
    chunks: Option<BoxStream<'static, Chunk>>,
    group: u64,
    in_flight: ChunksInFlight<T>,
    ready: VecDeque<Result<T>>,
}

enum ChunksInFlight<T> {
    Ordered(FuturesOrdered<ChunkResults<T>>),
    Unordered(FuturesUnordered<ChunkResults<T>>),
}

impl<T> ChunksInFlight<T> {
    fn len(&self) -> usize {
        match self {
            ChunksInFlight::Ordered(chunks) => chunks.len(),
            ChunksInFlight::Unordered(chunks) => chunks.len(),
        }
    }

    fn push(&mut self, chunk: ChunkResults<T>) {
        match self {
            ChunksInFlight::Ordered(chunks) => chunks.push_back(chunk),
            ChunksInFlight::Unordered(chunks) => chunks.push(chunk),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<Result<T>>>> {
        match self {
            ChunksInFlight::Ordered(chunks) => chunks.poll_next_unpin(cx),
            ChunksInFlight::Unordered(chunks) => chunks.poll_next_unpin(cx),
        }
    }
}

impl<T: Value> Imap<T> {
    pub(super) fn from_iter<W, M, A, I>(pool: &Pool, worker: W, inputs: I, ordered: bool) -> Self
    where
        W: Worker<M, Args = (A,)>,
        A: Value,
        I: Iterator<Item = A> + Send + 'static,
    {
        let (low, high) = inputs.size_hint();
        let hint = high.or((low > 0).then_some(low));
        let chunksize = hint.map_or(1, |items| {
            default_chunksize(items, pool.processes()).min(MAX_DEFAULT_IMAP_CHUNK)
        });
        Self::from_stream(pool, worker, futures::stream::iter(inputs), ordered).chunksize(chunksize)
    }

    pub(super) fn from_stream<W, M, A, S>(pool: &Pool, worker: W, inputs: S, ordered: bool) -> Self
    where
        W: Worker<M, Args = (A,)>,
        A: Value,
        S: Stream<Item = A> + Send + 'static,
    {
        let _ = worker;
        let worker = registry::ensure_registered(worker_name::<W, M>(), WORKER_HINT);
        let what = format!("a chunk of arguments of `{}`", worker_name::<W, M>());
        let make_chunks: MakeChunks = Box::new(move |chunksize| {
            // `ready_chunks` sends what the input has ready rather than waiting for a full
            // chunk, so a slow stream's items are not held back.
            inputs
                .ready_chunks(chunksize)
                .map(move |chunk| {
                    let payload = encode_list(&chunk, chunk.first(), chunk.len(), &what)?;
                    Ok((payload, chunk.len()))
                })
                .boxed()
        });
        Imap {
            pool: pool.clone(),
            worker,
            chunksize: 1,
            task_timeout: None,
            make_chunks: Some(make_chunks),
            chunks: None,
            group: pool.new_group(),
            in_flight: if ordered {
                ChunksInFlight::Ordered(FuturesOrdered::new())
            } else {
                ChunksInFlight::Unordered(FuturesUnordered::new())
            },
            ready: VecDeque::new(),
        }
    }

    /// Sends the input in chunks of `items`. Takes effect only before the first poll; 0 is
    /// taken as 1.
    pub fn chunksize(mut self, items: usize) -> Self {
        self.chunksize = items.max(1);
        self
    }

    /// A deadline for each task, applied per chunk as [`Map::timeout_per_task`] does: an item
    /// of a chunk that ran past it yields a [`Timeout`](ErrorKind::Timeout) error, and the
    /// stream goes on. Takes effect for chunks sent after it is set.
    pub fn timeout_per_task(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Chunks the pool may hold for this stream at once: two per worker, so each worker has
    /// the next chunk at hand while the consumer catches up.
    fn window(&self) -> usize {
        2 * self.pool.processes()
    }

    fn send(&mut self, chunk: Chunk) {
        let sent = chunk.and_then(|(payload, len)| {
            let worker = self.worker.clone()?;
            let (mut job, receiver) = Job::new(worker, payload, true, len);
            job.task_timeout = self.task_timeout;
            self.pool.submit(self.group, vec![job])?;
            Ok((receiver, len))
        });
        self.in_flight.push(match sent {
            Ok((receiver, len)) => {
                Box::pin(async move { chunk_outcomes(reply(receiver).await, len) })
            }
            Err(error) => Box::pin(async move { vec![Err(error)] }),
        });
    }
}

// Nothing inside is pinned through the `Imap`: its futures and streams are boxed, and its
// ready items are moved out, never borrowed across a poll.
impl<T> Unpin for Imap<T> {}

impl<T: Value> Stream for Imap<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = &mut *self;
        if let Some(make_chunks) = this.make_chunks.take() {
            this.chunks = Some(make_chunks(this.chunksize));
        }
        loop {
            if let Some(item) = this.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            while this.in_flight.len() < this.window() {
                let Some(chunks) = &mut this.chunks else {
                    break;
                };
                match chunks.poll_next_unpin(cx) {
                    Poll::Ready(Some(chunk)) => this.send(chunk),
                    Poll::Ready(None) => this.chunks = None,
                    Poll::Pending => break,
                }
            }
            match this.in_flight.poll_next(cx) {
                Poll::Ready(Some(results)) => this.ready.extend(results),
                Poll::Ready(None) if this.chunks.is_none() => return Poll::Ready(None),
                // Nothing in flight and the input not ready: its waker is registered.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> fmt::Debug for Imap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("worker", &self.worker.as_ref().ok())
            .field("chunksize", &self.chunksize)
            .field("chunks_in_flight", &self.in_flight.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn one_tuples_encode_as_their_item() {
        let items = [1u64, 300, u64::MAX];
        let tuples: Vec<(u64,)> = items.iter().map(|&x| (x,)).collect();
        assert_eq!(
            encode(&items[..], "items").unwrap(),
            encode(&tuples, "tuples").unwrap()
        );
    }

    #[test]
    fn default_chunksize_is_pythons() {
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(default_chunksize(100_000, 2), 12_500);
        assert_eq!(default_chunksize(1, 8), 1);
    }
}
