//! The scheduler: where calls meet workers, and the one task per pool that keeps the workers.
//!
//! Callers never touch a worker. They encode their arguments in their own task (so encoding
//! runs in parallel and its errors are theirs alone) and hand [`Job`]s to the pool's
//! [`Dispatch`], which:
//!
//! - **queues fairly**: each operation (one `map`, one `apply`, one `imap` stream) is a
//!   group, and groups take turns, one call each; a `map` of ten thousand chunks does not
//!   make a concurrent `apply` wait for all of them;
//! - **sends without a hop**: a caller that finds a worker with room sends its call itself,
//!   and a finished call sends the next queued one from the task that read its reply, so a
//!   call passes through no task of the pool's on its way to a child or back;
//! - **pipelines**: each worker holds a window of calls, so the next call is already in the
//!   child's socket when it finishes one, and a stream of small calls does not pay a round
//!   trip each. The window starts at [`WINDOW`] and grows, for a worker whose calls turn out
//!   to be quick, to about a millisecond of them (at most [`MAX_WINDOW`]), so that the child
//!   answers a batch per wake-up;
//! - **skips cancelled calls**: a caller that dropped its future has closed its reply
//!   channel, and its queued calls are discarded instead of sent;
//! - **sends calls again**: the calls a dead worker held but had not run, and a call that
//!   could not be written to a worker that had just died, are queued again ahead of every
//!   group, in their order (see [`Pool`](super::Pool)'s "When a worker dies").
//!
//! The [`Scheduler`] task does what needs waiting: it **replaces workers** (a worker that dies
//! is replaced at once; its running call has already failed, through its
//! [`Supervised`](crate::supervisor::Supervised), with an error naming its pid and status; a
//! worker that reached `max_tasks_per_child` gets its replacement before it leaves; failed
//! starts back off, and ten in a row break the pool with the last error rather than
//! respawning in a loop), and it answers `join` and `terminate`.
//!
//! The scheduler holds no handle to the [`Pool`](super::Pool): when the last handle is
//! dropped, its command channel closes and the scheduler stops the workers and ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, ExitStatus, Result};
use crate::supervisor::{Answer, CallReply, OnAnswer, Outgoing, Supervised};

use super::PoolState;
use super::builder::Config;
use super::pool_worker::{self, PoolWorker};
#[cfg(doc)]
use super::pool_worker::{MAX_WINDOW, WINDOW};
use super::stats::{PoolStats, RunningCall, WorkerStats};

/// Consecutive failed worker starts after which the pool gives up.
pub(crate) const MAX_START_FAILURES: u32 = 10;

/// One call to run on some worker.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) worker: &'static str,
    pub(crate) payload: Vec<u8>,
    pub(crate) batch: bool,
    /// Tasks in the call, as `max_tasks_per_child` counts them.
    pub(crate) items: usize,
    pub(crate) reply: oneshot::Sender<CallReply>,
    /// How long each of its tasks may run (the call may run this times `items`); `None`: the
    /// pool's default.
    pub(crate) task_timeout: Option<Duration>,
    /// Set for a call whose caller can cancel it.
    pub(crate) control: Option<Arc<Control>>,
    /// The caller's span, for the events the child forwards while it runs the call.
    pub(crate) span: Option<tracing::Span>,
    /// What the node running it must offer, on a cluster; `None`: the pool's default.
    #[cfg(feature = "nats")]
    pub(crate) needs: Option<super::Needs>,
}

/// Where a call that its caller can cancel is, so that a cancel withdraws it or stops it.
#[derive(Debug, Default)]
pub(crate) struct Control {
    place: Mutex<Place>,
}

#[derive(Debug, Default)]
enum Place {
    #[default]
    Queued,
    /// Sent to this worker as this call id.
    Sent(Supervised, u64),
    Cancelled,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, Place> {
        self.place.lock().expect("call control lock")
    }

    /// Marks the call cancelled; returns where it was sent, if it was, so that the caller
    /// withdraws or stops it there (after releasing every lock: stopping answers the call).
    pub(crate) fn cancel(&self) -> Option<(Supervised, u64)> {
        match std::mem::replace(&mut *self.lock(), Place::Cancelled) {
            Place::Sent(supervised, id) => Some((supervised, id)),
            Place::Queued | Place::Cancelled => None,
        }
    }

