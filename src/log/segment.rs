//! A segment's shared runtime state, through which the writer publishes
//! records and readers see them, and the list of a stream's segments.
//! The header's bytes are in `format::segment`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{io_err, CorruptionKind, Error, Result};
use crate::format::frame::{self, Frame, FrameError};
use crate::format::segment::{SegmentHeader, ARCHIVE_DIR};
use crate::io::backend::BackendFile;
use crate::log::index::SparseIndex;
use crate::log::map_cache::{MapCache, View};
use crate::log::sync::{AtomicBool, AtomicU64, Mutex, Ordering, RwLock};

/// What the writer publishes after each write: readers may read `[0, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub end: u64,
    pub last_seq: u64,
    pub last_lamport: u64,
    pub last_crc: u32,
}

/// A segment shared by the writer and readers.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// The writer's descriptor, while the writer writes this segment. No
    /// other segment holds one: a store's descriptors grow with the streams
    /// being written, not with streams or segments (map_cache.rs).
    file: Mutex<Option<Arc<dyn BackendFile>>>,
    /// Bytes `[0, end)` hold whole, verified records.
    end: AtomicU64,
    sealed: AtomicBool,
    /// The writer's last publication (under a lock: it is several fields).
    published: Mutex<Published>,
    /// A view of the records published so far (it may be older than the
    /// latest publication, or dropped by the cache; `bytes` maps again when
    /// a reader needs more).
    view: Arc<View>,
    cache: Arc<MapCache>,
    pub index: RwLock<SparseIndex>,
}

impl Segment {
    /// A segment the writer writes through `file`.
    pub fn writing(
        path: PathBuf,
        header: SegmentHeader,
        file: Arc<dyn BackendFile>,
        published: Published,
        index: SparseIndex,
        cache: Arc<MapCache>,
    ) -> Segment {
        let segment = Segment::recovered(path, header, Bytes::new(), published, index, cache);
        *segment.file.lock() = Some(file);
        segment
    }

    /// A segment recovery checked, whose records are all in `bytes`
    /// (sealed, or the tail, which a writer may resume later).
    pub fn recovered(
        path: PathBuf,
        header: SegmentHeader,
        bytes: Bytes,
        published: Published,
        index: SparseIndex,
        cache: Arc<MapCache>,
    ) -> Segment {
        let view = Arc::new(View::default());
        let kept = !bytes.is_empty();
        *view.bytes.lock() = bytes;
        if kept {
            cache.touch(&view);
        }
        Segment {
            path,
            header,
            file: Mutex::new(None),
            end: AtomicU64::new(published.end),
            sealed: AtomicBool::new(false),
            published: Mutex::new(published),
            view,
            cache,
            index: RwLock::new(index),
        }
    }

    /// The writer resumes writing this segment through `file`.
    pub fn attach(&self, file: Arc<dyn BackendFile>) {
        *self.file.lock() = Some(file);
    }

    /// No writer writes this segment for now: its descriptor is closed.
    pub fn detach(&self) {
        *self.file.lock() = None;
    }

