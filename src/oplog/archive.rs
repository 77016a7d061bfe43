//! Archiving: moving whole segments that lie entirely before a checkpoint
//! out of the live log, into the stream's `archive/` folder. Never
//! automatic, never a partial segment.
//!
//! `archive.json` in the stream folder says where the live log starts; it
//! is written (atomically) before any segment moves, so that recovery
//! accepts a log that starts after seq 1, and a crash in the middle leaves
//! a log that starts at or before that point.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result};
use crate::format::segment::{ids_file_name, index_file_name, segment_file_name};
use crate::io::backend::{ignore_missing, Backend};
use crate::log::recovery::LogStart;
use crate::oplog::checkpoint::Checkpoint;
use crate::stream::Stream;

pub use crate::format::segment::ARCHIVE_DIR;
pub(crate) const MARKER_FILE: &str = "archive.json";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// Seq of the first record still in the live log.
    live_from_seq: u64,
    /// Seqs below this were purged: their segments deleted for good
    /// (`purge.rs`). Absent (1) until the first purge.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    purged_before_seq: u64,
}

fn one() -> u64 {
    1
}

fn is_one(seq: &u64) -> bool {
    *seq == 1
}

/// What [`Stream::archive_before`] moved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Archived {
    /// Segments moved.
    pub segments: usize,
    /// Seq of the first record still in the live log.
    pub live_from_seq: u64,
    /// Where the segments went.
    pub dir: PathBuf,
}

/// Where the log in the stream folder `dir` starts: the first seq not
/// purged and the first seq of the live log (1 and 1 unless segments were
/// purged or archived).
pub(crate) fn log_start(backend: &dyn Backend, dir: &Path) -> LogStart {
    crate::io::backend::read_small_file(backend, &dir.join(MARKER_FILE), 4096)
        .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())
        .map_or(
            LogStart {
                purged_before: 1,
                live_from: 1,
            },
            |m| LogStart {
                purged_before: m.purged_before_seq,
                live_from: m.live_from_seq,
            },
        )
}

/// Replace the marker: the log now starts as `start` says.
pub(crate) fn write_marker(backend: &dyn Backend, dir: &Path, start: LogStart) -> Result<()> {
    let marker = Marker {
        live_from_seq: start.live_from,
        purged_before_seq: start.purged_before,
    };
    let bytes = serde_json::to_vec(&marker).expect("a marker serialises");
    crate::io::backend::replace_file(backend, dir, MARKER_FILE, &bytes)
}

impl Stream {
    /// Seq of the first record in the live log (1 unless segments were archived).
    pub fn first_seq(&self) -> u64 {
        self.segments().first_seq()
    }

    /// Move every segment that lies entirely before `checkpoint` (all its
    /// records covered by it) into `archive/`. The segment being written is
    /// never moved. Reads of the archived range then return
    /// [`Error::Archived`](crate::Error::Archived) naming where the data went.
    ///
    /// The checkpoint must be one this stream's log holds: another stream's
    /// (or a made-up one) is [`Error::UnknownCheckpoint`](crate::Error::UnknownCheckpoint) and moves nothing.
    pub fn archive_before(&self, checkpoint: &Checkpoint) -> Result<Archived> {
        self.check_writable()?;
        // This stream's checkpoint from before the live log: nothing is
        // left that it could move (and its record cannot be checked).
        if checkpoint.stream == self.name() && checkpoint.record_seq < self.first_seq() {
            return Ok(Archived {
                segments: 0,
                live_from_seq: self.first_seq(),
                dir: self.dir().join(ARCHIVE_DIR),
            });
        }
        self.check_holds(checkpoint)?;
        // One archiving (or other derived-file write) at a time: a second
        // call sees the list the first one left.
        let derived = self.derived();
        let _derived = derived.lock();
        let segments = self.segments().all();
        let mut moving = Vec::new();
        for pair in segments.windows(2) {
            // A segment's last record is the one before the next segment's first.
            if pair[1].header.first_seq - 1 > checkpoint.seq {
                break;
            }
            moving.push(pair[0].clone());
        }
        let dir = self.dir().join(ARCHIVE_DIR);
        let Some(last_moving) = moving.last() else {
            return Ok(Archived {
                segments: 0,
                live_from_seq: self.first_seq(),
                dir,
            });
        };
        let live_from_seq = segments[moving.len()].header.first_seq;
        debug_assert!(last_moving.header.first_seq < live_from_seq);
        for segment in &moving {
            crate::oplog::op_ids::persist_before_archive(self, segment)?;
        }
        let backend = self.backend();
        let start = LogStart {
            purged_before: self.segments().purged_before(),
            live_from: live_from_seq,
        };
        // The op id set catches up after the `.ids` files moved, not between.
        let op_ids = self.op_ids();
        let _op_ids = op_ids.lock();
        write_marker(&**backend, self.dir(), start)?;
        // Readers learn that the segments left before their files move: one
        // whose view the cache dropped then says Archived, not NotFound.
        self.segments().drop_before(live_from_seq);
        move_files(&**backend, self.dir(), &dir, &moving)?;
        Ok(Archived {
            segments: moving.len(),
            live_from_seq,
            dir,
        })
    }
}

/// Move `moving`'s files from the stream folder `live` into `archive`,
/// oldest segment first, and make both folders durable. Per segment, the
/// segment itself moves last: a crash part way leaves its derived files
/// either beside it or already in the archive, never orphaned beside a
/// segment that moved.
fn move_files(
    backend: &dyn Backend,
    live: &Path,
    archive: &Path,
    moving: &[std::sync::Arc<crate::log::segment::Segment>],
) -> Result<()> {
    backend
        .create_dir_all(archive)
        .map_err(io_err("create", archive))?;
    for segment in moving {
        let first = segment.header.first_seq;
        for name in [
            ids_file_name(first),
            index_file_name(first),
            segment_file_name(first),
        ] {
            let from = live.join(&name);
            ignore_missing(backend.rename(&from, &archive.join(&name)))
                .map_err(io_err("rename", from))?;
        }
    }
    backend
        .sync_dir(archive)
        .map_err(io_err("fsync directory", archive))?;
    backend
        .sync_dir(live)
        .map_err(io_err("fsync directory", live))?;
    Ok(())
}
