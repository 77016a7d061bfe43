//! One stream's log: its segments and their index, the encoder and the
//! files it writes, readers and scans, recovery, the views readers map,
//! `commit`, the group commit (queue, syncer thread, poison, loom model),
//! and work spread over cores for full checks.

pub(crate) mod clock;
pub(crate) mod commit;
pub(crate) mod index;
pub(crate) mod map_cache;
pub(crate) mod parallel;
pub(crate) mod quarantine;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod replace;
pub(crate) mod scan;
pub(crate) mod segment;
pub(crate) mod sync;
pub(crate) mod writer;
