//! References: how long a manager keeps a dict, list, namespace or value, from both sides.
//!
//! Python's manager counts references to each shared object (`incref` and `decref` from
//! every proxy) and frees an object once none is left. This is the same rule, with one
//! change that makes it robust to a process that dies without saying goodbye: the store
//! counts references **per connection**. Each process reaches a manager over one
//! connection, and the references it holds are counted under it; when the connection closes
//! (the process exited, was killed, or its host vanished), every reference it held goes with
//! it, as the locks it held are released. Nothing is ever kept alive by a dead process.
//!
//! # The proxy side
//!
//! A proxy holds a [`Reference`] behind an `Arc`: cloning a proxy costs nothing and sends
//! nothing, and the last clone dropped in a process sends one `Release`. Creating an object
//! (or finding a named one) counts the creator's reference at the store in the same request.
//! Deserializing a proxy (a worker's argument, an item read from a queue) makes a new
//! [`Reference`] and sends a `Claim`.
//!
//! # A proxy in transit
//!
//! Between the moment a process serializes a proxy and the moment another deserializes it,
//! the object must not be freed, even if the sender drops every proxy it had. So
//! **serializing a proxy lends a reference**: the sender's connection takes one more
//! reference, under a *loan* number written into the bytes, before the bytes leave (Python's
//! sender holds a temporary reference the same way). The process that deserializes those
//! bytes claims the loan: the reference becomes its own. Loans make the order of arrival
//! irrelevant: a claim that reaches the store before its loan (the receiver's connection was
//! quicker than the sender's) holds a reference of its own, and the loan, when it arrives, is
//! already repaid. A later deserialization of the same bytes (a retried call) holds a
//! reference of its own too, as long as the object is alive.
//!
//! A creation whose future is dropped after the store created the object (before the answer
//! arrived) leaves the creator's reference counted, with no proxy to release it: it goes
//! with the creator's connection, like an unclaimed loan.
//!
//! A loan nobody claims (bytes serialized but never read back, a value overwritten in a
//! dict) is dropped with the sender's connection, when the sender exits. A proxy whose
//! sender died before it was claimed, or whose process's connection broke (a TCP link cut
//! for longer than keepalive allows), may find its object freed: its calls then fail with a
//! [`Closed`](crate::ErrorKind::Closed) error saying so. Ids are never reused, so a stale
//! proxy never reaches another object's data.
//!
//! Reference messages are sent without waiting for an answer, in order, on the connection
//! the process's calls use: a proxy's release never overtakes the loan it made, and a
//! release sent before a request arrives before it. Until this process has opened that
//! connection they wait in an [`Outbox`], sent in order once it is open; a child flushes its
//! outboxes before it exits ([`flush_before_exit`]).
//!
//! # The store side
//!
//! [`References`] counts, per connection and per entry, the proxies held and the references
//! lent, and tells the store which entries no reference holds any longer. The store frees
//! those, unless a name pins them (an object registered by name lives as long as the
//! manager, since a client may ask for it by name at any time).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::protocol::hub::{ObjectId, Op};
use crate::protocol::store::{EntryId, Loan, StoreOp};
use crate::shared::client::{self, Handle};
use crate::shared::hub::{ConnId, runtime};
use crate::transport::auth::random_bytes;

// ---------------------------------------------------------------------------------------------
// The proxy side.

/// One reference to an entry of a store, counted there under this process's connection;
/// shared by a proxy and its clones, and released when the last of them is dropped.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Reference {
    pub(super) store: Handle,
    pub(super) entry: EntryId,
}

impl Reference {
    /// A reference the store already counted (it answered the request that created or found
    /// the entry).
    pub(super) fn counted(store: Handle, entry: EntryId) -> Arc<Self> {
        Arc::new(Reference { store, entry })
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        send(&self.store, StoreOp::Release { entry: self.entry });
    }
}

/// What a proxy serializes to: the store, the entry, and the loan that keeps the entry for
/// whoever deserializes it.
#[derive(Serialize, Deserialize)]
struct Wire {
    store: Handle,
    entry: EntryId,
    /// Fixed-size, so that a proxy's encoded size does not depend on its loan.
    loan: [u8; 8],
}

