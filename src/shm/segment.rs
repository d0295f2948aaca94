//! Segments: anonymous `memfd` files mapped shared, and the handles that let another process
//! of the same user map the same memory.
//!
//! A segment is a `memfd` created with a random name (`multiproc-<32 hex digits>`), mode
//! 0600, and mapped `MAP_SHARED`. It has no path in any file system: the kernel frees it when
//! the last descriptor and the last mapping of it are gone, so nothing can be left behind in
//! `/dev/shm` or elsewhere, however the processes that used it end (even a `SIGKILL` of the
//! whole tree). That is the reason for `memfd` over named POSIX shared memory, whose names
//! outlive their processes unless a tracker process cleans up, and a tracker dies with the
//! tree.
//!
//! A handle ([`SegmentHandle`]) names the segment by its holders: (pid, descriptor number)
//! pairs of processes that have it open, and the random token in its name. Another process
//! opens it through `/proc/<pid>/fd/<n>`, which the kernel allows only to a process that could
//! trace the holder (the same user, or root), and then checks that what it opened is the
//! segment it was promised: a `memfd` whose name carries the token (so a descriptor number
//! reused for another file, or a pid reused by another process, is refused), owned by this
//! user, and as long as the handle says. A handle lists the process that created the segment
//! and the one that sent the handle, so it still opens if either is alive.
//!
//! Each process maps a segment once: handles of the same segment share one mapping, which is
//! unmapped (and its descriptor closed) when the last of them is dropped.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::transport::auth::random_bytes;

/// The prefix of every segment's `memfd` name.
const NAME_PREFIX: &str = "multiproc-";

/// The random part of a segment's name, which proves that a descriptor is the segment.
pub(crate) type Token = [u8; 16];

/// One process's mapping of a segment.
pub(crate) struct Mapping {
    address: NonNull<u8>,
    /// The length asked for; the mapping is rounded up to whole pages.
    len: usize,
    /// Kept open so that other processes can open the segment through this process.
    fd: OwnedFd,
    token: Token,
    /// The process that created the segment, as a holder to list in handles.
    creator: Holder,
}

// SAFETY: the mapping is plain shared memory, valid until `Drop`; every access through it is
// the caller's responsibility (atomics or raw pointers), as with any shared memory.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &memfd_name(&self.token))
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        forget_mapping(&self.token);
        // SAFETY: mapped by `map` with this length; no reference into it outlives the last
        // `Arc<Mapping>`, which is this one.
        unsafe { libc::munmap(self.address.as_ptr().cast(), mapped_len(self.len)) };
    }
}

/// A process that holds a segment open, and the descriptor it holds it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) fd: i32,
}

/// A segment mapped in this process. Cloning shares the mapping.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    mapping: Arc<Mapping>,
}

/// What a [`Segment`] serializes to: enough for another process of this user on this machine
/// to map it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentHandle {
    pub(crate) token: Token,
    pub(crate) len: u64,
    pub(crate) holders: Vec<Holder>,
}

/// The segments mapped in this process, by token, so that a segment is mapped once however
/// many handles of it arrive.
static MAPPINGS: Mutex<Option<HashMap<Token, Weak<Mapping>>>> = Mutex::new(None);

fn mappings() -> std::sync::MutexGuard<'static, Option<HashMap<Token, Weak<Mapping>>>> {
    MAPPINGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn forget_mapping(token: &Token) {
    let mut mappings = mappings();
    if let Some(map) = mappings.as_mut()
        && map.get(token).is_some_and(|weak| weak.strong_count() == 0)
    {
        map.remove(token);
    }
}

