//! Children's `tracing` events, delivered to the parent's subscriber.
//!
//! After [`forward_tracing`](crate::forward_tracing), every child started (a
//! [`Process`](crate::Process), a pool's workers, a [`Manager`](crate::Manager)'s server)
//! installs, instead of any subscriber of its own, one that sends each event at the level
//! asked for and above over the connection the child already has to its parent. The parent
//! emits it again into its own subscriber, as it came (level, target, module, file, line and
//! every field), with two fields added: `process.name` (`"PoolWorker-2"`) and `process.pid`.
//! Its filters, formatting and exporters apply as to the parent's own events.
//!
//! An event the child emits while it runs a call is emitted in the parent as a child of the
//! span that was current where the call was made: a span entered (or `.instrument`ed) around
//! `pool.map(..).await` or `Process::start` is the parent of the events of that call, on
//! whichever worker it ran. Other events (between calls, or of a call whose span is gone)
//! have no parent. The child's own spans are not sent: only its events, under the caller's
//! span.
//!
//! A `tracing` event is described by static metadata (its call site), which a parent cannot
//! have for an event it receives as data: the first event of each call site of the child's is
//! given a call site here, built from what the child sent and kept for the life of the process,
//! as `tracing`'s own call sites are. Parent and child are the same binary, so there are no
//! more of them than the binary has call sites.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::field::{DisplayValue, Field, FieldSet, Value, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Span, Subscriber};
use tracing_core::callsite::{self, Callsite, Identifier};
use tracing_core::{Interest, Kind};

use super::{level_number, number_level};

/// The level children forward from: 0 when they do not.
static FORWARD: AtomicU8 = AtomicU8::new(0);

/// The fields the parent adds to a forwarded event.
pub(super) const PROCESS_NAME: &str = "process.name";
pub(super) const PROCESS_PID: &str = "process.pid";

/// `tracing`'s limit on the fields of one event, which a forwarded event keeps too.
const MAX_FIELDS: usize = 32;

/// Sends the `tracing` events of the child processes started afterwards, at `level` and above,
/// to this process's subscriber, whatever it is (`tracing-subscriber`'s `fmt`, a JSON
/// formatter, an OpenTelemetry exporter): each arrives with its own level, target and fields,
/// plus `process.name` and `process.pid`, and as a child of the span that was current where
/// its call was made (a span around `pool.map(..).await` holds the events of that map, on
/// every worker). A child that forwards prints nothing of its own, even after
/// [`log_to_stderr`](crate::log_to_stderr): the parent's subscriber decides.
///
/// `LevelFilter::OFF` stops forwarding for children started afterwards. A switch for the
/// whole process tree, as [`log_to_stderr`](crate::log_to_stderr) is: a child passes it on to
/// the children it starts, whose events reach it and, through it, this process.
///
/// # Examples
///
/// ```no_run
/// use std::future::IntoFuture;
/// use tracing::Instrument;
/// # #[multiproc::worker] fn square(x: u64) -> u64 { tracing::info!(x, "squaring"); x * x }
/// # async fn demo(pool: multiproc::Pool) -> multiproc::Result<()> {
/// tracing_subscriber::fmt().init();
/// multiproc::forward_tracing(tracing::Level::INFO);
/// // Started after the switch: its workers forward their events.
/// let pool = multiproc::Pool::builder().processes(2).build().await?;
/// // "squaring" events, with x, process.name and process.pid, inside the span "batch".
/// pool.map(square, 0..4u64)
///     .into_future()
///     .instrument(tracing::info_span!("batch", id = 7))
///     .await?;
/// # Ok(()) }
/// ```
pub fn forward_tracing(level: impl Into<LevelFilter>) {
    let number = match level.into().into_level() {
        Some(level) => level_number(level),
        None => 0,
    };
    FORWARD.store(number, Ordering::SeqCst);
}

