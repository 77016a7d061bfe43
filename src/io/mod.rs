//! The files: the backend every byte goes through, the sync engine
//! (pwrite, io_uring, syncfs), `sys`, the crate's only `unsafe` code, and
//! `sim`, the simulated disk of the tests.

pub(crate) mod backend;
pub(crate) mod engine;
#[cfg(any(feature = "testing", all(loom, test)))]
pub(crate) mod sim;
pub(crate) mod sys;