impl Segment {
    /// A new segment of `len` bytes, zeroed.
    ///
    /// # Errors
    ///
    /// [`Io`](ErrorKind::Io) if the system refuses the `memfd` or the mapping (out of memory or
    /// descriptors); [`InvalidInput`](ErrorKind::InvalidInput) for a length of 0.
    pub(crate) fn create(len: usize) -> Result<Segment> {
        if len == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a shared memory segment needs at least one byte",
            ));
        }
        let token: Token = random_bytes();
        let fd = anonymous_file(&memfd_name(&token))
            .map_err(|error| Error::io("creating a shared memory segment", error))?;
        // SAFETY: plain system calls on a descriptor this function owns.
        unsafe {
            if libc::fchmod(fd.as_raw_fd(), 0o600) != 0
                || libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) != 0
            {
                return Err(last_error("sizing a shared memory segment"));
            }
        }
        let creator = Holder {
            pid: std::process::id(),
            fd: fd.as_raw_fd(),
        };
        let mapping = Arc::new(Mapping {
            address: map_fd(&fd, len)?,
            len,
            fd,
            token,
            creator,
        });
        mappings()
            .get_or_insert_with(HashMap::new)
            .insert(token, Arc::downgrade(&mapping));
        Ok(Segment { mapping })
    }

    /// The segment `handle` names, mapped in this process (or the mapping it already has).
    ///
    /// # Errors
    ///
    /// [`NotFound`](ErrorKind::NotFound) if no holder the handle lists still has the segment
    /// open on this machine (they exited, or the handle came from another machine);
    /// [`PermissionDenied`](ErrorKind::PermissionDenied) if it belongs to another user.
    pub(crate) fn open(handle: &SegmentHandle) -> Result<Segment> {
        if let Some(mapping) = mappings()
            .as_ref()
            .and_then(|map| map.get(&handle.token))
            .and_then(Weak::upgrade)
        {
            return Ok(Segment { mapping });
        }
        let mut last = None;
        for holder in &handle.holders {
            match open_through(holder, handle) {
                Ok(fd) => return Self::adopt(fd, handle, *holder),
                Err(error) if error.kind() == ErrorKind::PermissionDenied => return Err(error),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| not_found(&handle.token, "it names no holder")))
    }

    fn adopt(fd: OwnedFd, handle: &SegmentHandle, creator: Holder) -> Result<Segment> {
        let len = usize::try_from(handle.len).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "a segment larger than this address space",
            )
        })?;
        let mut mappings = mappings();
        let map = mappings.get_or_insert_with(HashMap::new);
        // Another thread may have mapped it meanwhile: keep one mapping per process.
        if let Some(mapping) = map.get(&handle.token).and_then(Weak::upgrade) {
            return Ok(Segment { mapping });
        }
        let mapping = Arc::new(Mapping {
            address: map_fd(&fd, len)?,
            len,
            fd,
            token: handle.token,
            creator,
        });
        map.insert(handle.token, Arc::downgrade(&mapping));
        Ok(Segment { mapping })
    }

    /// The handle to send to another process: this process and the creator as holders.
    pub(crate) fn handle(&self) -> SegmentHandle {
        let this = Holder {
            pid: std::process::id(),
            fd: self.mapping.fd.as_raw_fd(),
        };
        let mut holders = vec![this];
        if self.mapping.creator.pid != this.pid {
            holders.push(self.mapping.creator);
        }
        SegmentHandle {
            token: self.mapping.token,
            len: self.mapping.len as u64,
            holders,
        }
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.mapping.address.as_ptr()
    }

    /// The length asked for at creation.
    pub(crate) fn len(&self) -> usize {
        self.mapping.len
    }

    /// A reference to a `T` at `offset`.
    ///
    /// # Panics
    ///
    /// If `T` does not fit at `offset`, or `offset` is not aligned for `T`.
    pub(crate) fn at<T: SharedPlain>(&self, offset: usize) -> &T {
        assert!(
            offset + std::mem::size_of::<T>() <= self.len()
                && offset.is_multiple_of(std::mem::align_of::<T>()),
            "a shared value out of its segment"
        );
        // SAFETY: in bounds and aligned (checked above); `T` is made only of atomics (the
        // `SharedPlain` contract), so any bytes are a valid `T` and shared access is sound;
        // the reference lives no longer than `self`, which keeps the mapping.
        unsafe { &*self.as_ptr().add(offset).cast::<T>() }
    }
}

/// A type made only of atomics (and arrays of them), valid for every bit pattern including
/// all zeros, so it may live in shared memory and be used through `&T` from many processes.
///
/// # Safety
///
/// Implement only for `repr(C)` types whose fields are all atomics or `SharedPlain`.
pub(crate) unsafe trait SharedPlain: Sync {}

// SAFETY: atomics are valid for every bit pattern and shared access is their purpose.
unsafe impl SharedPlain for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl SharedPlain for std::sync::atomic::AtomicU32 {}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let handle = SegmentHandle::deserialize(deserializer)?;
        Segment::open(&handle).map_err(Error::refuse)
    }
}

