//! A parent's end of one child: calls in flight, replies matched by id, death noticed.
//!
//! One task per child reads its replies and waits for its exit. When the child dies, after
//! the replies it managed to write are drained, the call it was running fails with a
//! [`WorkerDied`](crate::ErrorKind::WorkerDied) error naming its pid and exit status; the
//! other calls it held are handed back to be sent elsewhere if their sender asked for that
//! (a pool's calls; see [`Answer::Resend`]), and fail as the running one otherwise (a
//! `Process`'s one call). A pool worker's child reports which call it runs in a shared page
//! ([`progress`](crate::progress)); that page also lets a call be withdrawn before it
//! starts, or stopped (the child killed) once it runs, past a deadline or on a cancel. The
//! child is reaped here too, so no zombie is left whatever the user does with the handle.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};

use crate::error::{Error, ExitStatus, Result};
use crate::progress::{Progress, Started};
use crate::protocol::{FromChild, ToChild};
use crate::reaper;
use crate::spawn::Spawned;
use crate::transport::{Burst, FrameReader, FrameWriter, InFrame, SharedStream};

/// The id of a call handed to a child at start-up.
pub(crate) const FIRST_CALL_ID: u64 = 0;

/// The reply to one call: the encoded result, or why there is none.
pub(crate) type CallReply = Result<Vec<u8>>;

/// What becomes of a call sent with [`Supervised::call_then`].
#[derive(Debug)]
pub(crate) enum Answer {
    /// Its reply, or why it has none; with how many items of a batch failed (panicked) inside
    /// an `Ok` reply, which only the child could count.
    Reply {
        reply: CallReply,
        failed_items: usize,
    },
    /// It did not run (or its result died with the child): its payload, to be sent again.
    Resend(Vec<u8>),
}

/// A call as [`Supervised::call_then`] sends it.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) worker: &'a str,
    pub(crate) payload: Vec<u8>,
    pub(crate) batch: bool,
    /// Keep a copy of the payload, to hand back as [`Answer::Resend`] if the child dies before
    /// the call ran (or before its result left the child).
    pub(crate) resendable: bool,
    /// Stop the call (kill the child) if it runs longer than this; for a child started
    /// with [`start_tracked`](Supervised::start_tracked) only.
    pub(crate) deadline: Option<Duration>,
    /// The span the child's forwarded events of this call are emitted under (see
    /// [`call_span`](crate::logging::call_span)).
    pub(crate) span: Option<tracing::Span>,
}

/// A call that could not be sent: why, its callback, uncalled, and its payload when it was
/// [`resendable`](Outgoing::resendable) and the child is gone (so that it can go elsewhere).
pub(crate) struct Unsent {
    pub(crate) error: Error,
    pub(crate) on_answer: OnAnswer,
    pub(crate) payload: Option<Vec<u8>>,
}

/// A cheap, clonable handle to one supervised child.
#[derive(Debug, Clone)]
pub(crate) struct Supervised {
    shared: Arc<ChildLink>,
    exit: watch::Receiver<Option<ExitStatus>>,
}

#[derive(Debug)]
struct ChildLink {
    pid: u32,
    name: String,
    writer: Mutex<Option<FrameWriter>>,
    calls: Mutex<Calls>,
    /// The page where the child reports the start of each call; `None` unless tracked.
    progress: Option<Progress>,
    /// The child said it could not open the page.
    untracked: AtomicBool,
    /// Wakes the task that enforces deadlines; only a tracked child has one.
    deadlines: Option<Arc<Notify>>,
}

/// What to do with a call's answer; runs on the task that reads the child's replies, so the
/// caller is woken directly, without a hop through another task.
pub(crate) type OnAnswer = Box<dyn FnOnce(Answer) + Send>;

struct Pending {
    on_answer: OnAnswer,
    worker: String,
    /// The payload's copy, for a resendable call.
    kept: Option<Vec<u8>>,
    deadline: Option<Duration>,
    span: Option<tracing::Span>,
}

#[derive(Default)]
struct Calls {
    /// By id, which is also the order the child reads them in.
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
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

impl Answer {
    /// The answer of a call that failed as a whole with `error`.
    pub(crate) fn failed(error: Error) -> Self {
        Answer::Reply {
            reply: Err(error),
            failed_items: 0,
        }
    }
}

impl Supervised {
    /// Takes over a freshly spawned child and starts its supervising task.
    pub(crate) fn start(spawned: Spawned, name: String) -> Self {
        Self::start_inner(spawned, name, None, false).0
    }

    /// As [`start`](Self::start), for a pool worker: the child reports the start of each call
    /// in a page shared with this process (see [`progress`](crate::progress)), so that
    /// its death fails only the call it was running, calls it has not started can be
    /// withdrawn, and deadlines count from a call's start.
    pub(crate) fn start_tracked(spawned: Spawned, name: String) -> Self {
        Self::start_inner(spawned, name, None, true).0
    }

