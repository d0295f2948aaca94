//! Puts through shared memory: each process that puts to another process's unbounded queue
//! gets a ring (`shm/ring.rs`) that the queue's hub maps, so a `put` is a copy into shared
//! memory rather than a round trip, and the item is held (readable by the hub even if the
//! producer is killed the next instant) as soon as `put` returns.
//!
//! Both sides are here. The producer attaches its ring with one request, the first time it
//! puts to the queue; a hub that cannot map it (a manager across machines) or does not take
//! rings (a bounded queue, whose backpressure must count every item at the hub) refuses, and
//! the producer keeps putting by request. The hub reads every ring of a queue before it
//! applies any request to that queue, so every request sees every put that returned before it
//! was sent: `len`, `get`, `join` and `close` are ordered after those puts, and a put that
//! falls back to a request (the ring is full) comes after the puts that went through the ring.
//! When a getter waits, the hub arms the rings, and the next put rings the hub with a message
//! it does not wait for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::{self, Handle, Link};
use super::hub::{ConnId, Items};
use super::hub_name;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::hub::{Failure, Op, QueueOp};
use crate::protocol::{decode, encode};
use crate::shm::ring::{MAX_RECORD, Ring};
use crate::shm::segment::{Segment, SegmentHandle};

// ---------------------------------------------------------------------------------------------
// The hub side.

/// The rings of one queue, by the connection of the process that writes each.
#[derive(Default)]
pub(crate) struct Rings {
    rings: Vec<(ConnId, Ring)>,
}

impl Rings {
    /// Maps the ring whose handle is the payload's one item, for `conn`'s process.
    pub(crate) fn attach(
        &mut self,
        conn: ConnId,
        items: &Items,
    ) -> std::result::Result<(), Failure> {
        let [handle] = items.as_slice() else {
            return Err(Failure::Protocol(
                "a ring is attached with one handle".into(),
            ));
        };
        let handle: SegmentHandle = decode(handle, "a ring's handle")
            .map_err(|error| Failure::Protocol(error.to_string()))?;
        let segment =
            Segment::open(&handle).map_err(|error| Failure::InvalidState(error.to_string()))?;
        let ring = Ring::from_segment(segment)
            .ok_or_else(|| Failure::Protocol("a ring of the wrong size".into()))?;
        self.rings.push((conn, ring));
        Ok(())
    }

    /// Hands every record published in every ring to `admit`, in each ring's order. A ring
    /// whose writer broke its format is dropped.
    pub(crate) fn read(&mut self, mut admit: impl FnMut(Vec<u8>)) {
        if self.rings.is_empty() {
            return;
        }
        self.rings.retain(|(conn, ring)| match ring.pop_all() {
            Ok(records) => {
                records.into_iter().for_each(&mut admit);
                true
            }
            Err(_) => {
                tracing::warn!(target: "multiproc", "dropped the put ring of connection {conn}: it broke the ring's format");
                false
            }
        });
    }

    /// Arms every ring: a getter waits, so the next put must ring the hub.
    pub(crate) fn arm(&self) {
        for (_, ring) in &self.rings {
            ring.arm();
        }
    }

    /// Tells every writer that the queue is closed.
    pub(crate) fn close(&self) {
        for (_, ring) in &self.rings {
            ring.close();
        }
    }

    /// `conn`'s process is gone: its ring was read (the caller reads first) and is dropped.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        self.rings.retain(|(owner, _)| *owner != conn);
    }
}

// ---------------------------------------------------------------------------------------------
// The producer side.

/// This process's ring to one queue, or the queue's refusal of one.
#[derive(Debug)]
enum Producer {
    /// The ring, and the link whose closing says that the hub is gone.
    Ring(Mutex<Ring>, Link),
    Refused,
}

/// The rings of this process, by queue.
static PRODUCERS: Mutex<Option<HashMap<Handle, Arc<Producer>>>> = Mutex::new(None);

/// Puts `item` through this process's ring to the queue `handle`, attaching one first if
/// needed. `Ok(false)` when the item must take the usual path: the queue is in this process,
/// refused a ring, the ring is full, or the item is large.
///
/// # Errors
///
/// [`Closed`](ErrorKind::Closed) if the queue was closed.
pub(crate) async fn put(handle: &Handle, item: &[u8]) -> Result<bool> {
    let local = super::hub::Hub::running().is_some_and(|hub| hub.name() == handle.hub);
    // A manager over TCP may be on another machine, and its proxies' puts must fail once it
    // is gone: those always go by request.
    let tcp = hub_name::parse_hub_name(&handle.hub).is_some();
    if item.len() > MAX_RECORD || local || tcp {
        return Ok(false);
    }
    let producer = producer(handle).await?;
    let Producer::Ring(ring, link) = &*producer else {
        return Ok(false);
    };
    // A ring whose hub has died holds items nobody will read: fail as a request would.
    if let Some(error) = link.gone() {
        return Err(error);
    }
    let rung = {
        let ring = ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ring.is_closed() {
            return Err(Failure::Closed.into_error(&format!("queue {}", handle.object)));
        }
        if !ring.push(item) {
            return Ok(false);
        }
        ring.take_armed()
    };
    if rung {
        client::send_now(handle, Op::Queue(QueueOp::RingRung));
    }
    Ok(true)
}

/// This process's producer for `handle`, attaching a ring on first use.
async fn producer(handle: &Handle) -> Result<Arc<Producer>> {
    if let Some(producer) = PRODUCERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
        .and_then(|producers| producers.get(handle))
    {
        return Ok(producer.clone());
    }
    let producer = Arc::new(attach(handle).await?);
    let mut producers = PRODUCERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Two tasks may attach at once: keep the first, so every put of this process shares one
    // ring and one order.
    Ok(producers
        .get_or_insert_with(HashMap::new)
        .entry(handle.clone())
        .or_insert(producer)
        .clone())
}

async fn attach(handle: &Handle) -> Result<Producer> {
    let Ok(ring) = Ring::create() else {
        return Ok(Producer::Refused);
    };
    let items = vec![encode(&ring.segment().handle(), "a ring's handle")?];
    let link = client::link(handle).await?;
    let reply = client::call(handle, Op::Queue(QueueOp::AttachRing), items, None).await?;
    Ok(match reply.outcome {
        Ok(_) => Producer::Ring(Mutex::new(ring), link),
        Err(Failure::Closed) => {
            return Err(Error::new(
                ErrorKind::Closed,
                format!("queue {} is closed", handle.object),
            ));
        }
        Err(_) => Producer::Refused,
    })
}