    /// End of the bytes readers may read.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    pub fn published(&self) -> Published {
        *self.published.lock()
    }

    /// Make `[0, p.end)` visible to readers. The bytes must already be written.
    pub fn publish(&self, p: Published) {
        let mut published = self.published.lock();
        assert!(
            p.end >= published.end && p.last_seq >= published.last_seq,
            "a segment's published end only moves forward ({published:?} -> {p:?})"
        );
        *published = p;
        self.end.store(p.end, Ordering::Release);
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Forget the view of the segment's bytes: the file was replaced (a
    /// redaction), and the next read maps the new one. Readers holding the
    /// old view keep it until they drop it.
    pub fn forget_view(&self) {
        *self.view.bytes.lock() = Bytes::new();
    }

    /// Mark the segment complete: no record will be added, and the
    /// writer's descriptor is closed.
    pub fn seal(&self) {
        *self.file.lock() = None;
        self.sealed.store(true, Ordering::Release);
    }

    /// The segment is the stream's tail again (its successor was cut):
    /// records may be added.
    pub fn unseal(&self) {
        self.sealed.store(false, Ordering::Release);
    }

    /// The segment's bytes, covering at least `[0, end)`; `end` must be
    /// published. A new view maps exactly the published end, never the
    /// preallocated space after it: the writer goes on writing there, and
    /// no byte inside a map may change while it is mapped (docs/UNSAFE.md).
    pub fn bytes(&self, end: u64) -> Result<Bytes> {
        let bytes = {
            let mut view = self.view.bytes.lock();
            if (view.len() as u64) < end {
                let published = self.end();
                debug_assert!(end <= published, "a view past the published end");
                let file = self.file.lock().clone();
                *view = match file {
                    Some(file) => file.map(published),
                    None => self.map_from_path(published),
                }
                .map_err(io_err("map", &self.path))?;
            }
            view.clone()
        };
        self.cache.touch(&self.view);
        Ok(bytes)
    }

    /// Map the segment through its path. A writer (in this process or
    /// another) may have archived it since it was opened: its bytes are
    /// the same in the archive folder.
    fn map_from_path(&self, len: u64) -> std::io::Result<Bytes> {
        match self.cache.map_path(&self.path, len) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
                    return Err(e);
                };
                self.cache.map_path(&dir.join(ARCHIVE_DIR).join(name), len)
            }
            other => other,
        }
    }

    /// Decode the frame at `offset` of `bytes` (a view of this segment).
    pub fn decode_at<'a>(
        &self,
        bytes: &'a [u8],
        offset: u64,
        end: u64,
    ) -> Result<Frame<'a>, FrameError> {
        let window = bytes
            .get(offset as usize..end as usize)
            .ok_or(FrameError::Truncated)?;
        frame::decode(window, self.header.salt)
    }

    /// The corruption error for damage at `offset` of this segment.
    pub fn corruption(&self, offset: u64, kind: CorruptionKind) -> Error {
        Error::Corruption {
            stream: self.header.stream.clone(),
            segment: self.path.clone(),
            offset,
            kind,
        }
    }
}

/// Map a frame decoding failure to the corruption it means in durable data.
pub(crate) fn corruption_kind(err: FrameError) -> CorruptionKind {
    match err {
        FrameError::Truncated | FrameError::BadLength => CorruptionKind::BadLength,
        FrameError::BadChecksum => CorruptionKind::BadChecksum,
        FrameError::BadRecordHeader => CorruptionKind::BadRecordHeader,
    }
}

/// A fresh per-segment salt. It need not be secret, only different from the
/// salts of earlier segments whose stale bytes could be read back.
pub(crate) fn new_salt() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's randomness once per thread and
    // stepped on every call, so consecutive salts differ.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(crate::log::clock::now_us());
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// The segments of one stream, oldest first, shared by the writer (which
/// appends new ones) and readers (which look segments up by seq or Lamport).
#[derive(Debug, Default)]
pub(crate) struct SegmentList {
    list: RwLock<Vec<Arc<Segment>>>,
    /// Seqs below this were purged (deleted for good); at least 1.
    purged_before: std::sync::atomic::AtomicU64,
    /// The stream's name and the folder archived segments went to, for the
    /// error that readers of an archived seq get.
    stream: String,
    archive_dir: PathBuf,
    /// What reads of redacted records return, by seq (docs/FORMAT.md,
    /// "Redaction").
    redactions: RwLock<std::collections::HashMap<u64, Bytes>>,
}

impl SegmentList {
    pub fn new(
        stream: &str,
        archive_dir: PathBuf,
        segments: Vec<Arc<Segment>>,
        purged_before: u64,
    ) -> SegmentList {
        SegmentList {
            list: RwLock::new(segments),
            purged_before: std::sync::atomic::AtomicU64::new(purged_before.max(1)),
            stream: stream.to_string(),
            archive_dir,
            redactions: RwLock::default(),
        }
    }