    /// As [`start`](Self::start), for a child that was handed call [`FIRST_CALL_ID`] at
    /// start-up (see [`spawn_with_call`](crate::spawn::spawn_with_call)); the receiver gets
    /// its reply.
    pub(crate) fn start_with_call(
        spawned: Spawned,
        name: String,
        worker: &str,
    ) -> (Self, oneshot::Receiver<CallReply>) {
        let (supervised, receiver) = Self::start_inner(spawned, name, Some(worker), false);
        (supervised, receiver.expect("a first call was registered"))
    }

    fn start_inner(
        spawned: Spawned,
        name: String,
        first_call: Option<&str>,
        tracked: bool,
    ) -> (Self, Option<oneshot::Receiver<CallReply>>) {
        let Spawned {
            child,
            pid,
            connection,
        } = spawned;
        // The child hears of the page before its first call, so it reports every call.
        let progress = tracked.then(Progress::create).flatten().filter(|progress| {
            connection
                .writer
                .send(&ToChild::Track { fd: progress.fd() }, Vec::new())
                .is_ok()
        });
        let shared = Arc::new(ChildLink {
            pid,
            name,
            writer: Mutex::new(Some(connection.writer)),
            calls: Mutex::new(Calls {
                next_id: FIRST_CALL_ID + 1,
                ..Calls::default()
            }),
            progress,
            untracked: AtomicBool::new(false),
            deadlines: tracked.then(|| Arc::new(Notify::new())),
        });
        let receiver = first_call.map(|worker| {
            let (on_answer, receiver) = reply_channel();
            let pending = Pending {
                on_answer,
                worker: worker.to_string(),
                kept: None,
                deadline: None,
                span: crate::logging::call_span(),
            };
            let mut calls = shared.calls.lock().expect("calls lock");
            calls.pending.insert(FIRST_CALL_ID, pending);
            receiver
        });
        let (exit_sender, exit) = watch::channel(None);
        tokio::spawn(supervise(
            shared.clone(),
            child,
            connection.reader,
            exit_sender,
        ));
        let supervised = Supervised { shared, exit };
        // Started here, on the runtime, rather than by the first call with a deadline, which
        // may be sent from any thread.
        if let Some(wake) = &supervised.shared.deadlines {
            tokio::spawn(enforce_deadlines(supervised.clone(), wake.clone()));
        }
        (supervised, receiver)
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
    ) -> Result<oneshot::Receiver<CallReply>> {
        let (on_answer, receiver) = reply_channel();
        let call = Outgoing {
            worker,
            payload,
            batch,
            resendable: false,
            deadline: None,
            span: crate::logging::call_span(),
        };
        self.call_then(call, on_answer)
            .map_err(|unsent| unsent.error)?;
        Ok(receiver)
    }

    /// Sends a call and returns its id; `on_answer` runs with its reply, with the child's
    /// death, or with its payload to send elsewhere (see [`Answer`]). It runs on the task that
    /// reads the child's replies, so it must not block. If the call cannot be sent,
    /// `on_answer` is handed back uncalled, so that a caller holding a lock `on_answer` takes
    /// can answer after releasing it.
    pub(crate) fn call_then(
        &self,
        call: Outgoing<'_>,
        on_answer: OnAnswer,
    ) -> Result<u64, Box<Unsent>> {
        let Outgoing {
            worker,
            payload,
            batch,
            resendable,
            deadline,
            span,
        } = call;
        let kept = resendable.then(|| {
            let mut kept = crate::buffers::with_capacity(payload.len());
            kept.extend_from_slice(&payload);
            kept
        });
        // Ids are given under the writer's lock, so that their order is the order the child
        // reads the calls in.
        let writer = self.shared.writer.lock().expect("writer lock");
        let id = {
            let mut calls = self.shared.calls.lock().expect("calls lock");
            if let Some(error) = &calls.failed {
                let payload = kept.map(|_| payload);
                return Err(Box::new(Unsent {
                    error: error.clone(),
                    on_answer,
                    payload,
                }));
            }
            let id = calls.next_id;
            calls.next_id += 1;
            let pending = Pending {
                on_answer,
                worker: worker.to_string(),
                kept,
                deadline,
                span,
            };
            calls.pending.insert(id, pending);
            id
        };
        let header = ToChild::Call {
            id,
            worker: worker.to_string(),
            batch,
        };
        let sent = match &*writer {
            Some(writer) => writer.send(&header, payload),
            None => Err(Error::closed(format!(
                "{} is shutting down",
                self.shared.name
            ))),
        };
        drop(writer);
        if let Err(error) = sent
            && let Some(unsent) = self.take_back(id, error)
        {
            return Err(unsent);
        }
        if let Some(wake) = self
            .shared
            .deadlines
            .as_ref()
            .filter(|_| deadline.is_some())
        {
            wake.notify_one();
        }
        Ok(id)
    }

