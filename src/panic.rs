//! Capturing panics in a child, so the caller gets the message and the location.
//!
//! The panic hook runs before unwinding starts and is the only place that sees the location;
//! it records both in a thread-local that the dispatcher reads after `catch_unwind`.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::PanicInfo;

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// Whether the hook also prints panics to stderr: a [`Process`](crate::Process) does, as
/// Python prints the traceback of a failed `run()`; a pool worker hands them to the caller.
static PRINT: AtomicBool = AtomicBool::new(false);

/// Installs the recording hook. Called once in every child.
pub(crate) fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = payload_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        if PRINT.load(Ordering::Relaxed) {
            let name = crate::current::current_process().name;
            match &location {
                Some(location) => eprintln!("Process {name}: panicked at {location}:\n{message}"),
                None => eprintln!("Process {name}: panicked:\n{message}"),
            }
        }
        LAST_PANIC.with(|last| *last.borrow_mut() = Some((message, location)));
    }));
}

pub(crate) fn set_printing(print: bool) {
    PRINT.store(print, Ordering::Relaxed);
}

/// The panic just caught on this thread, with what the hook saw of it.
pub(crate) fn take(payload: Box<dyn Any + Send>) -> PanicInfo {
    let (message, location) = LAST_PANIC
        .with(|last| last.borrow_mut().take())
        .unwrap_or_else(|| (payload_message(&*payload), None));
    PanicInfo {
        message,
        location,
        process: crate::current::current_process().name,
    }
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
