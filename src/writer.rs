//! The log writer of one stream: frames records, writes them at the end of
//! the active segment, keeps the sparse index, rolls segments and syncs.
//!
//! It knows nothing about who calls it or when: today a mutex in
//! [`Stream`](crate::Stream) serialises appends; a group-commit thread can
//! drive the same operations (`append_frame`, `sync`) for many streams.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{Backend, BackendFile, OpenMode};
use crate::clock::now_us;
use crate::error::{io_err, Error, Result};
use crate::frame::{self, FrameMeta, Kind};
use crate::index::{self, Seal, SparseIndex, INDEX_HEADER_LEN};
use crate::segment::{
    index_file_name, new_salt, segment_file_name, Published, Segment, SegmentHeader, SegmentList,
    SEGMENT_HEADER_LEN,
};

/// Smallest and largest step by which a segment file is preallocated.
const GROW_STEP_MIN: u64 = 64 << 10;
const GROW_STEP_MAX: u64 = 8 << 20;

/// Limits the writer enforces, from [`Options`](crate::Options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    pub segment_bytes_max: u64,
    pub index_interval_bytes: u64,
}

/// What an append was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's Lamport timestamp.
    pub lamport: u64,
}

/// The write side of one stream.
#[derive(Debug)]
pub(crate) struct StreamWriter {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    limits: WriterLimits,
    segments: Arc<SegmentList>,
    active: Arc<Segment>,
    /// The active segment's file.
    file: Arc<dyn BackendFile>,
    index_file: Option<Arc<dyn BackendFile>>,
    index_len: u64,
    /// State of the last record written.
    tip: Published,
    /// Bytes of the active segment known to be on disk.
    durable_end: u64,
    /// Current length of the active segment file.
    allocated: u64,
    buf: Vec<u8>,
    /// Whether the last frame is a commit marker.
    marked: bool,
    poisoned: Option<String>,
}

impl StreamWriter {
    /// Resume writing at the end of `active`, whose `[0, published.end)` holds
    /// verified records and whose index file is `index_file`.
    pub fn resume(
        backend: Arc<dyn Backend>,
        dir: PathBuf,
        limits: WriterLimits,
        segments: Arc<SegmentList>,
        active: Arc<Segment>,
    ) -> Result<StreamWriter> {
        let tip = active.published();
        let file = active.file().expect("the tail segment is open for writing");
        let allocated = file.len().map_err(io_err("stat", &active.path))?;
        let index_path = dir.join(index_file_name(active.header.first_seq));
        let index_bytes = index::encode_file(
            &active.index.read(),
            None,
            active.header.salt,
            active.header.first_seq,
        );
        let index_file = index::write_file(&*backend, &index_path, &index_bytes);
        Ok(StreamWriter {
            backend,
            dir,
            limits,
            segments,
            index_len: index_bytes.len() as u64,
            index_file,
            active,
            file,
            tip,
            // Recovery synced the segment it resumes from.
            durable_end: tip.end,
            allocated,
            buf: Vec::new(),
            marked: false,
            poisoned: None,
        })
    }

    /// Create the first segment of a new stream and write from it.
    pub fn create(
        backend: Arc<dyn Backend>,
        dir: PathBuf,
        stream: &str,
        limits: WriterLimits,
        segments: Arc<SegmentList>,
    ) -> Result<StreamWriter> {
        let header = SegmentHeader {
            salt: 0,
            prev_crc: 0,
            first_seq: 1,
            first_lamport: 1,
            created_us: 0,
            stream: stream.to_string(),
        };
        let (active, _, _) = create_segment(&*backend, &dir, header, limits)?;
        segments.push(active.clone());
        Self::resume(backend, dir, limits, segments, active)
    }

