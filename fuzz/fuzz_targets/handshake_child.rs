//! A child's side of its handshake: the key handover, then its first call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("handshake_child"),
    |input: &[u8]| {
        __fuzz::child_handshake(input);
    }
);
