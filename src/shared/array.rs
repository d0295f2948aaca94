//! [`SharedArray`] and [`RawArray`]: arrays of plain data in shared memory, with a lock and
//! without (Python's `multiprocessing.Array` and `RawArray`), and [`SharedGuard`], the guard
//! that gives the data under its lock.
//!
//! The elements are [`Pod`](bytemuck::Pod): `repr(C)` or primitive, no pointers, no `Drop`,
//! every bit pattern valid, so whatever another process wrote (or a process killed in the
//! middle of a write left) is a valid `T`. A small array is carved from a shared arena; a
//! large one has a segment of its own.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{Lock, LockGuard};
use crate::error::{Error, Result};
use crate::shm::region::Region;

/// Data in shared memory held under its lock: Python's `with value.get_lock():`. Derefs to
/// the value (`T`) or to the elements (`[T]`); dropping the guard releases the lock.
///
/// The data is yours alone while the guard lives, provided everyone who touches it takes the
/// lock: every safe way this crate gives to a [`SharedValue`](crate::SharedValue)'s or a
/// [`SharedArray`]'s data does, but [`Lock::release`] by a task that does not hold the guard,
/// or an `unsafe` access of another process, would break that promise.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SharedGuard<'a, T: ?Sized> {
    data: &'a mut T,
    lock: LockGuard,
}

impl<'a, T: ?Sized> SharedGuard<'a, T> {
    /// The guard of `data`, which `lock` protects.
    ///
    /// # Safety
    ///
    /// `data` is in shared memory that no one touches without holding the lock that `lock`
    /// holds.
    pub(crate) unsafe fn new(lock: LockGuard, data: &'a mut T) -> Self {
        SharedGuard { data, lock }
    }

    /// Whether the previous holder's process died holding the lock, so the data may be
    /// half-updated (see [`LockGuard::owner_died`]).
    pub fn owner_died(&self) -> bool {
        self.lock.owner_died()
    }
}

impl<T: ?Sized> Deref for SharedGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.data
    }
}

impl<T: ?Sized> DerefMut for SharedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for SharedGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedGuard")
            .field("data", &self.data)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

