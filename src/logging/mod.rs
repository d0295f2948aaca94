//! Lifecycle logging in Python's format, `[INFO/Process-1] child process calling run()`.
//!
//! The crate reports through [`tracing`] under the target `multiproc`, and prints nothing
//! unless asked. [`log_to_stderr`] installs a subscriber that prints every event (the crate's
//! and the application's) at or above a level, prefixed with the level and the name of the
//! process that emitted it. Children started afterwards inherit the level, so their events
//! reach the same stderr in the same format.
//!
//! ```text
//! [INFO/Process-1] child process calling run()
//! [INFO/Process-1] process exiting with exitcode 0
//! [INFO/MainProcess] process shutting down
//! ```
//!
//! Levels are printed under Python's names: `ERROR`, `WARNING`, `INFO`, `DEBUG`, and
//! `SUBDEBUG` for `tracing`'s `TRACE` (the level `multiprocessing` adds below `DEBUG`, for
//! the same kind of detail). `tracing` has nothing above `ERROR`, so `CRITICAL` never appears.
//!
//! A service with a subscriber of its own (JSON lines, an OpenTelemetry exporter) asks for
//! [`forward_tracing`] instead: children then send their events over their connection to the
//! parent, which emits them into its subscriber with the child's name and pid as fields and
//! under the caller's span (see [`forward`]). Both switches go down the whole process tree;
//! with both, children forward, and `log_to_stderr`'s subscriber in the parent prints their
//! events under their own names.

mod forward;

#[cfg(feature = "log-to-stderr")]
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::Level;
#[cfg(feature = "log-to-stderr")]
use tracing::{Event, Subscriber};
#[cfg(feature = "log-to-stderr")]
use tracing_subscriber::fmt::format::Writer;
#[cfg(feature = "log-to-stderr")]
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
#[cfg(feature = "log-to-stderr")]
use tracing_subscriber::registry::LookupSpan;

pub use forward::forward_tracing;
pub(crate) use forward::{
    ForwardedEvent, call_span, emit_forwarded, forward_from_child, forwarded_level,
};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Prints `multiproc`'s lifecycle events and the application's `tracing` events at `level`
/// and above to stderr, as `[LEVEL/ProcessName] message` with Python's level names
/// (`WARNING`, not `WARN`; `SUBDEBUG` for `TRACE`). Processes started afterwards do the same.
///
/// Installs a global `tracing` subscriber; if the application already installed one, that one
/// stays and receives the events instead. Calling it again changes nothing.
///
/// # Examples
///
/// ```no_run
/// multiproc::log_to_stderr(tracing::Level::INFO);
/// tracing::info!("visible as [INFO/MainProcess] ...");
/// ```
#[cfg(feature = "log-to-stderr")]
#[cfg_attr(docsrs, doc(cfg(feature = "log-to-stderr")))]
pub fn log_to_stderr(level: Level) {
    if LEVEL
        .compare_exchange(0, level_number(level), Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .event_format(ProcessFormat)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
}

/// The level children inherit: 0 when logging is off.
pub(crate) fn inherited_level() -> u8 {
    LEVEL.load(Ordering::SeqCst)
}

/// The name Python's `logging` gives `level`.
fn python_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "SUBDEBUG",
    }
}

/// Applies the level a child inherited from its parent.
#[cfg_attr(not(feature = "log-to-stderr"), allow(unused_variables))]
pub(crate) fn inherit(level: u8) {
    #[cfg(feature = "log-to-stderr")]
    if let Some(level) = number_level(level) {
        log_to_stderr(level);
    }
}

/// Logs at INFO from the exit hook, where `tracing`'s thread-locals may already be gone: the
/// line is formatted here and written straight to file descriptor 2.
pub(crate) fn info_at_exit(message: &str) {
    if inherited_level() >= level_number(Level::INFO) {
        let line = format!(
            "[{}/{}] {message}\n",
            python_name(Level::INFO),
            crate::current::this().name
        );
        // SAFETY: writes a valid buffer of the given length to stderr.
        unsafe {
            libc::write(2, line.as_ptr().cast(), line.len());
        }
    }
}

fn level_number(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn number_level(number: u8) -> Option<Level> {
    Some(match number {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        5 => Level::TRACE,
        _ => return None,
    })
}

#[cfg(feature = "log-to-stderr")]
struct ProcessFormat;

#[cfg(feature = "log-to-stderr")]
impl<S, N> FormatEvent<S, N> for ProcessFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut forwarded = Forwarded::default();
        event.record(&mut forwarded);
        let Some(name) = forwarded.process else {
            write!(
                writer,
                "[{}/{}] ",
                python_name(*event.metadata().level()),
                crate::current::this().name
            )?;
            ctx.field_format().format_fields(writer.by_ref(), event)?;
            return writeln!(writer);
        };
        // A child's event, forwarded: under the child's name, which its fields need not repeat.
        let level = python_name(*event.metadata().level());
        writeln!(writer, "[{level}/{name}] {}", forwarded.fields.trim_start())
    }
}

/// An event forwarded from a child, as [`ProcessFormat`] prints it: the child's name (from
/// `process.name`; `None` for an event of this process), then the message and the other fields
/// as `tracing-subscriber` prints them, without `process.name` and `process.pid`.
#[cfg(feature = "log-to-stderr")]
#[derive(Default)]
struct Forwarded {
    process: Option<String>,
    fields: String,
}

#[cfg(feature = "log-to-stderr")]
impl tracing::field::Visit for Forwarded {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == forward::PROCESS_NAME {
            self.process = Some(value.to_string());
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        let _ = match field.name() {
            "message" => write!(self.fields, " {value:?}"),
            forward::PROCESS_PID => Ok(()),
            name => write!(self.fields, " {name}={value:?}"),
        };
    }
}
