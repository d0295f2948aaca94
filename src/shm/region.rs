//! Regions: runs of bytes in shared memory that hold a user's plain data (a value, an array,
//! the bytes of a segment), and the one way this crate copies bytes in and out of them
//! without a lock.
//!
//! A small region (a few KiB at most) is carved from a shared arena, as a lock's cell is, so
//! that a thousand `SharedValue<u64>`s do not cost a thousand descriptors and mappings; a
//! larger one gets a segment of its own, freed with its last user.
//!
//! # Copies without a lock
//!
//! Other processes may write a region at any time, so reading it through a `&[u8]` while one
//! does would be a data race: undefined behaviour, not just a torn value. Copies made without
//! a lock ([`Region::load`] and [`Region::store`]) are therefore made of relaxed atomic
//! operations, a word at a time where the address is aligned (the same instructions as a
//! plain copy on x86-64 and aarch64, but never vectorized). A copy racing a writer may see a
//! mix of old and new words; it is never undefined behaviour. Data that must be read whole
//! is read under its lock.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::arena::{self, MAX_CARVED};
use super::segment::{Segment, SegmentHandle};
use crate::error::{Error, Result};

/// Regions up to this length come from an arena; longer ones get a segment of their own.
const LARGEST_CARVED: usize = 4096;

/// The alignment an arena gives (one cache line); a type that needs more gets a segment (page
/// aligned).
const ARENA_ALIGN: usize = 64;

/// `len` bytes of shared memory, zeroed. Cloning shares the bytes.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    segment: Segment,
    offset: usize,
    len: usize,
}

impl Region {
    /// A new region of `len` bytes whose first byte is aligned to `align`, zeroed.
    ///
    /// # Errors
    ///
    /// As [`Segment::create`].
    pub(crate) fn new(len: usize, align: usize) -> Result<Region> {
        if len <= LARGEST_CARVED.min(MAX_CARVED) && align <= ARENA_ALIGN {
            let (segment, offset) = arena::carve(len)?;
            return Ok(Region {
                segment,
                offset,
                len,
            });
        }
        Ok(Region {
            segment: Segment::create(len)?,
            offset: 0,
            len,
        })
    }

    /// The `len` bytes at `offset` in `segment`.
    ///
    /// # Panics
    ///
    /// If they are not all in the segment.
    pub(crate) fn within(segment: Segment, offset: usize, len: usize) -> Region {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= segment.len()),
            "a shared region outside of its segment"
        );
        Region {
            segment,
            offset,
            len,
        }
    }

    /// The segment the region is in.
    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        // SAFETY: `offset` is within the segment's mapping (checked where the region is made).
        unsafe { self.segment.as_ptr().add(self.offset) }
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies the bytes at `offset` into `out`, without a lock (see the module docs).
    ///
    /// # Panics
    ///
    /// If `offset + out.len()` is past the end of the region.
    pub(crate) fn load(&self, offset: usize, out: &mut [u8]) {
        let from = self.checked(offset, out.len());
        let mut done = 0;
        while done < out.len() {
            // SAFETY: in bounds (checked above); the memory is shared and only ever accessed
            // atomically here, so these loads race with nothing non-atomic of ours.
            let at = unsafe { from.add(done) };
            if at.align_offset(8) == 0 && out.len() - done >= 8 {
                // SAFETY: aligned for a u64 (just checked), in bounds.
                let word = unsafe { AtomicU64::from_ptr(at.cast()) }.load(Ordering::Relaxed);
                out[done..done + 8].copy_from_slice(&word.to_ne_bytes());
                done += 8;
            } else {
                // SAFETY: in bounds.
                out[done] = unsafe { AtomicU8::from_ptr(at) }.load(Ordering::Relaxed);
                done += 1;
            }
        }
    }

    /// Copies `data` to the bytes at `offset`, without a lock (see the module docs).
    ///
    /// # Panics
    ///
    /// If `offset + data.len()` is past the end of the region.
    pub(crate) fn store(&self, offset: usize, data: &[u8]) {
        let to = self.checked(offset, data.len());
        let mut done = 0;
        while done < data.len() {
            // SAFETY: as in `load`.
            let at = unsafe { to.add(done) };
            if at.align_offset(8) == 0 && data.len() - done >= 8 {
                let word = u64::from_ne_bytes(data[done..done + 8].try_into().expect("8 bytes"));
                // SAFETY: aligned for a u64 (just checked), in bounds.
                unsafe { AtomicU64::from_ptr(at.cast()) }.store(word, Ordering::Relaxed);
                done += 8;
            } else {
                // SAFETY: in bounds.
                unsafe { AtomicU8::from_ptr(at) }.store(data[done], Ordering::Relaxed);
                done += 1;
            }
        }
    }

    /// The address of `len` bytes at `offset`.
    fn checked(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "{len} bytes at offset {offset} do not fit in {} bytes of shared memory",
            self.len
        );
        // SAFETY: in bounds (asserted above).
        unsafe { self.as_ptr().add(offset) }
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (self.segment.handle(), self.offset as u64, self.len as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (handle, offset, len) = <(SegmentHandle, u64, u64)>::deserialize(deserializer)?;
        let segment = Segment::open(&handle).map_err(Error::refuse)?;
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(serde::de::Error::custom(
                "a shared region larger than memory",
            ));
        };
        if offset
            .checked_add(len)
            .is_none_or(|end| end > segment.len())
        {
            return Err(serde::de::Error::custom(
                "a shared region outside of its segment",
            ));
        }
        Ok(Region::within(segment, offset, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_and_out_at_any_alignment() {
        let region = Region::new(100, 8).expect("region");
        let data: Vec<u8> = (1..=37).collect();
        region.store(3, &data);
        let mut back = vec![0; 37];
        region.load(3, &mut back);
        assert_eq!(back, data);
        let mut before = [9; 3];
        region.load(0, &mut before);
        assert_eq!(before, [0; 3], "bytes outside the copy are untouched");
    }

    #[test]
    fn large_regions_get_a_segment_of_their_own() {
        let small = Region::new(64, 8).expect("small");
        let large = Region::new(1 << 20, 8).expect("large");
        assert_eq!(large.segment().len(), 1 << 20);
        assert!(small.segment().len() > small.len(), "carved from an arena");
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn a_copy_past_the_end_panics() {
        let region = Region::new(16, 8).expect("region");
        region.store(10, &[0; 7]);
    }
}