    /// The call goes back to the queue; `false` if it was cancelled meanwhile.
    fn requeue(&self) -> bool {
        let mut place = self.lock();
        if matches!(*place, Place::Cancelled) {
            return false;
        }
        *place = Place::Queued;
        true
    }
}

/// What a [`Pool`](super::Pool) asks of its scheduler.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue `jobs` under `group` (one caller operation): what a [`Backend`](super::Backend)
    /// gets by default. A local pool's handles submit to its [`Dispatch`] directly.
    Submit { group: u64, jobs: Vec<Job> },
    /// Answer once all submitted work is done and the workers have exited (the pool is
    /// closed already).
    Join(oneshot::Sender<Result<()>>),
    /// Cancel everything, stop the workers, answer once they are gone.
    Terminate(oneshot::Sender<()>),
}

fn cancelled_by_terminate() -> Error {
    Error::cancelled(
        "the pool was terminated before this call finished; submit it to a running pool",
    )
}

/// Queued jobs, grouped by caller operation; groups take turns. Jobs handed back by a worker
/// that died before running them go first, in the order they were sent.
#[derive(Debug, Default)]
struct JobQueue {
    resent: VecDeque<Job>,
    groups: HashMap<u64, VecDeque<Job>>,
    turns: VecDeque<u64>,
    /// The tasks of the jobs queued, for [`PoolStats::queued`].
    tasks: usize,
}

impl JobQueue {
    fn push(&mut self, group: u64, jobs: Vec<Job>) {
        self.tasks += jobs.iter().map(|job| job.items).sum::<usize>();
        let queued = self.groups.entry(group).or_insert_with(|| {
            self.turns.push_back(group);
            VecDeque::new()
        });
        queued.extend(jobs);
    }

    /// Queues a job handed back by a worker that died before running it, ahead of the groups.
    fn push_resent(&mut self, job: Job) {
        self.tasks += job.items;
        self.resent.push_back(job);
    }

