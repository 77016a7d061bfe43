//! Opening a stream's segments after a clean stop or a crash.
//!
//! Sealed segments were fully synced before the next one was created, so
//! any damage in them is corruption; their index files let open skip
//! scanning them. Only the last (tail) segment can hold a torn write. The
//! rule that separates a torn tail from corruption is in `docs/FORMAT.md`
//! ("Recovery"): bytes after the last whole record are cut as torn unless a
//! valid record after them proves, through its `durable_end`, that they had
//! been synced.

mod cut;
mod salvage;
mod segment;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{io_err, CorruptionKind, Error, Result};
use crate::format::frame;
use crate::format::index::{self, IndexEntry, ParsedIndex, Seal};
use crate::format::segment::{
    index_file_name, parse_segment_file_name, segment_file_name, HeaderError, SegmentHeader,
    SEGMENT_HEADER_LEN,
};
use crate::io::backend::{Backend, BackendFile, OpenMode};
use crate::log::index::{self as index_file, SparseIndex};
use crate::log::map_cache::MapCache;
use crate::log::quarantine::{self, Cut, CutReason};
use crate::log::scan::{durable_after, scan, Cursor};
use crate::log::segment::{Published, Segment};
use crate::options::{Options, RecoveryMode};

/// What recovery found in one stream.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The usable segments, oldest first; the last one is where writing resumes.
    pub segments: Vec<Arc<Segment>>,
    /// Seqs below this were purged (deleted for good).
    pub purged_before: u64,
    pub cuts: Vec<Cut>,
    pub indexes_rebuilt: u64,
}

/// Damage found while opening one segment.
struct Damage {
    offset: u64,
    kind: CorruptionKind,
    /// The good records before the damage, when the header was fine.
    good: Option<Good>,
}

/// A segment's readable part before damage.
struct Good {
    header: SegmentHeader,
    file: Arc<dyn BackendFile>,
    bytes: Bytes,
    found: (Published, SparseIndex),
}

/// The published state and index of the whole records of a segment.
type Found = (Published, SparseIndex);
/// A segment's whole records, or the damage after them: its offset, its
/// kind, and the whole records before it.
type Checked<T> = Result<T, (u64, CorruptionKind, Found)>;
/// A tail's whole records and, if bytes follow them, how many are torn.
type TailChecked = Checked<(Found, Option<u64>)>;

enum Opened {
    Segment(Arc<Segment>),
    /// The last segment's header was never completely written.
    TornCreation,
    Damaged(Damage),
}

struct Recovery<'a> {
    backend: &'a dyn Backend,
    /// Where the live log starts, read when asked: after the directory
    /// listing (see `walk`).
    start: &'a dyn Fn() -> LogStart,
    purged_before: u64,
    cache: &'a Arc<MapCache>,
    dir: &'a Path,
    stream: &'a str,
    opts: &'a Options,
    cuts: Vec<Cut>,
    indexes_rebuilt: u64,
}

/// Where a stream's log starts, which the caller knows (from the archive
/// marker): seqs below `purged_before` were deleted for good, seqs below
/// `live_from` moved out of the live log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogStart {
    pub purged_before: u64,
    pub live_from: u64,
}

/// How many times a read-only open starts over because the log changed
/// under it (a segment it listed was archived before it could open it).
/// Archiving is rare, so the second attempt almost always settles it.
const READ_ONLY_ATTEMPTS: usize = 64;

/// How many times a read-only open reads a live tail again to confirm (or
/// dismiss) a verdict of damage.
const TAIL_READINGS_MAX: usize = 8;

/// Open and check every segment of the stream in `dir`.
pub(crate) fn recover_stream(
    cache: &Arc<MapCache>,
    dir: &Path,
    stream: &str,
    opts: &Options,
    start: &dyn Fn() -> LogStart,
) -> Result<Recovered> {
    for _ in 0..READ_ONLY_ATTEMPTS {
        let mut r = Recovery {
            backend: &**cache.backend(),
            start,
            purged_before: 1,
            cache,
            dir,
            stream,
            opts,
            cuts: Vec::new(),
            indexes_rebuilt: 0,
        };
        if let Some(recovered) = r.walk()? {
            return Ok(recovered);
        }
    }
    Err(io_err("list", dir)(std::io::Error::other(
        "segments kept being archived while a read-only open read them",
    )))
}

