//! The connecting side of a named socket's handshake: a listener's challenge, verdict and proof.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("handshake_connect"),
    |input: &[u8]| {
        __fuzz::connect_handshake(input);
    }
);
