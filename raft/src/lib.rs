//! lamplog as the durable log store of [openraft](https://docs.rs/openraft):
//! [`LogStore`] implements openraft's `RaftLogStorage` and `RaftLogReader`
//! on a lamplog store, so that a host whose op log outgrows one machine
//! replicates it with an existing Raft engine. docs/RAFT.md has the mapping
//! and the durability argument.

pub mod kv;
mod log_store;
mod meta;

pub use lamplog::Options;
pub use log_store::{JsonTypes, LogReader, LogStore};
