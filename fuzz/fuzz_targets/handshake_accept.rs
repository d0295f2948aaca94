//! The listening side of a named socket's handshake, then what an accepted peer sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("handshake_accept"),
    |input: &[u8]| {
        __fuzz::accept_handshake(input);
    }
);
