//! Opening a stream's segments after a clean stop or a crash.
//!
//! Sealed segments were fully synced before the next one was created, so
//! any damage in them is corruption; their index files let open skip
//! scanning them. Only the last (tail) segment can hold a torn write. The
//! rule that separates a torn tail from corruption is in `docs/FORMAT.md`
//! ("Recovery"): bytes after the last whole record are cut as torn unless a
//! valid record after them proves, through its `durable_end`, that they had
//! been synced.

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
    /// Where the live log starts (the first seq not archived), read when
    /// asked: after the directory listing (see `walk`).
    live_from: &'a dyn Fn() -> u64,
    cache: &'a Arc<MapCache>,
    dir: &'a Path,
    stream: &'a str,
    opts: &'a Options,
    cuts: Vec<Cut>,
    indexes_rebuilt: u64,
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
    live_from: &dyn Fn() -> u64,
) -> Result<Recovered> {
    for _ in 0..READ_ONLY_ATTEMPTS {
        let mut r = Recovery {
            backend: &**cache.backend(),
            live_from,
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
        let mut listed: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .collect();
        listed.sort_unstable();
        // Read after the listing: archiving replaces the marker before it
        // moves any segment, so this marker covers every move the listing saw.
        let live_from = (self.live_from)();
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
        let before = chain(stray).unwrap_err();
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
            cuts: std::mem::take(&mut self.cuts),
            indexes_rebuilt: self.indexes_rebuilt,
        })
    }
}

