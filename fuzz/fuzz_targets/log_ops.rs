//! `cargo fuzz run log_ops` (nightly): see `bodies::log_ops`.
#![no_main]

#[path = "../../tests/fuzz/bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::log_ops(data));
