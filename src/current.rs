//! Who this process is, and who its parent is.
//!
//! Names follow Python: the main process is `MainProcess`; each construction of a
//! [`Process`](crate::Process) (started or not, named or not) takes the next number from a
//! per-process counter, giving `Process-1`, `Process-2`, ...; a child's children append their
//! own counter, `Process-1:1`. Pool workers are `PoolWorker-N` and the manager's server is
//! `SyncManager-N`.
//!
//! A child learns who it is from its [`Bootstrap`](crate::bootstrap::Bootstrap) before
//! anything reads it; the children a process started are the [`reaper`](crate::reaper)'s.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// The name and pid of a process, as [`current_process`], [`parent_process`] and
/// [`active_children`](crate::active_children) report them.
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