impl Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Only the bytes that leave lend: measuring a value's encoded size serializes it
        // too, and the loan has a fixed size, so the measure holds.
        let loan = if crate::protocol::is_sizing() {
            0
        } else {
            let loan = next_loan();
            // Sent before the bytes leave this process, on the connection that carries
            // this process's release, so the lent reference is counted before ours can go.
            send(
                &self.store,
                StoreOp::Lend {
                    entry: self.entry,
                    loan,
                },
            );
            loan
        };
        Wire {
            store: self.store.clone(),
            entry: self.entry,
            loan: loan.to_le_bytes(),
        }
        .serialize(serializer)
    }
}

/// Deserializes a proxy's reference, claiming the one its sender lent.
pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<Reference>, D::Error> {
    let Wire { store, entry, loan } = Wire::deserialize(deserializer)?;
    let loan = Loan::from_le_bytes(loan);
    send(&store, StoreOp::Claim { entry, loan });
    Ok(Arc::new(Reference { store, entry }))
}

/// A new loan, unique across processes and hosts: a random base drawn once per process,
/// and a counter.
fn next_loan() -> Loan {
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| u64::from_le_bytes(random_bytes()));
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Reference messages of this process to one store, kept in order until a connection to it
/// is open.
#[derive(Default)]
struct Outbox {
    queued: VecDeque<(ObjectId, StoreOp)>,
    /// Whether a task is connecting to send `queued`.
    flushing: bool,
}

/// Every store this process has queued reference messages for, by hub name.
static OUTBOXES: Mutex<Option<HashMap<String, Outbox>>> = Mutex::new(None);