/// An array of plain data in shared memory, without a lock: Python's
/// `multiprocessing.RawArray`.
///
/// Cloning, or sending it to another process (it is `Serialize + Deserialize`, like a
/// [`Queue`](crate::Queue)), shares the elements. Safe access copies: [`get`](Self::get),
/// [`set`](Self::set), [`read_at`](Self::read_at), [`write_at`](Self::write_at) and
/// [`to_vec`](Self::to_vec) are made of relaxed atomic word copies, so one that races another
/// process's write may see a mix of old and new words (a torn element), never undefined
/// behaviour. Element `i` written by one process and only read by others after some
/// synchronisation (a [`Queue`](crate::Queue) message, a [`Barrier`](crate::Barrier), joining
/// the writer) is seen whole. For lock-free designs of your own there are
/// [`as_ptr`](Self::as_ptr) and the `unsafe` [`as_slice`](Self::as_slice) and
/// [`as_mut_slice`](Self::as_mut_slice).
///
/// ```no_run
/// # fn demo() -> multiproc::Result<()> {
/// let squares = multiproc::RawArray::<u64>::new(4)?;
/// squares.set(2, 4);
/// assert_eq!(squares.to_vec(), [0, 0, 4, 0]);
/// # Ok(()) }
/// ```
pub struct RawArray<T> {
    region: Region,
    len: usize,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            region: self.region.clone(),
            len: self.len,
            kind: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("len", &self.len)
            .field("element", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Pod> RawArray<T> {
    /// `len` zeroed elements in new shared memory: Python's `RawArray(typecode, len)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the system refuses the memory (out of memory
    /// or descriptors); [`InvalidInput`](crate::ErrorKind::InvalidInput) if `len` elements
    /// would not fit in the address space.
    pub fn new(len: usize) -> Result<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::InvalidInput,
                format!("an array of {len} elements is larger than memory"),
            )
        })?;
        Ok(RawArray {
            region: Region::new(bytes, std::mem::align_of::<T>())?,
            len,
            kind: PhantomData,
        })
    }

    /// A copy of `values` in new shared memory: Python's `RawArray(typecode, initializer)`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let array = Self::new(values.len())?;
        array.write_at(0, values);
        Ok(array)
    }

    /// How many elements it has.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of element `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of bounds.
    pub fn get(&self, index: usize) -> T {
        let mut value = T::zeroed();
        self.read_at(index, std::slice::from_mut(&mut value));
        value
    }

    /// Writes `value` as element `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of bounds.
    pub fn set(&self, index: usize, value: T) {
        self.write_at(index, std::slice::from_ref(&value));
    }

    /// Copies the elements from `start` on into `out`.
    ///
    /// # Panics
    ///
    /// If `start + out.len()` is more than [`len`](Self::len).
    pub fn read_at(&self, start: usize, out: &mut [T]) {
        self.region.load(
            self.byte_offset(start, out.len()),
            bytemuck::cast_slice_mut(out),
        );
    }

    /// Copies `values` to the elements from `start` on.
    ///
    /// # Panics
    ///
    /// If `start + values.len()` is more than [`len`](Self::len).
    pub fn write_at(&self, start: usize, values: &[T]) {
        self.region.store(
            self.byte_offset(start, values.len()),
            bytemuck::cast_slice(values),
        );
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        let mut values = vec![T::zeroed(); self.len];
        self.read_at(0, &mut values);
        values
    }

    /// The first element. Reading or writing through it is yours to synchronise with other
    /// processes (atomics of your own, or a lock).
    pub fn as_ptr(&self) -> *mut T {
        self.region.as_ptr().cast()
    }

    /// The elements as a slice, without a copy.
    ///
    /// # Safety
    ///
    /// No process may write the elements while the slice lives (a write that races a read
    /// through a plain reference is undefined behaviour, here as in one process).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `len` elements, aligned and in bounds (made so, or checked on receipt);
        // every bit pattern is a valid `T` (`Pod`); no writer meanwhile (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements as a mutable slice, without a copy.
    ///
    /// # Safety
    ///
    /// No other process or task may read or write the elements while the slice lives (for
    /// example: each process writes only its own disjoint part through a slice of its own,
    /// and nobody reads until they are done).
    #[allow(clippy::mut_from_ref)] // the memory is shared: exclusivity is the caller's promise
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`; exclusive access is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    /// The byte offset of `count` elements from `start`, checked against the length.
    fn byte_offset(&self, start: usize, count: usize) -> usize {
        assert!(
            start.checked_add(count).is_some_and(|end| end <= self.len),
            "elements {start}..{} out of an array of {}",
            start.saturating_add(count),
            self.len
        );
        start * std::mem::size_of::<T>()
    }
}

impl<T> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.region, self.len as u64).serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (region, len) = <(Region, u64)>::deserialize(deserializer)?;
        let len = usize::try_from(len).map_err(serde::de::Error::custom)?;
        let fits = len
            .checked_mul(std::mem::size_of::<T>())
            .is_some_and(|bytes| bytes == region.len());
        if !fits || region.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
            return Err(serde::de::Error::custom(format!(
                "shared memory that does not hold {len} elements of {}",
                std::any::type_name::<T>()
            )));
        }
        Ok(RawArray {
            region,
            len,
            kind: PhantomData,
        })
    }
}

/// An array of plain data in shared memory with its lock: Python's `multiprocessing.Array`
/// (with `lock=True`).
///
/// Cloning, or sending it to another process, shares the elements and the lock. Every safe
/// access takes the lock: [`lock`](Self::lock) gives the elements as a `&mut [T]` until the
/// guard is dropped. The lock is a [`Lock`] in shared memory ([`get_lock`](Self::get_lock)):
/// taken and released without a system call when free, and released on behalf of a process
/// that dies holding it, the next guard's [`owner_died`](SharedGuard::owner_died) saying so.
///
/// ```no_run
/// use multiproc::{worker, Pool, SharedArray};
///
/// #[worker]
/// async fn fill(squares: SharedArray<u64>, part: usize) {
///     let mut elements = squares.lock().await.expect("the lock's process is alive");
///     for i in part * 4..part * 4 + 4 {
///         elements[i] = (i * i) as u64;
///     }
/// }
///
/// # async fn demo() -> multiproc::Result<()> {
/// let squares = SharedArray::<u64>::new(8)?;
/// let pool = Pool::builder().processes(2).build().await?;
/// pool.starmap(fill, [(squares.clone(), 0), (squares.clone(), 1)]).await?;
/// assert_eq!(squares.to_vec().await?, [0, 1, 4, 9, 16, 25, 36, 49]);
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = "T: Pod"))]
pub struct SharedArray<T> {
    elements: RawArray<T>,
    lock: Lock,
}

impl<T> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("elements", &self.elements)
            .field("lock", &self.lock)
            .finish()
    }
}

impl<T: Pod> SharedArray<T> {
    /// `len` zeroed elements in new shared memory, with a new lock: Python's
    /// `Array(typecode, len)`.
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn new(len: usize) -> Result<Self> {
        Ok(Self::with_lock(RawArray::new(len)?))
    }

    /// A copy of `values` in new shared memory, with a new lock: Python's
    /// `Array(typecode, initializer)`.
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn from_slice(values: &[T]) -> Result<Self> {
        Ok(Self::with_lock(RawArray::from_slice(values)?))
    }

    fn with_lock(elements: RawArray<T>) -> Self {
        SharedArray {
            elements,
            lock: Lock::new(),
        }
    }

    /// How many elements it has.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// The lock that protects the elements: Python's `get_lock()`.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Waits for the lock and gives the elements until the guard is dropped.
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
    /// # async fn demo(counts: multiproc::SharedArray<u32>) -> multiproc::Result<()> {
    /// let mut elements = counts.lock().await?;
    /// if elements.owner_died() { /* a process died half-way through an update */ }
    /// elements[0] += 1;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self) -> Result<SharedGuard<'_, [T]>> {
        let guard = self.lock.acquire().await?;
        // SAFETY: every safe access to the elements takes this lock (see the type's docs).
        Ok(unsafe { SharedGuard::new(guard, self.elements.as_mut_slice()) })
    }

    /// A copy of every element, taken under the lock.
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
    /// # async fn demo(counts: multiproc::SharedArray<u32>) -> multiproc::Result<()> {
    /// let snapshot: Vec<u32> = counts.to_vec().await?;
    /// # Ok(()) }
    /// ```
    pub async fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock().await?.to_vec())
    }
}
