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
use crate::frame::{self, FrameMeta, Kind, FRAME_HEADER_LEN};
use crate::index::{self, IndexEntry, ParsedIndex, Seal, SparseIndex};
use crate::options::{Options, RecoveryMode};
use crate::quarantine::{self, Cut, CutReason};
use crate::segment::{
    corruption_kind, index_file_name, parse_segment_file_name, segment_file_name, HeaderError,
    Published, Segment, SegmentHeader, SEGMENT_HEADER_LEN,
};

/// What recovery found in one stream.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The usable segments, oldest first; the last one is where writing resumes.
    pub segments: Vec<Arc<Segment>>,
    pub cuts: Vec<Cut>,
    pub indexes_rebuilt: u64,
}

/// Where a scan stands: the next frame expected at `offset`.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    offset: u64,
    next_seq: u64,
    /// The previous frame's CRC, when known (a scan that starts at an index
    /// point does not know it).
    prev_crc: Option<u32>,
    last_lamport: u64,
}

impl Cursor {
    fn at_header(h: &SegmentHeader) -> Cursor {
        Cursor {
            offset: SEGMENT_HEADER_LEN as u64,
            next_seq: h.first_seq,
            prev_crc: Some(h.prev_crc),
            last_lamport: h.first_lamport.saturating_sub(1),
        }
    }

    fn at_entry(e: &IndexEntry) -> Cursor {
        Cursor {
            offset: e.offset,
            next_seq: e.seq,
            prev_crc: None,
            last_lamport: e.lamport.saturating_sub(1),
        }
    }

    /// Whether the frame `m`, checksum-verified, may come next.
    fn check(&self, m: &FrameMeta) -> Option<CorruptionKind> {
        // A data record takes the next seq and a higher Lamport; a commit
        // marker repeats the last record's.
        let (seq, lamport_ok) = match m.kind {
            Kind::Data => (self.next_seq, m.lamport > self.last_lamport),
            Kind::Commit => (self.next_seq - 1, m.lamport == self.last_lamport),
        };
        if m.seq != seq {
            Some(CorruptionKind::SequenceGap {
                expected: seq,
                found: m.seq,
            })
        } else if self.prev_crc.is_some_and(|p| p != m.prev_crc) {
            Some(CorruptionKind::BrokenChain)
        } else if !lamport_ok {
            Some(CorruptionKind::LamportNotIncreasing)
        } else if m.seq >= frame::CLOCK_LIMIT
            || m.lamport >= frame::CLOCK_LIMIT
            || u64::from(m.durable_end) > self.offset
        {
            // Out of range, or claims to have been synced before it was written.
            Some(CorruptionKind::BadRecordHeader)
        } else {
            None
        }
    }

    fn published(&self, h: &SegmentHeader) -> Published {
        Published {
            end: self.offset,
            last_seq: self.next_seq - 1,
            last_lamport: self.last_lamport,
            last_crc: self.prev_crc.unwrap_or(h.prev_crc),
        }
    }
}

/// Decode frames from `cursor` up to `limit`, checking the checksum, the CRC
/// chain, seq contiguity and Lamport order, and feed each to `index`.
/// Returns the cursor after the last good frame and why the scan stopped
/// before `limit`, if it did.
fn scan(
    bytes: &[u8],
    limit: u64,
    salt: u32,
    record_max: usize,
    mut c: Cursor,
    index: &mut SparseIndex,
) -> (Cursor, Option<CorruptionKind>) {
    while c.offset < limit {
        let window = &bytes[c.offset as usize..limit as usize];
        let f = match frame::decode(window, salt, record_max) {
            Ok(f) => f,
            Err(e) => return (c, Some(corruption_kind(e))),
        };
        if let Some(problem) = c.check(&f.meta) {
            return (c, Some(problem));
        }
        let m = f.meta;
        if m.kind == Kind::Data {
            index.observe(m.seq, m.lamport, m.ts_us, c.offset);
            c.next_seq = m.seq + 1;
            c.last_lamport = m.lamport;
        }
        c.offset += f.len_on_disk() as u64;
        c.prev_crc = Some(f.crc);
    }
    (c, None)
}

