//! lamplog: an embeddable storage engine for append-only operation logs.
//!
//! A [`Store`] is a directory of named [`Stream`]s. Each stream is a log of
//! JSON records in CRC-framed segment files, ordered by a contiguous `seq`
//! and a Lamport timestamp, read back zero-copy through `mmap`, and recovered
//! after a crash without losing an acknowledged record.
//!
//! ```
//! use lamplog::{Durability, Options, Store};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default())?;
//! let session = store.stream("session-42")?;
//! let a = session.append(br#"{"op":"write","path":"src/main.rs"}"#, Durability::Sync)?;
//! session.append(br#"{"op":"delete","path":"src/old.rs"}"#, Durability::Buffered)?;
//! session.sync()?;
//! let replayed: Vec<_> = session.iter().collect::<Result<_, _>>()?;
//! assert_eq!(replayed.len(), 2);
//! assert_eq!(session.get(a.seq)?.unwrap().payload(), br#"{"op":"write","path":"src/main.rs"}"#);
//! # Ok::<(), lamplog::Error>(())
//! ```
//!
//! The on-disk format is specified in `docs/FORMAT.md`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod archive;
pub mod backend;
mod checkpoint;
mod clock;
mod commit;
mod engine;
mod error;
mod frame;
mod index;
mod map_cache;
mod merge;
mod name;
pub mod op;
mod op_ids;
mod options;
mod poison;
mod quarantine;
mod query;
mod reader;
mod recovery;
mod scan;
mod segment;
mod store;
mod stream;
mod subscribe;
mod sync;
mod syncer;
mod sys;
mod verify;
mod writer;

pub use archive::{Archived, ARCHIVE_DIR};
pub use checkpoint::{Checkpoint, CHECKPOINT_FILE};
pub use error::{CorruptionKind, Error, Result};
pub use frame::Kind;
pub use merge::{Merge, MergedRecord};
pub use options::{Durability, IoBackend, Options, RecoveryMode, SyncScope};
pub use quarantine::{Cut, CutReason, QUARANTINE_DIR};
pub use query::{Query, QueryIter};
pub use reader::{Iter, Record};
pub use store::{RecoveryReport, Store, LOCK_FILE, STREAMS_DIR};
pub use stream::Stream;
pub use subscribe::Subscription;
pub use syncer::Stats;
pub use verify::Verified;
pub use writer::Appended;

/// Size limits and layout constants of the on-disk format.
pub mod format {
    pub use crate::frame::{FRAME_HEADER_LEN, PAYLOAD_LEN_LIMIT};
    pub use crate::index::{INDEX_ENTRY_LEN, INDEX_HEADER_LEN, INDEX_MAGIC};
    pub use crate::name::NAME_LEN_MAX;
    pub use crate::options::SEGMENT_BYTES_MAX_LIMIT;
    pub use crate::segment::{FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
    pub use crate::writer::LAMPORT_MAX;
}

/// The frame codec, for benchmarks and fuzz targets. Not a stable API.
#[doc(hidden)]
pub mod internals {
    use crate::frame::{self, FrameMeta, Kind};

    /// Append one data frame to `out`; returns its CRC.
    pub fn encode_frame(
        out: &mut Vec<u8>,
        seq: u64,
        lamport: u64,
        payload: &[u8],
        salt: u32,
    ) -> u32 {
        let meta = FrameMeta {
            seq,
            lamport,
            ts_us: 0,
            prev_crc: 0,
            durable_end: 0,
            kind: Kind::Data,
            continues: false,
        };
        frame::encode(out, &meta, payload, salt)
    }

    /// Decode and verify the frame at the start of `buf`: its seq and
    /// payload, or `None` if the bytes are not a valid frame.
    pub fn decode_frame(buf: &[u8], salt: u32) -> Option<(u64, &[u8])> {
        frame::decode(buf, salt)
            .ok()
            .map(|f| (f.meta.seq, f.payload))
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<Stream>();
    assert_send_sync::<Record>();
};