    pub fn last(&self) -> Published {
        self.tip
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Write one record (already validated) and publish it to readers.
    pub fn append_frame(&mut self, payload: &[u8]) -> Result<Appended> {
        self.check_poisoned()?;
        let seq = self.tip.last_seq + 1;
        let lamport = self.tip.last_lamport + 1;
        if self.tip.end + frame::frame_len(payload.len()) as u64 > self.limits.segment_bytes_max {
            self.roll(seq, lamport)?;
        }
        let offset = self.tip.end;
        let ts_us = now_us();
        self.write_frame(Kind::Data, seq, lamport, ts_us, payload)?;
        let entry = self
            .active
            .index
            .write()
            .observe(seq, lamport, ts_us, offset);
        if let Some(entry) = entry {
            self.write_index_bytes(&index::encode_entry(&entry, self.active.header.salt));
        }
        self.active.publish(self.tip);
        Ok(Appended { seq, lamport })
    }

    /// Sync, then write a commit marker whose `durable_end` covers every
    /// record of the segment, so that damage to them found later is reported
    /// as corruption instead of being cut as a torn write (docs/FORMAT.md,
    /// "Recovery"). Called on a clean close.
    pub fn close(&mut self) -> Result<()> {
        self.sync()?;
        let empty = self.tip.end == SEGMENT_HEADER_LEN as u64;
        let full = self.tip.end + frame::frame_len(0) as u64 > self.limits.segment_bytes_max;
        if self.marked || empty || full {
            return Ok(());
        }
        let Published {
            last_seq,
            last_lamport,
            ..
        } = self.tip;
        self.write_frame(Kind::Commit, last_seq, last_lamport, now_us(), b"")?;
        self.marked = true;
        self.active.publish(self.tip);
        self.sync()
    }

    /// Encode and write one frame at the end of the active segment and
    /// advance the tip past it (not yet published to readers).
    fn write_frame(
        &mut self,
        kind: Kind,
        seq: u64,
        lamport: u64,
        ts_us: u64,
        payload: &[u8],
    ) -> Result<()> {
        let offset = self.tip.end;
        let meta = FrameMeta {
            seq,
            lamport,
            ts_us,
            prev_crc: self.tip.last_crc,
            durable_end: u32::try_from(self.durable_end)
                .expect("segment offsets fit u32 (SEGMENT_BYTES_MAX_LIMIT)"),
            kind,
        };
        self.buf.clear();
        let crc = frame::encode(&mut self.buf, &meta, payload, self.active.header.salt);
        self.grow_to(offset + self.buf.len() as u64)?;
        self.file
            .write_all_at(&self.buf, offset)
            .map_err(io_err("write", &self.active.path))?;
        self.tip = Published {
            end: offset + self.buf.len() as u64,
            last_seq: seq,
            last_lamport: lamport,
            last_crc: crc,
        };
        self.marked = false;
        Ok(())
    }

    /// Give up without syncing, as a crash would: later calls fail. For
    /// tests that need the state a crash leaves.
    pub fn abandon(&mut self) {
        self.poisoned = Some("the store was abandoned".into());
    }

    /// Make everything written so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if self.durable_end == self.tip.end {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages, so a retry could falsely succeed: refuse all writes.
            self.poisoned = Some(format!("fdatasync {}: {e}", self.active.path.display()));
            return Err(io_err("fdatasync", &self.active.path)(e));
        }
        self.durable_end = self.tip.end;
        Ok(())
    }

    fn grow_to(&mut self, needed: u64) -> Result<()> {
        if needed <= self.allocated {
            return Ok(());
        }
        let step = self.allocated.clamp(GROW_STEP_MIN, GROW_STEP_MAX);
        let target = needed
            .max(self.allocated + step)
            .min(self.limits.segment_bytes_max);
        self.file
            .allocate(target)
            .map_err(io_err("fallocate", &self.active.path))?;
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

    /// Seal the active segment and start a new one whose first record will
    /// be `seq` with Lamport `lamport`.
    fn roll(&mut self, seq: u64, lamport: u64) -> Result<()> {
        // The new segment's existence must imply that this one is complete
        // on disk: recovery treats any damage in a sealed segment as corruption.
        self.sync()?;
        let header = SegmentHeader {
            salt: 0,
            prev_crc: self.tip.last_crc,
            first_seq: seq,
            first_lamport: lamport,
            created_us: 0,
            stream: self.active.header.stream.clone(),
        };
        let (next, file, allocated) =
            create_segment(&*self.backend, &self.dir, header, self.limits)?;
        let seal = Seal {
            last_seq: self.tip.last_seq,
            last_lamport: self.tip.last_lamport,
            ts_us_max: self.active.index.read().ts_us_max(),
            end: self.tip.end,
        };
        self.write_index_bytes(&index::encode_seal(&seal, self.active.header.salt));
        // Readers that reach the end of a sealed segment look for the next
        // one, so it must be listed before the old one is marked sealed.
        self.segments.push(next.clone());
        self.active.seal();
        let index_path = self.dir.join(index_file_name(seq));
        let index_header = index::encode_header(next.header.salt, seq);
        self.index_file = index::write_file(&*self.backend, &index_path, &index_header);
        self.index_len = INDEX_HEADER_LEN as u64;
        self.file = file;
        self.allocated = allocated;
        self.durable_end = SEGMENT_HEADER_LEN as u64;
        self.tip.end = SEGMENT_HEADER_LEN as u64;
        self.active = next;
        Ok(())
    }
}

/// Create a segment file with a fresh salt, make it and its directory entry
/// durable, and return it ready for writing with its file and length.
fn create_segment(
    backend: &dyn Backend,
    dir: &std::path::Path,
    mut header: SegmentHeader,
    limits: WriterLimits,
) -> Result<(Arc<Segment>, Arc<dyn BackendFile>, u64)> {
    header.salt = new_salt();
    header.created_us = now_us();
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
    let segment = Arc::new(Segment::open(path, header, file.clone(), published, index));
    Ok((segment, file, initial))
}
