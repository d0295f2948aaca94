//! [`ManagerStats`]: what a manager holds, for a service to watch.
//!
//! [`Manager::stats`](super::Manager::stats) asks the store in one round trip; the store
//! keeps these counts as it works, so reading them costs no more than a `len`. A service that
//! creates and drops proxies for as long as it runs should see [`objects`](ManagerStats::objects)
//! stay level: an object is freed once no proxy of it is left in any process (see the
//! [module docs](super) on references).

use serde::{Deserialize, Serialize};

/// A snapshot of a manager's objects, references and clients; returned by
/// [`Manager::stats`](super::Manager::stats).
///
/// ```no_run
/// # async fn demo(manager: multiproc::Manager) -> multiproc::Result<()> {
/// let stats = manager.stats().await?;
/// println!(
///     "{} objects ({} dicts), {} references, {} clients, {} freed",
///     stats.objects(), stats.dicts, stats.references, stats.connections, stats.freed
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Dicts alive.
    pub dicts: u64,
    /// Lists alive.
    pub lists: u64,
    /// Namespaces alive.
    pub namespaces: u64,
    /// Values alive.
    pub values: u64,
    /// Dicts, lists, namespaces and values registered by name (counted in the kinds above
    /// as well): a name keeps its object for as long as the manager serves.
    pub named: u64,
    /// Queues, locks, events, ... the manager hosts. They live as long as the manager, as
    /// Python's do while a proxy holds them; they are not reference counted.
    pub hosted: u64,
    /// References to dicts, lists, namespaces and values, from every process: one per proxy
    /// deserialized or created (clones share one), plus those lent with proxies on their way
    /// to another process.
    pub references: u64,
    /// Of those, references lent with proxies serialized (a worker's argument, an item put
    /// on a queue) that no process has deserialized yet. They are dropped when the process
    /// that lent them exits; one that only grows is a proxy serialized and never read.
    pub lent: u64,
    /// Processes connected to the manager that have used it, other than the manager's own.
    pub connections: u64,
    /// Dicts, lists, namespaces and values created since the manager started.
    pub created: u64,
    /// Those freed since the manager started, once no reference to them was left.
    pub freed: u64,
}

impl ManagerStats {
    /// Dicts, lists, namespaces and values alive.
    pub fn objects(&self) -> u64 {
        self.dicts + self.lists + self.namespaces + self.values
    }
}