    /// The next job whose caller still waits for it.
    fn pop(&mut self) -> Option<Job> {
        while let Some(job) = self.resent.pop_front() {
            self.tasks -= job.items;
            if !job.reply.is_closed() {
                return Some(job);
            }
        }
        while let Some(group) = self.turns.pop_front() {
            let queued = self
                .groups
                .get_mut(&group)
                .expect("every turn has its group");
            let job = queued.pop_front();
            self.tasks -= job.as_ref().map_or(0, |job| job.items);
            if queued.is_empty() {
                self.groups.remove(&group);
            } else {
                self.turns.push_back(group);
            }
            match job {
                Some(job) if !job.reply.is_closed() => return Some(job),
                _ => {}
            }
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.turns.is_empty() && self.resent.is_empty()
    }

    fn fail_all(&mut self, error: &Error) {
        self.turns.clear();
        self.tasks = 0;
        let groups = self.groups.drain().flat_map(|(_, jobs)| jobs);
        for job in self.resent.drain(..).chain(groups) {
            let _ = job.reply.send(Err(error.clone()));
        }
    }
}

/// Where calls meet workers; shared by the pool's handles, the scheduler task and the
/// closures that receive replies. See the [module docs](self).
pub(crate) struct Dispatch {
    state: Mutex<Dispatching>,
    /// Set by `terminate`: calls still running are answered as cancelled.
    terminated: AtomicBool,
    /// What only the scheduler task can do: start a replacement, answer a join.
    events: mpsc::UnboundedSender<SchedulerEvent>,
    max_tasks_per_child: Option<usize>,
    /// The pool's default for a task's deadline.
    task_timeout: Option<Duration>,
}

#[derive(Debug, Default)]
struct Dispatching {
    queue: JobQueue,
    workers: HashMap<u64, PoolWorker>,
    /// Calls sent and not yet answered.
    running: usize,
    /// What [`PoolStats`] reports of the work done.
    counts: Counts,
    /// Why new jobs are refused: the pool was joined, terminated or broken.
    refusal: Option<Error>,
    /// A join waits: tell the scheduler when the pool falls idle.
    closing: bool,
}

/// The counts of [`PoolStats`] that the dispatch keeps as calls come and go.
#[derive(Debug, Default)]
struct Counts {
    /// The tasks of the calls sent and not yet answered.
    running: usize,
    completed: u64,
    failed: u64,
    restarts: u64,
}

/// How a call sent to a worker ended.
enum CallEnd {
    /// It was answered with `outcome`, for `reply`: `failed` of its `tasks` failed (all of
    /// them if the call did).
    Answered {
        reply: oneshot::Sender<CallReply>,
        outcome: CallReply,
        tasks: usize,
        failed: usize,
    },
    /// Its worker died before running it: it goes back to the queue.
    Resend(Job),
}

#[derive(Debug)]
enum SchedulerEvent {
    /// A worker reached `max_tasks_per_child`: start its replacement.
    Retiring,
    /// A closing pool has nothing queued or running.
    Idle,
}

/// Calls that could not be sent, with their answer: an error, or their payload to be queued
/// again. Answered once the dispatch lock is released, since answering one runs its closure,
/// which takes the lock.
type Unsent = Vec<(OnAnswer, Answer)>;

impl Dispatch {
    fn new(config: &Config, events: mpsc::UnboundedSender<SchedulerEvent>) -> Arc<Self> {
        Arc::new(Dispatch {
            state: Mutex::new(Dispatching::default()),
            terminated: AtomicBool::new(false),
            events,
            max_tasks_per_child: config.max_tasks_per_child,
            task_timeout: config.task_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Dispatching> {
        self.state.lock().expect("dispatch lock")
    }

    /// Queues `jobs` under `group` (one caller operation) and sends what workers have room
    /// for, from the calling thread.
    pub(crate) fn submit(self: &Arc<Self>, group: u64, jobs: Vec<Job>) {
        let unsent = {
            let mut state = self.lock();
            if let Some(refusal) = &state.refusal {
                for job in jobs {
                    let _ = job.reply.send(Err(refusal.clone()));
                }
                return;
            }
            state.queue.push(group, jobs);
            self.dispatch(&mut state)
        };
        answer(unsent);
    }

    /// Sends queued jobs to the least busy workers that have room in their window.
    fn dispatch(self: &Arc<Self>, state: &mut Dispatching) -> Unsent {
        let mut unsent = Vec::new();
        while !state.queue.is_empty() {
            let Some((&id, _)) = state
                .workers
                .iter()
                .filter(|(_, w)| w.can_take())
                .min_by_key(|(id, w)| (w.in_flight, **id))
            else {
                break;
            };
            let Some(job) = state.queue.pop() else {
                break;
            };
            // Held while the call is sent, so that a cancel finds it queued or sent, never
            // in between.
            let control = job.control.clone();
            let mut place = control.as_ref().map(|control| control.lock());
            if place
                .as_ref()
                .is_some_and(|place| matches!(**place, Place::Cancelled))
            {
                continue;
            }
            state.running += 1;
            state.counts.running += job.items;
            let worker = state
                .workers
                .get_mut(&id)
                .expect("dispatch picked a live worker");
            worker.in_flight += 1;
            worker.assigned_items += job.items;
            let (call, on_answer) = self.outgoing(id, job);
            match worker.supervised.call_then(call, on_answer) {
                Ok(call_id) => {
                    if let Some(place) = &mut place {
                        **place = Place::Sent(worker.supervised.clone(), call_id);
                    }
                }
                Err(failed) => {
                    // A call too large to send is this caller's alone; a connection that is
                    // gone means a death about to be noticed: send that worker nothing more,
                    // and the call to another.
                    worker.send_failed = failed.error.is_closed() || failed.error.is_worker_died();
                    let answer = match failed.payload {
                        Some(payload) => Answer::Resend(payload),
                        None => Answer::failed(failed.error),
                    };
                    unsent.push((failed.on_answer, answer));
                }
            }
            drop(place);
            let limit = self.max_tasks_per_child;
            if !worker.retiring && limit.is_some_and(|limit| worker.assigned_items >= limit) {
                worker.retiring = true;
                tracing::debug!(target: "multiproc", "{} reached max_tasks_per_child; starting its replacement", worker.supervised.name());
                let _ = self.events.send(SchedulerEvent::Retiring);
            }
        }
        unsent
    }

    /// `job` as a call to worker `id`, and what to do with its answer: hand the reply to the
    /// caller, or queue the job again (ahead of newer work) if the worker died before it ran.
    fn outgoing(self: &Arc<Self>, id: u64, mut job: Job) -> (Outgoing<'static>, OnAnswer) {
        let items = u32::try_from(job.items).unwrap_or(u32::MAX);
        let call = Outgoing {
            worker: job.worker,
            // The job keeps everything else, to be queued again.
            payload: std::mem::take(&mut job.payload),
            batch: job.batch,
            resendable: true,
            deadline: job
                .task_timeout
                .or(self.task_timeout)
                .map(|timeout| timeout.saturating_mul(items)),
            span: job.span.clone(),
        };
        let dispatch = self.clone();
        let on_answer: OnAnswer = Box::new(move |answer| {
            let tasks = job.items;
            let (outcome, failed) = match answer {
                _ if dispatch.terminated.load(Ordering::Relaxed) => {
                    (Err(cancelled_by_terminate()), tasks)
                }
                Answer::Reply {
                    reply: Ok(payload),
                    failed_items,
                } => (Ok(payload), failed_items.min(tasks)),
                Answer::Reply {
                    reply: Err(error), ..
                } => (Err(error), tasks),
                Answer::Resend(payload)
                    if job.control.as_ref().is_none_or(|control| control.requeue()) =>
                {
                    job.payload = payload;
                    dispatch.call_done(id, CallEnd::Resend(job));
                    return;
                }
                // Handed back, but its caller cancelled it meanwhile: it ends here.
                Answer::Resend(_) => (Err(Error::cancelled("the call was cancelled")), tasks),
            };
            let reply = job.reply;
            let end = CallEnd::Answered {
                reply,
                outcome,
                tasks,
                failed,
            };
            dispatch.call_done(id, end);
        });
        (call, on_answer)
    }

    /// A call on worker `id` ended (see [`CallEnd`]): its window has room again. Its caller
    /// is answered once the counts say so, so that [`stats`](Self::stats) read after a call
    /// returned counts it, and before a join that waits for it returns.
    fn call_done(self: &Arc<Self>, id: u64, end: CallEnd) {
        let (unsent, idle, answered) = {
            let mut state = self.lock();
            state.running -= 1;
            let answered = match end {
                CallEnd::Answered {
                    reply,
                    outcome,
                    tasks,
                    failed,
                } => {
                    state.counts.running -= tasks;
                    state.counts.completed += (tasks - failed) as u64;
                    state.counts.failed += failed as u64;
                    Some((reply, outcome))
                }
                CallEnd::Resend(job) => {
                    state.counts.running -= job.items;
                    state.queue.push_resent(job);
                    None
                }
            };
            if let Some(worker) = state.workers.get_mut(&id) {
                if answered.is_some() {
                    worker.answered();
                }
                worker.in_flight -= 1;
                if worker.retiring && worker.in_flight == 0 {
                    worker.supervised.shutdown();
                }
            }
            let unsent = self.dispatch(&mut state);
            let idle = state.closing && state.running == 0 && state.queue.is_empty();
            (unsent, idle, answered)
        };
        if let Some((reply, outcome)) = answered {
            let _ = reply.send(outcome);
        }
        answer(unsent);
        if idle {
            let _ = self.events.send(SchedulerEvent::Idle);
        }
    }
}

impl Dispatch {
    /// A snapshot of the queue, the counts and the workers; see [`PoolStats`].
    pub(crate) fn stats(&self) -> PoolStats {
        let (mut stats, mut workers) = {
            let state = self.lock();
            let stats = PoolStats {
                queued: state.queue.tasks,
                running: state.counts.running,
                completed: state.counts.completed,
                failed: state.counts.failed,
                restarts: state.counts.restarts,
                workers: Vec::new(),
            };
            let workers: Vec<(u64, Supervised)> = state
                .workers
                .iter()
                .map(|(id, worker)| (*id, worker.supervised.clone()))
                .collect();
            (stats, workers)
        };
        // Each worker's page is read after the dispatch lock is released.
        workers.sort_by_key(|(id, _)| *id);
        stats.workers = workers
            .into_iter()
            .map(|(_, supervised)| WorkerStats {
                pid: supervised.pid(),
                name: supervised.name().to_string(),
                running: supervised
                    .running_call()
                    .map(|(function, elapsed)| RunningCall { function, elapsed }),
            })
            .collect();
        stats
    }
}

fn answer(unsent: Unsent) {
    for (on_answer, answer) in unsent {
        on_answer(answer);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Closed: finish the queue, then stop the workers and answer the joiners.
    Closing,
    /// Workers stopped after a join; only answering late joiners.
    Joined,
}

/// The task that keeps the pool's workers and answers `join` and `terminate`.
pub(crate) struct Scheduler {
    config: Arc<Config>,
    shared: Arc<PoolState>,
    dispatch: Arc<Dispatch>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedReceiver<SchedulerEvent>,
    next_worker: u64,
    starting: FuturesUnordered<BoxFuture<'static, Result<Supervised>>>,
    exits: FuturesUnordered<BoxFuture<'static, (u64, ExitStatus)>>,
    /// Failed starts since the last successful one.
    failures: u32,
    ready: Option<oneshot::Sender<Result<()>>>,
    joiners: Vec<oneshot::Sender<Result<()>>>,
    state: State,
}

impl Scheduler {
    /// The scheduler, and the dispatch that the pool's handles submit to.
    pub(crate) fn new(
        config: Arc<Config>,
        shared: Arc<PoolState>,
        commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<()>>,
    ) -> (Self, Arc<Dispatch>) {
        let (event_sender, events) = mpsc::unbounded_channel();
        let dispatch = Dispatch::new(&config, event_sender);
        let scheduler = Scheduler {
            config,
            shared,
            dispatch: dispatch.clone(),
            commands,
            events,
            next_worker: 0,
            starting: FuturesUnordered::new(),
            exits: FuturesUnordered::new(),
            failures: 0,
            ready: Some(ready),
            joiners: Vec::new(),
            state: State::Running,
        };
        (scheduler, dispatch)
    }

    /// Runs until every [`Pool`](super::Pool) handle is gone or the pool is terminated.
    pub(crate) async fn run(mut self) {
        for _ in 0..self.config.processes {
            self.start_worker();
        }
        loop {
            self.settle();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Submit { group, jobs }) => self.dispatch.submit(group, jobs),
                    Some(Command::Join(joiner)) => self.join(joiner),
                    Some(Command::Terminate(done)) => {
                        self.terminate().await;
                        let _ = done.send(());
                        self.serve_after_terminate().await;
                        return;
                    }
                    None => {
                        self.terminate().await;
                        return;
                    }
                },
                Some(started) = self.starting.next(), if !self.starting.is_empty() => {
                    self.started(started);
                }
                Some(event) = self.events.recv() => match event {
                    SchedulerEvent::Retiring => self.start_worker(),
                    SchedulerEvent::Idle => {} // settled at the top of the loop
                },
                Some((worker, status)) = self.exits.next(), if !self.exits.is_empty() => {
                    self.exited(worker, status);
                }
            }
        }
    }

    fn join(&mut self, joiner: oneshot::Sender<Result<()>>) {
        match self.state {
            State::Joined => {
                let _ = joiner.send(Ok(()));
            }
            _ => {
                self.state = State::Closing;
                self.dispatch.lock().closing = true;
                self.joiners.push(joiner);
            }
        }
    }

    fn start_worker(&mut self) {
        let config = self.config.clone();
        let delay = pool_worker::backoff(self.failures);
        self.starting
            .push(Box::pin(pool_worker::start(config, delay)));
    }

    fn started(&mut self, started: Result<Supervised>) {
        match started {
            Ok(supervised) => {
                self.failures = 0;
                if self.shared.broken().is_some() || self.state == State::Joined {
                    supervised.shutdown();
                    return;
                }
                let id = self.next_worker;
                self.next_worker += 1;
                let waiter = supervised.clone();
                self.exits
                    .push(Box::pin(async move { (id, waiter.wait().await) }));
                let unsent = {
                    let mut state = self.dispatch.lock();
                    state.workers.insert(id, PoolWorker::new(supervised));
                    self.dispatch.dispatch(&mut state)
                };
                answer(unsent);
                self.publish_workers();
            }
            Err(error) => {
                self.failures += 1;
                tracing::warn!(target: "multiproc", "a pool worker failed to start ({} in a row): {error}", self.failures);
                if self.failures >= MAX_START_FAILURES {
                    self.break_pool(error);
                } else if self.shared.broken().is_none() {
                    self.start_worker();
                }
            }
        }
    }

    fn exited(&mut self, id: u64, status: ExitStatus) {
        let (worker, queued) = {
            let mut state = self.dispatch.lock();
            (state.workers.remove(&id), !state.queue.is_empty())
        };
        let Some(worker) = worker else {
            return;
        };
        self.publish_workers();
        if worker.retiring {
            return; // its replacement was started when it began to retire
        }
        let (name, pid) = (worker.supervised.name(), worker.supervised.pid());
        let work_left = self.state == State::Running || queued;
        if work_left && self.shared.broken().is_none() {
            tracing::info!(target: "multiproc", "{name} (pid {pid}) ended with {status}; starting a replacement");
            self.dispatch.lock().counts.restarts += 1;
            self.start_worker();
        } else {
            tracing::debug!(target: "multiproc", "{name} (pid {pid}) ended with {status}");
        }
    }

    /// Gives up after too many failed starts: every queued and future call fails with `error`.
    fn break_pool(&mut self, error: Error) {
        let error = Error::new(
            error.kind(),
            format!(
                "the pool gave up after {MAX_START_FAILURES} failed worker starts in a row; \
                 the last one: {error}"
            ),
        );
        self.shared.set_broken(error.clone());
        {
            let mut state = self.dispatch.lock();
            state.refusal = Some(error.clone());
            state.queue.fail_all(&error);
            for worker in state.workers.values() {
                worker.supervised.shutdown();
            }
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error.clone()));
        }
        for joiner in self.joiners.drain(..) {
            let _ = joiner.send(Err(error.clone()));
        }
    }

