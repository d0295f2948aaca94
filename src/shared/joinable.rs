//! [`JoinableQueue`]: a [`Queue`] whose consumers mark items done, so a producer can wait for
//! the work, not only the items, to be finished.

use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::Handle;
use super::queue::{Queue, QueueState, expect_started};
use crate::error::{Error, Result};
use crate::protocol::hub::QueueOp;

/// A [`Queue`] with [`task_done`](Self::task_done) and [`join`](Self::join): Python's
/// `multiprocessing.JoinableQueue`.
///
/// Every item put counts as an unfinished task until a consumer calls `task_done` for it;
/// `join` waits until no task is unfinished. All of [`Queue`]'s methods are available through
/// `Deref`; the Stream and Sink implementations are the queue's.
///
/// ```no_run
/// # async fn demo() -> multiproc::Result<()> {
/// let tasks = multiproc::JoinableQueue::new();
/// tasks.put(1u32).await?;
/// let task = tasks.get().await?;
/// tasks.task_done().await?;
/// tasks.join().await?; // every task is done
/// # Ok(()) }
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("hub", &self.queue.handle.hub)
            .field("object", &self.queue.handle.object)
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Queue::deserialize(deserializer).map(|queue| JoinableQueue { queue })
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> JoinableQueue<T> {
    /// An unbounded joinable queue, served by this process.
    ///
    /// # Panics
    ///
    /// If this process's hub cannot bind its socket.
    #[allow(clippy::new_without_default)] // creating a queue starts a server; keep it explicit
    pub fn new() -> Self {
        Self::create(None)
    }

    /// A joinable queue holding at most `capacity` items.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or this process's hub cannot bind its socket.
    pub fn bounded(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a bounded queue needs a capacity of at least 1"
        );
        Self::create(Some(capacity))
    }

    fn create(capacity: Option<usize>) -> Self {
        let handle = expect_started(Handle::create(Box::new(QueueState::new(capacity, true))));
        JoinableQueue {
            queue: Queue::from_handle(handle),
        }
    }

    /// Marks one task taken from the queue as finished.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) if called more times than
    /// items were put (the count is left as it was, and the queue stays usable);
    /// [`is_closed`](Error::is_closed) if the queue's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled call may or may not have marked the task.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(tasks: multiproc::JoinableQueue<u32>) -> multiproc::Result<()> {
    /// let task = tasks.get().await?;
    /// // ... work on it ...
    /// tasks.task_done().await?;
    /// # Ok(()) }
    /// ```
    pub async fn task_done(&self) -> Result<()> {
        self.queue.simple(QueueOp::TaskDone).await
    }

    /// Waits until every item ever put has been marked done.
    ///
    /// # Errors
    ///
    /// [`is_closed`](Error::is_closed) if the queue's process has exited.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(tasks: multiproc::JoinableQueue<u32>) -> multiproc::Result<()> {
    /// tasks.join().await?;
    /// println!("all tasks done");
    /// # Ok(()) }
    /// ```
    pub async fn join(&self) -> Result<()> {
        self.queue.simple(QueueOp::Join).await
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Sink<T> for JoinableQueue<T> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.queue).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: T) -> Result<()> {
        Pin::new(&mut self.queue).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.queue).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.queue).poll_close(cx)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Stream for JoinableQueue<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        Pin::new(&mut self.queue).poll_next(cx)
    }
}
