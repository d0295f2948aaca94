//! [`SharedMemory`]: a block of bytes every process of the user can map, Python's
//! `multiprocessing.shared_memory.SharedMemory`, with a lock that goes with it.
//!
//! The block is a `memfd` segment (see `shm/segment.rs`): it has no path in `/dev/shm` or
//! anywhere, and the kernel frees it when the last process that maps it lets go, however the
//! processes end. Its first [`HEADER`] bytes are the crate's: the lock's word, and where the
//! lock's waiters park (the creator's hub), so that a process that opens the block by name
//! finds the same lock. The user's bytes follow.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::array::SharedGuard;
use super::client::{Handle, Timer};
use super::lock::{Lock, LockGuard};
use super::value::AtomicPrimitive;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol;
use crate::shm::arena::Cell;
use crate::shm::region::Region;
use crate::shm::segment::{Holder, Segment, SegmentHandle, Token};

/// The crate's part of a segment: the lock word at 0, then the header's mark, the length of
/// the waiters' handle and the handle (postcard).
const HEADER: usize = 256;
const LOCK_AT: usize = 0;
const MARK_AT: usize = 64;
const WAITERS_LEN_AT: usize = MARK_AT + 8;
const WAITERS_AT: usize = WAITERS_LEN_AT + 2;
/// Tells a `SharedMemory` from the crate's other segments (a lock's arena) whose name someone
/// passed to [`SharedMemory::open`].
const MARK: u64 = u64::from_le_bytes(*b"mpshmem1");

/// What every name of a segment starts with.
const NAME_PREFIX: &str = "multiproc-";

/// A block of bytes shared between processes: Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// Create one with [`new`](Self::new); hand it to other processes as an argument, through a
/// [`Queue`](crate::Queue) or a manager (it is `Serialize + Deserialize`, and cloning it is
/// cheap), or give them its [`name`](Self::name), which [`open`](Self::open) maps in any
/// process of the same user on this machine, as Python's `SharedMemory(name=...)`. Each
/// process maps a block once, however many handles of it it holds.
///
/// # Access
///
/// - [`lock`](Self::lock): the bytes as a `&mut [u8]` under the block's own [`Lock`]
///   ([`get_lock`](Self::get_lock)), which lives in the block itself: free, it is taken
///   without a system call, and if its holder dies the next guard's
///   [`owner_died`](SharedGuard::owner_died) says so.
/// - [`read_at`](Self::read_at) and [`write_at`](Self::write_at): copies without the lock,
///   made of relaxed atomic words (a copy racing a write may mix old and new words, never
///   undefined behaviour).
/// - [`atomics`](Self::atomics): the bytes as a slice of `std` atomics, for counters and flags
///   shared without a lock.
/// - [`as_ptr`](Self::as_ptr) and the `unsafe` [`as_slice`](Self::as_slice) /
///   [`as_mut_slice`](Self::as_mut_slice), for lock-free designs of your own.
///
/// Bytes written through a guard must not be accessed by the lock-free means at the same time
/// (that would be a data race, as between threads); keep the parts you use each way apart.
///
/// # Lifetime: Python's `close()` and `unlink()`
///
/// There is no `unlink`, and nothing to leak: the memory is freed by the kernel once no
/// process holds it (a handle, or a value received from one), even if every process is
/// killed. Python's `close()` is dropping the handle (and its clones) in a process. As in
/// Python, the memory outlives its creator while another process holds it.
///
/// ```no_run
/// # fn demo() -> multiproc::Result<()> {
/// let block = multiproc::SharedMemory::new(1024)?;
/// block.write_at(0, b"hello");
/// let same = multiproc::SharedMemory::open(&block.name())?;
/// let mut greeting = [0; 5];
/// same.read_at(0, &mut greeting);
/// assert_eq!(&greeting, b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    data: Region,
    lock: Lock,
    /// Set once the lock's hub refused this process (a program outside the creator's tree,
    /// with another key): from then on, waiting for the lock polls it.
    hub_refused: Arc<AtomicBool>,
}

/// How often a process that may not park at the lock's hub looks at a held lock again.
const POLL_WITHOUT_HUB: Duration = Duration::from_millis(2);

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size())
            .finish()
    }
}

