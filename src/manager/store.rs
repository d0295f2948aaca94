//! The store: one hub [`Object`] holding every dict, list, namespace and value of a manager.
//!
//! One object rather than one per dict keeps a dict's entry small and lets a
//! [`StoreOp::Create`] arrive over any connection, TCP included. Queues, events, locks, ...
//! are different: they park requests and track owners, which the hub's own objects already do,
//! so [`StoreOp::Host`] creates one of those on the store's hub
//! ([`Hub::create_from_request`]) and answers its id; a client then talks to it directly,
//! over the connection that carries the store's requests.
//!
//! Everything is kept encoded (postcard bytes): the server never needs the user's types, and
//! a value is decoded only by the proxy that reads it. Dict keys are ordered by their encoded
//! bytes, which is equality-correct for every type (postcard encodes equal values to equal
//! bytes) but is not the type's `Ord` order.
//!
//! No request waits: each is answered at once, so `cancel` and `disconnected` have nothing to
//! do. A request that does not fit its object (a list operation on a dict, a missing item) is
//! answered with a failure; nothing here panics on a client's input, and a registered worker
//! applied by `update` runs under `catch_unwind` (in the registry's dispatcher).

use std::collections::{BTreeMap, HashMap};

use super::wire::{EntryId, EntryOp, Hosted, HostedObject, Kind, StoreOp};
use crate::protocol::encode;
use crate::shared::hub::{ConnId, Hub, Items, Object, Reply, Request};
use crate::shared::wire::{Answer, Failure, ObjectId, Op};
use crate::shared::{barrier, condition, event, lock, queue, semaphore};

enum Entry {
    Dict(BTreeMap<Vec<u8>, Vec<u8>>),
    List {
        items: Vec<Vec<u8>>,
        generation: u64,
    },
    Namespace(BTreeMap<String, Vec<u8>>),
    Value(Vec<u8>),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Dict(_) => "a dict",
            Entry::List { .. } => "a list",
            Entry::Namespace(_) => "a namespace",
            Entry::Value(_) => "a value",
        }
    }
}

/// Every object of one manager.
#[derive(Default)]
pub(crate) struct Store {
    entries: HashMap<EntryId, Entry>,
    next: EntryId,
    /// Objects registered by name.
    names: HashMap<String, Named>,
    /// Every hosted object, named or not: they go when the manager shuts down.
    hosted: Vec<ObjectId>,
}

/// What a name is registered to: one of the store's entries or a hosted hub object.
#[derive(Debug, Clone, Copy)]
enum Named {
    Entry(Kind, EntryId),
    Hosted(Hosted, ObjectId),
}

fn invalid(message: impl Into<String>) -> Reply {
    Reply::failed(Failure::InvalidState(message.into()))
}

fn maybe(item: Option<Vec<u8>>) -> Reply {
    Reply::items(item.into_iter().collect())
}

/// Applies the registered worker `name` to `value`: `fn(V) -> V`, whose encoded argument
/// tuple `(V,)` is `V`'s encoding. The worker must finish without waiting: it runs under the
/// hub's lock, which is what makes the update atomic.
fn apply(name: &str, value: &[u8]) -> Result<Vec<u8>, Reply> {
    let Some(registered) = crate::registry::lookup(name) else {
        return Err(invalid(format!(
            "`{name}` is not registered in the manager's process; mark it #[worker]"
        )));
    };
    match registered.call_now(value, false) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(invalid(format!(
            "the update function `{name}` failed: {}",
            error.into_error()
        ))),
        Err(_awaits) => Err(invalid(format!(
            "the update function `{name}` awaited; update functions run under the manager's \
             lock and must complete without waiting (use a plain fn)"
        ))),
    }
}

