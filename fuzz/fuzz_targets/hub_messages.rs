//! A hub's requests, as the hub decodes them, and its replies, as a client does, with
//! their items.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("hub_messages"),
    |input: &[u8]| {
        let (header, payload) = __fuzz::split(input);
        __fuzz::decode_hub_request(header, payload);
        __fuzz::decode_hub_reply(header, payload);
    }
);
