//! The store: one hub [`Object`] holding every dict, list, namespace and value of a manager,
//! their names, and the queues, locks, ... it hosts.
//!
//! One object rather than one per dict keeps a dict's entry small and lets a
//! [`StoreOp::Create`] arrive over any connection, TCP included. Each entry is one kind's
//! state, and what an operation does to it is that kind's business: [`DictState`],
//! [`ListState`], [`NamespaceState`] and [`ValueState`] each apply their own operations, in
//! `dict.rs`, `list.rs`, `namespace.rs` and `value.rs` beside their proxies. The store only
//! finds the entry and hands it the operation, or answers that the operation is for another
//! kind of entry.
//!
//! Queues, events, locks, ... are different: they park requests and track owners, which the
//! hub's own objects already do, so [`StoreOp::Host`] creates one of those on the store's hub
//! ([`Hub::create_from_request`]) and answers its id; a client then talks to it directly,
//! over the connection that carries the store's requests. Entries and hosted objects share
//! one table of names ([`StoreOp::Named`], [`StoreOp::Host`] with a name), so that processes
//! sharing only an address find the same objects.
//!
//! Everything is kept encoded (postcard bytes): the server never needs the user's types, and
//! a value is decoded only by the proxy that reads it. Dict keys are ordered by their encoded
//! bytes, which is equality-correct for every type (postcard encodes equal values to equal
//! bytes) but is not the type's `Ord` order.
//!
//! Each entry lives as long as a reference to it is held, counted per connection (see
//! [`reference`](super::reference)): [`StoreOp::Lend`], [`StoreOp::Claim`] and
//! [`StoreOp::Release`] change the counts (and are not answered: nobody waits for them), a
//! connection that closes drops every reference it held, and an entry left with none is
//! freed, unless a name pins it. Ids are never reused, so a request naming a freed entry is
//! answered that it was freed, never with another entry's data.
//!
//! No request waits: each is answered at once, so `cancel` has nothing to do. A request that does not fit its object (a list operation on a dict, a missing item) is
//! answered with a failure; nothing here panics on a client's input, and a registered worker
//! applied by `update` runs under `catch_unwind` (in the registry's dispatcher).

use std::collections::{HashMap, HashSet};

use super::dict::DictState;
use super::entry::invalid;
use super::list::ListState;
use super::namespace::NamespaceState;
use super::reference::{References, in_store};
use super::stats::ManagerStats;
use super::value::ValueState;
use crate::protocol::encode;
use crate::protocol::hub::{Answer, Failure, ObjectId, Op};
use crate::protocol::store::{EntryId, EntryOp, Hosted, HostedObject, Kind, StoreOp};
use crate::shared::hub::{ConnId, Hub, Items, LOCAL, Object, Reply, Request};
use crate::shared::{barrier, condition, event, lock, queue, semaphore};

/// One entry of the store: a kind's state.
enum Entry {
    Dict(DictState),
    List(ListState),
    Namespace(NamespaceState),
    Value(ValueState),
}

impl Entry {
    fn kind(&self) -> Kind {
        match self {
            Entry::Dict(_) => Kind::Dict,
            Entry::List(_) => Kind::List,
            Entry::Namespace(_) => Kind::Namespace,
            Entry::Value(_) => Kind::Value,
        }
    }
}

/// Every object of one manager.
#[derive(Default)]
pub(crate) struct Store {
    entries: HashMap<EntryId, Entry>,
    /// The last id given; ids only grow.
    next: EntryId,
    /// Objects registered by name.
    names: HashMap<String, Named>,
    /// Entries registered by name: their name keeps them, whatever their references.
    pinned: HashSet<EntryId>,
    /// Every hosted object, named or not: they go when the manager shuts down.
    hosted: Vec<ObjectId>,
    references: References,
    /// Connections of other processes that have made a request, until they close.
    clients: HashSet<ConnId>,
    /// Entries alive, by [`Kind`] (its discriminant).
    alive: [u64; 4],
    created: u64,
    freed: u64,
}

/// What a name is registered to: one of the store's entries or a hosted hub object.
#[derive(Debug, Clone, Copy)]
enum Named {
    Entry(Kind, EntryId),
    Hosted(Hosted, ObjectId),
}

