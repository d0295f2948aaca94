//! `forward_tracing`: a child's `tracing` events reach the parent's subscriber, with the
//! child's name and pid, under the span of the call that ran, from pool workers and from a
//! `Process`.

use std::collections::HashMap;
use std::fmt;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};

use multiproc::{Pool, Process, worker};
use tracing::field::{Field, Visit};
use tracing::{Event, Instrument, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

multiproc::test_support!();

mod common;
use common::within;

#[worker]
fn square_and_tell(x: u64) -> u64 {
    tracing::debug!(x, "below the forwarded level");
    tracing::info!(x, squared = x * x, odd = x % 2 == 1, "squaring");
    x * x
}

#[worker]
fn greet(name: String) {
    tracing::warn!(who = name.as_str(), "hello from a process");
}

/// An event as the parent's subscriber saw it.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    fields: HashMap<String, String>,
    /// The name of the span the event belongs to.
    span: Option<String>,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// A layer that keeps every event it sees.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl Capture {
    /// Installs the capture as this thread's subscriber (the test's runtime, whose tasks read
    /// the children's replies, runs on this thread) until the guard is dropped.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    /// The events whose message is `message`.
    fn with_message(&self, message: &str) -> Vec<Seen> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|event| event.field("message") == message)
            .cloned()
            .collect()
    }
}

struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut fields = Fields(HashMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields: fields.0,
            span: context
                .event_span(event)
                .map(|span| span.name().to_string()),
        });
    }
}

#[tokio::test]
async fn a_pool_workers_events_reach_the_parent_under_the_span_of_the_map() {
    multiproc::forward_tracing(Level::INFO);
    let capture = Capture::default();
    let _guard = capture.install();
    let pool = within(Pool::builder().processes(2).build()).await.unwrap();
    let squares = within(
        pool.map(square_and_tell, 0..6u64)
            .chunksize(1)
            .into_future()
            .instrument(tracing::info_span!("squaring_batch")),
    )
    .await
    .unwrap();
    assert_eq!(squares, [0, 1, 4, 9, 16, 25]);

    // Each event went ahead of its call's reply: all are here once the map returned.
    let seen = capture.with_message("squaring");
    assert_eq!(seen.len(), 6, "{seen:#?}");
    let pids = pool.pids();
    let mut xs: Vec<u64> = Vec::new();
    for event in &seen {
        assert_eq!(event.level, Level::INFO);
        assert_eq!(event.target, "tracing_forward");
        assert_eq!(event.span.as_deref(), Some("squaring_batch"), "{event:?}");
        assert!(
            event.field("process.name").starts_with("PoolWorker-"),
            "{event:?}"
        );
        let pid: u32 = event.field("process.pid").parse().unwrap();
        assert!(pids.contains(&pid), "{event:?} not from {pids:?}");
        let x: u64 = event.field("x").parse().unwrap();
        assert_eq!(event.field("squared"), (x * x).to_string());
        assert_eq!(event.field("odd"), (x % 2 == 1).to_string());
        xs.push(x);
    }
    xs.sort_unstable();
    assert_eq!(xs, [0, 1, 2, 3, 4, 5]);
    assert!(
        capture.with_message("below the forwarded level").is_empty(),
        "a DEBUG event was forwarded from an INFO switch"
    );
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_process_events_name_it_and_belong_to_the_span_it_was_started_in() {
    multiproc::forward_tracing(Level::INFO);
    let capture = Capture::default();
    let _guard = capture.install();
    let process = within(
        Process::new(greet, ("parent".to_string(),))
            .start()
            .instrument(tracing::info_span!("greeting")),
    )
    .await
    .unwrap();
    within(process.join()).await.unwrap();

    let seen = capture.with_message("hello from a process");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let event = &seen[0];
    assert_eq!(event.level, Level::WARN);
    assert_eq!(event.field("who"), "parent");
    assert_eq!(event.field("process.name"), process.name());
    assert_eq!(event.field("process.pid"), process.pid().to_string());
    assert_eq!(event.span.as_deref(), Some("greeting"), "{event:?}");
    // The crate's own lifecycle events come along, under the same span.
    let lifecycle = capture.with_message("child process calling run()");
    assert_eq!(lifecycle.len(), 1, "{lifecycle:#?}");
    assert_eq!(lifecycle[0].target, "multiproc");
}