    /// The payload a read of the redacted record `seq` returns.
    pub fn redaction_stub(&self, seq: u64) -> Bytes {
        let known = self.redactions.read().get(&seq).cloned();
        // Without its entry (redactions.json lost), the stub says only that.
        known.unwrap_or_else(|| Bytes::from_static(br#"{"redacted":true}"#))
    }

    /// Reads of the redacted record `seq` return `stub`.
    pub fn set_redaction_stub(&self, seq: u64, stub: Bytes) {
        self.redactions.write().insert(seq, stub);
    }

    /// Seq of the first record of the live log (1 for an empty stream).
    pub fn first_seq(&self) -> u64 {
        self.list.read().first().map_or(1, |s| s.header.first_seq)
    }

    /// Seqs below this were purged.
    pub fn purged_before(&self) -> u64 {
        self.purged_before
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Seqs below `seq` are purged from now on (it never moves back).
    pub fn set_purged_before(&self, seq: u64) {
        self.purged_before
            .fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
    }

    /// The error for reading `seq`, which lies before the live log: it was
    /// purged, or archived.
    pub fn archived(&self, seq: u64) -> Error {
        if seq < self.purged_before() {
            return Error::Purged {
                stream: self.stream.clone(),
                seq,
                purged_before: self.purged_before(),
            };
        }
        Error::Archived {
            stream: self.stream.clone(),
            seq,
            location: self.archive_dir.clone(),
        }
    }

    pub fn push(&self, segment: Arc<Segment>) {
        let mut list = self.list.write();
        if let Some(last) = list.last() {
            assert_eq!(
                segment.header.first_seq,
                last.published().last_seq + 1,
                "a new segment starts right after the last record of the one before"
            );
        }
        list.push(segment);
    }

    pub fn first(&self) -> Option<Arc<Segment>> {
        self.list.read().first().cloned()
    }

    pub fn last(&self) -> Option<Arc<Segment>> {
        self.list.read().last().cloned()
    }

    /// The segment that holds `seq` if any does: the last one starting at or before it.
    pub fn for_seq(&self, seq: u64) -> Option<Arc<Segment>> {
        let list = self.list.read();
        let n = list.partition_point(|s| s.header.first_seq <= seq);
        n.checked_sub(1).map(|i| list[i].clone())
    }

    /// The segment where a search for the first Lamport at or above
    /// `lamport` starts. Every Lamport in a segment is below the next
    /// segment's `first_lamport`, so it is the last segment starting at or
    /// below `lamport` (or the first segment).
    pub fn for_lamport(&self, lamport: u64) -> Option<Arc<Segment>> {
        let list = self.list.read();
        let n = list.partition_point(|s| s.header.first_lamport <= lamport);
        list.get(n.saturating_sub(1)).cloned()
    }

    /// Forget the segments before `first_seq` (they were archived). Readers
    /// that hold them keep their maps.
    pub fn drop_before(&self, first_seq: u64) {
        self.list
            .write()
            .retain(|s| s.header.first_seq >= first_seq);
    }

    /// Every segment, oldest first.
    pub fn all(&self) -> Vec<Arc<Segment>> {
        self.list.read().clone()
    }

    /// Every segment's first seq, oldest first.
    pub fn first_seqs(&self) -> Vec<u64> {
        self.list
            .read()
            .iter()
            .map(|s| s.header.first_seq)
            .collect()
    }

    /// The segment after `segment`.
    pub fn next(&self, segment: &Segment) -> Option<Arc<Segment>> {
        let list = self.list.read();
        let n = list.partition_point(|s| s.header.first_seq <= segment.header.first_seq);
        list.get(n).cloned()
    }
}
