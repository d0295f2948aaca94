//! The store's operations: what a proxy asks of the manager's hub.
//!
//! A request names the entry it is for and carries an operation of that entry's kind
//! ([`DictOp`], [`ListOp`], [`NamespaceOp`], [`ValueOp`]), so each kind's operations are one
//! type, applied by that kind's module (`dict.rs`, `list.rs`, ...).
//!
//! Keys and values never appear in these headers: they travel, already encoded, as the
//! request's items (the frame's payload), so a header stays a few bytes whatever the values.

use serde::{Deserialize, Serialize};

/// The id of one entry (a dict, list, namespace or value) within the store. Ids are never
/// reused: a proxy of a freed entry finds it gone, never another entry.
pub(crate) type EntryId = u64;

/// One serialization of a proxy, unique across processes: names the reference its sender
/// lent, which the receiver claims.
pub(crate) type Loan = u64;

/// The kind of an entry: what to create, and what an [`EntryOp`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    /// A value; its initial encoding is the request's one item.
    Value,
}

/// One request to the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StoreOp {
    /// Creates an object; answered with its id as a `Count`.
    Create(Kind),
    /// The object registered under `name`, created (and registered) if there is none yet;
    /// answered with its id as a `Count`. How clients that share nothing but an address
    /// find the same objects (Python registers typeids on a `BaseManager` for this).
    Named { kind: Kind, name: String },
    /// An operation on the entry `entry`.
    On { entry: EntryId, op: EntryOp },
    /// Creates a queue, lock, ... as an object of the store's own hub, registered under
    /// `name` when there is one (a name already registered gives the object it holds, as
    /// `Named` does). Answered with one item: the encoded [`HostedObject`].
    Host {
        object: Hosted,
        name: Option<String>,
    },
    /// The caller serialized a proxy of `entry`: its connection lends one more reference,
    /// until the process that deserializes it claims `loan` (see `manager/reference.rs`).
    /// Not answered.
    Lend { entry: EntryId, loan: Loan },
    /// The caller deserialized a proxy of `entry`, serialized with `loan`: its connection
    /// takes the lent reference over (or holds one of its own). Not answered.
    Claim { entry: EntryId, loan: Loan },
    /// The caller dropped its last proxy (in that process) of one reference to `entry`: the
    /// object is freed once no reference is left. Not answered.
    Release { entry: EntryId },
    /// What the store holds; answered with one item, the encoded `ManagerStats`.
    Stats,
}

/// A queue or synchronisation object a manager hosts: the crate's ordinary [`Queue`](crate::Queue),
/// [`Event`](crate::Event), ..., created in the manager's process and reached through the same
/// connection as its dicts (local socket or TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Hosted {
    /// With a capacity when bounded.
    Queue(Option<usize>),
    JoinableQueue(Option<usize>),
    Event,
    Lock,
    RLock,
    Semaphore(u64),
    BoundedSemaphore(u64),
    Condition,
    Barrier(usize),
}

impl Hosted {
    /// Whether `other` is the same kind of object, whatever its parameters: a name found
    /// registered is used as it was created (the first caller's capacity, permits, parties).
    pub(crate) fn same_kind(&self, other: &Hosted) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// The answer to [`StoreOp::Host`]: the object's id in the hub, and what it was created as
/// (which, for a name already registered, may differ from what was asked in its parameters).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct HostedObject {
    pub(crate) id: super::ObjectId,
    pub(crate) object: Hosted,
}

/// An operation on one entry of the store, by the entry's kind: the store answers an operation
/// of another kind than the entry's with a failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum EntryOp {
    Dict(DictOp),
    List(ListOp),
    Namespace(NamespaceOp),
    Value(ValueOp),
}

impl EntryOp {
    /// The kind of entry this operation applies to.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            EntryOp::Dict(_) => Kind::Dict,
            EntryOp::List(_) => Kind::List,
            EntryOp::Namespace(_) => Kind::Namespace,
            EntryOp::Value(_) => Kind::Value,
        }
    }
}

impl Kind {
    /// The kind's name in messages: "dict", "list", ...
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Namespace => "namespace",
            Kind::Value => "value",
        }
    }
}

/// An operation on a dict. Items named below are the request's or the answer's items; every
/// request's first item is the encoded key, except where said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum DictOp {
    /// Items `[key, value]`; answers the previous value, if any.
    Insert,
    /// Items `[key]`; answers the value, if any.
    Get,
    /// Items `[key]`; answers the removed value, if any.
    Remove,
    /// Items `[key]`; answers a `Flag`.
    ContainsKey,
    /// Answers every key.
    Keys,
    /// Answers every value, in key order.
    Values,
    /// Answers keys and values, alternating.
    Entries,
    /// Items `[key, value]...`: inserts them all at once.
    InsertMany,
    /// Items `[key]` or `[key, default]`: applies the registered worker `worker` to the value
    /// (first inserting `default` when the key is missing); answers the new value, or nothing
    /// when the key is missing and there is no default.
    Update {
        worker: String,
    },
    /// Answers the number of entries (a `Count`).
    Len,
    Clear,
}

/// An operation on a list; indexes are resolved on the server so that concurrent writers see
/// one order. Items named below are the request's or the answer's items.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ListOp {
    /// Items `[value]...`: appends them all; answers the new length (a `Count`).
    Push,
    /// Answers the removed last item, if any.
    Pop,
    /// Answers the item at `index`, if any.
    Get {
        index: u64,
    },
    /// Items `[value]`: replaces the item at `index`; an `InvalidState` failure when out of range.
    Set {
        index: u64,
    },
    /// Items `[value]`: inserts at `index` (clamped to the length, like Python's `insert`).
    Insert {
        index: u64,
    },
    /// Answers the removed item at `index`, if any.
    Remove {
        index: u64,
    },
    /// Applies the registered worker `worker` to the item at `index`; answers the new item,
    /// or nothing when `index` is out of range.
    Update {
        index: u64,
        worker: String,
    },
    Reverse,
    /// Answers the generation (8 bytes, little endian) followed by every item.
    Snapshot,
    /// Items: the new contents; applied only if nothing changed the list since `generation`.
    /// Answers a `Flag`.
    ReplaceIf {
        generation: u64,
    },
    /// Answers the number of items (a `Count`).
    Len,
    Clear,
}

/// An operation on a namespace; fields are named in the header, since names are short strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum NamespaceOp {
    /// Items `[value]`; answers the previous value, if any.
    Set { name: String },
    /// Answers the field's value, if it is set.
    Get { name: String },
    /// Answers the removed value, if the field was set.
    Remove { name: String },
    /// Items `[]` or `[default]`: as [`DictOp::Update`], for the field `name`.
    Update { name: String, worker: String },
    /// Answers the field names, each encoded as a `String`.
    Fields,
}

/// An operation on a value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ValueOp {
    /// Answers the value.
    Load,
    /// Items `[value]`: replaces it; answers the previous value.
    Replace,
    /// Applies the registered worker `worker` to the value; answers the new value.
    Update { worker: String },
}

impl From<DictOp> for EntryOp {
    fn from(op: DictOp) -> Self {
        EntryOp::Dict(op)
    }
}

impl From<ListOp> for EntryOp {
    fn from(op: ListOp) -> Self {
        EntryOp::List(op)
    }
}

impl From<NamespaceOp> for EntryOp {
    fn from(op: NamespaceOp) -> Self {
        EntryOp::Namespace(op)
    }
}

impl From<ValueOp> for EntryOp {
    fn from(op: ValueOp) -> Self {
        EntryOp::Value(op)
    }
}
