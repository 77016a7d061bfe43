//! The write side of one stream, in two halves.
//!
//! - [`Encoder`] assigns seq and Lamport, frames records (the CRC chain needs
//!   them in order) and decides where segments roll. It runs under the
//!   stream's lock, in the appending thread, and only touches memory.
//! - [`SegmentIo`] does the file work for the encoded frames: writes them,
//!   keeps the sparse index, creates segments, syncs. One thread at a time
//!   holds it (the flushing appender, or the syncer for a moment).
//!
//! `commit.rs` decides who runs which half when.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{io_err, Error, Result};
use crate::format::frame::stamp_after;
use crate::format::frame::{self, FrameMeta, Kind, FRAME_HEADER_LEN};
use crate::format::index::{self, Seal, INDEX_HEADER_LEN};
use crate::format::segment::{
    index_file_name, segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN,
};
use crate::io::backend::{BackendFile, OpenMode};
use crate::log::clock::now_us;
use crate::log::index::{self as index_file, SparseIndex};
use crate::log::map_cache::MapCache;
use crate::log::segment::{new_salt, Published, Segment, SegmentList};

/// Smallest and largest step by which a segment file is preallocated. A
/// step is written with zeros while appenders wait, and the next sync
/// carries them (about 0.9 ms per MiB here), so the largest step bounds
/// those pauses.
const GROW_STEP_MIN: u64 = 16 << 10;
const GROW_STEP_MAX: u64 = 1 << 20;
/// A step is this fraction of what is allocated, so that preallocated but
/// unused space stays below a quarter of a segment (small streams too).
const GROW_FRACTION: u64 = 4;

/// Limits the writer enforces, from [`Options`](crate::Options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    pub segment_bytes_max: u64,
    pub index_interval_bytes: u64,
    pub batch_bytes_max: u64,
}

/// What an append was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's Lamport timestamp.
    pub lamport: u64,
}

/// A position in a stream's log since this open: bytes of segment files
/// before it, counting from the start of the tail segment at open. A
/// segment starting at position `base` holds `[base, base + its end)`.
/// Positions only grow, so "written up to P" and "durable up to P" are
/// single numbers.
pub(crate) type Pos = u64;

/// Where a data frame went, for the sparse index.
#[derive(Debug, Clone, Copy)]
struct FrameInfo {
    seq: u64,
    lamport: u64,
    ts_us: u64,
    offset: u64,
    indexable: bool,
}

/// What the encoder puts in a frame header.
struct NewFrame {
    kind: Kind,
    seq: u64,
    lamport: u64,
    ts_us: u64,
    continues: bool,
    /// Whether a sparse index point may start here: only at the start of a
    /// batch, so that recovery never starts a scan inside one.
    indexable: bool,
}

/// Encoded frames for one segment, not yet written.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Create this segment first (a roll).
    roll: Option<SegmentHeader>,
    /// Position of the chunk's segment.
    base: Pos,
    offset: u64,
    bytes: Vec<u8>,
    frames: Vec<FrameInfo>,
    /// The stream's state after the chunk.
    pub tip: Published,
}

impl Chunk {
    /// Bytes of frames in the chunk.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// Seq assignment and framing, in memory.
#[derive(Debug)]
pub(crate) struct Encoder {
    limits: WriterLimits,
    stream: String,
    /// Salt and position of the segment being encoded into.
    salt: u32,
    base: Pos,
    tip: Published,
    /// How far the log is known to be on disk.
    durable: Pos,
    pending: Vec<Chunk>,
    /// Whether the last frame is a commit marker.
    marked: bool,
}

impl Encoder {
    /// Continue after the last record of `active`, all of which is durable.
    pub fn new(limits: WriterLimits, active: &Segment) -> Encoder {
        let tip = active.published();
        Encoder {
            limits,
            stream: active.header.stream.clone(),
            salt: active.header.salt,
            base: 0,
            tip,
            durable: tip.end,
            pending: Vec::new(),
            marked: false,
        }
    }

    /// The end of the last frame encoded.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn pos(&self) -> Pos {
        self.base + self.tip.end
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn take_pending(&mut self) -> Vec<Chunk> {
        std::mem::take(&mut self.pending)
    }

    /// Frames encoded but not yet taken for writing are dropped (their
    /// write failed); later appends must not chain to them.
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Record that the log up to `pos` is on disk.
    pub fn note_durable(&mut self, pos: Pos) {
        self.durable = self.durable.max(pos);
    }

    /// Frame a record of `kind` with a Lamport after both this stream's
    /// clock and `observed` (0 when the record observed nothing).
    pub fn encode(&mut self, kind: Kind, payload: &[u8], observed: u64) -> Result<Appended> {
        Ok(self.encode_records(kind, &[(payload, observed)])?[0])
    }

