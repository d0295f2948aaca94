//! What a re-executed child runs, and [`init`], which sends it there.
//!
//! A child takes its connection to the parent from its standard input (one end of a socket
//! pair; the key comes first on it) and proves the key. Then it does one of two jobs:
//!
//! - **A [`Process`](crate::Process)** runs the one call that followed the key, answers it and
//!   exits. It reads, runs and writes on its main thread with blocking calls: a plain `fn`
//!   needs no runtime, and building none is a good part of what makes a `Process` quick to
//!   start. An `async fn` or a [`Run`](crate::Run) type gets a single-threaded runtime.
//! - **A pool worker** (or a manager's server) serves calls one at a time, in order, on a
//!   single-threaded runtime, until it is told to shut down or its parent goes away. After a
//!   quick call, its reply is held if the next call, already arrived, is to the same worker;
//!   the replies held go out in one write once that is no longer so. A stream of small calls
//!   costs few system calls, a lone call's reply leaves at once, and no reply waits for a call
//!   that may be long. A pool worker writes the id of each call it starts into a page it
//!   shares with its parent (see [`progress`](crate::progress)), so that the parent knows, when the worker
//!   dies, which call was running, and can withdraw a call that has not started.
//!
//! A child whose parent asked for its `tracing` events (see
//! [`forward_tracing`](crate::forward_tracing)) sends each one on the same connection, naming
//! the call it runs: a `Process` from whichever thread emitted it, under the lock its reply is
//! written under; a serving child through its frame writer, ahead of the reply of the call.
//!
//! A child never outlives its parent, even while a worker is busy in a long computation. A
//! child started by its parent's main thread is killed by the kernel the moment the parent
//! dies (Linux's parent death signal); any other child has a watchdog thread that notices the
//! parent's death (the child is re-parented) within 100 ms and exits. The end of the parent's
//! connection ends a serving child too.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::bootstrap::{BOOTSTRAP_ENV, Bootstrap, INIT_CALLED};
use crate::current::{self, Current};
use crate::error::RemoteError;
use crate::progress::Progress;
use crate::protocol::{FromChild, ToChild};
use crate::registry;
use crate::transport::{self, FrameWriter, InFrame, OutFrame};

/// Diverts a re-executed child to its job; returns at once in the main process.
///
/// Call it first in `main`, before anything else runs (or use
/// [`#[multiproc::main]`](crate::main), which does). In a child process started by this crate,
/// `init` never returns: it runs the child's calls and exits the process, so the child never
/// runs the rest of your `main`. In tests, [`test_support!`](crate::test_support) calls it for you.
///
/// # Panics
///
/// If two registered workers share a name.
///
/// # Examples
///
/// ```no_run
/// fn main() {
///     multiproc::init();
///     let runtime = tokio::runtime::Runtime::new().unwrap();
///     runtime.block_on(async { /* use multiproc here */ });
/// }
/// ```
#[allow(clippy::needless_doctest_main)] // the example is about `main` itself
pub fn init() {
    INIT_CALLED.store(true, std::sync::atomic::Ordering::SeqCst);
    registry::check_duplicates();
    crate::reaper::register_exit_hook();
    let Ok(encoded) = std::env::var(BOOTSTRAP_ENV) else {
        return;
    };
    // SAFETY: `init` runs first in `main` (or in the test-support helper, whose thread is the
    // only one doing anything in a child), before this process starts threads that read the
    // environment. Removing the variable keeps it from leaking into programs the child runs.
    unsafe { std::env::remove_var(BOOTSTRAP_ENV) };
    let Some(bootstrap) = Bootstrap::decode(&encoded) else {
        eprintln!("multiproc: the {BOOTSTRAP_ENV} variable is malformed; exiting");
        std::process::exit(2);
    };
    let connection = match transport::take_parent_socket() {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!(
                "multiproc: {}: the parent did not hand over the key ({error}); exiting",
                bootstrap.name
            );
            std::process::exit(2);
        }
    };
    run(bootstrap, connection)
}

fn run(bootstrap: Bootstrap, connection: UnixStream) -> ! {
    current::set_child(Current {
        name: bootstrap.name.clone(),
        identity: bootstrap.identity.clone(),
        daemon: bootstrap.daemon,
        depth: bootstrap.depth,
        parent: Some(bootstrap.parent.clone()),
    });
    crate::panic::install_hook();
    if !crate::logging::forward_from_child(bootstrap.forward_level, forward_event) {
        crate::logging::inherit(bootstrap.log_level);
    }
    keep_freed_buffers();
    watch_parent(bootstrap.parent.pid, bootstrap.spawned_by_main_thread);
    if bootstrap.stall {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    if let Err(error) = transport::greet_parent(&connection) {
        eprintln!("multiproc: {}: {error}", bootstrap.name);
        std::process::exit(1);
    }
    let code = if bootstrap.one_call {
        run_one_call(&bootstrap, connection)
    } else {
        runtime().block_on(serve(&bootstrap, connection))
    };
    crate::manager::reference::flush_before_exit(Duration::from_secs(1));
    crate::shared::flush_before_exit();
    tracing::info!(target: "multiproc", "process exiting with exitcode {code}");
    std::process::exit(code)
}

/// The child's single-threaded runtime, built on first use. It is never dropped: tasks a
/// worker spawned (the supervisors of its own children) live until the process exits.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the child's runtime")
    })
}

