//! The files of one stream's writer: it writes encoded chunks, keeps the
//! sparse index, creates segments and syncs before a roll.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{io_err, Result};
use crate::format::index::{self, Seal, INDEX_ENTRY_LEN, INDEX_HEADER_LEN};
use crate::format::segment::{
    index_file_name, segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN,
};
use crate::io::backend::{BackendFile, OpenMode};
use crate::log::clock::now_us;
use crate::log::index::{self as index_file, SparseIndex};
use crate::log::map_cache::MapCache;
use crate::log::segment::{new_salt, Published, Segment, SegmentList};
use crate::log::writer::grow::{Growth, AHEAD_STEP_MIN};
use crate::log::writer::{Chunk, Pos, WriterLimits};

/// Smallest and largest step by which a segment file is preallocated. A
/// step is written with zeros while appenders wait, and the next sync
/// carries them (about 0.9 ms per MiB here), so the largest step bounds
/// those pauses.
const GROW_STEP_MIN: u64 = 16 << 10;
const GROW_STEP_MAX: u64 = 1 << 20;
/// Index entries are written to the index file this many at a time (and
/// all at a roll, and when the writer closes): one write per 32 KiB of log
/// by default instead of one per 4 KiB. A crash can lose the unwritten
/// ones, so recovery of the tail scans at most this many index intervals
/// more.
const INDEX_ENTRIES_PER_WRITE: usize = 8;
/// Written bytes are sent to writeback (without waiting) in pieces of this
/// size, so that dirty pages never pile up for a sync to write all at once:
/// a roll's sync, or the sweep's, then takes about as long as its last
/// piece, not tens of milliseconds, and the writer does not stall on it.
const WRITEBACK_BYTES: u64 = 1 << 20;
/// A step is this fraction of what is allocated, so that preallocated but
/// unused space stays below a quarter of a segment (small streams too).
const GROW_FRACTION: u64 = 4;

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
    /// Index entries not yet written to the index file.
    index_unwritten: Vec<u8>,
    allocated: u64,
    /// The file being grown ahead of the writer, if it is.
    growing: Option<Growth>,
    /// Where the bytes not yet sent to writeback start.
    writeback_from: u64,
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
            index_unwritten: Vec::new(),
            written: active.published(),
            active,
            file,
            allocated,
            growing: None,
            writeback_from: SEGMENT_HEADER_LEN as u64,
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
    /// it to readers; `synced_next` if a sync waits for it. Returns, for a
    /// roll, the position and seq that the roll made durable (everything
    /// before the new segment).
    pub fn write(&mut self, chunk: &Chunk, synced_next: bool) -> Result<Option<(Pos, u64)>> {
        let rolled = match &chunk.roll {
            Some(header) => Some(self.roll(header.clone())?),
            None => None,
        };
        debug_assert_eq!(
            chunk.offset, self.written.end,
            "chunks are written in order"
        );
        let end = chunk.offset + chunk.bytes.len() as u64;
        self.grow_to(end)?;
        if synced_next {
            self.file
                .write_all_at_before_sync(&chunk.bytes, chunk.offset)
        } else {
            self.file.write_all_at(&chunk.bytes, chunk.offset)
        }
        .map_err(io_err("write", &self.active.path))?;
        let salt = self.active.header.salt;
        for f in &chunk.frames {
            let entry =
                self.active
                    .index
                    .write()
                    .observe(f.seq, f.lamport, f.ts_us, f.offset, f.indexable);
            if let Some(entry) = entry {
                self.index_unwritten
                    .extend_from_slice(&index::encode_entry(&entry, salt));
            }
        }
        if end - self.writeback_from >= WRITEBACK_BYTES {
            self.file
                .start_writeback(self.writeback_from, end - self.writeback_from);
            self.writeback_from = end;
        }
        if self.index_unwritten.len() >= INDEX_ENTRIES_PER_WRITE * INDEX_ENTRY_LEN {
            self.write_index_entries();
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

    /// Make sure the file holds `needed` bytes, and keep a large step
    /// ahead of the writer growing in a helper.
    fn grow_to(&mut self, needed: u64) -> Result<()> {
        if let Some(growth) = self
            .growing
            .take_if(|g| g.is_finished() || needed > self.allocated)
        {
            if let Some(len) = growth.finish() {
                self.allocated = self.allocated.max(len);
            }
        }
        if needed > self.allocated {
            let target = needed.max(self.next_target());
            self.file
                .allocate(target)
                .map_err(io_err("preallocate", &self.active.path))?;
            self.allocated = target;
        }
        let step = self.next_target() - self.allocated;
        if self.growing.is_none() && step >= AHEAD_STEP_MIN && self.allocated - needed < step {
            self.growing = Some(Growth::start(self.file.clone(), self.next_target()));
        }
        Ok(())
    }

    /// How far the next step grows the file: a quarter of it, within
    /// bounds, and never past the largest segment.
    fn next_target(&self) -> u64 {
        let step = (self.allocated / GROW_FRACTION).clamp(GROW_STEP_MIN, GROW_STEP_MAX);
        (self.allocated + step).min(self.limits.segment_bytes_max)
    }

    /// Wait for a growth in progress (before a roll, or as the writer goes).
    fn stop_growing(&mut self) {
        if let Some(growth) = self.growing.take() {
            growth.finish();
        }
    }

    /// Write the index entries gathered so far (the writer closes). Best effort: the index is
    /// derived data, so a failed index write only means recovery rebuilds
    /// it from the segment.
    pub fn write_index_entries(&mut self) {
        let bytes = std::mem::take(&mut self.index_unwritten);
        if bytes.is_empty() {
            return;
        }
        let Some(file) = &self.index_file else { return };
        if file.write_all_at(&bytes, self.index_len).is_ok() {
            self.index_len += bytes.len() as u64;
        } else {
            self.index_file = None;
        }
        self.index_unwritten = bytes;
        self.index_unwritten.clear();
    }

    /// Seal the active segment and create the next one.
    fn roll(&mut self, header: SegmentHeader) -> Result<(Pos, u64)> {
        // Nothing writes a segment once it is sealed, not even zeros.
        self.stop_growing();
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
        self.index_unwritten
            .extend_from_slice(&index::encode_seal(&seal, self.active.header.salt));
        self.write_index_entries();
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
        self.writeback_from = SEGMENT_HEADER_LEN as u64;
        self.base += self.written.end;
        self.written = next.published();
        self.active = next;
        Ok(durable)
    }
}

impl Drop for SegmentIo {
    fn drop(&mut self) {
        self.stop_growing();
        self.write_index_entries();
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