    /// Frame records as one atomic batch: contiguous seqs, in one segment,
    /// every frame but the last flagged as continued (docs/FORMAT.md), so
    /// that recovery keeps all of them or none. Each record is stamped
    /// after the one before it and after its own observed Lamport.
    /// Nothing is framed if the batch cannot fit in one segment or a
    /// Lamport would pass [`LAMPORT_MAX`].
    pub fn encode_batch(&mut self, records: &[(&[u8], u64)]) -> Result<Vec<Appended>> {
        self.encode_records(Kind::Data, records)
    }

    /// The seq and Lamport the next record would get, having observed `observed`.
    pub fn next_stamp(&self, observed: u64) -> Result<(u64, u64)> {
        let lamport = stamp_after(self.tip.last_lamport, observed)?;
        Ok((self.tip.last_seq + 1, lamport))
    }

    fn encode_records(&mut self, kind: Kind, records: &[(&[u8], u64)]) -> Result<Vec<Appended>> {
        let bytes: u64 = records
            .iter()
            .map(|(p, _)| frame::frame_len(p.len()) as u64)
            .sum();
        if SEGMENT_HEADER_LEN as u64 + bytes > self.limits.segment_bytes_max {
            return Err(Error::BatchTooLarge {
                len: bytes,
                max: self.limits.segment_bytes_max,
            });
        }
        // The Lamport bound, checked for the whole batch before any frame.
        let mut clock = self.tip.last_lamport;
        for &(_, observed) in records {
            clock = stamp_after(clock, observed)?;
        }
        if self.tip.end + bytes > self.limits.segment_bytes_max {
            self.roll(self.tip.last_seq + 1, self.tip.last_lamport + 1);
        }
        let mut appended = Vec::with_capacity(records.len());
        // One clock reading per batch: its records are appended together.
        let ts_us = now_us();
        for (i, &(payload, observed)) in records.iter().enumerate() {
            let seq = self.tip.last_seq + 1;
            let lamport = stamp_after(self.tip.last_lamport, observed)
                .expect("the batch's Lamports were checked above");
            let continues = i + 1 < records.len();
            let new = NewFrame {
                kind,
                seq,
                lamport,
                ts_us,
                continues,
                indexable: i == 0,
            };
            self.push(new, payload);
            appended.push(Appended { seq, lamport });
        }
        Ok(appended)
    }

    /// Frame a commit marker if one is useful and fits: after at least one
    /// record, not right after another marker. Call only when everything
    /// before it is durable and noted.
    pub fn encode_marker(&mut self) -> bool {
        let empty = self.tip.end == SEGMENT_HEADER_LEN as u64;
        let full = self.tip.end + FRAME_HEADER_LEN as u64 > self.limits.segment_bytes_max;
        if self.marked || empty || full {
            return false;
        }
        let (seq, lamport) = (self.tip.last_seq, self.tip.last_lamport);
        let new = NewFrame {
            kind: Kind::Commit,
            seq,
            lamport,
            ts_us: now_us(),
            continues: false,
            indexable: false,
        };
        self.push(new, b"");
        self.marked = true;
        true
    }

    fn roll(&mut self, first_seq: u64, first_lamport: u64) {
        let header = SegmentHeader {
            salt: new_salt(),
            prev_crc: self.tip.last_crc,
            first_seq,
            first_lamport,
            created_us: now_us(),
            stream: self.stream.clone(),
        };
        self.salt = header.salt;
        self.base += self.tip.end;
        self.tip.end = SEGMENT_HEADER_LEN as u64;
        self.pending.push(Chunk {
            roll: Some(header),
            base: self.base,
            offset: self.tip.end,
            bytes: Vec::new(),
            frames: Vec::new(),
            tip: self.tip,
        });
    }

