//! The state of a [`Lock`](crate::Lock) or [`RLock`](crate::RLock) in shared memory: who holds
//! it, taken and given back with one compare-and-swap and no system call.
//!
//! Only the state lives here; waiting for a held lock is the business of the lock's hub
//! (`shared/waiters.rs`), which a process asks only when the lock is taken. A waiter sets
//! [`WAITERS`] in the word before it parks, so that the holder's release knows to ring the
//! hub; a release of a word without that bit is one atomic operation and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};

use super::owner::{self, OWNER_DIED, WAITERS, holder_of};
use super::segment::SharedPlain;

/// How many times an acquire tries again before parking: a few microseconds, enough for a
/// holder on another core to finish a short critical section, much less than waking a parked
/// task costs on a VM (50-100 us).
const SPINS: u32 = 200;

/// A lock word and, for a recursive lock, its owning task and depth.
#[repr(C)]
pub(crate) struct LockCell {
    /// See [`owner`](super::owner) for the layout.
    word: AtomicU64,
    /// The task holding a recursive lock (0 while it is being taken or given back), written
    /// only by the holding process.
    task: AtomicU64,
    /// How many times that task holds it.
    depth: AtomicU64,
}

// SAFETY: repr(C), made of atomics only.
unsafe impl SharedPlain for LockCell {}

/// What a try to take the lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Taken; `owner_died` if it was taken back from a holder that died.
    Taken { owner_died: bool },
    /// Taken again by the task that holds this recursive lock.
    Again,
    /// Held by someone else: the word as it was seen.
    Held(u64),
}

/// Why a release was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotReleased {
    NotLocked,
    NotOwner,
}

