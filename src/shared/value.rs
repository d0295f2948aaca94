//! [`SharedValue`], [`RawValue`] and [`AtomicValue`]: one value of plain data in shared
//! memory, with a lock, without one (Python's `multiprocessing.Value` and `RawValue`), and an
//! atomic integer that needs no lock at all.
//!
//! A value lives in a line of a shared arena (see [`array`](super::array) for the rules on
//! its type); it is an array of one element underneath.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{self, Ordering};

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::array::{RawArray, SharedGuard};
use super::lock::Lock;
use crate::error::Result;
use crate::shm::region::Region;

/// One value of plain data in shared memory, without a lock: Python's
/// `multiprocessing.RawValue`.
///
/// [`get`](Self::get) and [`set`](Self::set) copy, with relaxed atomic words: a `get` that
/// races another process's `set` of a value larger than a word may see half of each (see
/// [`RawArray`]). Use a [`SharedValue`] when a value must change whole, or an
/// [`AtomicValue`] for an integer.
///
/// ```no_run
/// # fn demo() -> multiproc::Result<()> {
/// let ready = multiproc::RawValue::new(0.5f64)?;
/// ready.set(1.5);
/// assert_eq!(ready.get(), 1.5);
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = "T: Pod"))]
pub struct RawValue<T> {
    cell: RawArray<T>,
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Pod> RawValue<T> {
    /// `value` in new shared memory: Python's `RawValue(typecode, value)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the system refuses the memory.
    pub fn new(value: T) -> Result<Self> {
        Ok(RawValue {
            cell: RawArray::from_slice(std::slice::from_ref(&value))?,
        })
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        self.cell.get(0)
    }

    /// Writes `value`.
    pub fn set(&self, value: T) {
        self.cell.set(0, value);
    }

    /// The value's address, for lock-free designs of your own: reading or writing through
    /// it is yours to synchronise with other processes.
    pub fn as_ptr(&self) -> *mut T {
        self.cell.as_ptr()
    }
}

/// One value of plain data in shared memory with its lock: Python's `multiprocessing.Value`
/// (with `lock=True`).
///
/// Cloning, or sending it to another process, shares the value and the lock. Every safe
/// access takes the lock: [`get`](Self::get) and [`set`](Self::set) for one read or write,
/// [`lock`](Self::lock) for a read-modify-write (`*guard += 1`). The lock is a [`Lock`] in
/// shared memory ([`get_lock`](Self::get_lock)); if a process dies holding it, the next
/// guard's [`owner_died`](SharedGuard::owner_died) says so. Unlike Python's, the lock is not
/// recursive: the guard makes taking it twice unnecessary.
///
/// ```no_run
/// use multiproc::{worker, Process, SharedValue};
///
/// #[worker]
/// async fn count(counter: SharedValue<u64>) {
///     for _ in 0..1000 {
///         *counter.lock().await.expect("the lock's process is alive") += 1;
///     }
/// }
///
/// # async fn demo() -> multiproc::Result<()> {
/// let counter = SharedValue::new(0u64)?;
/// let child = Process::new(count, (counter.clone(),)).start().await?;
/// count(counter.clone()).await;
/// child.join().await?;
/// assert_eq!(counter.get().await?, 2000);
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = "T: Pod"))]
pub struct SharedValue<T> {
    cell: RawArray<T>,
    lock: Lock,
}

impl<T> fmt::Debug for SharedValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedValue")
            .field("type", &std::any::type_name::<T>())
            .field("lock", &self.lock)
            .finish()
    }
}

impl<T: Pod> SharedValue<T> {
    /// `value` in new shared memory, with a new lock: Python's `Value(typecode, value)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the system refuses the memory.
    pub fn new(value: T) -> Result<Self> {
        Ok(SharedValue {
            cell: RawArray::from_slice(std::slice::from_ref(&value))?,
            lock: Lock::new(),
        })
    }

