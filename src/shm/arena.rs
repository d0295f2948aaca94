//! Small cells in shared memory: a lock word, an event flag, a semaphore count.
//!
//! Giving every lock a segment of its own would cost a descriptor and a mapping each (both
//! limited per process), so small cells are carved out of shared arenas of 64 KiB, as
//! CPython's `multiprocessing.heap` does. Each cell takes a 64-byte line of its own, so two
//! cells used by different processes never share a cache line. A cell lives as long as its
//! arena: arenas are never reused, and one is freed once no process maps it any more, so a
//! program that creates cells without end grows by 64 bytes per cell, like the hub's objects.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::segment::{Segment, SegmentHandle, SharedPlain};
use crate::error::{Error, Result};

/// The size of one arena.
const ARENA_LEN: usize = 64 * 1024;
/// Every cell starts on a line of its own.
const LINE: usize = 64;

/// The arena cells are carved from now, and where its free space starts.
static CURRENT: Mutex<Option<(Segment, usize)>> = Mutex::new(None);

/// `len` bytes (at least one line, whole lines) carved from the current arena, or from a new
/// one when it is full: the arena and the offset of the first byte, aligned to a line.
///
/// # Errors
///
/// As [`Segment::create`], when a new arena is needed.
///
/// # Panics
///
/// If `len` is larger than an arena ([`MAX_CARVED`]).
pub(crate) fn carve(len: usize) -> Result<(Segment, usize)> {
    let len = len.div_ceil(LINE).max(1) * LINE;
    assert!(len <= MAX_CARVED, "carved memory fits an arena");
    let mut current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    if current
        .as_ref()
        .is_none_or(|(_, free)| free + len > ARENA_LEN)
    {
        *current = Some((Segment::create(ARENA_LEN)?, 0));
    }
    let (segment, free) = current.as_mut().expect("an arena");
    let offset = *free;
    *free += len;
    Ok((segment.clone(), offset))
}

/// The most [`carve`] gives at once.
pub(crate) const MAX_CARVED: usize = ARENA_LEN;

/// A `T` in shared memory, reachable from every process that receives this handle. Cloning
/// shares the cell.
pub(crate) struct Cell<T> {
    segment: Segment,
    offset: usize,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Cell<T> {
    fn clone(&self) -> Self {
        Cell {
            segment: self.segment.clone(),
            offset: self.offset,
            kind: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Cell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cell")
            .field("segment", &self.segment)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<T: SharedPlain> Cell<T> {
    /// A new cell, all zeros.
    ///
    /// # Errors
    ///
    /// As [`Segment::create`], when a new arena is needed.
    pub(crate) fn new() -> Result<Self> {
        assert!(
            std::mem::align_of::<T>() <= LINE,
            "a cell fits an arena line"
        );
        let (segment, offset) = carve(std::mem::size_of::<T>())?;
        Ok(Cell {
            segment,
            offset,
            kind: PhantomData,
        })
    }

    /// The cell at `offset` in a segment of the caller's (a header it keeps for a cell).
    ///
    /// # Panics
    ///
    /// If a `T` does not fit there, or `offset` is not aligned for it.
    pub(crate) fn in_segment(segment: Segment, offset: usize) -> Self {
        let _ = segment.at::<T>(offset);
        Cell {
            segment,
            offset,
            kind: PhantomData,
        }
    }

    /// Where the cell is: its segment and its offset there.
    pub(crate) fn place(&self) -> (&Segment, usize) {
        (&self.segment, self.offset)
    }
}

impl<T: SharedPlain> Deref for Cell<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.segment.at(self.offset)
    }
}

impl<T> Serialize for Cell<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (self.segment.handle(), self.offset as u64).serialize(serializer)
    }
}

impl<'de, T: SharedPlain> Deserialize<'de> for Cell<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (handle, offset) = <(SegmentHandle, u64)>::deserialize(deserializer)?;
        let segment = Segment::open(&handle).map_err(Error::refuse)?;
        let offset = usize::try_from(offset).map_err(serde::de::Error::custom)?;
        if offset + std::mem::size_of::<T>() > segment.len() || !offset.is_multiple_of(LINE) {
            return Err(serde::de::Error::custom(
                "a shared cell outside of its segment",
            ));
        }
        Ok(Cell {
            segment,
            offset,
            kind: PhantomData,
        })
    }
}