    /// Frame one record; `indexable` if a sparse index point may start here
    /// (only at the start of a batch, so that recovery never starts a scan
    /// inside one).
    fn push(&mut self, new: NewFrame, payload: &[u8]) {
        let NewFrame {
            kind,
            seq,
            lamport,
            ts_us,
            continues,
            indexable,
        } = new;
        if kind.is_record() {
            assert!(
                seq == self.tip.last_seq + 1 && lamport > self.tip.last_lamport,
                "the encoder stamps seq + 1 and a larger Lamport"
            );
        }
        let offset = self.tip.end;
        // The header of a segment is on disk before any frame is written to it.
        let durable_end = self
            .durable
            .saturating_sub(self.base)
            .max(SEGMENT_HEADER_LEN as u64);
        let meta = FrameMeta {
            seq,
            lamport,
            ts_us,
            prev_crc: self.tip.last_crc,
            durable_end: u32::try_from(durable_end)
                .expect("segment offsets fit u32 (SEGMENT_BYTES_MAX_LIMIT)"),
            kind,
            continues,
        };
        let starts_chunk = self.pending.last().is_none_or(|c| c.base != self.base);
        if starts_chunk {
            let base = self.base;
            self.pending.push(Chunk {
                roll: None,
                base,
                offset,
                bytes: Vec::new(),
                frames: Vec::new(),
                tip: self.tip,
            });
        }
        let chunk = self.pending.last_mut().expect("a chunk was just ensured");
        let crc = frame::encode(&mut chunk.bytes, &meta, payload, self.salt);
        if kind.is_record() {
            chunk.frames.push(FrameInfo {
                seq,
                lamport,
                ts_us,
                offset,
                indexable,
            });
        }
        self.tip = Published {
            end: offset + frame::frame_len(payload.len()) as u64,
            last_seq: seq,
            last_lamport: lamport,
            last_crc: crc,
        };
        chunk.tip = self.tip;
        self.marked = false;
    }
}

/// The files of one stream: the active segment and its index.
#[derive(Debug)]
pub(crate) struct SegmentIo {
    cache: Arc<MapCache>,
    dir: PathBuf,
    limits: WriterLimits,
    segments: Arc<SegmentList>,
    active: Arc<Segment>,
    file: Arc<dyn BackendFile>,
    index_file: Option<Arc<dyn BackendFile>>,
    index_len: u64,
    allocated: u64,
    /// The last record written (and published to readers).
    written: Published,
    /// Position of the active segment.
    base: Pos,
    sync_failed: bool,
}

impl SegmentIo {
    /// Resume writing at the end of `active`, which recovery (or the
    /// stream's creation) left whole and durable. Opens the writer's two
    /// descriptors: the segment and its index.
    pub fn resume(
        cache: Arc<MapCache>,
        dir: PathBuf,
        limits: WriterLimits,
        segments: Arc<SegmentList>,
        active: Arc<Segment>,
    ) -> Result<SegmentIo> {
        let backend = cache.backend().clone();
        let file = backend
            .open(&active.path, OpenMode::ReadWrite)
            .map_err(io_err("open", &active.path))?;
        let allocated = file.len().map_err(io_err("stat", &active.path))?;
        active.attach(file.clone());
        let index_path = dir.join(index_file_name(active.header.first_seq));
        let index_bytes = index::encode_file(
            active.index.read().entries(),
            None,
            active.header.salt,
            active.header.first_seq,
        );
        let index_file = index_file::write_file(&*backend, &index_path, &index_bytes);
        Ok(SegmentIo {
            cache,
            dir,
            limits,
            segments,
            index_len: index_bytes.len() as u64,
            index_file,
            written: active.published(),
            active,
            file,
            allocated,
            base: 0,
            sync_failed: false,
        })
    }

    pub fn active(&self) -> &Arc<Segment> {
        &self.active
    }

    /// The active segment's file.
    pub fn file(&self) -> &Arc<dyn BackendFile> {
        &self.file
    }

    /// The last record written.
    pub fn written(&self) -> Published {
        self.written
    }

    /// The end of the last frame written.
    pub fn written_pos(&self) -> Pos {
        self.base + self.written.end
    }

    /// Write a chunk (creating its segment first if it rolls), then publish
    /// it to readers. Returns, for a roll, the position and seq that the
    /// roll made durable (everything before the new segment).
    pub fn write(&mut self, chunk: Chunk) -> Result<Option<(Pos, u64)>> {
        let rolled = match chunk.roll {
            Some(header) => Some(self.roll(header)?),
            None => None,
        };
        debug_assert_eq!(
            chunk.offset, self.written.end,
            "chunks are written in order"
        );
        let end = chunk.offset + chunk.bytes.len() as u64;
        self.grow_to(end)?;
        self.file
            .write_all_at(&chunk.bytes, chunk.offset)
            .map_err(io_err("write", &self.active.path))?;
        let salt = self.active.header.salt;
        for f in &chunk.frames {
            let entry =
                self.active
                    .index
                    .write()
                    .observe(f.seq, f.lamport, f.ts_us, f.offset, f.indexable);
            if let Some(entry) = entry {
                self.write_index_bytes(&index::encode_entry(&entry, salt));
            }
        }
        self.written = chunk.tip;
        self.active.publish(chunk.tip);
        Ok(rolled)
    }

    /// fdatasync the active segment (before a roll).
    fn sync(&mut self) -> Result<()> {
        let synced = self.file.sync_data();
        self.sync_failed |= synced.is_err();
        synced.map_err(io_err("fdatasync", &self.active.path))
    }

    /// Whether one of the writer's own fdatasyncs failed. That is fatal for
    /// the store, as a failed sync of the syncer is: the kernel may have
    /// dropped dirty pages that a later sync of the same file would then
    /// report as durable.
    pub fn sync_failed(&self) -> bool {
        self.sync_failed
    }

