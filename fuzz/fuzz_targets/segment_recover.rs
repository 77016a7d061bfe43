//! `cargo fuzz run segment_recover` (nightly): see `bodies::segment_recover`.
#![no_main]

#[path = "../../tests/fuzz/bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::segment_recover(data));
