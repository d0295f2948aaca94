//! The state of a [`Semaphore`](crate::Semaphore) in shared memory: its free permits, and
//! who holds the others, so that the permits of a process that dies come back.
//!
//! Taking a free permit or giving one back is a compare-and-swap on the word plus an add to
//! the taker's entry in a small table of holders; no system call, no message. A waiter parks
//! at the semaphore's hub after setting [`WAITERS`], and a release that finds the bit rings
//! the hub. A waiter that has waited a slice looks through the table for holders that died
//! (pid and start time, as locks do) and puts their permits back, marking [`OWNER_DIED`] so
//! that the next taker is told.
//!
//! The table has [`HOLDERS`] entries. Beyond that many processes holding permits at once, a
//! further holder's permits are taken untracked: if it dies holding them, they are not given
//! back. A process killed between taking a permit and counting it in its entry (two
//! instructions apart) loses that one permit the same way.

use std::sync::atomic::{AtomicU64, Ordering};

use super::owner::{self, OWNER_DIED, WAITERS};
use super::segment::SharedPlain;

/// How many processes can hold permits at once with their death detected.
pub(crate) const HOLDERS: usize = 14;

/// The permits are counted from this bit of the word up.
const VALUE_SHIFT: u32 = 2;
const ONE: u64 = 1 << VALUE_SHIFT;

/// An entry claimed by a process that is putting a dead holder's permits back.
const RECOVERING: u64 = u64::MAX;

#[repr(C)]
struct HolderEntry {
    /// The holder ([`owner::me`] of its process), 0 if the entry is free.
    holder: AtomicU64,
    /// How many permits it holds.
    count: AtomicU64,
}

/// A semaphore's word, bound and table of holders.
#[repr(C)]
pub(crate) struct SemaphoreCell {
    /// The free permits (from [`VALUE_SHIFT`] up), [`WAITERS`] and [`OWNER_DIED`].
    word: AtomicU64,
    /// 1 + the bound of a bounded semaphore; 0 for an unbounded one.
    bound: AtomicU64,
    holders: [HolderEntry; HOLDERS],
}

// SAFETY: repr(C), made of atomics only.
unsafe impl SharedPlain for SemaphoreCell {}

/// What a try to take a permit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Taken; `owner_died` if permits of a dead holder came back since the last taker.
    Taken { owner_died: bool },
    /// None free: the word as it was seen.
    Empty(u64),
}

impl SemaphoreCell {
    /// Sets the initial permits and, for a bounded semaphore, its bound. Called once, by the
    /// creator, before the cell is shared.
    pub(crate) fn init(&self, permits: u64, bounded: bool) {
        self.word.store(permits << VALUE_SHIFT, Ordering::Release);
        self.bound
            .store(if bounded { permits + 1 } else { 0 }, Ordering::Release);
    }

    /// The free permits now.
    pub(crate) fn value(&self) -> u64 {
        self.word.load(Ordering::Acquire) >> VALUE_SHIFT
    }

    /// Takes a free permit if there is one.
    pub(crate) fn try_take(&self) -> Take {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word < ONE {
                return Take::Empty(word);
            }
            let taken = (word - ONE) & !OWNER_DIED;
            match self
                .word
                .compare_exchange_weak(word, taken, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if let Some(entry) = self.my_entry(true) {
            entry.count.fetch_add(1, Ordering::AcqRel);
        }
        Take::Taken {
            owner_died: word & OWNER_DIED != 0,
        }
    }

    /// Marks that a waiter will park. Returns the word a park should expect, or `None` if a
    /// permit came free meanwhile (try again).
    pub(crate) fn announce_waiter(&self) -> Option<u64> {
        let before = self.word.fetch_or(WAITERS, Ordering::AcqRel);
        (before < ONE).then_some(before | WAITERS)
    }

    /// Gives a permit back (taken by this process or, as Python allows, by another). Returns
    /// whether a waiter must be woken, or `Err` if a bounded semaphore is already full.
    pub(crate) fn release(&self) -> Result<bool, ()> {
        let bound = self.bound.load(Ordering::Acquire);
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if bound != 0 && (word >> VALUE_SHIFT) + 1 >= bound {
                return Err(());
            }
            let released = (word + ONE) & !WAITERS;
            match self.word.compare_exchange_weak(
                word,
                released,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        self.count_one_released();
        Ok(word & WAITERS != 0)
    }

    /// Takes one permit off this process's count, or off any holder's when this process holds
    /// none, so that a later death gives back no more than was held.
    fn count_one_released(&self) {
        let mine = self.my_entry(false).into_iter();
        for entry in mine.chain(self.holders.iter()) {
            let taken = entry
                .count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                    count.checked_sub(1)
                });
            if taken.is_ok() {
                return;
            }
        }
    }

    /// This process's entry; with `claim`, a free entry becomes it if it has none.
    fn my_entry(&self, claim: bool) -> Option<&HolderEntry> {
        let me = owner::me();
        if let Some(entry) = self
            .holders
            .iter()
            .find(|entry| entry.holder.load(Ordering::Acquire) == me)
        {
            return Some(entry);
        }
        if !claim {
            return None;
        }
        self.holders.iter().find(|entry| {
            entry
                .holder
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// Puts back the permits of every holder that died, and frees their entries. Returns how
    /// many permits came back.
    pub(crate) fn recover_from_dead(&self) -> u64 {
        let mut recovered = 0;
        for entry in &self.holders {
            let holder = entry.holder.load(Ordering::Acquire);
            if holder == 0 || holder == RECOVERING || !owner::has_died(holder) {
                continue;
            }
            if entry
                .holder
                .compare_exchange(holder, RECOVERING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let count = entry.count.swap(0, Ordering::AcqRel);
            if count > 0 {
                let _ = self
                    .word
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                        Some((word + (count << VALUE_SHIFT)) | OWNER_DIED)
                    });
                recovered += count;
            }
            entry.holder.store(0, Ordering::Release);
        }
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::arena::Cell;

    #[test]
    fn permits_are_counted_and_a_bounded_semaphore_refuses_one_too_many() {
        let cell = Cell::<SemaphoreCell>::new().expect("cell");
        cell.init(2, true);
        assert_eq!(cell.try_take(), Take::Taken { owner_died: false });
        assert_eq!(cell.try_take(), Take::Taken { owner_died: false });
        assert!(matches!(cell.try_take(), Take::Empty(_)));
        assert_eq!(cell.release(), Ok(false));
        assert_eq!(cell.release(), Ok(false));
        assert_eq!(cell.release(), Err(()));
        assert_eq!(cell.value(), 2);
    }

    #[test]
    fn a_dead_holders_permits_come_back_and_the_next_taker_is_told() {
        let cell = Cell::<SemaphoreCell>::new().expect("cell");
        cell.init(0, false);
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        cell.holders[3]
            .holder
            .store(u64::from(pid) << 2, Ordering::SeqCst);
        cell.holders[3].count.store(2, Ordering::SeqCst);
        assert_eq!(cell.recover_from_dead(), 2);
        assert_eq!(cell.value(), 2);
        assert_eq!(cell.try_take(), Take::Taken { owner_died: true });
        assert_eq!(cell.try_take(), Take::Taken { owner_died: false });
        assert_eq!(
            cell.holders[3].holder.load(Ordering::SeqCst),
            0,
            "the entry is free again"
        );
    }
}
