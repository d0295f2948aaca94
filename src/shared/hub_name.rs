//! The names of hubs, as handles carry them.
//!
//! A local hub's name is the random name of its socket. A hub reached over TCP, a manager
//! served with [`Manager::serve`](crate::Manager::serve), is named `tcp://ADDRESS/run-RUN`:
//! a manager's address outlives the manager, and each [`serve`](crate::Manager::serve) draws a
//! random 64-bit run, so a handle of an earlier run is told apart from one of the run now
//! serving there (see [`manager::tcp`](crate::manager::tcp), "Runs"). A manager served with
//! [`Manager::serve_tls`](crate::Manager::serve_tls) is named `tls://ADDRESS/run-RUN`, so that
//! its handles are reached with TLS or not at all.

use std::net::SocketAddr;

/// The hub name of the run `run` of the manager reached over TCP at `addr`, with TLS or not.
pub(crate) fn hub_name(addr: SocketAddr, run: u64, tls: bool) -> String {
    format!("{}{addr}{RUN_SEPARATOR}{run:016x}", prefix(tls))
}

/// What the hub names of TCP managers start with.
const TCP_PREFIX: &str = "tcp://";

/// What the hub names of TCP managers served with TLS start with.
const TLS_PREFIX: &str = "tls://";

fn prefix(tls: bool) -> &'static str {
    if tls { TLS_PREFIX } else { TCP_PREFIX }
}

/// What separates the address from the run in a TCP manager's hub name.
const RUN_SEPARATOR: &str = "/run-";

/// A TCP manager's hub name taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ManagerHub<'a> {
    /// The address, as written in the name.
    pub(crate) addr: &'a str,
    /// The run, if the name carries a well-formed one.
    pub(crate) run: Option<u64>,
    /// Whether the manager is reached with TLS.
    pub(crate) tls: bool,
}

/// A TCP manager's hub name taken apart; `None` for the name of a local hub.
pub(crate) fn parse_hub_name(hub: &str) -> Option<ManagerHub<'_>> {
    let (rest, tls) = match hub.strip_prefix(TLS_PREFIX) {
        Some(rest) => (rest, true),
        None => (hub.strip_prefix(TCP_PREFIX)?, false),
    };
    let (addr, run) = match rest.rsplit_once(RUN_SEPARATOR) {
        Some((addr, run)) => (addr, u64::from_str_radix(run, 16).ok()),
        None => (rest, None),
    };
    Some(ManagerHub { addr, run, tls })
}

/// The key under which a process keeps its one link to the manager at `addr`, with TLS or
/// not, whatever run it reaches: a restarted manager replaces the link.
pub(crate) fn link_name(addr: &str, tls: bool) -> String {
    format!("{}{addr}", prefix(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_tls_apart_and_parse_back() {
        let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        for tls in [false, true] {
            let name = hub_name(addr, 0xabc, tls);
            let parsed = parse_hub_name(&name).unwrap();
            assert_eq!(
                parsed,
                ManagerHub {
                    addr: "127.0.0.1:50000",
                    run: Some(0xabc),
                    tls
                }
            );
            assert_ne!(link_name(parsed.addr, tls), link_name(parsed.addr, !tls));
        }
        assert!(parse_hub_name("multiproc-1-00.sock").is_none());
    }
}
