//! A manager's store operations, as its store decodes them, and a hosted object's answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;

#[path = "../seed.rs"]
mod seed;

fuzz_target!(
    init: seed::write("manager_ops"),
    |input: &[u8]| {
        let (op, answer) = __fuzz::split(input);
        __fuzz::decode_store_op(op, answer);
    }
);