impl Recovery<'_> {
    /// Files named after a segment (`<first_seq:020>.<ext>`: its index, its
    /// op ids) are derived from it. Without their segment in the folder
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
            if segments
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

    fn open_segment(
        &mut self,
        path: &Path,
        first_seq: u64,
        prev: Option<Published>,
        is_last: bool,
        live_from: u64,
    ) -> Result<Opened> {
        let damaged = |offset, kind| {
            Ok(Opened::Damaged(Damage {
                offset,
                kind,
                good: None,
            }))
        };
        let file = match self.open_file(path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::InvalidInput => {
                return damaged(0, CorruptionKind::WrongSegment("not a regular file"));
            }
            other => other?,
        };
        let len = file.len().map_err(io_err("stat", path))?;
        let mut bytes = self.map(&*file, path, len)?;
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            Err(HeaderError::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.into(),
                    found,
                    supported: crate::format::segment::FORMAT_VERSION,
                })
            }
            // A segment is created, synced, and only then written to, so a
            // bad header with nothing after it is an interrupted creation.
            Err(HeaderError::Bad(_))
                if is_last && bytes.get(SEGMENT_HEADER_LEN..).is_none_or(all_zero) =>
            {
                return Ok(Opened::TornCreation)
            }
            Err(HeaderError::Bad(what)) => return damaged(0, CorruptionKind::BadHeader(what)),
        };
        if header.stream != self.stream {
            return damaged(
                0,
                CorruptionKind::WrongSegment("stream name differs from its folder"),
            );
        }
        if header.first_seq != first_seq {
            return damaged(
                0,
                CorruptionKind::WrongSegment("first seq differs from its file name"),
            );
        }
        let expected = prev.map_or(first_seq.min(live_from).max(1), |p| p.last_seq + 1);
        if first_seq != expected {
            return damaged(
                0,
                CorruptionKind::SequenceGap {
                    expected,
                    found: first_seq,
                },
            );
        }
        if let Some(p) = prev {
            if header.prev_crc != p.last_crc {
                return damaged(0, CorruptionKind::BrokenChain);
            }
            if header.first_lamport <= p.last_lamport {
                return damaged(0, CorruptionKind::LamportNotIncreasing);
            }
        }
        let index_path = self.dir.join(index_file_name(first_seq));
        let index_max = (len / self.opts.index_interval_bytes + 2) * index::INDEX_ENTRY_LEN as u64
            + index::INDEX_HEADER_LEN as u64;
        let parsed =
            index_file::read_file(self.backend, &index_path, header.salt, first_seq, index_max);
        let checked = if is_last {
            let (checked, seen) = self.scan_tail_settled(&*file, path, bytes, &header, parsed)?;
            bytes = seen;
            checked
        } else {
            match self.check_sealed(&bytes, &header, parsed) {
                Some(found) => Ok((found, None)),
                None => self
                    .rebuild_sealed(&bytes, &header, &index_path)
                    .map(|found| (found, None)),
            }
        };
        let ((published, sparse), torn) = match checked {
            Ok(outcome) => outcome,
            Err((offset, kind, found)) => {
                let good = Some(Good {
                    header,
                    file,
                    bytes,
                    found,
                });
                return Ok(Opened::Damaged(Damage { offset, kind, good }));
            }
        };
        if !is_last {
            let segment = Segment::recovered(
                path.into(),
                header,
                bytes,
                published,
                sparse,
                self.cache.clone(),
            );
            segment.seal();
            return Ok(Opened::Segment(Arc::new(segment)));
        }
        match torn {
            Some(len) => {
                self.cut_tail(path, &*file, bytes, published.end, len, CutReason::TornTail)?
            }
            None => drop(bytes),
        }
        // Make the recovered tail durable before the writer builds on it:
        // after a process kill its bytes may still sit only in the page cache.
        if self.writable() {
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
        // The tail holds no descriptor: a writer opens its own when it
        // first writes, and readers map through the cache.
        Ok(Opened::Segment(Arc::new(Segment::recovered(
            path.into(),
            header,
            Bytes::new(),
            published,
            sparse,
            self.cache.clone(),
        ))))
    }

    /// Trust a sealed segment's index only if its last stretch re-decodes
    /// to exactly the recorded end: O(index interval), not O(segment).
    fn check_sealed(
        &self,
        bytes: &[u8],
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> Option<Found> {
        let parsed = parsed?;
        let seal = parsed.seal?;
        let first = parsed.entries.first()?;
        let last = parsed.entries.last()?;
        if first.offset != SEGMENT_HEADER_LEN as u64
            || first.seq != h.first_seq
            || first.lamport < h.first_lamport
            || seal.end > bytes.len() as u64
        {
            return None;
        }
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        sparse.load(
            parsed.entries[..parsed.entries.len() - 1].to_vec(),
            last.ts_us_max,
        );
        let (c, problem) = scan(bytes, seal.end, h.salt, Cursor::at_entry(last), &mut sparse);
        let ok = problem.is_none()
            && c.offset == seal.end
            && c.next_seq - 1 == seal.last_seq
            && c.last_lamport == seal.last_lamport;
        ok.then(|| (c.published(h), sparse))
    }

    /// Scan a sealed segment whose index is missing or stale. It was synced
    /// in full before the next segment existed, so anything but zeros after
    /// its last record is corruption.
    fn rebuild_sealed(
        &mut self,
        bytes: &[u8],
        h: &SegmentHeader,
        index_path: &Path,
    ) -> Checked<Found> {
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        let (c, problem) = scan(
            bytes,
            bytes.len() as u64,
            h.salt,
            Cursor::at_header(h),
            &mut sparse,
        );
        let found = (c.published(h), sparse);
        if let Some(kind) = problem.filter(|_| !all_zero(&bytes[c.offset as usize..])) {
            return Err((c.offset, kind, found));
        }
        self.indexes_rebuilt += 1;
        if self.writable() {
            let (p, sparse) = &found;
            let seal = Seal {
                last_seq: p.last_seq,
                last_lamport: p.last_lamport,
                ts_us_max: sparse.ts_us_max(),
                end: p.end,
            };
            index_file::write_file(
                self.backend,
                index_path,
                &index::encode_file(sparse.entries(), Some(&seal), h.salt, h.first_seq),
            );
        }
        Ok(found)
    }

    /// `scan_tail`, made safe against a writer in another process. A
    /// read-only open may read the tail while that writer writes it, so a
    /// frame it saw half-written can seem damaged while a later frame it saw
    /// complete seems to prove the damage durable. But that later frame was
    /// written after the damaged bytes were whole and synced: read again,
    /// through a fresh map, after the proof was seen, they decode. So a
    /// verdict of damage counts only if a second reading finds the same
    /// damage at the same offset; one that never settles is where this
    /// reader's view ends (a read-only open changes nothing). Returns the
    /// verdict and the bytes it was reached on.
    fn scan_tail_settled(
        &self,
        file: &dyn BackendFile,
        path: &Path,
        mut bytes: Bytes,
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> Result<(TailChecked, Bytes)> {
        let mut verdict = self.scan_tail(&bytes, h, parsed.clone());
        if self.writable() {
            return Ok((verdict, bytes));
        }
        for _ in 0..TAIL_READINGS_MAX {
            let Err((offset, kind, _)) = &verdict else {
                return Ok((verdict, bytes));
            };
            let (offset, kind) = (*offset, kind.clone());
            drop(bytes);
            let len = file.len().map_err(io_err("stat", path))?;
            bytes = self.map(file, path, len)?;
            verdict = self.scan_tail(&bytes, h, parsed.clone());
            if matches!(&verdict, Err((o, k, _)) if *o == offset && *k == kind) {
                return Ok((verdict, bytes));
            }
        }
        let settled = match verdict {
            Err((offset, _, found)) => Ok((found, Some(bytes.len() as u64 - offset))),
            ok => ok,
        };
        Ok((settled, bytes))
    }

    /// Scan the tail from the last index point known to be durable, then
    /// decide what the bytes after the last whole record are: nothing (only
    /// zeros), a torn tail (`Some` of its length up to the last non-zero
    /// byte), or damage that a later frame proves was durable.
    fn scan_tail(
        &self,
        bytes: &[u8],
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> TailChecked {
        let entries = parsed.map(|p| p.entries).unwrap_or_default();
        let decode_entry = |e: &IndexEntry| {
            frame::decode(bytes.get(e.offset as usize..).unwrap_or_default(), h.salt)
                .ok()
                .filter(|f| {
                    f.meta.seq == e.seq
                        && f.meta.lamport == e.lamport
                        && e.offset >= SEGMENT_HEADER_LEN as u64
                })
        };
        // The newest index point that still decodes says how far the segment
        // had been synced; start from the last index point below that, since
        // bytes past it may have been torn by a power cut.
        let synced = entries
            .iter()
            .rev()
            .find_map(&decode_entry)
            .map(|f| u64::from(f.meta.durable_end));
        let start = synced.and_then(|d| {
            entries
                .iter()
                .rposition(|e| e.offset <= d && decode_entry(e).is_some())
        });
        let len = bytes.len() as u64;
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        let (mut c, mut problem) = (Cursor::at_header(h), None);
        if let Some(i) = start {
            sparse.load(entries[..i].to_vec(), entries[i].ts_us_max);
            (c, problem) = scan(
                bytes,
                len,
                h.salt,
                Cursor::at_entry(&entries[i]),
                &mut sparse,
            );
        }
        if start.is_none() || c.prev_crc.is_none() {
            // No usable index point, or not one whole frame after it: scan
            // the whole segment so the chain is known from the header on.
            sparse = SparseIndex::new(self.opts.index_interval_bytes);
            (c, problem) = scan(bytes, len, h.salt, Cursor::at_header(h), &mut sparse);
        }
        let found = (c.published(h), sparse);
        let last_nonzero = bytes[c.offset as usize..].iter().rposition(|&b| b != 0);
        let (Some(kind), Some(last_nonzero)) = (problem, last_nonzero) else {
            return Ok((found, None));
        };
        if durable_after(bytes, c.offset, h.salt, c.next_seq - 1) {
            return Err((c.offset, kind, found));
        }
        Ok((found, Some(last_nonzero as u64 + 1)))
    }

    /// Cut a segment at `at`: keep `keep_len` bytes from there in quarantine
    /// (durably, first), then truncate and sync. A read-only open only
    /// records what it would cut.
    fn cut_tail(
        &mut self,
        path: &Path,
        file: &dyn BackendFile,
        bytes: Bytes,
        at: u64,
        keep_len: u64,
        reason: CutReason,
    ) -> Result<()> {
        let kept = &bytes[at as usize..(at + keep_len) as usize];
        let quarantine_file = match self.writable() {
            true => Some(quarantine::keep_bytes(
                self.backend,
                self.dir,
                path,
                at,
                kept,
            )?),
            false => None,
        };
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: path.into(),
            offset: at,
            len: keep_len,
            quarantine_file,
            reason,
        });
        // The map must be gone before the file shrinks under it.
        drop(bytes);
        if self.writable() {
            file.set_len(at).map_err(io_err("truncate", path))?;
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
        Ok(())
    }

    /// Repair mode: keep the records before the damage, quarantine the rest.
    fn repair(&mut self, path: &Path, damage: Damage) -> Result<Option<Arc<Segment>>> {
        let reason = CutReason::Repair(damage.kind.clone());
        let Some(Good {
            header,
            file,
            bytes,
            found: (published, sparse),
        }) = damage.good
        else {
            self.cut_whole(path, reason)?;
            return Ok(None);
        };
        let keep_len = bytes.len() as u64 - damage.offset;
        self.cut_tail(path, &*file, bytes, damage.offset, keep_len, reason)?;
        Ok(Some(Arc::new(Segment::recovered(
            path.into(),
            header,
            Bytes::new(),
            published,
            sparse,
            self.cache.clone(),
        ))))
    }

    /// Move a whole segment (and drop its index) out of the log.
    fn cut_whole(&mut self, path: &Path, reason: CutReason) -> Result<()> {
        let len = match self
            .backend
            .open(path, OpenMode::Read)
            .and_then(|f| f.len())
        {
            // Something else under a segment's name (a directory) moves as it is.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => 0,
            other => other.map_err(io_err("stat", path))?,
        };
        let kept = if self.writable() {
            let moved = quarantine::keep_file(self.backend, self.dir, path)?;
            if let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_segment_file_name)
            {
                let _ = self
                    .backend
                    .remove_file(&self.dir.join(index_file_name(seq)));
            }
            Some(moved)
        } else {
            None
        };
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: PathBuf::from(path),
            offset: 0,
            len,
            quarantine_file: kept,
            reason,
        });
        Ok(())
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}
