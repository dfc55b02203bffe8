//! Arbitrary bytes as one request frame body (header + body, no length prefix) into
//! `runnel_protocol::frame::decode_request`, the function the broker runs on every frame it
//! reads. It must return `Ok` or `Err` for any input: never panic, overflow, or allocate
//! according to an unchecked length field (kafka-protocol pre-allocates from array counts,
//! which is why this target exists).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The broker's allocator: kafka-protocol pre-allocates from wire counts, and the broker relies on
// this guard to survive that (see runnel_protocol::alloc_guard). Fuzz what the broker runs.
#[global_allocator]
static ALLOC: runnel_protocol::alloc_guard::GuardedAlloc =
    runnel_protocol::alloc_guard::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = runnel_protocol::frame::decode_request(bytes::Bytes::copy_from_slice(data));
});
