//! `cargo fuzz run frame_decode` (nightly): see `bodies::frame_decode`.
#![no_main]

#[path = "../../tests/fuzz/bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::frame_decode(data));