impl LockCell {
    /// Takes the lock if it is free, or again if `task` holds this recursive lock. `task` is
    /// `Some` for a recursive lock only.
    pub(crate) fn try_take(&self, task: Option<u64>) -> Attempt {
        loop {
            let word = self.word.load(Ordering::Acquire);
            if holder_of(word) == 0 {
                let taken = owner::me() | (word & WAITERS);
                if self
                    .word
                    .compare_exchange_weak(word, taken, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                if let Some(task) = task {
                    self.depth.store(1, Ordering::Relaxed);
                    self.task.store(task, Ordering::Release);
                }
                return Attempt::Taken {
                    owner_died: word & OWNER_DIED != 0,
                };
            }
            if let Some(task) = task
                && holder_of(word) == owner::me()
                && self.task.load(Ordering::Acquire) == task
            {
                self.depth.fetch_add(1, Ordering::Relaxed);
                return Attempt::Again;
            }
            return Attempt::Held(word);
        }
    }

    /// [`try_take`](Self::try_take), tried again for a few microseconds while the lock is
    /// held.
    pub(crate) fn take_spinning(&self, task: Option<u64>) -> Attempt {
        let mut attempt = self.try_take(task);
        for _ in 0..SPINS {
            if !matches!(attempt, Attempt::Held(_)) {
                break;
            }
            std::hint::spin_loop();
            attempt = self.try_take(task);
        }
        attempt
    }

    /// Marks that a waiter will park, if the word is still `seen` (give or take that mark).
    /// Returns the word a park should expect, or `None` if the lock changed hands meanwhile
    /// (try again).
    pub(crate) fn announce_waiter(&self, seen: u64) -> Option<u64> {
        let before = self.word.fetch_or(WAITERS, Ordering::AcqRel);
        (holder_of(before) == holder_of(seen) && holder_of(before) != 0).then_some(before | WAITERS)
    }

    /// If the holder in `seen` has died, takes the lock back from it (free, with
    /// [`OWNER_DIED`] for the next taker) and returns `true`.
    pub(crate) fn recover_from_dead(&self, seen: u64) -> bool {
        if holder_of(seen) == 0 || !owner::has_died(holder_of(seen)) {
            return false;
        }
        let freed = OWNER_DIED | (seen & WAITERS);
        self.word
            .compare_exchange(seen, freed, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives the lock back. `task` is `Some` for a recursive lock, which only its owner may
    /// release; a plain lock may be released by anyone, as in Python. With `only_mine`, a
    /// plain lock is released only if this process holds it (a guard dropped after someone
    /// else released the lock leaves it alone). Returns whether a waiter must be woken.
    pub(crate) fn release(&self, task: Option<u64>, only_mine: bool) -> Result<bool, NotReleased> {
        let word = self.word.load(Ordering::Acquire);
        if holder_of(word) == 0 {
            return Err(NotReleased::NotLocked);
        }
        if let Some(task) = task {
            if holder_of(word) != owner::me() || self.task.load(Ordering::Acquire) != task {
                return Err(NotReleased::NotOwner);
            }
            if self.depth.fetch_sub(1, Ordering::Relaxed) > 1 {
                return Ok(false);
            }
            self.task.store(0, Ordering::Release);
        } else if only_mine && holder_of(word) != owner::me() {
            return Err(NotReleased::NotOwner);
        }
        let mut word = word;
        loop {
            if holder_of(word) == 0 {
                return Err(NotReleased::NotLocked);
            }
            match self
                .word
                .compare_exchange_weak(word, 0, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return Ok(word & WAITERS != 0),
                Err(now) => word = now,
            }
        }
    }

    /// Gives back every level `task` holds (one for a plain lock, which this process must
    /// hold), for a condition's wait. Returns the levels, to [`restore_depth`] after taking
    /// the lock again, and whether a waiter must be woken.
    ///
    /// [`restore_depth`]: Self::restore_depth
    pub(crate) fn release_all(&self, task: Option<u64>) -> Result<(u64, bool), NotReleased> {
        let levels = match task {
            Some(_) if self.is_held_by(task) => self.depth.swap(1, Ordering::Relaxed),
            Some(_) => return Err(NotReleased::NotOwner),
            None => 1,
        };
        self.release(task, true).map(|wake| (levels, wake))
    }

    /// After a [`release_all`](Self::release_all) and a new take: the levels held before.
    pub(crate) fn restore_depth(&self, levels: u64) {
        self.depth.store(levels, Ordering::Relaxed);
    }

    /// Whether this process (and, for a recursive lock, `task`) holds the lock.
    pub(crate) fn is_held_by(&self, task: Option<u64>) -> bool {
        let word = self.word.load(Ordering::Acquire);
        holder_of(word) == owner::me()
            && task.is_none_or(|task| self.task.load(Ordering::Acquire) == task)
    }

    /// Whether someone holds the lock.
    pub(crate) fn is_locked(&self) -> bool {
        holder_of(self.word.load(Ordering::Acquire)) != 0
    }

    #[cfg(test)]
    pub(crate) fn word(&self) -> &AtomicU64 {
        &self.word
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::arena::Cell;

    #[test]
    fn a_free_lock_is_taken_once_and_given_back() {
        let cell = Cell::<LockCell>::new().expect("cell");
        assert_eq!(cell.try_take(None), Attempt::Taken { owner_died: false });
        assert!(matches!(cell.try_take(None), Attempt::Held(_)));
        assert_eq!(cell.release(None, true), Ok(false));
        assert_eq!(cell.release(None, false), Err(NotReleased::NotLocked));
    }

    #[test]
    fn a_recursive_lock_counts_its_owner_and_refuses_others() {
        let cell = Cell::<LockCell>::new().expect("cell");
        assert!(matches!(cell.try_take(Some(7)), Attempt::Taken { .. }));
        assert_eq!(cell.try_take(Some(7)), Attempt::Again);
        assert!(matches!(cell.try_take(Some(8)), Attempt::Held(_)));
        assert_eq!(cell.release(Some(8), false), Err(NotReleased::NotOwner));
        assert_eq!(cell.release(Some(7), false), Ok(false));
        assert!(cell.is_locked());
        assert_eq!(cell.release(Some(7), false), Ok(false));
        assert!(!cell.is_locked());
    }

    #[test]
    fn a_dead_holder_is_replaced_and_the_next_taker_told() {
        let cell = Cell::<LockCell>::new().expect("cell");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let dead = u64::from(pid) << 2;
        cell.word().store(dead | WAITERS, Ordering::SeqCst);
        assert!(cell.recover_from_dead(dead | WAITERS));
        assert_eq!(cell.try_take(None), Attempt::Taken { owner_died: true });
    }
}
