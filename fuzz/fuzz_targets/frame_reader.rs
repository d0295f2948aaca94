//! The frame reader, one frame at a time, in bursts and with blocking reads, under the
//! default frame limit: whatever a frame announces, it may cost only what arrived.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("frame_reader"),
    |input: &[u8]| __fuzz::read_frames(input, __fuzz::DEFAULT_MAX_FRAME_LEN)
);