/// Whether a segment created here can be opened by another process (through
/// `/proc/<pid>/fd/<n>`, which only Linux has). Elsewhere segments stay in their process, and
/// the shared objects that would use them are served by their creator's hub instead.
pub(crate) const SHAREABLE: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// A new file of shared memory with no name anywhere, close-on-exec, freed with its last
/// descriptor and mapping: a `memfd` called `name` where the system has them; elsewhere a
/// POSIX shared memory object unlinked the moment it is created (as CPython's heap arenas are).
pub(crate) fn anonymous_file(name: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: a valid C string; the descriptor is owned from here on.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: valid C strings; the name is unlinked at once, so only the descriptor remains,
    // and it is owned from here on.
    let fd = unsafe {
        let fd = libc::shm_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600 as libc::c_uint,
        );
        if fd >= 0 {
            libc::shm_unlink(name.as_ptr());
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        fd
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The `memfd` name of the segment with `token`.
pub(crate) fn memfd_name(token: &Token) -> String {
    let mut name = String::with_capacity(NAME_PREFIX.len() + 32);
    name.push_str(NAME_PREFIX);
    for byte in token {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// Opens the segment through `holder`'s descriptor and checks that it is the one `handle`
/// names.
fn open_through(holder: &Holder, handle: &SegmentHandle) -> Result<OwnedFd> {
    let path = format!("/proc/{}/fd/{}", holder.pid, holder.fd);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::PermissionDenied => Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "shared memory {}: its process {} belongs to another user",
                    memfd_name(&handle.token),
                    holder.pid
                ),
            ),
            _ => not_found(&handle.token, "no process that held it still does"),
        })?;
    let fd = OwnedFd::from(file);
    let opened = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|error| Error::io("reading what a shared memory descriptor names", error))?;
    let expected = format!("/memfd:{} (deleted)", memfd_name(&handle.token));
    if opened.as_os_str() != expected.as_str() {
        return Err(not_found(
            &handle.token,
            "the process that held it has exited (its descriptor now names something else)",
        ));
    }
    check_owner_and_len(&fd, handle)?;
    Ok(fd)
}

fn check_owner_and_len(fd: &OwnedFd, handle: &SegmentHandle) -> Result<()> {
    // SAFETY: fstat writes into a zeroed stat of the right type.
    let stat = unsafe {
        let mut stat = std::mem::zeroed::<libc::stat>();
        if libc::fstat(fd.as_raw_fd(), &mut stat) != 0 {
            return Err(last_error("inspecting a shared memory segment"));
        }
        stat
    };
    // SAFETY: geteuid cannot fail.
    if stat.st_uid != unsafe { libc::geteuid() } {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "shared memory {} belongs to another user",
                memfd_name(&handle.token)
            ),
        ));
    }
    if (stat.st_size as u64) < handle.len {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "shared memory {} is shorter than its handle says",
                memfd_name(&handle.token)
            ),
        ));
    }
    Ok(())
}

fn not_found(token: &Token, why: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "shared memory {} cannot be opened here: {why} (a segment is reachable only on its \
             own machine, while some process that holds it is alive)",
            memfd_name(token)
        ),
    )
}

fn last_error(doing: &str) -> Error {
    Error::io(doing, std::io::Error::last_os_error())
}

/// The length of the mapping of a segment of `len` bytes: whole pages.
fn mapped_len(len: usize) -> usize {
    len.div_ceil(page_size()) * page_size()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Maps `len` bytes of `fd` shared, readable and writable.
pub(crate) fn map_fd(fd: &OwnedFd, len: usize) -> Result<NonNull<u8>> {
    // SAFETY: a shared mapping of a descriptor at least `len` long (created or checked so);
    // the memory is accessed only through atomics or raw pointers.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            mapped_len(len),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(last_error("mapping a shared memory segment"));
    }
    NonNull::new(address.cast()).ok_or_else(|| last_error("mapping a shared memory segment"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_handle_opens_the_same_memory_once_per_process() {
        let segment = Segment::create(100).expect("segment");
        segment.at::<AtomicU64>(8).store(42, Ordering::SeqCst);
        let handle = segment.handle();
        let again = Segment::open(&handle).expect("open");
        assert_eq!(again.as_ptr(), segment.as_ptr(), "one mapping per process");
        assert_eq!(again.at::<AtomicU64>(8).load(Ordering::SeqCst), 42);
    }

    #[test]
    fn a_wrong_token_is_refused() {
        let segment = Segment::create(64).expect("segment");
        let mut handle = segment.handle();
        handle.token[0] ^= 1;
        let error = Segment::open(&handle).expect_err("another token");
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    }
}
