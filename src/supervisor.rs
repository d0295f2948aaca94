//! A parent's end of one child: calls in flight, replies matched by id, death noticed.
//!
//! One task per child reads its replies and waits for its exit. When the child dies, every
//! call it held fails with a [`WorkerDied`](crate::ErrorKind::WorkerDied) error naming its pid
//! and exit status, after the replies it managed to write are drained. The child is reaped
//! there too, so no zombie is left whatever the user does with the handle.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::error::{Error, ExitStatus, Result};
use crate::protocol::{FromChild, ToChild};
use crate::reaper;
use crate::spawn::Spawned;
use crate::transport::{Burst, FrameReader, FrameWriter, InFrame, SharedStream};

/// The id of a call handed to a child at start-up.
pub(crate) const FIRST_CALL_ID: u64 = 0;

/// The reply to one call: the encoded result, or why there is none.
pub(crate) type Reply = Result<Vec<u8>>;

/// A cheap, clonable handle to one supervised child.
#[derive(Debug, Clone)]
pub(crate) struct Supervised {
    shared: Arc<Shared>,
    exit: watch::Receiver<Option<ExitStatus>>,
}

#[derive(Debug)]
struct Shared {
    pid: u32,
    name: String,
    writer: Mutex<Option<FrameWriter>>,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
}

/// What to do with a call's reply; runs on the task that reads the child's replies, so the
/// caller is woken directly, without a hop through another task.
pub(crate) type OnReply = Box<dyn FnOnce(Reply) + Send>;

#[derive(Default)]
struct Calls {
    pending: HashMap<u64, (OnReply, String)>,
    /// Set once the child is gone: later calls fail with it at once.
    failed: Option<Error>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls")
            .field("pending", &self.pending.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Supervised {
    /// Takes over a freshly spawned child and starts its supervising task.
    pub(crate) fn start(spawned: Spawned, name: String) -> Self {
        Self::start_inner(spawned, name, None).0
    }

    /// As [`start`](Self::start), for a child that was handed call [`FIRST_CALL_ID`] at
    /// start-up (see [`spawn_with_call`](crate::spawn::spawn_with_call)); the receiver gets
    /// its reply.
    pub(crate) fn start_with_call(
        spawned: Spawned,
        name: String,
        worker: &str,
    ) -> (Self, oneshot::Receiver<Reply>) {
        let (supervised, receiver) = Self::start_inner(spawned, name, Some(worker));
        (supervised, receiver.expect("a first call was registered"))
    }

    fn start_inner(
        spawned: Spawned,
        name: String,
        first_call: Option<&str>,
    ) -> (Self, Option<oneshot::Receiver<Reply>>) {
        let Spawned {
            child,
            pid,
            connection,
        } = spawned;
        let shared = Arc::new(Shared {
            pid,
            name,
            writer: Mutex::new(Some(connection.writer)),
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(FIRST_CALL_ID + 1),
        });
        let receiver = first_call.map(|worker| {
            let (sender, receiver) = oneshot::channel();
            let on_reply: OnReply = Box::new(move |reply| {
                let _ = sender.send(reply);
            });
            let mut calls = shared.calls.lock().expect("calls lock");
            calls
                .pending
                .insert(FIRST_CALL_ID, (on_reply, worker.to_string()));
            receiver
        });
        let (exit_sender, exit) = watch::channel(None);
        tokio::spawn(supervise(
            shared.clone(),
            child,
            connection.reader,
            exit_sender,
        ));
        (Supervised { shared, exit }, receiver)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.shared.pid
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sends a call; the receiver gets its reply, or the error that prevented one.
    pub(crate) fn call(
        &self,
        worker: &str,
        payload: Vec<u8>,
        batch: bool,
    ) -> Result<oneshot::Receiver<Reply>> {
        let (sender, receiver) = oneshot::channel();
        let on_reply: OnReply = Box::new(move |reply| {
            let _ = sender.send(reply);
        });
        self.send_call(worker, payload, batch, on_reply)
            .map_err(|(error, _)| error)?;
        Ok(receiver)
    }

    /// Sends a call; `on_reply` runs with its reply, or with the child's death. It runs on the
    /// task that reads the child's replies, so it must not block. If the call cannot be sent,
    /// `on_reply` is handed back with the error, uncalled, so that a caller holding a lock
    /// `on_reply` takes can answer after releasing it.
    pub(crate) fn call_then(
        &self,
        worker: &str,
        payload: Vec<u8>,
        batch: bool,
        on_reply: OnReply,
    ) -> Result<(), (Error, OnReply)> {
        self.send_call(worker, payload, batch, on_reply)
    }

    fn send_call(
        &self,
        worker: &str,
        payload: Vec<u8>,
        batch: bool,
        on_reply: OnReply,
    ) -> Result<(), (Error, OnReply)> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut calls = self.shared.calls.lock().expect("calls lock");
            if let Some(error) = &calls.failed {
                return Err((error.clone(), on_reply));
            }
            calls.pending.insert(id, (on_reply, worker.to_string()));
        }
        let header = ToChild::Call {
            id,
            worker: worker.to_string(),
            batch,
        };
        let sent = match &*self.shared.writer.lock().expect("writer lock") {
            Some(writer) => writer.send(&header, payload),
            None => Err(Error::closed(format!(
                "{} is shutting down",
                self.shared.name
            ))),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(error) => {
                let pending = self
                    .shared
                    .calls
                    .lock()
                    .expect("calls lock")
                    .pending
                    .remove(&id);
                match pending {
                    Some((on_reply, _)) => Err((error, on_reply)),
                    // The reader already failed it (the child died meanwhile).
                    None => Ok(()),
                }
            }
        }
    }

    /// The number of calls sent and not yet answered.
    #[allow(dead_code)] // the pool counts its calls itself
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.calls.lock().expect("calls lock").pending.len()
    }

