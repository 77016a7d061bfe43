//! The files: the backend every byte goes through, the sync engine
//! (pwrite, io_uring, syncfs) and `sys`, the crate's only `unsafe` code.

pub mod backend;
pub(crate) mod engine;
pub(crate) mod sys;
