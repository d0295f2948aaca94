//! Large payload buffers, kept for reuse once written.
//!
//! A value of a megabyte is encoded into a buffer of its own, which is freed as soon as the
//! frame is written. The allocator hands such a buffer back to the kernel, so the next one
//! is fresh memory again: a page fault and a page cleared for every 4 KiB, which costs more
//! than copying the value into it. Buffers of [`MIN_KEPT`] or more are therefore kept here
//! once their frame is written (at most [`MAX_KEPT_BUFFERS`], [`MAX_KEPT_BYTES`] in all),
//! and [`with_capacity`] reuses the smallest that fits. Bodies of large frames read are kept
//! the same way, for the next frame read ([`take_kept`]). A child frees them when it goes
//! idle ([`release`]); the main process keeps them, within those bounds.

use std::sync::Mutex;

/// Buffers smaller than this are left to the allocator, which keeps them itself.
const MIN_KEPT: usize = 256 * 1024;
/// Larger buffers are rare enough not to be worth holding.
const MAX_KEPT: usize = 16 * 1024 * 1024;
const MAX_KEPT_BUFFERS: usize = 8;
const MAX_KEPT_BYTES: usize = 32 * 1024 * 1024;

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer that holds at least `capacity` bytes: a kept one if one fits.
pub(crate) fn with_capacity(capacity: usize) -> Vec<u8> {
    take_kept(capacity).unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// The smallest kept buffer that holds at least `capacity` bytes, if there is one: memory
/// this process holds already, so taking it costs nothing new.
pub(crate) fn take_kept(capacity: usize) -> Option<Vec<u8>> {
    if capacity < MIN_KEPT {
        return None;
    }
    let mut kept = KEPT.lock().expect("kept buffers poisoned");
    let smallest_fitting = kept
        .iter()
        .enumerate()
        .filter(|(_, buffer)| buffer.capacity() >= capacity)
        .min_by_key(|(_, buffer)| buffer.capacity())
        .map(|(index, _)| index)?;
    Some(kept.swap_remove(smallest_fitting))
}

/// Keeps `buffer`, whose contents are no longer needed, for a later [`with_capacity`].
pub(crate) fn give_back(mut buffer: Vec<u8>) {
    if !(MIN_KEPT..=MAX_KEPT).contains(&buffer.capacity()) {
        return;
    }
    buffer.clear();
    let mut kept = KEPT.lock().expect("kept buffers poisoned");
    let kept_bytes: usize = kept.iter().map(Vec::capacity).sum();
    if kept.len() < MAX_KEPT_BUFFERS && kept_bytes + buffer.capacity() <= MAX_KEPT_BYTES {
        kept.push(buffer);
    }
}

/// Frees every kept buffer: a child does when it goes idle.
pub(crate) fn release() {
    KEPT.lock().expect("kept buffers poisoned").clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_buffer_is_reused_and_a_small_one_is_not() {
        let large = Vec::<u8>::with_capacity(MIN_KEPT * 2);
        let address = large.as_ptr();
        give_back(large);
        let reused = with_capacity(MIN_KEPT + 1);
        assert_eq!(reused.as_ptr(), address);
        assert!(reused.is_empty());
        give_back(Vec::with_capacity(1024));
        assert!(with_capacity(1024).capacity() >= 1024);
        give_back(reused);
    }
}
