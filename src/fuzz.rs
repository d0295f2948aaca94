//! Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`, never on by default):
//! thin wrappers that hand arbitrary bytes to the code that reads whatever crosses a process.
//! Not part of the API; nothing here is stable.
//!
//! Each wrapper runs the crate's own reading code (the frame reader, the handshake's checks,
//! the decoders of every header and payload) and reports whether the bytes were accepted;
//! the fuzz targets only look for panics, hangs and oversized allocations. [`seeds`] encodes
//! one valid input per target with the crate's own encoders, so the fuzzer starts past the
//! format's first hurdles and the seeds never go stale.
//!
//! The handshake is known here and nowhere else in the fuzzing code: [`accept_handshake`] and
//! [`child_handshake`] (and their seeds) are what changes when the handshake does.

use std::ops::ControlFlow;

use futures::executor::block_on;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::protocol::hub::{HubReply, HubRequest};
use crate::protocol::store::{Hosted, HostedObject, StoreOp};
use crate::protocol::{BatchResults, FromChild, ToChild, decode};
use crate::transport::{Burst, FrameReader, InFrame, OutFrame, auth, read_frame_blocking};

pub use crate::transport::DEFAULT_MAX_FRAME_LEN;

/// The key every fuzzed process uses, so that a seed can prove it.
const FUZZ_KEY: crate::protocol::Key = [0x5a; crate::protocol::KEY_LEN];

fn use_fuzz_key() {
    auth::inherit_key(FUZZ_KEY);
}

/// Reads every frame of `bytes` as a connection does: one at a time, in bursts, and with
/// blocking reads as a child does before it has a runtime; decodes each header as a child,
/// a parent and a hub would.
pub fn read_frames(bytes: &[u8], max_len: usize) {
    block_on(async {
        let mut reader = FrameReader::new(bytes, max_len);
        while let Ok(Some(frame)) = reader.read().await {
            decode_headers(&frame);
            let _ = reader.peek_header::<ToChild>();
        }
        let mut reader = FrameReader::new(bytes, max_len);
        let each = |frame: InFrame| {
            decode_headers(&frame);
            ControlFlow::Continue(())
        };
        while let Ok(Burst::Handled) = reader.read_burst(each).await {}
    });
    let mut input = bytes;
    while let Ok(Some(frame)) = read_frame_blocking(&mut input, max_len) {
        decode_headers(&frame);
    }
}

fn decode_headers(frame: &InFrame) {
    let _ = frame.header::<ToChild>();
    let _ = frame.header::<FromChild>();
    let _ = frame.header::<HubRequest>();
    let _ = frame.header::<HubReply>();
}

/// The listening side of a named socket's handshake: sends its challenge (into a sink),
/// reads the peer's answer and challenge from `bytes`, and, if the peer proved the key, reads
/// what an accepted peer sends next (hub requests). Whether the peer was accepted: never, in
/// practice, since the challenge is fresh; the target fuzzes the parsing of what a peer says.
pub fn accept_handshake(bytes: &[u8]) -> bool {
    block_on(async {
        let mut stream = tokio::io::join(bytes, tokio::io::sink());
        if auth::server_handshake(&mut stream, &FUZZ_KEY)
            .await
            .is_err()
        {
            return false;
        }
        let (rest, _) = stream.into_inner();
        let mut reader = FrameReader::new(rest, DEFAULT_MAX_FRAME_LEN);
        while let Ok(Some(frame)) = reader.read().await {
            let _ = frame.header::<HubRequest>();
        }
        true
    })
}

/// The connecting side of a named socket's handshake: reads the listener's challenge from
/// `bytes`, answers it and sends its own (into a sink), then reads the listener's verdict and
/// proof. Whether the listener proved the key.
pub fn connect_handshake(bytes: &[u8]) -> bool {
    block_on(async {
        let mut stream = tokio::io::join(bytes, tokio::io::sink());
        auth::client_handshake(&mut stream, &FUZZ_KEY).await.is_ok()
    })
}

/// The child's side of its handshake: reads the key handover its parent wrote ahead of
/// everything, then its first call, with blocking reads. Whether both were accepted.
///
/// Each handover accepted adds the manager keys it carries to this process's (as a child's
/// does, once): a long run grows by what the fuzzer invents there.
pub fn child_handshake(bytes: &[u8]) -> bool {
    let mut input = bytes;
    auth::receive_handover(&mut input).is_ok()
        && matches!(
            read_frame_blocking(&mut input, DEFAULT_MAX_FRAME_LEN),
            Ok(Some(frame)) if frame.header::<ToChild>().is_ok()
        )
}

/// Decodes a parent's request header as a child does.
pub fn decode_to_child(header: &[u8]) -> bool {
    postcard::from_bytes::<ToChild>(header).is_ok()
}

/// Runs every worker registered under the module path `module` (the fuzz target's own, never
/// the crate's, which start servers) on `payload` as a child runs a call (a batch when
/// `batch`), and decodes each reply as the parent does. Whether any worker accepted it.
pub fn call_workers(module: &str, payload: &[u8], batch: bool) -> bool {
    let mut accepted = false;
    let in_module = |name: &&str| {
        name.strip_prefix(module)
            .is_some_and(|rest| rest.starts_with("::"))
    };
    for name in crate::registry::names().into_iter().filter(in_module) {
        let registered = crate::registry::lookup(name).expect("a registered name");
        // A worker that awaits is dropped unpolled further: decoding happens before it awaits.
        if let Ok(Ok(reply)) = registered.call_now(payload, batch) {
            accepted = true;
            let _ = decode::<BatchResults<ByteBuf>>(&reply, "a fuzzed reply");
        }
    }
    accepted
}

