//! [`Needs`]: what a task needs of the node that runs it, labels and resources, and how a
//! need becomes a route on the server.
//!
//! A node declares what it offers ([`NodeBuilder::labels`](super::NodeBuilder::labels),
//! [`NodeBuilder::resource`](super::NodeBuilder::resource)); a pool
//! ([`RemotePoolBuilder::requires`](super::RemotePoolBuilder::requires)) or a single call
//! ([`Apply::needs`](crate::pool::Apply::needs)) says what it needs. As in Ray:
//!
//! - a **label** is a fact about a node (`"gpu"`, `"eu-west"`, `"ssd"`): a task needing it runs
//!   only on a node that has it, however many of its tasks run there at once;
//! - a **resource** is a quantity a node has (`gpu: 2`, `licence: 1`): a task needing an amount
//!   runs only where that amount is *free*, and holds it while it runs, so a node with
//!   `resource("gpu", 1)` runs one such task at a time whatever its number of slots. Amounts
//!   are whole numbers (Ray's fractional amounts are not supported).
//!
//! # Routes
//!
//! Tasks without needs go to the build's subject, `mp.<namespace>.task.<fingerprint>`, as
//! ever. Tasks with needs go to a subject of their own, one per distinct set of needs,
//! `mp.<namespace>.task.<fingerprint>.<route>` where `<route>` spells the needs
//! (`gpu+cuda12+gpu=1`: labels, then `name=amount` resources, each sorted). The pool creates
//! a durable consumer for a route the first time it uses it (with the settings of the build's
//! own consumer); each node lists the routes every second and pulls only from those it can
//! serve, so a task is never even delivered to a node that cannot run it. A need that no live
//! node can ever serve (no node has the label, or every node has less of the resource than
//! asked) fails at once with an [`Infeasible`](crate::ErrorKind::Infeasible) error; a need
//! whose nodes are merely busy waits its turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pool::Needs;

use super::Names;

/// How long a pull request waits for a task when the node serves more than one route: a slot
/// waiting on one route is not waiting on the others, so it turns to the next one soon.
const ROUTE_PULL_EXPIRES: Duration = Duration::from_millis(500);

/// What a node offers to tasks' needs, and the routes it pulls from: the build's own
/// consumer, and the consumers of the routes whose needs it can serve.
pub(crate) struct Offer {
    labels: Vec<String>,
    resources: Vec<(String, u64)>,
    /// The amount of each resource not held by a running task.
    free: HashMap<String, Arc<Semaphore>>,
    default: PullConsumer,
    /// The routes it serves, by consumer name, as last listed.
    routes: Mutex<Vec<(String, Needs, PullConsumer)>>,
    /// Where the next slot starts looking, so that slots take the routes in turn.
    next: AtomicUsize,
}

/// A route a slot pulls its next task from, with the resources its task will hold.
pub(crate) struct Pick {
    pub(crate) consumer: PullConsumer,
    pub(crate) expires: Duration,
    _held: Vec<OwnedSemaphorePermit>,
}

impl Offer {
    pub(crate) fn new(
        labels: Vec<String>,
        resources: Vec<(String, u64)>,
        default: PullConsumer,
    ) -> Offer {
        let free = resources
            .iter()
            .map(|(name, amount)| {
                (
                    name.clone(),
                    Arc::new(Semaphore::new(permits(*amount) as usize)),
                )
            })
            .collect();
        Offer {
            labels,
            resources,
            free,
            default,
            routes: Mutex::default(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next route, in turn, whose resources are free now; the build's own route needs
    /// none, so there always is one. A single route is pulled with `expires`.
    pub(crate) fn pick(&self, expires: Duration) -> Pick {
        let routes = self.routes.lock().expect("routes lock");
        let count = routes.len() + 1;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for turn in 0..count {
            let Some((_, needs, consumer)) = routes.get((start + turn) % count) else {
                break; // the build's own route, last of the turn
            };
            if let Some(held) = self.hold(needs) {
                return Pick {
                    consumer: consumer.clone(),
                    expires: ROUTE_PULL_EXPIRES,
                    _held: held,
                };
            }
        }
        Pick {
            consumer: self.default.clone(),
            expires: if routes.is_empty() {
                expires
            } else {
                ROUTE_PULL_EXPIRES
            },
            _held: Vec::new(),
        }
    }

    /// The resources `needs` asks for, taken from the free amounts; `None` if some are not
    /// free.
    fn hold(&self, needs: &Needs) -> Option<Vec<OwnedSemaphorePermit>> {
        needs
            .resources()
            .map(|(name, amount)| {
                self.free
                    .get(name)?
                    .clone()
                    .try_acquire_many_owned(permits(amount))
                    .ok()
            })
            .collect()
    }

    /// Lists the routes of the build's tasks (the consumers the pools created) and keeps
    /// those this node can serve. A failure keeps the previous list.
    pub(crate) async fn refresh(
        &self,
        stream: &jetstream::stream::Stream,
        names: &Names,
        fingerprint: &str,
    ) {
        let prefix = format!("{}.", names.task_subject(fingerprint));
        let mut listed = stream.consumers();
        let mut routes = Vec::new();
        while let Some(info) = listed.next().await {
            let info = match info {
                Ok(info) => info,
                Err(error) => {
                    tracing::debug!(%error, "multiproc node: listing the routes failed");
                    return;
                }
            };
            let Some(needs) = info
                .config
                .filter_subject
                .strip_prefix(&prefix)
                .and_then(Needs::parse_route)
            else {
                continue;
            };
            if !needs.satisfied_by(&self.labels, &self.resources) {
                continue;
            }
            let known = self
                .routes
                .lock()
                .expect("routes lock")
                .iter()
                .find(|(name, ..)| *name == info.name)
                .map(|(_, _, consumer)| consumer.clone());
            let consumer = match known {
                Some(consumer) => consumer,
                None => match stream
                    .get_consumer::<jetstream::consumer::pull::Config>(&info.name)
                    .await
                {
                    Ok(consumer) => consumer,
                    Err(error) => {
                        tracing::debug!(%error, "multiproc node: opening a route failed");
                        continue;
                    }
                },
            };
            routes.push((info.name, needs, consumer));
        }
        *self.routes.lock().expect("routes lock") = routes;
    }
}

/// A resource amount as semaphore permits.
fn permits(amount: u64) -> u32 {
    u32::try_from(amount).unwrap_or(u32::MAX)
}
