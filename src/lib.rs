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
//! # Map
//!
//! - [`Store`] opens a directory with [`Options`] and hands out [`Stream`]s
//!   by name; [`Stream::append`] takes a payload and a [`Durability`] and
//!   returns where it landed ([`Appended`]).
//! - Reading: [`Stream::get`], [`Stream::iter`] and its seeks yield
//!   [`Record`]s through an [`Iter`]; [`Query`] filters ops by actor, kind,
//!   Lamport and time; [`Subscription`] follows a stream as it grows.
//! - Built on the log: [`Checkpoint`]s to replay from, archiving
//!   ([`Archived`]), [`Merge`] of streams by Lamport order, the typed ops of
//!   [`op`] with idempotent inserts, and [`Stream::verify`] ([`Verified`]).
//! - After a crash, [`Store::recovery_report`] says what recovery cut
//!   ([`Cut`]); every failure is an [`Error`], damage on disk an
//!   [`Error::Corruption`] naming stream, segment and offset.
//! - [`format`](mod@format) holds the format's public constants; `testing` (cargo
//!   feature `testing`) the file backend seam and a simulated disk for
//!   crash tests.
//!
//! The on-disk format is specified in `docs/FORMAT.md`; the code's layers
//! in `docs/ARCHITECTURE.md`.
#![deny(unsafe_code)]
// `unwrap` hides why a value must be there: library code says it with
// `expect("...")` (an invariant) or returns an error (input). Tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

// The layers, each using only those below it (docs/ARCHITECTURE.md):
// the bytes, the files, one stream's log, what is built on a log; then
// the stream handle and the store.
pub mod format;
mod io;
mod log;
mod oplog;

mod error;
mod options;
mod store;
mod stream;

pub use oplog::op;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{CorruptionKind, Error, Result};
pub use format::frame::Kind;
pub use log::commit::pending::Pending;
pub use log::commit::syncer::Stats;
pub use log::quarantine::{Cut, CutReason, QUARANTINE_DIR};
pub use log::reader::{Iter, Record};
pub use log::writer::Appended;
pub use oplog::archive::{Archived, ARCHIVE_DIR};
pub use oplog::checkpoint::{Checkpoint, CHECKPOINT_FILE};
pub use oplog::merge::{Merge, MergedRecord};
pub use oplog::purge::Purged;
pub use oplog::query::{Query, QueryIter};
pub use oplog::redact::{Redaction, REASON_LEN_MAX, REDACTIONS_FILE};
pub use oplog::stale::StaleFile;
pub use oplog::subscribe::Subscription;
pub use oplog::verify::Verified;
pub use options::{Durability, IoBackend, Options, RecoveryMode, SyncScope};
pub use store::{RecoveryReport, Store, LOCK_FILE, STREAMS_DIR};
pub use stream::{Stream, Usage};

/// The frame codec, for benchmarks and fuzz targets. Not a stable API.
#[doc(hidden)]
pub mod internals {
    use crate::format::frame::{self, FrameMeta, Kind};

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