impl Recovery<'_> {
    /// Walk the chain of segments from the first one listed. A sealed
    /// segment's successor is the file named after its last seq + 1,
    /// opened by that name: a directory listing is not a snapshot (one
    /// taken while the writer creates segments can miss one and show a
    /// later one), so it only says where the chain starts and which
    /// segments have successors (are sealed). Every listed segment must be
    /// on the chain. `None`: a read-only open found that the log changed
    /// under it (a segment vanished, archived) and must start over.
    fn walk(&mut self) -> Result<Option<Recovered>> {
        let dir = self.dir;
        let names = self.backend.list_dir(dir).map_err(io_err("list", dir))?;
        // Read after the listing: archiving and purging replace the marker
        // before they move or delete any segment, so this marker covers
        // every change the listing saw. A segment below the purge point is
        // the leftover of an interrupted purge: never part of the log.
        let LogStart {
            purged_before,
            live_from,
        } = (self.start)();
        self.purged_before = purged_before;
        let mut listed: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .filter(|&first_seq| first_seq >= purged_before)
            .collect();
        listed.sort_unstable();
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let mut next = listed.first().copied();
        while let Some(wanted) = next.take() {
            let prev = segments.last().map(|s| s.published());
            // A segment with a later one listed was complete before that one existed.
            let is_last = |seq: u64| listed.last().is_none_or(|&l| seq >= l);
            let path = dir.join(segment_file_name(wanted));
            let (first_seq, path, opened) =
                match self.open_segment(&path, wanted, prev, is_last(wanted), live_from) {
                    Err(e) if is_not_found(&e) => match self.missing(&segments, wanted, &listed) {
                        Some((first_seq, path, hole)) => (first_seq, path, hole?),
                        None => return Ok(None),
                    },
                    other => (wanted, path, other?),
                };
            match opened {
                Opened::Segment(segment) => {
                    if !is_last(first_seq) {
                        next = Some(segment.published().last_seq + 1);
                    }
                    segments.push(segment);
                }
                Opened::TornCreation => {
                    self.cut_whole(&path, CutReason::TornSegmentCreation)?;
                }
                Opened::Damaged(damage) => {
                    if self.opts.recovery == RecoveryMode::Strict {
                        return Err(Error::Corruption {
                            stream: self.stream.into(),
                            segment: path,
                            offset: damage.offset,
                            kind: damage.kind,
                        });
                    }
                    if self.writable() {
                        let later = listed.iter().copied().find(|&l| l > first_seq);
                        let prev = segments.last().map(|s| s.published());
                        let expected =
                            prev.map_or(first_seq.min(live_from).max(1), |p| p.last_seq + 1);
                        let (segment, after) =
                            self.salvage_segment(&path, first_seq, damage, expected, prev, later)?;
                        segments.extend(segment);
                        next = after;
                        continue;
                    }
                    if let Some(segment) = self.repair(&path, damage)? {
                        segments.push(segment);
                    }
                    for &later in listed.iter().filter(|&&l| l > first_seq) {
                        self.cut_whole(
                            &dir.join(segment_file_name(later)),
                            CutReason::Repair(CorruptionKind::DataAfterEnd),
                        )?;
                    }
                    return self.finish(segments, &names).map(Some);
                }
            }
        }
        self.check_all_on_chain(&segments, &listed)?;
        self.finish(segments, &names).map(Some)
    }

    /// The segment that should start at `first_seq` does not exist. `None`
    /// when a read-only open must start over: its predecessor is gone too
    /// (or it was the first listed), so segments were archived during the
    /// walk. Otherwise the chain has a hole before the next listed segment,
    /// which is damaged as a whole (a sequence gap at its start).
    fn missing(
        &self,
        segments: &[Arc<Segment>],
        first_seq: u64,
        listed: &[u64],
    ) -> Option<(u64, PathBuf, Result<Opened>)> {
        let gone = |p: &Path| {
            matches!(self.backend.open(p, OpenMode::Read),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        };
        let path = self.dir.join(segment_file_name(first_seq));
        let Some(prev) = segments.last() else {
            return match self.writable() {
                false => None,
                true => Some((
                    first_seq,
                    path.clone(),
                    Err(io_err("open", &path)(std::io::ErrorKind::NotFound.into())),
                )),
            };
        };
        if !self.writable() && gone(&prev.path) {
            return None;
        }
        let found = listed
            .iter()
            .copied()
            .find(|&l| l > prev.header.first_seq)
            .unwrap_or(first_seq);
        let hole = Damage {
            offset: 0,
            kind: CorruptionKind::SequenceGap {
                expected: first_seq,
                found,
            },
            good: None,
        };
        Some((
            found,
            self.dir.join(segment_file_name(found)),
            Ok(Opened::Damaged(hole)),
        ))
    }

    /// A listed segment that the chain skipped starts inside another
    /// segment's records or after a hole: corruption. (Both lists ascend,
    /// so this costs a binary search per listed segment.)
    fn check_all_on_chain(&self, segments: &[Arc<Segment>], listed: &[u64]) -> Result<()> {
        let chain = |seq: u64| segments.binary_search_by_key(&seq, |s| s.header.first_seq);
        let cut = |seq: u64| {
            self.cuts
                .iter()
                .any(|c| c.segment == self.dir.join(segment_file_name(seq)))
        };
        let Some(&stray) = listed.iter().find(|&&l| chain(l).is_err() && !cut(l)) else {
            return Ok(());
        };
        // Where the stray would sit in the chain (it is not on it).
        let before = chain(stray).unwrap_or_else(|at| at);
        let expected = before
            .checked_sub(1)
            .map_or(1, |i| segments[i].published().last_seq + 1);
        Err(Error::Corruption {
            stream: self.stream.into(),
            segment: self.dir.join(segment_file_name(stray)),
            offset: 0,
            kind: CorruptionKind::SequenceGap {
                expected,
                found: stray,
            },
        })
    }

    /// A sealed segment whose successor was cut (an interrupted creation, a
    /// repair) is the tail again: it was synced whole, so writing resumes at
    /// its end.
    fn finish(&mut self, segments: Vec<Arc<Segment>>, names: &[String]) -> Result<Recovered> {
        if self.writable() {
            if let Some(last) = segments.last() {
                last.unseal();
            }
            self.remove_orphans(names, &segments);
        }
        Ok(Recovered {
            segments,
            purged_before: self.purged_before,
            cuts: std::mem::take(&mut self.cuts),
            indexes_rebuilt: self.indexes_rebuilt,
        })
    }
}