    /// Whether the child is gone, so that a call sent now would fail at once without running.
    pub(crate) fn is_failed(&self) -> bool {
        self.shared
            .calls
            .lock()
            .expect("calls lock")
            .failed
            .is_some()
    }

    /// Asks the child to exit once its current call is done; no more calls can be sent.
    pub(crate) fn shutdown(&self) {
        if let Some(writer) = self.shared.writer.lock().expect("writer lock").take() {
            let _ = writer.send(&ToChild::Shutdown, Vec::new());
        }
    }

    /// Sends `signal` unless the child has already been reaped (its pid may be reused).
    pub(crate) fn signal(&self, signal: i32) {
        if self.exit_status().is_none() {
            reaper::signal(self.shared.pid, signal);
        }
    }

    /// How the child ended, once it has been reaped.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until the child has been reaped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn wait(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        let status = exit
            .wait_for(Option::is_some)
            .await
            .map(|status| status.expect("waited for Some"));
        match status {
            Ok(status) => status,
            // The supervising task was dropped without an answer: its runtime is shutting
            // down, and is about to drop the task waiting here too.
            Err(_) => std::future::pending().await,
        }
    }
}

async fn supervise(
    shared: Arc<Shared>,
    mut child: tokio::process::Child,
    mut reader: FrameReader<SharedStream>,
    exit_sender: watch::Sender<Option<ExitStatus>>,
) {
    let reading = read_replies(&shared, &mut reader);
    tokio::pin!(reading);
    let status = tokio::select! {
        _ = &mut reading => match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
            Ok(Ok(status)) => Some(ExitStatus::from_std(status)),
            _ => None,
        },
        status = child.wait() => {
            // Replies written just before the exit are still in the socket.
            let _ = tokio::time::timeout(Duration::from_millis(250), &mut reading).await;
            status.ok().map(ExitStatus::from_std)
        }
    };
    fail_all(&shared, status);
    let status = match status {
        Some(status) => status,
        None => child
            .wait()
            .await
            .map(ExitStatus::from_std)
            .unwrap_or(ExitStatus::Code(-1)),
    };
    shared.writer.lock().expect("writer lock").take();
    reaper::forget_child(shared.pid);
    tracing::debug!(target: "multiproc", "{} (pid {}) ended with {status}", shared.name, shared.pid);
    let _ = exit_sender.send(Some(status));
}

async fn read_replies(shared: &Shared, reader: &mut FrameReader<SharedStream>) {
    // Replies come in bursts (a child writes every reply it finished in one go); the calls
    // their callbacks send in turn go out together at the end of each burst.
    let handle = |frame: InFrame| {
        let Ok(FromChild::Done { id, outcome }) = frame.header::<FromChild>() else {
            tracing::warn!(target: "multiproc", "{} sent a malformed reply", shared.name);
            return ControlFlow::Break(());
        };
        let waiter = shared.calls.lock().expect("calls lock").pending.remove(&id);
        if let Some((on_reply, _)) = waiter {
            on_reply(match outcome {
                Ok(()) => Ok(frame.into_payload()),
                Err(remote) => Err(remote.into_error()),
            });
        }
        ControlFlow::Continue(())
    };
    while let Ok(Burst::Handled) = reader.read_burst(handle).await {}
}

fn fail_all(shared: &Shared, status: Option<ExitStatus>) {
    let pending: Vec<_> = {
        let mut calls = shared.calls.lock().expect("calls lock");
        calls.failed = Some(Error::worker_died(
            &shared.name,
            shared.pid,
            status,
            "this call was being sent",
        ));
        calls.pending.drain().map(|(_, pending)| pending).collect()
    };
    for (on_reply, worker) in pending {
        let doing = format!("running `{worker}`");
        on_reply(Err(Error::worker_died(
            &shared.name,
            shared.pid,
            status,
            &doing,
        )));
    }
}