thread_local! {
    /// Set while this thread applies a request to a store, under its hub's lock: a proxy
    /// decoded or dropped there (inside an update function) must not take that lock again.
    static IN_STORE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `apply` as the store's request on this thread; see [`IN_STORE`].
pub(super) fn in_store<T>(apply: impl FnOnce() -> T) -> T {
    IN_STORE.with(|flag| flag.set(true));
    let result = apply();
    IN_STORE.with(|flag| flag.set(false));
    result
}

/// Sends a reference message to `store` without waiting: at once when this process's
/// connection to it is open and nothing is queued before it, else in order once it is.
fn send(store: &Handle, op: StoreOp) {
    if IN_STORE.with(Cell::get) {
        let store = store.clone();
        runtime().spawn(async move { send(&store, op) });
        return;
    }
    let mut outboxes = OUTBOXES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let outboxes = outboxes.get_or_insert_with(HashMap::new);
    let queued = outboxes
        .get(&store.hub)
        .is_some_and(|outbox| !outbox.queued.is_empty());
    if !queued && let Some(link) = client::open_link(store) {
        // Under the outboxes' lock, so that messages of several threads keep one order.
        client::send_and_forget(&link, store.object, 0, Op::Manager(op), Vec::new());
        return;
    }
    let outbox = outboxes.entry(store.hub.clone()).or_default();
    outbox.queued.push_back((store.object, op));
    if !outbox.flushing {
        outbox.flushing = true;
        runtime().spawn(flush(store.clone()));
    }
}

/// Connects to `store`'s hub and sends what waits in its outbox. A store that cannot be
/// reached has nothing left to count: its messages are dropped.
async fn flush(store: Handle) {
    let link = client::link(&store).await.ok();
    let mut outboxes = OUTBOXES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(outbox) = outboxes
        .as_mut()
        .and_then(|boxes| boxes.get_mut(&store.hub))
    else {
        return;
    };
    for (object, op) in outbox.queued.drain(..) {
        if let Some(link) = &link {
            client::send_and_forget(link, object, 0, Op::Manager(op), Vec::new());
        }
    }
    outbox.flushing = false;
}

/// Waits, at most `timeout`, until the reference messages this process queued have been
/// handed to their connections: a child that exits right after receiving a proxy has its
/// claim counted (taking the reference its sender lent over, and dropping it with its
/// connection) rather than leaving the sender's lent reference in place. Must not be called
/// from inside an async context.
pub(crate) fn flush_before_exit(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let pending = OUTBOXES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .is_some_and(|boxes| boxes.values().any(|outbox| outbox.flushing));
        if !pending {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------------
// The store side.

/// The references of one connection to one entry.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// Proxies of that process.
    proxies: u64,
    /// References lent with copies on their way to another process.
    lent: u64,
}

/// Every reference to a store's entries, by connection.
#[derive(Debug, Default)]
pub(super) struct References {
    /// How many references each entry has.
    entries: HashMap<EntryId, u64>,
    by_conn: HashMap<ConnId, HashMap<EntryId, Held>>,
    /// Loans not yet claimed: the connection that lent each, and the entry.
    loans: HashMap<Loan, (ConnId, EntryId)>,
    /// Claims that arrived before their loan (the receiver's connection was faster than the
    /// sender's), by the claiming connection: the loan, when it comes, is already repaid.
    early: HashMap<Loan, ConnId>,
    total: u64,
}

impl References {
    /// `conn` holds one more proxy of `entry` (it created or found it).
    pub(super) fn hold(&mut self, conn: ConnId, entry: EntryId) {
        *self.entries.entry(entry).or_default() += 1;
        self.held(conn, entry).proxies += 1;
        self.total += 1;
    }

    /// `conn` serialized a proxy of `entry`: one more reference, lent until `loan` is
    /// claimed.
    pub(super) fn lend(&mut self, conn: ConnId, entry: EntryId, loan: Loan) {
        if self.early.remove(&loan).is_some() {
            // Its receiver already holds a reference of its own.
            return;
        }
        *self.entries.entry(entry).or_default() += 1;
        self.held(conn, entry).lent += 1;
        self.total += 1;
        self.loans.insert(loan, (conn, entry));
    }

    /// `conn` deserialized a proxy of `entry`: it holds a reference of its own, taking over
    /// the one `loan` lent when that has arrived (else the loan is repaid when it does).
    pub(super) fn claim(&mut self, conn: ConnId, entry: EntryId, loan: Loan) {
        let Some((lender, lent)) = self.loans.remove(&loan) else {
            // A second deserialization of the same bytes finds the loan repaid; it is
            // remembered as early anyway, until its connection closes.
            self.early.insert(loan, conn);
            self.hold(conn, entry);
            return;
        };
        if let Some(held) = self
            .by_conn
            .get_mut(&lender)
            .and_then(|held| held.get_mut(&lent))
        {
            held.lent -= 1;
        }
        self.forget_if_empty(lender, lent);
        self.held(conn, entry).proxies += 1;
    }

    /// `conn` dropped a proxy of `entry`. True when that was the entry's last reference.
    /// A release `conn` holds no proxy for (a claim that never arrived) changes nothing.
    pub(super) fn release(&mut self, conn: ConnId, entry: EntryId) -> bool {
        let Some(held) = self
            .by_conn
            .get_mut(&conn)
            .and_then(|held| held.get_mut(&entry))
        else {
            return false;
        };
        if held.proxies == 0 {
            return false;
        }
        held.proxies -= 1;
        self.forget_if_empty(conn, entry);
        self.drop_references(entry, 1)
    }

    /// `conn` closed: every reference it held or lent goes. Returns the entries left with
    /// none.
    pub(super) fn disconnected(&mut self, conn: ConnId) -> Vec<EntryId> {
        self.early.retain(|_, claimer| *claimer != conn);
        let Some(held) = self.by_conn.remove(&conn) else {
            return Vec::new();
        };
        if held.values().any(|held| held.lent > 0) {
            self.loans.retain(|_, (lender, _)| *lender != conn);
        }
        held.into_iter()
            .filter(|(entry, held)| self.drop_references(*entry, held.proxies + held.lent))
            .map(|(entry, _)| entry)
            .collect()
    }

    /// Every reference, from every connection.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// References lent and not yet claimed.
    pub(super) fn lent(&self) -> u64 {
        self.loans.len() as u64
    }

    fn held(&mut self, conn: ConnId, entry: EntryId) -> &mut Held {
        self.by_conn
            .entry(conn)
            .or_default()
            .entry(entry)
            .or_default()
    }

    fn forget_if_empty(&mut self, conn: ConnId, entry: EntryId) {
        let Some(entries) = self.by_conn.get_mut(&conn) else {
            return;
        };
        if entries
            .get(&entry)
            .is_some_and(|held| held.proxies == 0 && held.lent == 0)
        {
            entries.remove(&entry);
        }
        if entries.is_empty() {
            self.by_conn.remove(&conn);
        }
    }

    /// Takes `n` references off `entry`; true when none is left.
    fn drop_references(&mut self, entry: EntryId, n: u64) -> bool {
        self.total = self.total.saturating_sub(n);
        let Some(count) = self.entries.get_mut(&entry) else {
            return false;
        };
        *count = count.saturating_sub(n);
        if *count == 0 {
            self.entries.remove(&entry);
            return true;
        }
        false
    }
}