/// A [`Process`](crate::Process)'s job: reads its one call, runs it, answers, and returns
/// the exit code (1 after a panic).
fn run_one_call(bootstrap: &Bootstrap, mut connection: UnixStream) -> i32 {
    let max_frame_len = bootstrap.max_frame_len as usize;
    let Call {
        frame,
        id,
        worker,
        batch,
    } = match next_request(transport::read_frame_blocking(
        &mut connection,
        max_frame_len,
    )) {
        Ok(Request::Call(call)) => call,
        Ok(Request::Track { .. }) => {
            tracing::warn!(target: "multiproc", "a process was asked to track a pool's calls");
            return 1;
        }
        Err(code) => return code,
    };
    crate::panic::set_printing(true);
    if crate::logging::forwarded_level() != 0
        && let Ok(clone) = connection.try_clone()
    {
        *lock_parent_link() = Some(ParentLink::Stream(clone, max_frame_len));
    }
    RUNNING_CALL.store(id, Ordering::SeqCst);
    tracing::info!(target: "multiproc", "child process calling run()");
    let outcome = match registry::lookup(&worker) {
        // Only a plain fn is polled without a runtime: another may use tokio at once.
        Some(registered) if registered.plain => registered
            .call_now(frame.payload(), batch)
            .unwrap_or_else(|call| runtime().block_on(call)),
        Some(registered) => runtime().block_on((registered.dispatch)(frame.payload(), batch)),
        None => Err(unknown_worker(&worker)),
    };
    RUNNING_CALL.store(NO_CALL, Ordering::SeqCst);
    let panicked = matches!(outcome, Err(RemoteError::Panic(_)));
    let reply = reply_frame(id, &worker, outcome, 0, max_frame_len);
    // Under the lock forwarded events are written under, so that frames never interleave.
    let written = {
        let _link = lock_parent_link();
        reply.write_blocking(&mut connection)
    };
    if let Err(error) = written {
        tracing::warn!(target: "multiproc", "answering the parent: {error}");
        return 1;
    }
    i32::from(panicked)
}

/// This child's connection to its parent, as its forwarded `tracing` events reach it (see
/// [`forward_tracing`](crate::forward_tracing)); set once the connection is open.
enum ParentLink {
    /// A `Process`'s socket, written with blocking calls, and its frame limit.
    Stream(UnixStream, usize),
    /// A serving child's frame writer.
    Frames(FrameWriter),
}

static PARENT_LINK: Mutex<Option<ParentLink>> = Mutex::new(None);

/// The id of the call this child runs, which its forwarded events name; [`NO_CALL`] between
/// calls. A child runs one call at a time.
static RUNNING_CALL: AtomicU64 = AtomicU64::new(NO_CALL);

const NO_CALL: u64 = u64::MAX;

fn lock_parent_link() -> std::sync::MutexGuard<'static, Option<ParentLink>> {
    PARENT_LINK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends one of this child's `tracing` events to the parent, naming the call it runs. An
/// event with no connection to go on (before it opens, after it closes) is dropped.
fn forward_event(event: crate::logging::ForwardedEvent) {
    let call = Some(RUNNING_CALL.load(Ordering::SeqCst)).filter(|&call| call != NO_CALL);
    let message = FromChild::Event { call, event };
    match &mut *lock_parent_link() {
        Some(ParentLink::Stream(stream, max_frame_len)) => {
            if let Ok(frame) = OutFrame::new(&message, Vec::new(), *max_frame_len) {
                let _ = frame.write_blocking(stream);
            }
        }
        Some(ParentLink::Frames(writer)) => {
            let _ = writer.send(&message, Vec::new());
        }
        None => {}
    }
}

/// A call from the parent, its arguments still encoded in `frame`.
struct Call {
    frame: InFrame,
    id: u64,
    worker: String,
    batch: bool,
}

/// What the parent asks of a serving child.
enum Request {
    Call(Call),
    /// Report the start of each call in the parent's progress page, its descriptor `fd`.
    Track {
        fd: i32,
    },
}