/// The level children started now forward from, for their bootstrap: 0 when they do not.
pub(crate) fn forwarded_level() -> u8 {
    FORWARD.load(Ordering::SeqCst)
}

/// The span a call made now belongs to, kept with the call so that the child's events of
/// that call are emitted under it; `None` (nothing kept) when children do not forward.
pub(crate) fn call_span() -> Option<Span> {
    (forwarded_level() != 0).then(Span::current)
}

/// One event of a child, as it travels to the parent in a
/// [`FromChild::Event`](crate::protocol::FromChild).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ForwardedEvent {
    site: Site,
    fields: Vec<(String, FieldValue)>,
}

/// The metadata of the child's call site an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Site {
    level: u8,
    name: String,
    target: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

/// A field's value, as the child's subscriber was given it.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum FieldValue {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
    /// Anything else (the message among them), formatted with `Debug` in the child.
    Debug(String),
}

// ===== the child's side =====

/// In a child whose parent asked for its events (`level` is the bootstrap's number), installs
/// the subscriber that hands them to `send`; returns `false` if the parent did not ask.
pub(crate) fn forward_from_child(
    level: u8,
    send: impl Fn(ForwardedEvent) + Send + Sync + 'static,
) -> bool {
    let Some(level) = number_level(level) else {
        return false;
    };
    FORWARD.store(level_number(level), Ordering::SeqCst);
    let subscriber = Forwarder {
        level,
        send: Box::new(send),
        next_span: AtomicU64::new(1),
    };
    let _ = tracing::subscriber::set_global_default(subscriber);
    true
}

/// The subscriber of a child that forwards its events.
struct Forwarder {
    level: Level,
    send: Box<dyn Fn(ForwardedEvent) + Send + Sync>,
    /// Spans are not forwarded, but each needs an id of its own.
    next_span: AtomicU64,
}

thread_local! {
    /// Set while this thread forwards an event: an event emitted on the way (by the
    /// transport) is dropped rather than forwarded in a loop.
    static FORWARDING: Cell<bool> = const { Cell::new(false) };
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.level))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if FORWARDING.with(|forwarding| forwarding.replace(true)) {
            return;
        }
        let metadata = event.metadata();
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        (self.send)(ForwardedEvent {
            site: Site {
                level: level_number(*metadata.level()),
                name: metadata.name().to_string(),
                target: metadata.target().to_string(),
                module_path: metadata.module_path().map(str::to_string),
                file: metadata.file().map(str::to_string),
                line: metadata.line(),
            },
            fields: fields.0,
        });
        FORWARDING.with(|forwarding| forwarding.set(false));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Collects an event's fields as values that can travel.
struct Fields(Vec<(String, FieldValue)>);

impl Fields {
    fn push(&mut self, field: &Field, value: FieldValue) {
        self.0.push((field.name().to_string(), value));
    }
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Str(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Debug(format!("{value:?}")));
    }
}

// ===== the parent's side =====

/// Emits `event`, forwarded by the child `process` (pid `pid`), into this process's
/// subscriber, as a child of `parent` if given.
pub(crate) fn emit_forwarded(
    event: ForwardedEvent,
    process: &str,
    pid: u32,
    parent: Option<&Span>,
) {
    let Some(level) = number_level(event.site.level) else {
        return;
    };
    // A grandchild's event, forwarded on by a child, names the grandchild already.
    let named = event.fields.iter().any(|(name, _)| name == PROCESS_NAME);
    // Room is kept for the process fields: the event's last fields give way if need be.
    let room = if named { MAX_FIELDS } else { MAX_FIELDS - 2 };
    let mut values: Vec<(&str, Prepared<'_>)> = event
        .fields
        .iter()
        .take(room)
        .map(|(name, value)| (name.as_str(), Prepared::from(value)))
        .collect();
    if !named {
        values.push((PROCESS_NAME, Prepared::Str(process)));
        values.push((PROCESS_PID, Prepared::U64(u64::from(pid))));
    }
    let metadata = call_site(&event, level, &values);
    if !tracing::dispatcher::get_default(|dispatch| dispatch.enabled(metadata)) {
        return;
    }
    let fields: Vec<Field> = metadata.fields().iter().collect();
    let entries: [(&Field, Option<&dyn Value>); MAX_FIELDS] = std::array::from_fn(|index| {
        match (fields.get(index), values.get(index)) {
            (Some(field), Some((_, value))) => (field, Some(value.as_value())),
            // Padding: an entry without a value records nothing.
            _ => (&fields[0], None),
        }
    });
    let value_set = metadata.fields().value_set(&entries);
    Event::child_of(parent.and_then(Span::id), metadata, &value_set);
}

/// A field's value ready to be recorded in the parent.
enum Prepared<'a> {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(&'a str),
    /// Already formatted with `Debug` in the child: shown as it was there.
    Display(DisplayValue<&'a str>),
}

