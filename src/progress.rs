//! A page of memory a pool worker shares with its parent: which call it runs, since when, and
//! which of the calls it holds were withdrawn before they started.
//!
//! A worker holds a window of calls already sent, and answers quick ones in batches, so
//! neither the calls it has answered nor the order of its replies tells its parent, at the
//! moment it dies, which call was running. The child writes the id of each call into this page
//! as it starts it: one store and a read of the clock, no system call, nothing on the socket.
//! The parent reads the page when the child dies (only the running call fails; the others are
//! sent again), when a call's deadline may have passed (the deadline counts from the start
//! written here), and when a caller cancels a call (one not started yet is withdrawn here, and
//! the child skips it; one running is stopped).
//!
//! The parent creates the page (a `memfd`) before the child's first call and tells the child
//! its descriptor number; the child opens it through `/proc/<parent>/fd/<n>` and marks it
//! attached. A page not attached yet means that no call started (the child reads where the
//! page is before its first call). A child that cannot open it (no `/proc`) says so, and the
//! parent falls back on the order of calls: the oldest call not answered is taken for the
//! running one.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many withdrawals the page remembers; more than a worker's window ever holds.
const WITHDRAWN_SLOTS: usize = 64;

/// Written into `attached` by a child that mapped the page.
const ATTACHED: u64 = 0x6d75_6c74_6970_726f;

#[repr(C)]
struct Page {
    /// [`ATTACHED`] once the child has mapped the page.
    attached: AtomicU64,
    /// 1 + the id of the call the child started last; 0 before its first.
    started: AtomicU64,
    /// When it started, in nanoseconds of `CLOCK_MONOTONIC` (the same clock in every process).
    started_at: AtomicU64,
    /// Nonzero once some call was withdrawn: the child looks through `withdrawn` only then.
    any_withdrawn: AtomicU64,
    /// 1 + the ids of calls withdrawn before they started, the last [`WITHDRAWN_SLOTS`].
    withdrawn: [AtomicU64; WITHDRAWN_SLOTS],
}

const PAGE_LEN: usize = 4096;
const _: () = assert!(std::mem::size_of::<Page>() <= PAGE_LEN);

/// One mapping of the page, in the parent or in the child.
#[derive(Debug)]
pub(crate) struct Progress {
    page: NonNull<Page>,
    /// The parent's descriptor, kept open so that the child can open it by its number.
    fd: Option<OwnedFd>,
    /// The next slot of `withdrawn` the parent writes; only the parent writes there.
    next_slot: AtomicU64,
}

// SAFETY: the page is only ever accessed through atomics, and the mapping lives as long as
// the `Progress` that owns it.
unsafe impl Send for Progress {}
// SAFETY: as above.
unsafe impl Sync for Progress {}

/// What the page says about the running call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Started {
    /// The child never attached: nothing is known from the page.
    Unknown,
    /// No call has started yet.
    None,
    /// Call `id` started (and may since have finished) `ago` before the page was read.
    Call { id: u64, ago: Duration },
}

impl Progress {
    /// A new page in the parent, or `None` if the system refuses one.
    pub(crate) fn create() -> Option<Progress> {
        let fd = crate::shm::segment::anonymous_file("multiproc-progress").ok()?;
        // SAFETY: ftruncate on a descriptor this function owns.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE_LEN as libc::off_t) } != 0 {
            return None;
        }
        let page = map(&fd)?;
        Some(Progress {
            page,
            fd: Some(fd),
            next_slot: AtomicU64::new(0),
        })
    }

    /// The descriptor number the child opens the page by.
    pub(crate) fn fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// The parent's page, opened by the child through `/proc/<parent>/fd/<fd>`; marks it
    /// attached.
    pub(crate) fn attach(parent: u32, fd: i32) -> std::io::Result<Progress> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{parent}/fd/{fd}"))?;
        let page = map(&OwnedFd::from(file)).ok_or_else(std::io::Error::last_os_error)?;
        let progress = Progress {
            page,
            fd: None,
            next_slot: AtomicU64::new(0),
        };
        progress.page().attached.store(ATTACHED, Ordering::SeqCst);
        Ok(progress)
    }

    fn page(&self) -> &Page {
        // SAFETY: the mapping is valid and at least a `Page` long while `self` lives.
        unsafe { self.page.as_ref() }
    }

    /// In the child: call `id` starts now. Returns `false` if the parent withdrew it, which
    /// the child then skips without answering.
    pub(crate) fn start(&self, id: u64) -> bool {
        let page = self.page();
        page.started_at.store(monotonic_nanos(), Ordering::SeqCst);
        page.started.store(id + 1, Ordering::SeqCst);
        // Read after the start is published: a parent withdrawing the call at this moment
        // either sees it started (and stops it) or has its withdrawal seen here.
        page.any_withdrawn.load(Ordering::SeqCst) == 0
            || !page
                .withdrawn
                .iter()
                .any(|slot| slot.load(Ordering::SeqCst) == id + 1)
    }

    /// In the parent: what the child last started.
    pub(crate) fn started(&self) -> Started {
        let page = self.page();
        if page.attached.load(Ordering::SeqCst) != ATTACHED {
            return Started::Unknown;
        }
        match page.started.load(Ordering::SeqCst) {
            0 => Started::None,
            started => {
                let at = page.started_at.load(Ordering::SeqCst);
                Started::Call {
                    id: started - 1,
                    ago: Duration::from_nanos(monotonic_nanos().saturating_sub(at)),
                }
            }
        }
    }

    /// In the parent: withdraws call `id`, so that the child skips it if it has not started
    /// it. What [`started`](Self::started) says after this tells whether it had: if it names
    /// `id` itself, the call is running (or the child skips it: either way, it must be
    /// stopped to be sure).
    pub(crate) fn withdraw(&self, id: u64) {
        let page = self.page();
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) as usize % WITHDRAWN_SLOTS;
        page.withdrawn[slot].store(id + 1, Ordering::SeqCst);
        page.any_withdrawn.store(1, Ordering::SeqCst);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // SAFETY: the page was mapped with this length and is not used after this.
        unsafe { libc::munmap(self.page.as_ptr().cast(), PAGE_LEN) };
    }
}

fn map(fd: &OwnedFd) -> Option<NonNull<Page>> {
    // SAFETY: a shared mapping of a descriptor that is at least `PAGE_LEN` long; the page is
    // only accessed through atomics.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(address.cast())
}

/// Now, in nanoseconds of `CLOCK_MONOTONIC`: read without a system call (vDSO).
fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `now`, a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawn_call_is_skipped_and_a_started_one_is_seen() {
        let parent = Progress::create().expect("memfd");
        assert_eq!(parent.started(), Started::Unknown);
        let child = Progress::attach(std::process::id(), parent.fd()).expect("attach");
        assert_eq!(parent.started(), Started::None);
        assert!(child.start(1));
        assert!(matches!(parent.started(), Started::Call { id: 1, .. }));
        parent.withdraw(3);
        assert!(matches!(parent.started(), Started::Call { id: 1, .. }));
        assert!(child.start(2));
        assert!(!child.start(3), "a withdrawn call is skipped");
    }
}