    /// Takes back call `id`, which could not be written: `None` if the reader already
    /// answered it (the child died meanwhile). Its arguments come back with it, to be sent
    /// elsewhere, when the child is gone rather than the call refused.
    fn take_back(&self, id: u64, error: Error) -> Option<Box<Unsent>> {
        let pending = self
            .shared
            .calls
            .lock()
            .expect("calls lock")
            .pending
            .remove(&id)?;
        let gone = error.is_closed() || error.is_worker_died();
        Some(Box::new(Unsent {
            error,
            on_answer: pending.on_answer,
            payload: pending.kept.filter(|_| gone),
        }))
    }

    /// Stops call `id` and answers it with `error`: a call the child has not started is
    /// withdrawn (the child skips it), a running one is stopped by killing the child (its
    /// other calls are then sent elsewhere, as at any death). Does nothing if the call was
    /// answered already.
    pub(crate) fn stop_call(&self, id: u64, error: Error) {
        let (pending, oldest) = {
            let mut calls = self.shared.calls.lock().expect("calls lock");
            let oldest = calls.pending.keys().next() == Some(&id);
            match calls.pending.remove(&id) {
                Some(pending) => (pending, oldest),
                None => return,
            }
        };
        if let Some(progress) = &self.shared.progress {
            progress.withdraw(id);
        }
        let running = match self.shared.started() {
            Started::Call { id: started, .. } => started == id,
            Started::None => false,
            // Not tracked: calls run in order, so the oldest is taken for the running one; a
            // later one cannot be withdrawn, and runs with its result discarded.
            Started::Unknown => oldest,
        };
        if running {
            tracing::debug!(target: "multiproc", "stopping {} (pid {}): {error}", self.shared.name, self.shared.pid);
            self.signal(libc::SIGKILL);
        }
        (pending.on_answer)(Answer::failed(error));
    }

    /// Withdraws call `id` if the child has not started it: the child skips it and answers
    /// it as withdrawn. A running call is left to finish. Untracked, does nothing.
    pub(crate) fn withdraw_call(&self, id: u64) {
        if let Some(progress) = &self.shared.progress {
            progress.withdraw(id);
        }
    }

    /// The number of calls sent and not yet answered.
    #[allow(dead_code)] // the pool counts its calls itself
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.calls.lock().expect("calls lock").pending.len()
    }

