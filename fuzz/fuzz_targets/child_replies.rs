//! A child's replies, as its parent decodes them: the reply header, then the results of a
//! batch (all values, or one outcome per item).
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;
use serde_bytes::ByteBuf;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("child_replies"),
    |input: &[u8]| {
        let (header, payload) = __fuzz::split(input);
        __fuzz::decode_from_child::<ByteBuf>(header, payload);
        __fuzz::decode_from_child::<(String, Vec<u64>, Option<i8>)>(header, payload);
    }
);
