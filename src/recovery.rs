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

use crate::backend::{Backend, BackendFile, OpenMode};
use crate::error::{io_err, CorruptionKind, Error, Result};
use crate::frame;
use crate::index::{self, IndexEntry, ParsedIndex, Seal, SparseIndex};
use crate::options::{Options, RecoveryMode};
use crate::quarantine::{self, Cut, CutReason};
use crate::scan::{durable_after, scan, Cursor};
use crate::segment::{
    index_file_name, parse_segment_file_name, segment_file_name, HeaderError, Published, Segment,
    SegmentHeader, SEGMENT_HEADER_LEN,
};

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

enum Opened {
    Segment(Arc<Segment>),
    /// The last segment's header was never completely written.
    TornCreation,
    Damaged(Damage),
}

struct Recovery<'a> {
    backend: &'a dyn Backend,
    dir: &'a Path,
    stream: &'a str,
    opts: &'a Options,
    cuts: Vec<Cut>,
    indexes_rebuilt: u64,
}

/// Open and check every segment of the stream in `dir`.
pub(crate) fn recover_stream(
    backend: &dyn Backend,
    dir: &Path,
    stream: &str,
    opts: &Options,
) -> Result<Recovered> {
    let names = backend.list_dir(dir).map_err(io_err("list", dir))?;
    let mut seqs: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    seqs.sort_unstable();
    let mut r = Recovery {
        backend,
        dir,
        stream,
        opts,
        cuts: Vec::new(),
        indexes_rebuilt: 0,
    };
    // Archiving moves the oldest segments out: the live log then starts at
    // or before the seq archive.json names.
    let live_from = crate::archive::live_from(backend, dir).unwrap_or(1);
    let mut segments: Vec<Arc<Segment>> = Vec::new();
    for (i, &first_seq) in seqs.iter().enumerate() {
        let path = dir.join(segment_file_name(first_seq));
        let is_last = i + 1 == seqs.len();
        let prev = segments.last().map(|s| s.published());
        match r.open_segment(&path, first_seq, prev, is_last, live_from)? {
            Opened::Segment(segment) => segments.push(segment),
            Opened::TornCreation => {
                r.cut_whole(&path, CutReason::TornSegmentCreation)?;
            }
            Opened::Damaged(damage) => {
                if r.opts.recovery == RecoveryMode::Strict {
                    return Err(Error::Corruption {
                        stream: stream.into(),
                        segment: path,
                        offset: damage.offset,
                        kind: damage.kind,
                    });
                }
                if let Some(segment) = r.repair(&path, damage)? {
                    segments.push(segment);
                }
                for &later in &seqs[i + 1..] {
                    r.cut_whole(
                        &dir.join(segment_file_name(later)),
                        CutReason::Repair(CorruptionKind::DataAfterEnd),
                    )?;
                }
                break;
            }
        }
    }
    // A sealed segment whose successor was cut (an interrupted creation, a
    // repair) is the tail again: it was synced whole, so writing resumes at its end.
    if let Some(last) = segments
        .last_mut()
        .filter(|s| s.is_sealed() && r.writable())
    {
        let file = r.open_file(&last.path)?;
        let index = last.index.read().clone();
        *last = Arc::new(Segment::open(
            last.path.clone(),
            last.header.clone(),
            file,
            last.published(),
            index,
        ));
    }
    Ok(Recovered {
        segments,
        cuts: r.cuts,
        indexes_rebuilt: r.indexes_rebuilt,
    })
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
        Ok(file.map(len).map_err(io_err("mmap", path))?.bytes)
    }

    fn open_segment(
        &mut self,
        path: &Path,
        first_seq: u64,
        prev: Option<Published>,
        is_last: bool,
        live_from: u64,
    ) -> Result<Opened> {
        let file = self.open_file(path)?;
        let len = file.len().map_err(io_err("stat", path))?;
        let bytes = self.map(&*file, path, len)?;
        let damaged = |offset, kind| {
            Ok(Opened::Damaged(Damage {
                offset,
                kind,
                good: None,
            }))
        };
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            Err(HeaderError::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.into(),
                    found,
                    supported: crate::segment::FORMAT_VERSION,
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
        let parsed = index::read_file(self.backend, &index_path, header.salt, first_seq, index_max);
        let checked = if is_last {
            self.scan_tail(&bytes, &header, parsed)
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
            return Ok(Opened::Segment(Arc::new(Segment::sealed(
                path.into(),
                header,
                bytes,
                published,
                sparse,
            ))));
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
        Ok(Opened::Segment(Arc::new(Segment::open(
            path.into(),
            header,
            file,
            published,
            sparse,
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
        let (c, problem) = scan(
            bytes,
            seal.end,
            h.salt,
            self.opts.record_bytes_max,
            Cursor::at_entry(last),
            &mut sparse,
        );
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
            self.opts.record_bytes_max,
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
            index::write_file(
                self.backend,
                index_path,
                &index::encode_file(sparse, Some(&seal), h.salt, h.first_seq),
            );
        }
        Ok(found)
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
    ) -> Checked<(Found, Option<u64>)> {
        let record_max = self.opts.record_bytes_max;
        let entries = parsed.map(|p| p.entries).unwrap_or_default();
        let decode_entry = |e: &IndexEntry| {
            frame::decode(
                bytes.get(e.offset as usize..).unwrap_or_default(),
                h.salt,
                record_max,
            )
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
                record_max,
                Cursor::at_entry(&entries[i]),
                &mut sparse,
            );
        }
        if start.is_none() || c.prev_crc.is_none() {
            // No usable index point, or not one whole frame after it: scan
            // the whole segment so the chain is known from the header on.
            sparse = SparseIndex::new(self.opts.index_interval_bytes);
            (c, problem) = scan(
                bytes,
                len,
                h.salt,
                record_max,
                Cursor::at_header(h),
                &mut sparse,
            );
        }
        let found = (c.published(h), sparse);
        let last_nonzero = bytes[c.offset as usize..].iter().rposition(|&b| b != 0);
        let (Some(kind), Some(last_nonzero)) = (problem, last_nonzero) else {
            return Ok((found, None));
        };
        if durable_after(bytes, c.offset, h.salt, c.next_seq - 1, record_max) {
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
        Ok(Some(Arc::new(Segment::open(
            path.into(),
            header,
            file,
            published,
            sparse,
        ))))
    }

    /// Move a whole segment (and drop its index) out of the log.
    fn cut_whole(&mut self, path: &Path, reason: CutReason) -> Result<()> {
        let len = self
            .backend
            .open(path, OpenMode::Read)
            .and_then(|f| f.len())
            .map_err(io_err("stat", path))?;
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