impl Recovery<'_> {
    /// Files named after a segment (`<first_seq:020>.<ext>`: its index, its
    /// op ids, a repair's unfinished copy) are derived from it. Without their segment in the folder
    /// (a kill part way through archiving, a segment cut by a repair) they
    /// are orphans, which a writable open deletes (best effort).
    fn remove_orphans(&self, names: &[String], segments: &[Arc<Segment>]) {
        for name in names {
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            let derived =
                ext != "seg" && stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit());
            let Some(seq) = derived.then(|| stem.parse::<u64>().ok()).flatten() else {
                continue;
            };
            // A repair's copy of a segment, left by a crash before its rename.
            let unfinished = ext == "seg.tmp";
            if unfinished
                || segments
                    .binary_search_by_key(&seq, |s| s.header.first_seq)
                    .is_err()
            {
                let _ = self.backend.remove_file(&self.dir.join(name));
            }
        }
    }
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { op: "open", source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

impl Recovery<'_> {
    fn writable(&self) -> bool {
        !self.opts.read_only
    }

    fn open_file(&self, path: &Path) -> Result<Arc<dyn BackendFile>> {
        let mode = if self.writable() {
            OpenMode::ReadWrite
        } else {
            OpenMode::Read
        };
        self.backend.open(path, mode).map_err(io_err("open", path))
    }

    fn map(&self, file: &dyn BackendFile, path: &Path, len: u64) -> Result<Bytes> {
        file.map(len).map_err(io_err("mmap", path))
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}