impl SharedMemory {
    /// A new block of `size` bytes, zeroed, mode 0600, with its lock: Python's
    /// `SharedMemory(create=True, size=size)`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](ErrorKind::InvalidInput) for a size of 0 (as Python's `ValueError`);
    /// [`Io`](ErrorKind::Io) if the system refuses the memory (out of memory or descriptors).
    pub fn new(size: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "shared memory needs a size of at least one byte",
            ));
        }
        let len = size.checked_add(HEADER).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, "shared memory larger than memory")
        })?;
        let segment = Segment::create(len)?;
        let lock = Lock::in_cell(Cell::in_segment(segment.clone(), LOCK_AT), None)?;
        let waiters = protocol::encode(lock.waiters(), "a shared memory lock's handle")?;
        let header = Region::within(segment.clone(), MARK_AT, HEADER - MARK_AT);
        let waiters_len = u16::try_from(waiters.len())
            .ok()
            .filter(|&len| usize::from(len) <= HEADER - WAITERS_AT)
            .ok_or_else(|| Error::new(ErrorKind::Protocol, "a hub name too long for a header"))?;
        header.store(WAITERS_AT - MARK_AT, &waiters);
        header.store(WAITERS_LEN_AT - MARK_AT, &waiters_len.to_le_bytes());
        header.store(0, &MARK.to_le_bytes());
        Ok(SharedMemory {
            data: Region::within(segment, HEADER, size),
            lock,
            hub_refused: Arc::default(),
        })
    }

    /// Maps the block named `name` (see [`name`](Self::name)) in this process: Python's
    /// `SharedMemory(name=name)`.
    ///
    /// The name names the block through the process that gave it, so it opens while that
    /// process holds the block. Its lock is the block's lock, taken without any round trip
    /// when free. A process that waits for it parks at the creator's hub, which admits only
    /// the creator's process tree: [`lock`](Self::lock) in another program of the same user
    /// polls the lock every 2 ms instead (while [`get_lock`](Self::get_lock)`.acquire()`
    /// there fails with [`Auth`](ErrorKind::Auth) when it would have to wait).
    ///
    /// # Errors
    ///
    /// [`NotFound`](ErrorKind::NotFound) if no such block exists here (a name that is not
    /// one of ours, a block freed, or a process that no longer holds it);
    /// [`PermissionDenied`](ErrorKind::PermissionDenied) if the block belongs to another
    /// user.
    pub fn open(name: &str) -> Result<Self> {
        let handle = parse_name(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "no shared memory is named {name:?}: a name is what SharedMemory::name \
                     gives, {NAME_PREFIX}<pid>.<fd>.<32 hex digits>.<length>"
                ),
            )
        })?;
        Self::from_segment(Segment::open(&handle)?)
    }

    /// The block in `segment`, with the lock its header names.
    fn from_segment(segment: Segment) -> Result<Self> {
        let not_ours = || {
            Error::new(
                ErrorKind::NotFound,
                "that name is not a SharedMemory's (a segment of the crate's own)",
            )
        };
        if segment.len() <= HEADER {
            return Err(not_ours());
        }
        let header = Region::within(segment.clone(), MARK_AT, HEADER - MARK_AT);
        let (mut mark, mut waiters_len) = ([0; 8], [0; 2]);
        header.load(0, &mut mark);
        header.load(WAITERS_LEN_AT - MARK_AT, &mut waiters_len);
        let waiters_len = usize::from(u16::from_le_bytes(waiters_len));
        if u64::from_le_bytes(mark) != MARK || waiters_len > HEADER - WAITERS_AT {
            return Err(not_ours());
        }
        let mut waiters = vec![0; waiters_len];
        header.load(WAITERS_AT - MARK_AT, &mut waiters);
        let waiters: Handle = protocol::decode(&waiters, "a shared memory lock's handle")?;
        let lock = Lock::in_cell(Cell::in_segment(segment.clone(), LOCK_AT), Some(waiters))?;
        let size = segment.len() - HEADER;
        Ok(SharedMemory {
            data: Region::within(segment, HEADER, size),
            lock,
            hub_refused: Arc::default(),
        })
    }

    /// The block's name in this process, for [`open`](Self::open) in another:
    /// `multiproc-<pid>.<fd>.<token>.<length>`, this process's pid and descriptor of the
    /// block, the random token in the block's `memfd` name (which proves that the descriptor
    /// is the block), and the length with the header. Like Python's, it is a string to pass
    /// around; unlike Python's, it opens only while this process holds the block.
    pub fn name(&self) -> String {
        let handle = self.data.segment().handle();
        let this = handle.holders[0];
        let mut token = String::with_capacity(32);
        for byte in handle.token {
            token.push_str(&format!("{byte:02x}"));
        }
        format!(
            "{NAME_PREFIX}{}.{}.{token}.{}",
            this.pid, this.fd, handle.len
        )
    }

    /// The size in bytes, as asked at creation: Python's `size`.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The block's lock. [`lock`](Self::lock) takes it and gives the bytes; holding it by
    /// other means protects whatever the processes agree on.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Waits for the block's lock and gives its bytes until the guard is dropped.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Lock::acquire`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(block: multiproc::SharedMemory) -> multiproc::Result<()> {
    /// let mut bytes = block.lock().await?;
    /// bytes[..5].copy_from_slice(b"hello");
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self) -> Result<SharedGuard<'_, [u8]>> {
        let guard = self.acquire().await?;
        // SAFETY: the lock is held; lock-free access to the same bytes meanwhile is ruled
        // out by the type's docs.
        let bytes = unsafe { self.as_mut_slice() };
        // SAFETY: as above.
        Ok(unsafe { SharedGuard::new(guard, bytes) })
    }

    /// Takes the lock, parking at its hub, or polling it in a program the hub refuses.
    async fn acquire(&self) -> Result<LockGuard> {
        if !self.hub_refused.load(Ordering::Relaxed) {
            match self.lock.acquire().await {
                Err(error) if error.is_auth() => self.hub_refused.store(true, Ordering::Relaxed),
                acquired => return acquired,
            }
        }
        loop {
            if let Some(guard) = self.lock.try_acquire().await? {
                return Ok(guard);
            }
            Timer::after(POLL_WITHOUT_HUB).await;
        }
    }

    /// Copies the bytes at `offset` into `buf`, without the lock.
    ///
    /// # Panics
    ///
    /// If `offset + buf.len()` is more than [`size`](Self::size).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) {
        self.data.load(offset, buf);
    }

    /// Copies `data` to the bytes at `offset`, without the lock.
    ///
    /// # Panics
    ///
    /// If `offset + data.len()` is more than [`size`](Self::size).
    pub fn write_at(&self, offset: usize, data: &[u8]) {
        self.data.store(offset, data);
    }

    /// The bytes as atomics of `T` (`shm.atomics::<u64>()[3].fetch_add(1, Relaxed)`): as
    /// many as fit in the size; index `i` is at byte offset `i * size_of::<T>()`.
    pub fn atomics<T: AtomicPrimitive>(&self) -> &[T::Atomic] {
        let count = self.size() / std::mem::size_of::<T::Atomic>();
        // SAFETY: the data starts HEADER bytes into a page-aligned mapping, so it is aligned
        // for every atomic; `count` of them fit; an atomic is valid for every bit pattern and
        // made for shared access.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast(), count) }
    }

    /// The first byte. Reading or writing through it is yours to synchronise with other
    /// processes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// The bytes as a slice, without a copy: Python's `buf`, read-only.
    ///
    /// # Safety
    ///
    /// No process may write the bytes while the slice lives.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping holds `size` bytes; no writer meanwhile (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// The bytes as a mutable slice, without a copy: Python's `buf`.
    ///
    /// # Safety
    ///
    /// No other process or task may read or write the bytes while the slice lives (such as
    /// processes that each write their own disjoint part through a slice of their own, and
    /// read only once every writer is done).
    #[allow(clippy::mut_from_ref)] // the memory is shared: exclusivity is the caller's promise
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; exclusive access is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size()) }
    }
}