    /// The worker function of the call the child is running, and for how long it has run:
    /// `None` between calls, and when the child could not open its progress page (nothing
    /// then tells which call runs). A quick call already finished whose reply the child still
    /// holds counts as running.
    pub(crate) fn running_call(&self) -> Option<(String, Duration)> {
        let Started::Call { id, ago } = self.shared.started() else {
            return None;
        };
        let calls = self.shared.calls.lock().expect("calls lock");
        calls
            .pending
            .get(&id)
            .map(|pending| (pending.worker.clone(), ago))
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

impl ChildLink {
    /// What the child last started, as its page says. A page not attached yet means no call
    /// started: the child reads where the page is before its first call. Only a child that
    /// said it could not open the page leaves it unknown.
    fn started(&self) -> Started {
        match &self.progress {
            None => Started::Unknown,
            Some(progress) => match progress.started() {
                Started::Unknown if !self.untracked.load(Ordering::SeqCst) => Started::None,
                started => started,
            },
        }
    }
}

async fn supervise(
    shared: Arc<ChildLink>,
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
    settle_calls(&shared, status);
    if let Some(deadlines) = &shared.deadlines {
        deadlines.notify_one();
    }
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

/// Stops every call that runs past its deadline, until the child is gone.
async fn enforce_deadlines(supervised: Supervised, wake: Arc<Notify>) {
    let shared = &supervised.shared;
    // Untracked, calls run in order: the oldest, and since when it is the oldest.
    let mut oldest = None;
    loop {
        let now = tokio::time::Instant::now();
        let (overdue, next) = {
            let calls = shared.calls.lock().expect("calls lock");
            if calls.failed.is_some() {
                return;
            }
            let started = shared.started();
            next_deadline(&calls, started, &mut oldest, now)
        };
        if let Some((id, worker, deadline)) = overdue {
            let error = Error::timeout(format!(
                "`{worker}` ran past its deadline of {deadline:?} in {} (pid {}), which was \
                 killed; the pool replaces it",
                shared.name, shared.pid
            ))
            .with_pid(shared.pid);
            supervised.stop_call(id, error);
            continue;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// The call past its deadline, if any (its id, worker and deadline), and otherwise when the
/// next deadline may pass. A call counts from its start, as the child reported it; one not
/// started yet cannot pass its deadline before `now` + its deadline.
fn next_deadline(
    calls: &Calls,
    started: Started,
    oldest: &mut Option<(u64, tokio::time::Instant)>,
    now: tokio::time::Instant,
) -> (
    Option<(u64, String, Duration)>,
    Option<tokio::time::Instant>,
) {
    if let Some(&id) = calls.pending.keys().next()
        && oldest.is_none_or(|(oldest, _)| oldest != id)
    {
        *oldest = Some((id, now));
    }
    let mut next: Option<tokio::time::Instant> = None;
    for (&id, pending) in &calls.pending {
        let Some(deadline) = pending.deadline else {
            continue;
        };
        let start = match started {
            Started::Call { id: running, ago } if running == id => now.checked_sub(ago),
            // Finished: its reply is on its way.
            Started::Call { id: running, .. } if running > id => continue,
            Started::Call { .. } | Started::None => None,
            Started::Unknown => oldest
                .filter(|(oldest, _)| *oldest == id)
                .map(|(_, since)| since),
        };
        let due = start.unwrap_or(now) + deadline;
        if start.is_some() && due <= now {
            return (Some((id, pending.worker.clone(), deadline)), None);
        }
        next = Some(next.map_or(due, |next| next.min(due)));
    }
    (None, next)
}

async fn read_replies(shared: &ChildLink, reader: &mut FrameReader<SharedStream>) {
    // Replies come in bursts (a child writes every reply it finished in one go); the calls
    // their callbacks send in turn go out together at the end of each burst.
    let handle = |frame: InFrame| {
        let (id, outcome, failed_items) = match frame.header::<FromChild>() {
            Ok(FromChild::Done {
                id,
                outcome,
                failed_items,
            }) => (id, outcome, failed_items),
            Ok(FromChild::Untracked) => {
                shared.untracked.store(true, Ordering::SeqCst);
                return ControlFlow::Continue(());
            }
            Ok(FromChild::Event { call, event }) => {
                let span = call.and_then(|id| {
                    let calls = shared.calls.lock().expect("calls lock");
                    calls.pending.get(&id)?.span.clone()
                });
                crate::logging::emit_forwarded(event, &shared.name, shared.pid, span.as_ref());
                return ControlFlow::Continue(());
            }
            Err(_) => {
                tracing::warn!(target: "multiproc", "{} sent a malformed reply", shared.name);
                return ControlFlow::Break(());
            }
        };
        let waiter = shared.calls.lock().expect("calls lock").pending.remove(&id);
        if let Some(pending) = waiter {
            if let Some(kept) = pending.kept {
                crate::buffers::give_back(kept);
            }
            (pending.on_answer)(Answer::Reply {
                reply: match outcome {
                    Ok(()) => Ok(frame.into_payload()),
                    Err(remote) => Err(remote.into_error()),
                },
                failed_items: failed_items as usize,
            });
        }
        ControlFlow::Continue(())
    };
    while let Ok(Burst::Handled) = reader.read_burst(handle).await {}
}

/// Answers every call the dead child held. Calls run one at a time, in the order they were
/// sent, so the one running is the one the child last reported started (or, untracked, the
/// oldest): it fails with `WorkerDied`. The others are handed back to be sent elsewhere when
/// resendable: those not started, and those that finished but whose reply died with the child
/// (quick calls are answered in batches). Calls that are not resendable fail as the running
/// one does.
fn settle_calls(shared: &ChildLink, status: Option<ExitStatus>) {
    let pending = {
        let mut calls = shared.calls.lock().expect("calls lock");
        calls.failed = Some(Error::worker_died(
            &shared.name,
            shared.pid,
            status,
            "this call was being sent",
        ));
        std::mem::take(&mut calls.pending)
    };
    let running = match shared.started() {
        Started::Call { id, .. } => Some(id),
        Started::None => None,
        Started::Unknown => pending.keys().next().copied(),
    };
    for (id, pending) in pending {
        let answer = match pending.kept {
            Some(kept) if Some(id) != running => Answer::Resend(kept),
            _ => {
                let doing = format!("running `{}`", pending.worker);
                Answer::failed(Error::worker_died(&shared.name, shared.pid, status, &doing))
            }
        };
        (pending.on_answer)(answer);
    }
}

/// An [`OnAnswer`] that sends the reply to the receiver returned with it; a call handed back
/// to be sent again is answered as its child's death.
fn reply_channel() -> (OnAnswer, oneshot::Receiver<CallReply>) {
    let (sender, receiver) = oneshot::channel();
    let on_answer: OnAnswer = Box::new(move |answer| {
        let reply = match answer {
            Answer::Reply { reply, .. } => reply,
            Answer::Resend(_) => unreachable!("calls answered by a channel are not resendable"),
        };
        let _ = sender.send(reply);
    });
    (on_answer, receiver)
}
