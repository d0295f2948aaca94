//! Who this process is, who its parent is, and which children it has.
//!
//! Names follow Python: the main process is `MainProcess`; each construction of a
//! [`Process`](crate::Process) (started or not, named or not) takes the next number from a
//! per-process counter, giving `Process-1`, `Process-2`, ...; a child's children append their
//! own counter, `Process-1:1`. Pool workers are `PoolWorker-N` and the manager's server is
//! `SyncManager-N`.
//!
//! The children table is what [`active_children`] lists and what the exit hook works through
//! when this process exits: daemon children are terminated, the others are joined, as Python's
//! `atexit` handler does; unlike Python, a child also exits when *this* process dies abruptly
//! (see the crate docs, "How it works").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The name and pid of a process, as [`current_process`], [`parent_process`] and
/// [`active_children`] report them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// `MainProcess`, `Process-1`, `Process-1:2`, `PoolWorker-3`, or a name given with
    /// [`Process::name`](crate::Process::name).
    pub name: String,
    /// The operating-system process id.
    pub pid: u32,
    /// Whether the process is a daemon: terminated, not joined, when its parent exits, and
    /// not allowed to start children.
    pub daemon: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) depth: u32,
    pub(crate) parent: Option<ProcessInfo>,
}

static CURRENT: OnceLock<Current> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(1);

fn current() -> &'static Current {
    CURRENT.get_or_init(|| Current {
        name: "MainProcess".to_string(),
        identity: Vec::new(),
        daemon: false,
        depth: 0,
        parent: None,
    })
}

/// Records who this child is. Called once by a child, before anything else reads it.
pub(crate) fn set_child(child: Current) {
    let _ = CURRENT.set(child);
}

pub(crate) fn this() -> &'static Current {
    current()
}

/// The identity of the next process this one constructs: its own identity plus the counter.
pub(crate) fn next_identity() -> Vec<u32> {
    let mut identity = current().identity.clone();
    identity.push(COUNTER.fetch_add(1, Ordering::Relaxed));
    identity
}

/// `Process-1:2` from `("Process", [1, 2])`.
pub(crate) fn default_name(kind: &str, identity: &[u32]) -> String {
    let numbers: Vec<String> = identity.iter().map(u32::to_string).collect();
    format!("{kind}-{}", numbers.join(":"))
}

/// The running process: `MainProcess` in the main process, its own name in a child.
pub fn current_process() -> ProcessInfo {
    let current = current();
    ProcessInfo {
        name: current.name.clone(),
        pid: std::process::id(),
        daemon: current.daemon,
    }
}

/// The process that started this one; `None` in the main process.
pub fn parent_process() -> Option<ProcessInfo> {
    current().parent.clone()
}

/// The number of CPUs this process may use (respecting affinity masks and cgroup quotas);
/// the default size of a [`Pool`](crate::Pool).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Clone)]
struct ChildRecord {
    info: ProcessInfo,
    /// Terminated (not joined) when this process exits: daemons and pool workers.
    stop_at_exit: bool,
}

static CHILDREN: Mutex<BTreeMap<u32, ChildRecord>> = Mutex::new(BTreeMap::new());

/// The children this process started that have not been reaped yet. Finished children are
/// reaped in the background, so none of them lingers as a zombie.
pub fn active_children() -> Vec<ProcessInfo> {
    let children = CHILDREN.lock().unwrap_or_else(|poison| poison.into_inner());
    children
        .values()
        .map(|record| record.info.clone())
        .collect()
}

pub(crate) fn remember_child(info: ProcessInfo, stop_at_exit: bool) {
    register_exit_hook();
    let mut children = CHILDREN.lock().unwrap_or_else(|poison| poison.into_inner());
    children.insert(info.pid, ChildRecord { info, stop_at_exit });
}

pub(crate) fn forget_child(pid: u32) {
    let mut children = CHILDREN.lock().unwrap_or_else(|poison| poison.into_inner());
    children.remove(&pid);
}

/// Installs the hook that runs when this process exits normally (a return from `main` or
/// `std::process::exit`). Idempotent.
pub(crate) fn register_exit_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `on_exit` is an `extern "C" fn()` that never unwinds (it catches nothing
        // that can panic across the boundary: it only calls libc and locks a mutex).
        unsafe {
            libc::atexit(on_exit);
        }
    });
}

extern "C" fn on_exit() {
    let _ = std::panic::catch_unwind(shut_down_children);
}

/// Terminates daemon children and joins the others, as Python does when its interpreter exits.
fn shut_down_children() {
    let children: Vec<ChildRecord> = match CHILDREN.try_lock() {
        Ok(mut children) => std::mem::take(&mut *children).into_values().collect(),
        Err(_) => return,
    };
    crate::logging::info_at_exit("process shutting down");
    let (to_stop, to_join): (Vec<_>, Vec<_>) = children.into_iter().partition(|c| c.stop_at_exit);
    for child in &to_stop {
        crate::logging::info_at_exit(&format!(
            "calling terminate() for daemon {}",
            child.info.name
        ));
        signal(child.info.pid, libc::SIGTERM);
    }
    for child in &to_join {
        crate::logging::info_at_exit(&format!("calling join() for process {}", child.info.name));
        wait_blocking(child.info.pid, None);
    }
    for child in &to_stop {
        if !wait_blocking(child.info.pid, Some(Duration::from_secs(1))) {
            signal(child.info.pid, libc::SIGKILL);
            wait_blocking(child.info.pid, None);
        }
    }
}

pub(crate) fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a stale pid gives ESRCH, ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Reaps `pid`, waiting at most `limit`; true once it is gone (or was never ours to reap).
fn wait_blocking(pid: u32, limit: Option<Duration>) -> bool {
    let start = Instant::now();
    loop {
        let flags = if limit.is_some() { libc::WNOHANG } else { 0 };
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`, a valid local.
        let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        match reaped {
            r if r == pid as libc::pid_t => return true,
            -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            -1 => return true,
            _ => {}
        }
        match limit {
            Some(limit) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => return false,
        }
    }
}
