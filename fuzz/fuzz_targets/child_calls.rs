//! A child's calls: the request header, then the arguments of workers of several signatures,
//! one call and a batch, decoded and run as a child runs them.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use multiproc::__fuzz;
use serde_bytes::ByteBuf;

#[path = "../seed.rs"]
mod seed;

#[derive(serde::Serialize, serde::Deserialize)]
enum Shape {
    Point { x: i64, y: i64 },
    Named(String),
    Nothing,
}

#[multiproc::worker]
fn numbers(a: u64, b: i32, c: f64, d: bool, e: char) -> u64 {
    a.wrapping_add(b as u64) ^ c.to_bits() ^ u64::from(d) ^ u64::from(e)
}

#[multiproc::worker]
fn collections(words: Vec<String>, map: BTreeMap<u32, Option<ByteBuf>>, shape: Shape) -> usize {
    words.len() + map.len() + matches!(shape, Shape::Nothing) as usize
}

#[multiproc::worker]
async fn bytes_async(bytes: ByteBuf, pair: (u8, String)) -> usize {
    bytes.len() + pair.1.len()
}

fuzz_target!(
    init: seed::write("child_calls"),
    |input: &[u8]| {
        let Some((&flags, rest)) = input.split_first() else {
            return;
        };
        __fuzz::decode_to_child(rest);
        __fuzz::call_workers(module_path!(), rest, flags & 1 == 1);
    }
);