/// The request the parent sent, or the exit code to leave with: 0 when the parent closed the
/// connection or asked for a shutdown, 1 when the connection failed.
fn next_request(read: crate::Result<Option<InFrame>>) -> Result<Request, i32> {
    let frame = match read {
        Ok(Some(frame)) => frame,
        Ok(None) => return Err(0),
        Err(error) => {
            tracing::warn!(target: "multiproc", "the connection to the parent failed: {error}");
            return Err(1);
        }
    };
    match frame.header::<ToChild>() {
        Ok(ToChild::Call { id, worker, batch }) => Ok(Request::Call(Call {
            frame,
            id,
            worker,
            batch,
        })),
        Ok(ToChild::Track { fd }) => Ok(Request::Track { fd }),
        Ok(ToChild::Shutdown) => Err(0),
        Err(error) => {
            tracing::warn!(target: "multiproc", "a malformed request from the parent: {error}");
            Err(1)
        }
    }
}

fn unknown_worker(worker: &str) -> RemoteError {
    RemoteError::UnknownWorker(format!(
        "`{worker}` is not registered in {}",
        current::this().name
    ))
}

/// The frame that answers call `id`: its result and how many of its items failed inside it,
/// or why there is none. A result too large for a frame is answered with that error.
fn reply_frame(
    id: u64,
    worker: &str,
    outcome: Result<Vec<u8>, RemoteError>,
    failed_items: u32,
    max_frame_len: usize,
) -> OutFrame {
    let (outcome, payload) = match outcome {
        Ok(payload) => (Ok(()), payload),
        Err(error) => (Err(error), Vec::new()),
    };
    let done = FromChild::Done {
        id,
        outcome,
        failed_items,
    };
    OutFrame::new(&done, payload, max_frame_len).unwrap_or_else(|error| {
        let done = FromChild::Done {
            id,
            outcome: Err(RemoteError::TooLarge(format!(
                "the result of `{worker}`: {error}"
            ))),
            failed_items: 0,
        };
        OutFrame::new(&done, Vec::new(), max_frame_len).expect("an error message fits in a frame")
    })
}

/// A reply is held for the next call only after a call quicker than this (see `serve`).
const HOLD_AFTER_CALLS_UNDER: Duration = Duration::from_micros(100);

/// How long a child waits for its next call before it hands freed memory back.
const IDLE_BEFORE_TRIM: Duration = Duration::from_millis(50);