/// Applies the registered worker `name` to `current`, or to `default` when there is no
/// current value: the new value, or `None` when there is neither (nothing to update).
fn updated(
    name: &str,
    current: Option<&Vec<u8>>,
    default: Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, Reply> {
    match (current, default) {
        (Some(value), _) => apply(name, value).map(Some),
        (None, Some(default)) => apply(name, &default).map(Some),
        (None, None) => Ok(None),
    }
}

/// The request's next item.
fn take(items: &mut impl Iterator<Item = Vec<u8>>, what: &str) -> Result<Vec<u8>, Reply> {
    items
        .next()
        .ok_or_else(|| invalid(format!("the request carries no {what}")))
}

impl Store {
    fn create(&mut self, kind: Kind, mut items: Items) -> Reply {
        let entry = match kind {
            Kind::Dict => Entry::Dict(BTreeMap::new()),
            Kind::List => Entry::List {
                items: Vec::new(),
                generation: 0,
            },
            Kind::Namespace => Entry::Namespace(BTreeMap::new()),
            Kind::Value => match items.pop() {
                Some(value) => Entry::Value(value),
                None => return invalid("a value needs an initial value"),
            },
        };
        self.next += 1;
        self.entries.insert(self.next, entry);
        Reply::ok(Answer::Count(self.next))
    }

    fn named(&mut self, kind: Kind, name: String, items: Items) -> Reply {
        match self.names.get(&name) {
            Some(Named::Entry(existing, id)) if *existing == kind => Reply::ok(Answer::Count(*id)),
            Some(existing) => name_taken(&name, existing, &format!("{kind:?}")),
            None => {
                let reply = self.create(kind, items);
                if let Ok(Answer::Count(id)) = reply.outcome {
                    self.names.insert(name, Named::Entry(kind, id));
                }
                reply
            }
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

    fn apply(&mut self, entry: EntryId, op: EntryOp, items: Items) -> Reply {
        let Some(target) = self.entries.get_mut(&entry) else {
            return Reply::failed(Failure::NoSuchObject);
        };
        let kind = target.kind();
        let mut items = items.into_iter();
        let result: Result<Reply, Reply> = (|| {
            Ok(match (target, op) {
                (Entry::Dict(map), EntryOp::Insert) => {
                    let key = take(&mut items, "key")?;
                    maybe(map.insert(key, take(&mut items, "value")?))
                }
                (Entry::Dict(map), EntryOp::Get) => {
                    maybe(map.get(&take(&mut items, "key")?).cloned())
                }
                (Entry::Dict(map), EntryOp::Remove) => maybe(map.remove(&take(&mut items, "key")?)),
                (Entry::Dict(map), EntryOp::ContainsKey) => {
                    Reply::ok(Answer::Flag(map.contains_key(&take(&mut items, "key")?)))
                }
                (Entry::Dict(map), EntryOp::Keys) => Reply::items(map.keys().cloned().collect()),
                (Entry::Dict(map), EntryOp::Values) => {
                    Reply::items(map.values().cloned().collect())
                }
                (Entry::Dict(map), EntryOp::Items) => Reply::items(
                    map.iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()])
                        .collect(),
                ),
                (Entry::Dict(map), EntryOp::InsertMany) => {
                    while let Ok(key) = take(&mut items, "key") {
                        let value = take(&mut items, "value")?;
                        map.insert(key, value);
                    }
                    Reply::ok(Answer::Done)
                }
                (Entry::Dict(map), EntryOp::Update { worker }) => {
                    let key = take(&mut items, "key")?;
                    let new = updated(&worker, map.get(&key), items.next())?;
                    if let Some(new) = &new {
                        map.insert(key, new.clone());
                    }
                    maybe(new)
                }
                (Entry::Dict(map), EntryOp::Len) => Reply::ok(Answer::Count(map.len() as u64)),
                (Entry::Dict(map), EntryOp::Clear) => {
                    map.clear();
                    Reply::ok(Answer::Done)
                }

                (
                    Entry::List {
                        items: list,
                        generation,
                    },
                    op,
                ) => {
                    let changes =
                        !matches!(op, EntryOp::GetAt { .. } | EntryOp::Len | EntryOp::Snapshot);
                    let reply = match op {
                        EntryOp::Push => {
                            list.extend(items.by_ref());
                            Reply::ok(Answer::Count(list.len() as u64))
                        }
                        EntryOp::Pop => maybe(list.pop()),
                        EntryOp::GetAt { index } => maybe(
                            usize::try_from(index)
                                .ok()
                                .and_then(|i| list.get(i))
                                .cloned(),
                        ),
                        EntryOp::SetAt { index } => {
                            let value = take(&mut items, "value")?;
                            let len = list.len();
                            match usize::try_from(index).ok().and_then(|i| list.get_mut(i)) {
                                Some(slot) => {
                                    *slot = value;
                                    Reply::ok(Answer::Done)
                                }
                                None => {
                                    return Err(invalid(format!(
                                        "index {index} is out of range for a list of {len} items"
                                    )));
                                }
                            }
                        }
                        EntryOp::InsertAt { index } => {
                            let value = take(&mut items, "value")?;
                            let at = usize::try_from(index).unwrap_or(usize::MAX).min(list.len());
                            list.insert(at, value);
                            Reply::ok(Answer::Done)
                        }
                        EntryOp::RemoveAt { index } => {
                            let at = usize::try_from(index).unwrap_or(usize::MAX);
                            maybe((at < list.len()).then(|| list.remove(at)))
                        }
                        EntryOp::UpdateAt { index, worker } => {
                            let slot = usize::try_from(index).ok().and_then(|i| list.get_mut(i));
                            let Some(slot) = slot else {
                                // Out of range: nothing changed, as `get` would find nothing.
                                return Ok(maybe(None));
                            };
                            *slot = apply(&worker, slot)?;
                            maybe(Some(slot.clone()))
                        }
                        EntryOp::Reverse => {
                            list.reverse();
                            Reply::ok(Answer::Done)
                        }
                        EntryOp::Snapshot => {
                            let mut all = Vec::with_capacity(list.len() + 1);
                            all.push(generation.to_le_bytes().to_vec());
                            all.extend(list.iter().cloned());
                            Reply::items(all)
                        }
                        EntryOp::ReplaceIf { generation: seen } => {
                            if seen == *generation {
                                *list = items.by_ref().collect();
                                Reply::ok(Answer::Flag(true))
                            } else {
                                return Ok(Reply::ok(Answer::Flag(false)));
                            }
                        }
                        EntryOp::Len => Reply::ok(Answer::Count(list.len() as u64)),
                        EntryOp::Clear => {
                            list.clear();
                            Reply::ok(Answer::Done)
                        }
                        other => {
                            return Err(invalid(format!("{other:?} does not apply to {kind}")));
                        }
                    };
                    if changes {
                        *generation += 1;
                    }
                    reply
                }

                (Entry::Namespace(fields), EntryOp::SetField { name }) => {
                    maybe(fields.insert(name, take(&mut items, "value")?))
                }
                (Entry::Namespace(fields), EntryOp::GetField { name }) => {
                    maybe(fields.get(&name).cloned())
                }
                (Entry::Namespace(fields), EntryOp::RemoveField { name }) => {
                    maybe(fields.remove(&name))
                }
                (Entry::Namespace(fields), EntryOp::UpdateField { name, worker }) => {
                    let new = updated(&worker, fields.get(&name), items.next())?;
                    if let Some(new) = &new {
                        fields.insert(name, new.clone());
                    }
                    maybe(new)
                }
                (Entry::Namespace(fields), EntryOp::Fields) => Reply::items(
                    fields
                        .keys()
                        .map(|name| encode(name, "a field name").expect("a string encodes"))
                        .collect(),
                ),
                (Entry::Namespace(fields), EntryOp::Len) => {
                    Reply::ok(Answer::Count(fields.len() as u64))
                }
                (Entry::Namespace(fields), EntryOp::Clear) => {
                    fields.clear();
                    Reply::ok(Answer::Done)
                }

                (Entry::Value(value), EntryOp::Load) => maybe(Some(value.clone())),
                (Entry::Value(value), EntryOp::Store) => {
                    maybe(Some(std::mem::replace(value, take(&mut items, "value")?)))
                }
                (Entry::Value(value), EntryOp::Update { worker }) => {
                    *value = apply(&worker, value)?;
                    maybe(Some(value.clone()))
                }

                (_, other) => return Err(invalid(format!("{other:?} does not apply to {kind}"))),
            })
        })();
        result.unwrap_or_else(|failure| failure)
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
        let reply = match op {
            Op::Manager(StoreOp::Create(kind)) => self.create(kind, items),
            Op::Manager(StoreOp::Named { kind, name }) => self.named(kind, name, items),
            Op::Manager(StoreOp::On { entry, op }) => self.apply(entry, op, items),
            Op::Manager(StoreOp::Host { object, name }) => self.host(object, name),
            _ => invalid("not an operation of a manager"),
        };
        let _ = request.answer(reply);
    }

    fn cancel(&mut self, _conn: ConnId, _id: u64) -> Option<Request> {
        // Every request is answered at once: nothing is ever parked.
        None
    }

    fn disconnected(&mut self, _conn: ConnId) {
        // Objects belong to the manager, not to a connection: a client that goes away leaves
        // its writes in place, as with Python's manager.
    }

    fn drain(&mut self) -> Vec<Request> {
        Vec::new()
    }

    fn owned(&self) -> Vec<ObjectId> {
        self.hosted.clone()
    }
}