/// Whether a valid frame after `bad` proves that the bytes at `bad` had been
/// synced (its `durable_end` lies beyond `bad`). Unparseable noise that would
/// cost more than a few passes over the tail to search counts as proof: when
/// in doubt, lamplog refuses rather than cuts.
fn durable_after(bytes: &[u8], bad: u64, salt: u32, last_seq: u64, record_max: usize) -> bool {
    let len = bytes.len();
    let tail = (len as u64).saturating_sub(bad);
    let mut budget = tail.saturating_mul(8).saturating_add(1 << 20);
    for y in (bad as usize + 1)..len.saturating_sub(FRAME_HEADER_LEN - 1) {
        let window = &bytes[y..];
        let Some((seq, frame_len)) = frame::plausible(window, record_max) else {
            continue;
        };
        // Frames are at least FRAME_HEADER_LEN + 1 bytes, which bounds how far seq can advance.
        if seq <= last_seq || seq - last_seq > tail {
            continue;
        }
        budget = budget.saturating_sub(frame_len as u64);
        if budget == 0 {
            return true;
        }
        if let Ok(f) = frame::decode(window, salt, record_max) {
            if u64::from(f.meta.durable_end) > bad {
                return true;
            }
        }
    }
    false
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
/// A tail's whole records, or where they stop being trustworthy (with the
/// segment's bytes, which repair cuts from).
type TailOutcome = Result<Found, (u64, CorruptionKind, Found, Bytes)>;

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
    let mut segments: Vec<Arc<Segment>> = Vec::new();
    for (i, &first_seq) in seqs.iter().enumerate() {
        let path = dir.join(segment_file_name(first_seq));
        let is_last = i + 1 == seqs.len();
        let prev = segments.last().map(|s| s.published());
        match r.open_segment(&path, first_seq, prev, is_last)? {
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
        let expected = prev.map_or(1, |p| p.last_seq + 1);
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
        if is_last {
            return Ok(
                match self.scan_tail(path, &*file, bytes, &header, parsed)? {
                    Ok((published, sparse)) => Opened::Segment(Arc::new(Segment::open(
                        path.into(),
                        header,
                        file,
                        published,
                        sparse,
                    ))),
                    Err((offset, kind, found, bytes)) => Opened::Damaged(Damage {
                        offset,
                        kind,
                        good: Some(Good {
                            header,
                            file,
                            bytes,
                            found,
                        }),
                    }),
                },
            );
        }
        let checked = match self.check_sealed(&bytes, &header, parsed) {
            Some(found) => Ok(found),
            None => self.rebuild_sealed(&bytes, &header, &index_path),
        };
        Ok(match checked {
            Ok((published, sparse)) => Opened::Segment(Arc::new(Segment::sealed(
                path.into(),
                header,
                bytes,
                published,
                sparse,
            ))),
            Err((offset, kind, found)) => Opened::Damaged(Damage {
                offset,
                kind,
                good: Some(Good {
                    header,
                    file,
                    bytes,
                    found,
                }),
            }),
        })
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
    ) -> Result<Found, (u64, CorruptionKind, Found)> {
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
    /// decide what the bytes after the last whole record are.
    fn scan_tail(
        &mut self,
        path: &Path,
        file: &dyn BackendFile,
        bytes: Bytes,
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> Result<TailOutcome> {
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
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        let len = bytes.len() as u64;
        let (mut c, mut problem) = (Cursor::at_header(h), None);
        if let Some(i) = start {
            sparse.load(entries[..i].to_vec(), entries[i].ts_us_max);
            (c, problem) = scan(
                &bytes,
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
                &bytes,
                len,
                h.salt,
                record_max,
                Cursor::at_header(h),
                &mut sparse,
            );
        }
        let found = (c.published(h), sparse);
        let rest = &bytes[c.offset as usize..];
        let last_nonzero = rest.iter().rposition(|&b| b != 0);
        let (Some(kind), Some(last_nonzero)) = (problem, last_nonzero) else {
            drop(bytes);
            return self.finish_tail(path, file, found);
        };
        if durable_after(&bytes, c.offset, h.salt, c.next_seq - 1, record_max) {
            return Ok(Err((c.offset, kind, found, bytes)));
        }
        let torn = &rest[..=last_nonzero];
        let kept = if self.writable() {
            Some(quarantine::keep_bytes(
                self.backend,
                self.dir,
                path,
                c.offset,
                torn,
            )?)
        } else {
            None
        };
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: path.into(),
            offset: c.offset,
            len: torn.len() as u64,
            quarantine_file: kept,
            reason: CutReason::TornTail,
        });
        // The map must be gone before the file shrinks under it.
        drop(bytes);
        if self.writable() {
            file.set_len(c.offset).map_err(io_err("truncate", path))?;
        }
        self.finish_tail(path, file, found)
    }

    /// Make the recovered tail durable before the writer builds on it: after
    /// a process kill its bytes may still sit only in the page cache.
    fn finish_tail(
        &self,
        path: &Path,
        file: &dyn BackendFile,
        found: Found,
    ) -> Result<TailOutcome> {
        if self.writable() {
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
        Ok(Ok(found))
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
        let cut = &bytes[damage.offset as usize..];
        let kept = if self.writable() {
            Some(quarantine::keep_bytes(
                self.backend,
                self.dir,
                path,
                damage.offset,
                cut,
            )?)
        } else {
            None
        };
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: path.into(),
            offset: damage.offset,
            len: cut.len() as u64,
            quarantine_file: kept,
            reason,
        });
        drop(bytes);
        if self.writable() {
            file.set_len(damage.offset)
                .map_err(io_err("truncate", path))?;
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
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
