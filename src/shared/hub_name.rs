//! The names of hubs, as handles carry them.
//!
//! A local hub's name is the random name of its socket. A hub reached over TCP, a manager
//! served with [`Manager::serve`](crate::Manager::serve), is named `tcp://ADDRESS/run-RUN`:
//! a manager's address outlives the manager, and each [`serve`](crate::Manager::serve) draws a
//! random 64-bit run, so a handle of an earlier run is told apart from one of the run now
//! serving there (see [`manager::tcp`](crate::manager::tcp), "Runs").

use std::net::SocketAddr;

/// The hub name of the run `run` of the manager reached over TCP at `addr`.
pub(crate) fn hub_name(addr: SocketAddr, run: u64) -> String {
    format!("{TCP_PREFIX}{addr}{RUN_SEPARATOR}{run:016x}")
}

/// What the hub names of TCP managers start with.
pub(crate) const TCP_PREFIX: &str = "tcp://";

/// What separates the address from the run in a TCP manager's hub name.
const RUN_SEPARATOR: &str = "/run-";

/// A TCP manager's hub name taken apart: the address as written in it, and the run, if the
/// name carries a well-formed one. `None` for the name of a local hub.
pub(crate) fn parse_hub_name(hub: &str) -> Option<(&str, Option<u64>)> {
    let rest = hub.strip_prefix(TCP_PREFIX)?;
    Some(match rest.rsplit_once(RUN_SEPARATOR) {
        Some((addr, run)) => (addr, u64::from_str_radix(run, 16).ok()),
        None => (rest, None),
    })
}

/// The key under which a process keeps its one link to the manager at `addr`, whatever run
/// it reaches: a restarted manager replaces the link.
pub(crate) fn link_name(addr: &str) -> String {
    format!("{TCP_PREFIX}{addr}")
}
