//! The state of a [`Condition`](crate::Condition) built on a lock in shared memory: who sleeps
//! and how many of them were notified.
//!
//! A waiter registers as a sleeper while it still holds the lock, then releases the lock and
//! waits for a ticket. `notify(n)` (under the lock) turns up to `n` sleepers into tickets and
//! bumps the generation in the word, so a waiter parked at the hub with the old word is woken
//! and one that was about to park does not. Any sleeper may take any ticket: Python only
//! promises that `notify(n)` wakes up to `n` of the threads waiting, not which ones. A waiter
//! that gives up (its timeout) takes itself off the sleepers, or takes a ticket if it was
//! already notified.

use std::sync::atomic::{AtomicU64, Ordering};

use super::owner::WAITERS;
use super::segment::SharedPlain;

/// The generation counts from this bit of the word up.
const GENERATION: u64 = 4;

#[repr(C)]
pub(crate) struct ConditionCell {
    /// The generation and [`WAITERS`].
    word: AtomicU64,
    sleepers: AtomicU64,
    tickets: AtomicU64,
}

// SAFETY: repr(C), made of atomics only.
unsafe impl SharedPlain for ConditionCell {}

impl ConditionCell {
    /// A waiter that holds the lock registers before releasing it.
    pub(crate) fn register(&self) {
        self.sleepers.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes a ticket if a notify left one.
    pub(crate) fn take_ticket(&self) -> bool {
        self.tickets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1))
            .is_ok()
    }

    /// Marks that a waiter will park; returns the word the park should expect.
    pub(crate) fn announce_waiter(&self) -> u64 {
        self.word.fetch_or(WAITERS, Ordering::AcqRel) | WAITERS
    }

    /// A waiter whose time ran out: off the sleepers, or, if it was already notified, takes
    /// its ticket. Returns whether it was notified.
    pub(crate) fn give_up(&self) -> bool {
        let unregistered = self
            .sleepers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1))
            .is_ok();
        !unregistered && self.take_ticket()
    }

    /// Notifies up to `n` sleepers. Returns whether parked waiters must be woken.
    pub(crate) fn notify(&self, n: u64) -> bool {
        let Ok(before) = self
            .sleepers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s > 0).then(|| s - s.min(n))
            })
        else {
            return false;
        };
        self.tickets.fetch_add(before.min(n), Ordering::AcqRel);
        let word = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some((w + GENERATION) & !WAITERS)
            })
            .expect("always updated");
        word & WAITERS != 0
    }
}
