//! The crate's only `unsafe` code: the memory maps readers use and the
//! io_uring submissions of the syncer. Every site has a `// SAFETY:`
//! comment and is listed in `docs/UNSAFE.md`.
#![allow(unsafe_code)]

pub(crate) mod mmap;
#[cfg(feature = "io-uring")]
pub(crate) mod uring;