    fn grow_to(&mut self, needed: u64) -> Result<()> {
        if needed <= self.allocated {
            return Ok(());
        }
        let step = (self.allocated / GROW_FRACTION).clamp(GROW_STEP_MIN, GROW_STEP_MAX);
        let target = needed
            .max(self.allocated + step)
            .min(self.limits.segment_bytes_max);
        self.file
            .allocate(target)
            .map_err(io_err("preallocate", &self.active.path))?;
        self.allocated = target;
        Ok(())
    }

    /// Best effort: the index is derived data, so a failed index write only
    /// means recovery rebuilds it from the segment.
    fn write_index_bytes(&mut self, bytes: &[u8]) {
        let Some(file) = &self.index_file else { return };
        if file.write_all_at(bytes, self.index_len).is_ok() {
            self.index_len += bytes.len() as u64;
        } else {
            self.index_file = None;
        }
    }

    /// Seal the active segment and create the next one.
    fn roll(&mut self, header: SegmentHeader) -> Result<(Pos, u64)> {
        // The new segment's existence must imply that this one is complete
        // on disk: recovery treats any damage in a sealed segment as corruption.
        self.sync()?;
        let durable = (self.written_pos(), self.written.last_seq);
        let (next, file, allocated) = create_segment(&self.cache, &self.dir, header, self.limits)?;
        let seal = Seal {
            last_seq: self.written.last_seq,
            last_lamport: self.written.last_lamport,
            ts_us_max: self.active.index.read().ts_us_max(),
            end: self.written.end,
        };
        self.write_index_bytes(&index::encode_seal(&seal, self.active.header.salt));
        // List the next segment before sealing this one, so that a sealed
        // segment always has a successor. (Readers do not depend on the
        // order: they stop at `last_seq`, which advances only once the next
        // segment's records are published; the loom model of rolls checks it.)
        self.segments.push(next.clone());
        self.active.seal();
        let first_seq = next.header.first_seq;
        let index_path = self.dir.join(index_file_name(first_seq));
        let index_header = index::encode_header(next.header.salt, first_seq);
        self.index_file =
            index_file::write_file(&**self.cache.backend(), &index_path, &index_header);
        self.index_len = INDEX_HEADER_LEN as u64;
        self.file = file;
        self.allocated = allocated;
        self.base += self.written.end;
        self.written = next.published();
        self.active = next;
        Ok(durable)
    }
}

/// Create a segment file, make it and its directory entry durable, and
/// return it ready for writing with its file and length.
fn create_segment(
    cache: &Arc<MapCache>,
    dir: &std::path::Path,
    header: SegmentHeader,
    limits: WriterLimits,
) -> Result<(Arc<Segment>, Arc<dyn BackendFile>, u64)> {
    let backend = &**cache.backend();
    let path = dir.join(segment_file_name(header.first_seq));
    let file = backend
        .open(&path, OpenMode::CreateNew)
        .map_err(io_err("create", &path))?;
    let initial = GROW_STEP_MIN
        .min(limits.segment_bytes_max)
        .max(SEGMENT_HEADER_LEN as u64);
    let written = file
        .allocate(initial)
        .and_then(|()| file.write_all_at(&header.encode(), 0))
        .and_then(|()| file.sync_data())
        .and_then(|()| backend.sync_dir(dir));
    if let Err(e) = written {
        // Nothing in the file was acknowledged; leave no half-made segment behind.
        let _ = backend.remove_file(&path);
        return Err(io_err("create segment", &path)(e));
    }
    let published = Published {
        end: SEGMENT_HEADER_LEN as u64,
        last_seq: header.first_seq - 1,
        last_lamport: header.first_lamport - 1,
        last_crc: header.prev_crc,
    };
    let index = SparseIndex::new(limits.index_interval_bytes);
    let segment = Arc::new(Segment::writing(
        path,
        header,
        file.clone(),
        published,
        index,
        cache.clone(),
    ));
    Ok((segment, file, initial))
}

/// Create the first segment of the new stream `stream` in `dir`, durably:
/// once it exists, the stream does. Its descriptor is closed; the writer
/// opens its own when it first writes.
pub(crate) fn create_first_segment(
    cache: &Arc<MapCache>,
    dir: &std::path::Path,
    stream: &str,
    limits: WriterLimits,
) -> Result<Arc<Segment>> {
    let header = SegmentHeader {
        salt: new_salt(),
        prev_crc: 0,
        first_seq: 1,
        first_lamport: 1,
        created_us: now_us(),
        stream: stream.to_string(),
    };
    let (segment, _, _) = create_segment(cache, dir, header, limits)?;
    segment.detach();
    Ok(segment)
}