/// Lets glibc's allocator keep freed megabyte buffers for the next call instead of handing
/// them back to the kernel: left to itself it unmaps or trims each one, and every call with a
/// large argument pays for its pages to be faulted in and zeroed again (a third of the cost of
/// moving a 1 MiB buffer). What is kept (at most 64 MiB above the heap's live part) is given
/// back once the child has been idle for [`IDLE_BEFORE_TRIM`], so an idle worker stays small.
/// A program using another allocator is unaffected.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no allocation is in a state it affects.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Hands the memory [`keep_freed_buffers`] kept back to the kernel, with the payload buffers
/// the transport kept for reuse.
fn give_back_freed_memory() {
    crate::buffers::release();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe at any point.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Exits when the parent dies, even while a worker computes.
///
/// Linux sends a child its "parent death signal" when the *thread* that started it ends. When
/// that thread was the parent's main thread, whose end is the parent's exit, the signal is
/// exactly the parent's death: this process asks for `SIGKILL` then, and needs nothing else.
/// Otherwise the thread (a tokio worker, say) may end long before the parent, so a watchdog
/// thread checks every 100 ms whether this process was re-parented. It is a bare POSIX thread
/// that only sleeps and asks for its parent's pid: a std thread would also set up a signal
/// stack, a name and its own malloc arena, which together cost about as much as the rest of a
/// `Process`'s start-up in the child.
fn watch_parent(parent_pid: u32, spawned_by_main_thread: bool) {
    extern "C" fn watch(parent: *mut libc::c_void) -> *mut libc::c_void {
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: getppid and nanosleep have no preconditions; `pause` outlives the call.
        while unsafe { libc::getppid() } as usize == parent as usize {
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        }
        std::process::exit(1)
    }
    #[cfg(target_os = "linux")]
    if spawned_by_main_thread {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and changes nothing else.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    // Checked after asking for the signal: a parent that died before is not signalled for.
    // SAFETY: getppid has no preconditions and cannot fail.
    if (unsafe { libc::getppid() }) as u32 != parent_pid {
        std::process::exit(1);
    }
    if spawned_by_main_thread && cfg!(target_os = "linux") {
        return;
    }
    // SAFETY: the attributes are initialized before use and destroyed after; `watch` takes
    // the pid by value in the pointer and never returns.
    let started = unsafe {
        let mut attributes: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attributes);
        // Room for the exit handlers, which run on this thread when the parent dies.
        libc::pthread_attr_setstacksize(&mut attributes, 64 * 1024);
        libc::pthread_attr_setdetachstate(&mut attributes, libc::PTHREAD_CREATE_DETACHED);
        let mut thread: libc::pthread_t = std::mem::zeroed();
        let started = libc::pthread_create(
            &mut thread,
            &attributes,
            watch,
            parent_pid as usize as *mut libc::c_void,
        );
        libc::pthread_attr_destroy(&mut attributes);
        started
    };
    assert_eq!(started, 0, "starting the parent watchdog");
}

/// Sees to what a serving child must do before it runs a call: opens the progress page a
/// `Track` request points to (or tells the parent it cannot), and reports the start of a call
/// there, answering as withdrawn, without running it, a call the parent withdrew. Returns
/// the call to run, if any; `Err` if the connection is gone.
fn admit(
    request: Request,
    progress: &mut Option<Progress>,
    parent: u32,
    writer: &FrameWriter,
    max_frame_len: usize,
) -> Result<Option<Call>, ()> {
    let call = match request {
        Request::Call(call) => call,
        Request::Track { fd } => {
            *progress = Progress::attach(parent, fd)
                .inspect_err(|error| {
                    tracing::debug!(target: "multiproc", "calls are not tracked: {error}");
                })
                .ok();
            if progress.is_none() {
                writer
                    .send(&FromChild::Untracked, Vec::new())
                    .map_err(drop)?;
            }
            return Ok(None);
        }
    };
    if progress
        .as_ref()
        .is_none_or(|progress| progress.start(call.id))
    {
        return Ok(Some(call));
    }
    // The answer frees the call's place in the parent's window, if the parent did not free
    // it already.
    let withdrawn = RemoteError::Withdrawn(format!("`{}` was withdrawn", call.worker));
    writer
        .hold(reply_frame(
            call.id,
            &call.worker,
            Err(withdrawn),
            0,
            max_frame_len,
        ))
        .map_err(drop)?;
    Ok(None)
}

/// Serves calls; returns the exit code.
async fn serve(bootstrap: &Bootstrap, connection: UnixStream) -> i32 {
    let max_frame_len = bootstrap.max_frame_len as usize;
    let connection = match transport::inherited(connection, max_frame_len) {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("multiproc: {}: {error}", bootstrap.name);
            return 1;
        }
    };
    let transport::Connection {
        mut reader,
        writer,
        writer_task,
        ..
    } = connection;
    if crate::logging::forwarded_level() != 0 {
        *lock_parent_link() = Some(ParentLink::Frames(writer.clone()));
    }
    // The worker and duration of the call just answered.
    let mut last_call: Option<(String, Duration)> = None;
    // Where the start of each call is reported, once the parent asks for it.
    let mut progress: Option<Progress> = None;
    let code = loop {
        // A reply waits while the next call, already here, is to the same worker as a call
        // that was quick: a run of quick calls is answered in one write, and no reply waits
        // for a call that may be long.
        let hold = last_call.take().is_some_and(|(worker, took)| {
            took < HOLD_AFTER_CALLS_UNDER
                && reader.peek_header::<ToChild>().is_some_and(
                    |next| matches!(next, ToChild::Call { worker: next, .. } if next == worker),
                )
        });
        if !hold && writer.release().is_err() {
            break 1;
        }
        let next = reader.read();
        tokio::pin!(next);
        let next = tokio::select! {
            biased;
            next = &mut next => next,
            () = tokio::time::sleep(IDLE_BEFORE_TRIM) => {
                give_back_freed_memory();
                next.await
            }
        };
        let request = match next_request(next) {
            Ok(request) => request,
            Err(code) => break code,
        };
        let parent = bootstrap.parent.pid;
        let Call {
            frame,
            id,
            worker,
            batch,
        } = match admit(request, &mut progress, parent, &writer, max_frame_len) {
            Ok(Some(call)) => call,
            Ok(None) => continue,
            Err(()) => break 1,
        };
        let started = Instant::now();
        let panics_before = crate::panic::caught();
        RUNNING_CALL.store(id, Ordering::SeqCst);
        let outcome = match registry::lookup(&worker) {
            Some(registered) => (registered.dispatch)(frame.payload(), batch).await,
            None => Err(unknown_worker(&worker)),
        };
        RUNNING_CALL.store(NO_CALL, Ordering::SeqCst);
        let failed_items =
            u32::try_from(crate::panic::caught() - panics_before).unwrap_or(u32::MAX);
        if writer
            .hold(reply_frame(
                id,
                &worker,
                outcome,
                failed_items,
                max_frame_len,
            ))
            .is_err()
        {
            break 1;
        }
        last_call = Some((worker, started.elapsed()));
    };
    // The link's clone of the writer would keep the connection open.
    lock_parent_link().take();
    drop(writer);
    let _ = writer_task.await;
    code
}
