//! The crate's only `unsafe` code: the memory maps readers use, the
//! writer's copies into a write map, the call that starts writeback early,
//! and the io_uring submissions of the syncer. Every site has a `// SAFETY:`
//! comment and is listed in `docs/UNSAFE.md`.
#![allow(unsafe_code)]

pub(crate) mod mmap;
#[cfg(feature = "io-uring")]
pub(crate) mod uring;
pub(crate) mod writeback;
