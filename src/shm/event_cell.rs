//! The flag of an [`Event`](crate::Event) in shared memory: `is_set`, and `set` or `clear`
//! with nobody waiting, are one atomic operation each.
//!
//! A waiter sets [`WAITERS`] before it parks at the event's hub; a `set` that finds the bit
//! rings the hub, which wakes every parked waiter.

use std::sync::atomic::{AtomicU64, Ordering};

use super::owner::WAITERS;
use super::segment::SharedPlain;

/// The flag's bit in the word.
const SET: u64 = 4;

/// An event's word: [`SET`] and [`WAITERS`].
#[repr(C)]
pub(crate) struct EventCell {
    word: AtomicU64,
}

// SAFETY: repr(C), made of atomics only.
unsafe impl SharedPlain for EventCell {}

impl EventCell {
    pub(crate) fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag; returns whether waiters must be woken.
    pub(crate) fn set(&self) -> bool {
        self.word.swap(SET, Ordering::AcqRel) & WAITERS != 0
    }

    pub(crate) fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::AcqRel);
    }

    /// Marks that a waiter will park. Returns the word a park should expect, or `None` if
    /// the flag is set (no need to wait).
    pub(crate) fn announce_waiter(&self) -> Option<u64> {
        let before = self.word.fetch_or(WAITERS, Ordering::AcqRel);
        (before & SET == 0).then_some(before | WAITERS)
    }
}