impl Store {
    /// Creates an entry, held by one reference of `conn`; answers its id.
    fn create(&mut self, conn: ConnId, kind: Kind, mut items: Items) -> Reply {
        let entry = match kind {
            Kind::Dict => Entry::Dict(DictState::default()),
            Kind::List => Entry::List(ListState::default()),
            Kind::Namespace => Entry::Namespace(NamespaceState::default()),
            Kind::Value => match items.pop() {
                Some(value) => Entry::Value(ValueState::new(value)),
                None => return invalid("a value needs an initial value"),
            },
        };
        self.next += 1;
        self.entries.insert(self.next, entry);
        self.references.hold(conn, self.next);
        self.alive[kind as usize] += 1;
        self.created += 1;
        Reply::ok(Answer::Count(self.next))
    }

    /// Finds (or creates) the entry registered as `name`, with one more reference of `conn`.
    fn named(&mut self, conn: ConnId, kind: Kind, name: String, items: Items) -> Reply {
        match self.names.get(&name) {
            Some(Named::Entry(existing, id)) if *existing == kind => {
                let id = *id;
                self.references.hold(conn, id);
                Reply::ok(Answer::Count(id))
            }
            Some(existing) => name_taken(&name, existing, &format!("{kind:?}")),
            None => {
                let reply = self.create(conn, kind, items);
                if let Ok(Answer::Count(id)) = reply.outcome {
                    self.names.insert(name, Named::Entry(kind, id));
                    self.pinned.insert(id);
                }
                reply
            }
        }
    }

    /// Applies a change of references from `conn`, freeing an entry left with none.
    fn reference(&mut self, conn: ConnId, op: StoreOp) {
        match op {
            // A freed entry stays freed: a proxy that arrives too late to keep it finds it
            // gone when it is used.
            StoreOp::Lend { entry, loan } if self.entries.contains_key(&entry) => {
                self.references.lend(conn, entry, loan);
            }
            StoreOp::Claim { entry, loan } if self.entries.contains_key(&entry) => {
                self.references.claim(conn, entry, loan);
            }
            StoreOp::Release { entry } if self.references.release(conn, entry) => {
                self.free(entry);
            }
            _ => {}
        }
    }

    /// Frees `entry`, unless a name keeps it.
    fn free(&mut self, entry: EntryId) {
        if self.pinned.contains(&entry) {
            return;
        }
        if let Some(freed) = self.entries.remove(&entry) {
            self.alive[freed.kind() as usize] -= 1;
            self.freed += 1;
        }
    }

    fn stats(&self) -> Reply {
        let [dicts, lists, namespaces, values] = self.alive;
        let stats = ManagerStats {
            dicts,
            lists,
            namespaces,
            values,
            named: self.pinned.len() as u64,
            hosted: self.hosted.len() as u64,
            references: self.references.total(),
            lent: self.references.lent(),
            connections: self.clients.len() as u64,
            created: self.created,
            freed: self.freed,
        };
        match encode(&stats, "a manager's stats") {
            Ok(bytes) => Reply::items(vec![bytes]),
            Err(error) => invalid(error.to_string()),
        }
    }

    /// Creates a hosted object on the store's hub, or finds the one registered as `name`.
    fn host(&mut self, object: Hosted, name: Option<String>) -> Reply {
        let found = match name.as_ref().and_then(|name| self.names.get(name)) {
            Some(Named::Hosted(existing, id)) if existing.same_kind(&object) => {
                Some(HostedObject {
                    id: *id,
                    object: *existing,
                })
            }
            Some(existing) => {
                let name = name.as_deref().unwrap_or_default();
                return name_taken(name, existing, &format!("{object:?}"));
            }
            None => None,
        };
        let hosted = match found {
            Some(hosted) => hosted,
            None => {
                let state = match hosted_state(object) {
                    Ok(state) => state,
                    Err(reply) => return reply,
                };
                // The store is always an object of this process's hub: the one whose lock
                // this request holds.
                let Some(hub) = Hub::running() else {
                    return invalid("the manager's hub is not running");
                };
                let id = hub.create_from_request(state);
                self.hosted.push(id);
                if let Some(name) = name {
                    self.names.insert(name, Named::Hosted(object, id));
                }
                HostedObject { id, object }
            }
        };
        match encode(&hosted, "a hosted object") {
            Ok(bytes) => Reply::items(vec![bytes]),
            Err(error) => invalid(error.to_string()),
        }
    }

