//! What is built on a stream's log: checkpoints, archiving, purging,
//! queries, merges, redaction, following, subscriptions, typed ops and their ids,
//! verification.

pub(crate) mod archive;
pub(crate) mod checkpoint;
pub(crate) mod follow;
pub(crate) mod merge;
pub mod op;
pub(crate) mod op_ids;
pub(crate) mod purge;
pub(crate) mod query;
pub(crate) mod redact;
pub(crate) mod stale;
pub(crate) mod subscribe;
pub(crate) mod verify;
