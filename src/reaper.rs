//! The children this process started, and what becomes of them when it exits.
//!
//! Every child [`spawn`](crate::spawn) starts is entered in one table until its supervisor
//! reaps it. The table is what [`active_children`] lists, and what the exit hook works
//! through when this process exits normally (a return from `main`, or
//! `std::process::exit`): daemon children and pool workers are terminated, the others are
//! joined, as Python's `atexit` handler does. Unlike Python, a child also exits when *this*
//! process dies abruptly (see the crate docs, "How it works"), so the hook is about manners,
//! not about leaks.
//!
//! Signals and blocking waits on a pid live here too, so that one module owns "this pid is
//! ours, and this is how it ends".

use std::collections::BTreeMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::current::ProcessInfo;

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

/// Enters a just-started child in the table (and makes sure the exit hook will see it).
pub(crate) fn remember_child(info: ProcessInfo, stop_at_exit: bool) {
    register_exit_hook();
    let mut children = CHILDREN.lock().unwrap_or_else(|poison| poison.into_inner());
    children.insert(info.pid, ChildRecord { info, stop_at_exit });
}

/// Takes a reaped child out of the table.
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

/// Sends `signal` to `pid`; a pid that is already gone is not an error.
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