    /// The lock that protects the value: Python's `get_lock()`.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Waits for the lock and gives the value until the guard is dropped.
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
    /// # async fn demo(counter: multiproc::SharedValue<u64>) -> multiproc::Result<()> {
    /// let mut value = counter.lock().await?;
    /// *value += 1;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self) -> Result<SharedGuard<'_, T>> {
        let guard = self.lock.acquire().await?;
        // SAFETY: every safe access to the value takes this lock (see the type's docs).
        let value = unsafe { &mut self.cell.as_mut_slice()[0] };
        // SAFETY: as above.
        Ok(unsafe { SharedGuard::new(guard, value) })
    }

    /// A copy of the value, read under the lock: Python's `value.value`.
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
    /// # async fn demo(counter: multiproc::SharedValue<u64>) -> multiproc::Result<()> {
    /// println!("{}", counter.get().await?);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<T> {
        Ok(*self.lock().await?)
    }

    /// Writes `value` under the lock: Python's `value.value = v`.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled `set` has written nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(counter: multiproc::SharedValue<u64>) -> multiproc::Result<()> {
    /// counter.set(0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, value: T) -> Result<()> {
        *self.lock().await? = value;
        Ok(())
    }
}

/// A primitive that has an atomic twin in `std::sync::atomic`: the integers and `bool`. The
/// element type of an [`AtomicValue`] and of
/// [`SharedMemory::atomics`](crate::SharedMemory::atomics).
pub trait AtomicPrimitive: Copy + Send + Sync + 'static + private::Sealed {
    /// Its atomic twin (`AtomicU64` for `u64`).
    type Atomic: Send + Sync + fmt::Debug + 'static;

    #[doc(hidden)]
    fn store(atomic: &Self::Atomic, value: Self);
}

mod private {
    pub trait Sealed {}
}

macro_rules! atomic_primitive {
    ($($primitive:ty => $atomic:ident),* $(,)?) => {$(
        impl private::Sealed for $primitive {}

        impl AtomicPrimitive for $primitive {
            type Atomic = atomic::$atomic;

            fn store(atomic: &Self::Atomic, value: Self) {
                atomic.store(value, Ordering::Release);
            }
        }
    )*};
}

atomic_primitive! {
    bool => AtomicBool,
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
}

/// An integer (or `bool`) in shared memory changed by atomic operations, without a lock:
/// Derefs to its `std` atomic (`AtomicU64` for `AtomicValue<u64>`), so `load`, `store`,
/// `fetch_add`, `compare_exchange`, ... work across processes as they do across threads.
///
/// Python has no such thing (its `Value('i')` takes a lock for `+= 1`); this is the fast way
/// to count across processes: a `fetch_add` is one instruction, with no lock and no system
/// call.
///
/// ```no_run
/// use std::sync::atomic::Ordering;
///
/// # fn demo() -> multiproc::Result<()> {
/// let done = multiproc::AtomicValue::new(0u64)?;
/// done.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(done.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
pub struct AtomicValue<T> {
    region: Region,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for AtomicValue<T> {
    fn clone(&self) -> Self {
        AtomicValue {
            region: self.region.clone(),
            kind: PhantomData,
        }
    }
}

impl<T: AtomicPrimitive> fmt::Debug for AtomicValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AtomicValue").field(&**self).finish()
    }
}

impl<T: AtomicPrimitive> AtomicValue<T> {
    /// `value` in new shared memory.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the system refuses the memory.
    pub fn new(value: T) -> Result<Self> {
        let atomic = AtomicValue {
            region: Region::new(
                std::mem::size_of::<T::Atomic>(),
                std::mem::align_of::<T::Atomic>(),
            )?,
            kind: PhantomData,
        };
        T::store(&atomic, value);
        Ok(atomic)
    }
}

impl<T: AtomicPrimitive> Deref for AtomicValue<T> {
    type Target = T::Atomic;

    fn deref(&self) -> &T::Atomic {
        // SAFETY: the region holds one `T::Atomic`, aligned (made so, or checked on
        // receipt); an atomic is valid for every bit pattern and made for shared access.
        unsafe { &*self.region.as_ptr().cast::<T::Atomic>() }
    }
}

impl<T> Serialize for AtomicValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(serializer)
    }
}

impl<'de, T: AtomicPrimitive> Deserialize<'de> for AtomicValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(deserializer)?;
        if region.len() != std::mem::size_of::<T::Atomic>()
            || region
                .as_ptr()
                .align_offset(std::mem::align_of::<T::Atomic>())
                != 0
        {
            return Err(serde::de::Error::custom(format!(
                "shared memory that does not hold an {}",
                std::any::type_name::<T::Atomic>()
            )));
        }
        Ok(AtomicValue {
            region,
            kind: PhantomData,
        })
    }
}
