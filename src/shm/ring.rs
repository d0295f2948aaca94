//! A ring of byte records in shared memory, from one producer process to the process that
//! serves a queue: how a [`Queue::put`](crate::Queue::put) from another process completes
//! without a round trip.
//!
//! One writer (the producer's process, under its own mutex) and one reader (the queue's hub).
//! A record is a 4-byte little-endian length and the bytes, and may wrap around the end. The
//! writer copies the record, then publishes it by storing the new write position (release);
//! the reader reads up to the write position it loaded (acquire), then stores its read
//! position. So a record is either wholly visible or not at all: a producer killed halfway
//! through a copy leaves nothing behind, and one killed right after a put returned leaves its
//! record for the hub, which maps the ring too.
//!
//! The reader does not trust the writer's lengths: a record that claims more than was
//! published marks the ring broken, and the hub drops it.
//!
//! `armed` lets the writer ring the hub only when it matters: the hub arms the ring when a
//! getter is parked and then looks at the ring once more; a writer that publishes a record and
//! finds the ring armed disarms it and sends one message. Both sides order their store and
//! their load with `SeqCst`, so either the hub's second look sees the record or the writer
//! sees the arming.

use std::sync::atomic::{AtomicU64, Ordering};

use super::segment::{Segment, SharedPlain};
use crate::error::Result;

/// Bytes of records a ring holds.
pub(crate) const RING_BYTES: usize = 256 * 1024;
/// Records larger than this take the queue's usual path.
pub(crate) const MAX_RECORD: usize = RING_BYTES / 4;

const LEN_BYTES: u64 = 4;

#[repr(C)]
struct Header {
    write: AtomicU64,
    read: AtomicU64,
    /// 1 while the hub waits for a record (a getter is parked).
    armed: AtomicU64,
    /// 1 once the queue is closed: writers stop using the ring.
    closed: AtomicU64,
}

// SAFETY: repr(C), made of atomics only.
unsafe impl SharedPlain for Header {}

const DATA: usize = 64;

/// A ring in a segment of its own. Clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    segment: Segment,
}

/// The reader found a record that was not written as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Broken;

impl Ring {
    /// A new, empty ring.
    pub(crate) fn create() -> Result<Ring> {
        Ok(Ring {
            segment: Segment::create(DATA + RING_BYTES)?,
        })
    }

    /// The ring in `segment`, as the hub maps it; `None` if it is too short to be one.
    pub(crate) fn from_segment(segment: Segment) -> Option<Ring> {
        (segment.len() == DATA + RING_BYTES).then_some(Ring { segment })
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    fn header(&self) -> &Header {
        self.segment.at(0)
    }

    /// Copies `bytes` into the ring at position `at`, wrapping around its end.
    fn copy_in(&self, at: u64, bytes: &[u8]) {
        let start = (at % RING_BYTES as u64) as usize;
        let first = bytes.len().min(RING_BYTES - start);
        // SAFETY: both ranges lie in the data area of the mapping (start + first <=
        // RING_BYTES, the rest from 0); only the writer writes, and only where the reader
        // does not read (between the write and read positions' free space).
        unsafe {
            let data = self.segment.as_ptr().add(DATA);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.add(start), first);
            std::ptr::copy_nonoverlapping(bytes[first..].as_ptr(), data, bytes.len() - first);
        }
    }

    /// Copies bytes out of the ring at position `at` into `out`, wrapping around its end.
    fn copy_out(&self, at: u64, out: &mut [u8]) {
        let start = (at % RING_BYTES as u64) as usize;
        let first = out.len().min(RING_BYTES - start);
        // SAFETY: as in `copy_in`, for the reader's side of published records.
        unsafe {
            let data = self.segment.as_ptr().add(DATA);
            std::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), first);
            let rest = out.len() - first;
            std::ptr::copy_nonoverlapping(data, out[first..].as_mut_ptr(), rest);
        }
    }

    /// Writer: publishes `bytes` as one record; `false` if the ring has no room for it now.
    pub(crate) fn push(&self, bytes: &[u8]) -> bool {
        let header = self.header();
        let write = header.write.load(Ordering::Relaxed);
        let read = header.read.load(Ordering::Acquire);
        let need = LEN_BYTES + bytes.len() as u64;
        if bytes.len() > MAX_RECORD || write - read + need > RING_BYTES as u64 {
            return false;
        }
        self.copy_in(write, &(bytes.len() as u32).to_le_bytes());
        self.copy_in(write + LEN_BYTES, bytes);
        header.write.store(write + need, Ordering::SeqCst);
        true
    }

    /// Writer, after a push: whether the hub waits for it (and so must be told), disarming.
    pub(crate) fn take_armed(&self) -> bool {
        self.header().armed.swap(0, Ordering::SeqCst) == 1
    }

    /// Writer: whether the queue was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.header().closed.load(Ordering::Acquire) == 1
    }

    /// Reader: every record published so far, in order.
    pub(crate) fn pop_all(&self) -> std::result::Result<Vec<Vec<u8>>, Broken> {
        let header = self.header();
        let mut read = header.read.load(Ordering::Relaxed);
        let write = header.write.load(Ordering::SeqCst);
        if write < read || write - read > RING_BYTES as u64 {
            return Err(Broken);
        }
        let mut records = Vec::new();
        while read < write {
            let mut len = [0u8; 4];
            self.copy_out(read, &mut len);
            let len = u64::from(u32::from_le_bytes(len));
            if read + LEN_BYTES + len > write {
                return Err(Broken);
            }
            let mut record = vec![0u8; len as usize];
            self.copy_out(read + LEN_BYTES, &mut record);
            records.push(record);
            read += LEN_BYTES + len;
        }
        header.read.store(read, Ordering::Release);
        Ok(records)
    }

    /// Reader: arms the ring before waiting for records (see the module docs).
    pub(crate) fn arm(&self) {
        self.header().armed.store(1, Ordering::SeqCst);
    }

    /// Reader: tells writers the queue is closed.
    pub(crate) fn close(&self) {
        self.header().closed.store(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_whole_and_in_order_across_the_end() {
        let ring = Ring::create().expect("ring");
        let record = vec![7u8; 1000];
        let mut sent = 0;
        for round in 0..600 {
            while ring.push(&record[..round % 1000]) {
                sent += 1;
            }
            let records = ring.pop_all().expect("whole");
            assert!(records.iter().all(|r| r.iter().all(|b| *b == 7)));
            sent -= records.len();
            assert_eq!(sent, 0);
        }
    }

    #[test]
    fn a_record_longer_than_published_breaks_the_ring() {
        let ring = Ring::create().expect("ring");
        assert!(ring.push(b"hello"));
        ring.copy_in(0, &1000u32.to_le_bytes());
        assert_eq!(ring.pop_all(), Err(Broken));
    }
}