    /// Answers `build` once the pool is full, and the joiners once a closed pool is idle.
    fn settle(&mut self) {
        let mut state = self.dispatch.lock();
        if self.ready.is_some() && state.workers.len() >= self.config.processes {
            let _ = self.ready.take().expect("checked").send(Ok(()));
        }
        if self.state == State::Closing && state.queue.is_empty() && state.running == 0 {
            for worker in state.workers.values() {
                worker.supervised.shutdown();
            }
            if state.workers.is_empty() && self.starting.is_empty() {
                self.state = State::Joined;
                state.refusal = Some(Error::closed(
                    "the pool was joined; it accepts no more work",
                ));
                for joiner in self.joiners.drain(..) {
                    let _ = joiner.send(Ok(()));
                }
            }
        }
    }

    fn publish_workers(&self) {
        let pids = self
            .dispatch
            .lock()
            .workers
            .values()
            .filter(|w| !w.retiring)
            .map(|w| w.supervised.pid())
            .collect();
        self.shared.set_pids(pids);
    }

    /// Cancels every queued and running call, then stops every worker: `SIGTERM`, and
    /// `SIGKILL` for one still alive a second later.
    async fn terminate(&mut self) {
        let cancelled = cancelled_by_terminate();
        // Running calls are answered as cancelled when their workers die below.
        self.dispatch.terminated.store(true, Ordering::Relaxed);
        let workers: Vec<Supervised> = {
            let mut state = self.dispatch.lock();
            state.refusal = Some(Error::closed(
                "the pool was terminated; it accepts no more work",
            ));
            state.queue.fail_all(&cancelled);
            state.workers.drain().map(|(_, w)| w.supervised).collect()
        };
        for joiner in self.joiners.drain(..) {
            let _ = joiner.send(Err(cancelled.clone()));
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(cancelled.clone()));
        }
        // Starts in progress are finished, not dropped, so that no half-started child is left
        // to exit on its own.
        while let Some(started) = self.starting.next().await {
            if let Ok(supervised) = started {
                supervised.signal(libc::SIGKILL);
                supervised.wait().await;
            }
        }
        self.shared.set_pids(Vec::new());
        for worker in &workers {
            worker.signal(libc::SIGTERM);
        }
        for worker in &workers {
            if tokio::time::timeout(Duration::from_secs(1), worker.wait())
                .await
                .is_err()
            {
                worker.signal(libc::SIGKILL);
                worker.wait().await;
            }
        }
        self.exits.clear();
        self.state = State::Joined;
    }

    /// After `terminate`, answers what still comes: joins succeed.
    async fn serve_after_terminate(mut self) {
        while let Some(command) = self.commands.recv().await {
            match command {
                Command::Submit { group, jobs } => self.dispatch.submit(group, jobs),
                Command::Join(joiner) => {
                    let _ = joiner.send(Ok(()));
                }
                Command::Terminate(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}
