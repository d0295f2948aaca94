//! Capturing panics in a child, so the caller gets the message, the location and, when
//! `RUST_BACKTRACE` is set in the child, the backtrace.
//!
//! The panic hook runs before unwinding starts and is the only place that sees the location
//! and the stack; it records them in a thread-local that the dispatcher reads after
//! `catch_unwind`.
//!
//! The backtrace is captured with [`Backtrace::capture`], so it follows the variables std's
//! own hook follows (`RUST_LIB_BACKTRACE`, then `RUST_BACKTRACE`); a child inherits them from
//! its parent's environment. As std's hook does by default, it is cut to the frames that
//! matter: from the panic (after the panic machinery) down to the user's function (before
//! multiproc's dispatcher that called it). With `RUST_BACKTRACE=full`, every frame is kept.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::PanicInfo;

thread_local! {
    static LAST_PANIC: RefCell<Option<PanicInfo>> = const { RefCell::new(None) };
    /// How many panics of worker calls this thread has caught, so that a serving child can
    /// tell its parent how many items of a batch failed (see [`caught`]).
    static CAUGHT: Cell<u64> = const { Cell::new(0) };
}

/// Whether the hook also prints panics to stderr: a [`Process`](crate::Process) does, as
/// Python prints the traceback of a failed `run()`; a pool worker hands them to the caller.
static PRINT: AtomicBool = AtomicBool::new(false);

/// Installs the recording hook. Called once in every child.
pub(crate) fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let panic = PanicInfo::new(
            payload_message(info.payload()),
            info.location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
            capture_backtrace(),
        );
        if PRINT.load(Ordering::Relaxed) {
            print(&panic);
        }
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(panic));
    }));
}

/// Prints a panic to stderr the way std's hook does, naming the process.
fn print(panic: &PanicInfo) {
    let name = &panic.process;
    let message = &panic.message;
    let backtrace = panic.backtrace_section();
    match &panic.location {
        Some(location) => {
            eprintln!("Process {name}: panicked at {location}:\n{message}{backtrace}");
        }
        None => eprintln!("Process {name}: panicked:\n{message}{backtrace}"),
    }
}

pub(crate) fn set_printing(print: bool) {
    PRINT.store(print, Ordering::Relaxed);
}

/// The panic just caught on this thread, with what the hook saw of it.
pub(crate) fn take(payload: Box<dyn Any + Send>) -> PanicInfo {
    CAUGHT.with(|caught| caught.set(caught.get() + 1));
    LAST_PANIC
        .with(|last| last.borrow_mut().take())
        .unwrap_or_else(|| PanicInfo::new(payload_message(&*payload), None, None))
}

/// How many panics [`take`] has handed over on this thread: the difference across a call is
/// the number of its items that panicked.
pub(crate) fn caught() -> u64 {
    CAUGHT.with(Cell::get)
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message.to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// The stack of the panicking thread, if the environment asks for backtraces.
fn capture_backtrace() -> Option<String> {
    let backtrace = Backtrace::capture();
    if backtrace.status() != BacktraceStatus::Captured {
        return None;
    }
    let full = std::env::var("RUST_LIB_BACKTRACE")
        .or_else(|_| std::env::var("RUST_BACKTRACE"))
        .is_ok_and(|value| value == "full");
    let text = backtrace.to_string();
    Some(if full { text } else { shorten(&text) })
}

/// The frames of a printed [`Backtrace`] between the panic machinery and multiproc's
/// dispatcher, numbered from 0. The text is left whole if it does not have the expected shape.
fn shorten(backtrace: &str) -> String {
    let frames = split_frames(backtrace);
    // std marks where its panic machinery ends, as its own hook relies on.
    let start = frames
        .iter()
        .rposition(|frame| frame.symbol.contains("__rust_end_short_backtrace"))
        .map_or(0, |marker| marker + 1);
    let end = frames[start..]
        .iter()
        .position(|frame| is_dispatcher(frame.symbol))
        .map_or(frames.len(), |end| start + end);
    if start >= end {
        return backtrace.to_string();
    }
    let mut short = String::new();
    for (number, frame) in frames[start..end].iter().enumerate() {
        short.push_str(&format!("{number:>4}: {}\n", frame.symbol));
        for line in &frame.rest {
            short.push_str(line);
            short.push('\n');
        }
    }
    short
}

/// Where multiproc calls the user's function: the frames below it are the crate's and the
/// runtime's.
fn is_dispatcher(symbol: &str) -> bool {
    symbol.contains("multiproc::worker::")
        || symbol.contains("multiproc::registry::")
        || symbol.contains("__rust_begin_short_backtrace")
}

/// One frame of a printed backtrace: `   N: symbol`, then its `at file:line` lines.
struct Frame<'a> {
    symbol: &'a str,
    rest: Vec<&'a str>,
}

fn split_frames(backtrace: &str) -> Vec<Frame<'_>> {
    let mut frames: Vec<Frame<'_>> = Vec::new();
    for line in backtrace.lines() {
        let header = line.trim_start().split_once(": ").filter(|(number, _)| {
            !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit())
        });
        match (header, frames.last_mut()) {
            (Some((_, symbol)), _) => frames.push(Frame {
                symbol,
                rest: Vec::new(),
            }),
            (None, Some(frame)) => frame.rest.push(line),
            (None, None) => {}
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = "   0: multiproc::panic::install_hook::{{closure}}
             at ./src/panic.rs:30:5
   1: std::panicking::begin_panic::<&str>::{closure#0}
   2: std::sys::backtrace::__rust_end_short_backtrace::<_, !>
             at /rustc/library/std/src/sys/backtrace.rs:182:18
   3: rust_begin_unwind
   4: app::inner
             at ./src/main.rs:1:14
   5: app::outer
             at ./src/main.rs:4:5
   6: <F as multiproc::worker::Worker<_>>::invoke
   7: std::rt::lang_start
";

    #[test]
    fn a_backtrace_is_cut_to_the_frames_between_the_panic_and_the_dispatcher() {
        let short = shorten(PRINTED);
        assert_eq!(
            short,
            "   0: rust_begin_unwind
   1: app::inner
             at ./src/main.rs:1:14
   2: app::outer
             at ./src/main.rs:4:5
"
        );
    }

    #[test]
    fn a_backtrace_of_an_unknown_shape_is_left_whole() {
        assert_eq!(shorten("no frames here"), "no frames here");
    }
}