impl<'a> From<&'a FieldValue> for Prepared<'a> {
    fn from(value: &'a FieldValue) -> Self {
        match value {
            FieldValue::I64(value) => Prepared::I64(*value),
            FieldValue::U64(value) => Prepared::U64(*value),
            FieldValue::F64(value) => Prepared::F64(*value),
            FieldValue::Bool(value) => Prepared::Bool(*value),
            FieldValue::Str(value) => Prepared::Str(value),
            FieldValue::Debug(value) => Prepared::Display(tracing::field::display(value.as_str())),
        }
    }
}

impl Prepared<'_> {
    fn as_value(&self) -> &dyn Value {
        match self {
            Prepared::I64(value) => value,
            Prepared::U64(value) => value,
            Prepared::F64(value) => value,
            Prepared::Bool(value) => value,
            Prepared::Str(value) => value,
            Prepared::Display(value) => value,
        }
    }
}

/// What makes two forwarded events share a call site: the child's, and the field names.
type SiteKey = (Site, Vec<String>);

/// A call site built in the parent for events forwarded from a child's call site.
struct ForwardedSite {
    metadata: OnceLock<Metadata<'static>>,
}

impl Callsite for ForwardedSite {
    // Interest is not cached: every forwarded event asks the subscriber.
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.metadata
            .get()
            .expect("a call site is built before it is registered")
    }
}

/// The call site of `event`'s kind, with these field names, built on first use.
fn call_site(
    event: &ForwardedEvent,
    level: Level,
    values: &[(&str, Prepared<'_>)],
) -> &'static Metadata<'static> {
    static SITES: OnceLock<Mutex<HashMap<SiteKey, &'static ForwardedSite>>> = OnceLock::new();
    let key: SiteKey = (
        event.site.clone(),
        values.iter().map(|(name, _)| name.to_string()).collect(),
    );
    let mut sites = SITES
        .get_or_init(Mutex::default)
        .lock()
        .expect("call sites lock");
    if let Some(site) = sites.get(&key) {
        return site.metadata.get().expect("built");
    }
    let site: &'static ForwardedSite = Box::leak(Box::new(ForwardedSite {
        metadata: OnceLock::new(),
    }));
    let (child_site, field_names) = &key;
    let names: Vec<&'static str> = field_names.iter().map(|name| leak(name)).collect();
    let metadata = Metadata::new(
        leak(&child_site.name),
        leak(&child_site.target),
        level,
        child_site.file.as_deref().map(leak),
        child_site.line,
        child_site.module_path.as_deref().map(leak),
        FieldSet::new(Box::leak(names.into_boxed_slice()), Identifier(site)),
        Kind::EVENT,
    );
    let _ = site.metadata.set(metadata);
    sites.insert(key, site);
    drop(sites);
    // Registered after the lock is released: registering asks every subscriber about it.
    callsite::register(site);
    site.metadata.get().expect("built")
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}