/// Decodes a child's reply header, and its payload as the results of a batch of `T`, as a
/// parent does.
pub fn decode_from_child<T: DeserializeOwned>(header: &[u8], payload: &[u8]) -> bool {
    let header = postcard::from_bytes::<FromChild>(header).is_ok();
    let payload = decode::<BatchResults<T>>(payload, "fuzzed results").is_ok();
    header && payload
}

/// Decodes a hub request header and a payload of items, as a hub does.
pub fn decode_hub_request(header: &[u8], payload: &[u8]) -> bool {
    let header = postcard::from_bytes::<HubRequest>(header).is_ok();
    header && crate::shared::hub::decode_items(payload).is_ok()
}

/// Decodes a hub reply header and a payload of items, as a client does.
pub fn decode_hub_reply(header: &[u8], payload: &[u8]) -> bool {
    let header = postcard::from_bytes::<HubReply>(header).is_ok();
    header && crate::shared::hub::decode_items(payload).is_ok()
}

/// Decodes a manager's store operation, as the store does, and a hosted object's answer, as
/// a client does.
pub fn decode_store_op(op: &[u8], answer: &[u8]) -> bool {
    let op = postcard::from_bytes::<StoreOp>(op).is_ok();
    op && decode::<HostedObject>(answer, "a fuzzed hosted object").is_ok()
}

/// One valid input for the fuzz target `target`, encoded by the crate's own encoders, or
/// `None` for a target without one.
pub fn seeds(target: &str) -> Option<Vec<u8>> {
    let call = ToChild::Call {
        id: 1,
        worker: "fuzz::worker".into(),
        batch: true,
    };
    let request = HubRequest::Sync { id: 7 };
    let items = vec![ByteBuf::from(b"an item".to_vec())];
    Some(match target {
        "frame_reader" => [frame(&call, b"args"), frame(&request, &encoded(&items))].concat(),
        "handshake_accept" => auth::peer_messages(&FUZZ_KEY, true),
        "handshake_connect" => auth::peer_messages(&FUZZ_KEY, false),
        "handshake_child" => {
            use_fuzz_key();
            auth::remember_peer_key("127.0.0.1:5000".into(), b"a manager's key".to_vec(), None);
            [auth::handover(), frame(&call, b"args")].concat()
        }
        "child_calls" => [&[0u8][..], &encoded(&call)].concat(),
        "child_replies" => {
            let done = FromChild::Done {
                id: 1,
                outcome: Ok(()),
                failed_items: 0,
            };
            let results = BatchResults::AllOk(vec![ByteBuf::from(b"a value".to_vec())]);
            split_input(&encoded(&done), &encoded(&results))
        }
        "hub_messages" => split_input(&encoded(&request), &encoded(&items)),
        "manager_ops" => {
            let op = StoreOp::Host {
                object: Hosted::Queue(Some(3)),
                name: Some("jobs".into()),
            };
            let answer = HostedObject {
                id: 3,
                object: Hosted::Queue(Some(3)),
            };
            split_input(&encoded(&op), &encoded(&answer))
        }
        _ => return None,
    })
}

/// Splits a fuzz input in two at the index its first byte gives.
pub fn split(input: &[u8]) -> (&[u8], &[u8]) {
    match input.split_first() {
        Some((&at, rest)) => rest.split_at((at as usize).min(rest.len())),
        None => (&[], &[]),
    }
}

/// The input [`split`] splits into `first` and `second` (`first` under 256 bytes).
fn split_input(first: &[u8], second: &[u8]) -> Vec<u8> {
    [&[first.len() as u8][..], first, second].concat()
}

fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("a seed encodes")
}

fn frame<H: Serialize>(header: &H, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    OutFrame::new(header, payload.to_vec(), DEFAULT_MAX_FRAME_LEN)
        .expect("a seed fits a frame")
        .write_blocking(&mut bytes)
        .expect("writing to a Vec");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each seed gets past its target's first hurdles: the fuzzer starts from inputs the
    /// crate accepts, whatever the formats (or the handshake) become.
    #[test]
    fn every_seed_is_accepted() {
        let seed = |target| seeds(target).expect("a seed");
        // A fresh challenge cannot be answered in advance: these seeds get as far as the proof.
        assert!(!accept_handshake(&seed("handshake_accept")));
        assert!(!connect_handshake(&seed("handshake_connect")));
        assert!(child_handshake(&seed("handshake_child")));
        assert!(decode_to_child(&seed("child_calls")[1..]));
        let replies = seed("child_replies");
        let (header, payload) = split(&replies);
        assert!(decode_from_child::<ByteBuf>(header, payload));
        let requests = seed("hub_messages");
        let (header, payload) = split(&requests);
        assert!(decode_hub_request(header, payload));
        let ops = seed("manager_ops");
        let (op, answer) = split(&ops);
        assert!(decode_store_op(op, answer));
        let frames = seed("frame_reader");
        let mut input = &frames[..];
        for _ in 0..2 {
            let frame = read_frame_blocking(&mut input, DEFAULT_MAX_FRAME_LEN);
            assert!(matches!(frame, Ok(Some(_))));
        }
    }
}