/// The handle a name stands for; `None` if it is not a name [`SharedMemory::name`] gives.
fn parse_name(name: &str) -> Option<SegmentHandle> {
    let mut parts = name.strip_prefix(NAME_PREFIX)?.split('.');
    let pid = parts.next()?.parse().ok()?;
    let fd = parts.next()?.parse().ok()?;
    let hex = parts.next()?;
    let len = parts.next()?.parse().ok()?;
    if parts.next().is_some() || hex.len() != 32 {
        return None;
    }
    let mut token: Token = [0; 16];
    for (byte, pair) in token.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(SegmentHandle {
        token,
        len,
        holders: vec![Holder { pid, fd }],
    })
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.data.segment().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let segment = Segment::deserialize(deserializer)?;
        SharedMemory::from_segment(segment).map_err(Error::refuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_opens_the_same_bytes_and_a_wrong_one_is_not_found() {
        let block = SharedMemory::new(100).expect("block");
        block.write_at(10, b"shared");
        let same = SharedMemory::open(&block.name()).expect("open");
        assert_eq!(same.size(), 100);
        let mut back = [0; 6];
        same.read_at(10, &mut back);
        assert_eq!(&back, b"shared");
        let name = block.name();
        let parts: Vec<&str> = name.split('.').collect();
        let other_token = format!("{}.{}.{}.{}", parts[0], parts[1], "0".repeat(32), parts[3]);
        for wrong in ["", "psm_1234", "multiproc-1.2.3.4", &other_token] {
            let error = SharedMemory::open(wrong).expect_err(wrong);
            assert_eq!(error.kind(), ErrorKind::NotFound, "{wrong}: {error}");
        }
    }
}