    /// Hands `op` to the entry's kind, or answers that it is for another kind of entry.
    fn apply(&mut self, entry: EntryId, op: EntryOp, items: Items) -> Reply {
        let id = entry;
        let Some(entry) = self.entries.get_mut(&entry) else {
            if id > 0 && id <= self.next {
                return Reply::failed(Failure::Gone(
                    "it was freed once no proxy of it was left in any process (a proxy stops \
                     counting when its process's connection to the manager closes, or when \
                     the process that sent it exits before it is received)"
                        .into(),
                ));
            }
            return Reply::failed(Failure::NoSuchObject);
        };
        let items = items.into_iter();
        let applied = match (entry, op) {
            (Entry::Dict(dict), EntryOp::Dict(op)) => dict.apply(op, items),
            (Entry::List(list), EntryOp::List(op)) => list.apply(op, items),
            (Entry::Namespace(fields), EntryOp::Namespace(op)) => fields.apply(op, items),
            (Entry::Value(value), EntryOp::Value(op)) => value.apply(op, items),
            (entry, op) => Err(invalid(format!(
                "{op:?} does not apply to a {}",
                entry.kind().name()
            ))),
        };
        applied.unwrap_or_else(|failure| failure)
    }
}

fn name_taken(name: &str, existing: &Named, wanted: &str) -> Reply {
    let existing = match existing {
        Named::Entry(kind, _) => format!("{kind:?}"),
        Named::Hosted(object, _) => format!("{object:?}"),
    };
    invalid(format!(
        "`{name}` names a {existing} in this manager, not a {wanted}"
    ))
}

/// The hub object a hosted object starts as; a failure for parameters its constructor would
/// refuse (with a panic, which must not happen in the server).
fn hosted_state(object: Hosted) -> Result<Box<dyn Object>, Reply> {
    Ok(match object {
        Hosted::Queue(Some(0)) | Hosted::JoinableQueue(Some(0)) => {
            return Err(invalid("a bounded queue needs a capacity of at least 1"));
        }
        Hosted::Barrier(0) => return Err(invalid("a barrier needs at least one party")),
        Hosted::Queue(capacity) => Box::new(queue::QueueState::new(capacity, false)),
        Hosted::JoinableQueue(capacity) => Box::new(queue::QueueState::new(capacity, true)),
        Hosted::Event => event::state(),
        Hosted::Lock => Box::new(lock::LockState::new(false)),
        Hosted::RLock => Box::new(lock::LockState::new(true)),
        Hosted::Semaphore(permits) => semaphore::state(permits, false),
        Hosted::BoundedSemaphore(permits) => semaphore::state(permits, true),
        Hosted::Condition => condition::state(),
        Hosted::Barrier(parties) => barrier::state(parties),
    })
}

impl Object for Store {
    fn call(&mut self, request: Request, op: Op, items: Items) {
        let conn = request.caller.conn;
        if conn != LOCAL {
            self.clients.insert(conn);
        }
        let Op::Manager(op) = op else {
            let _ = request.answer(invalid("not an operation of a manager"));
            return;
        };
        let reply = match op {
            StoreOp::Create(kind) => self.create(conn, kind, items),
            StoreOp::Named { kind, name } => self.named(conn, kind, name, items),
            StoreOp::On { entry, op } => in_store(|| self.apply(entry, op, items)),
            StoreOp::Host { object, name } => self.host(object, name),
            StoreOp::Stats => self.stats(),
            op @ (StoreOp::Lend { .. } | StoreOp::Claim { .. } | StoreOp::Release { .. }) => {
                // Nobody waits for these: no answer to send.
                self.reference(conn, op);
                return;
            }
        };
        let _ = request.answer(reply);
    }

    fn cancel(&mut self, _conn: ConnId, _id: u64) -> Option<Request> {
        // Every request is answered at once: nothing is ever parked.
        None
    }

    fn disconnected(&mut self, conn: ConnId) {
        // What the process wrote stays for the others; the references it held go, and what
        // only it held goes with them.
        self.clients.remove(&conn);
        for entry in self.references.disconnected(conn) {
            self.free(entry);
        }
    }

    fn drain(&mut self) -> Vec<Request> {
        Vec::new()
    }

    fn owned(&self) -> Vec<ObjectId> {
        self.hosted.clone()
    }
}
