//! A segment file: its header codec, its name, and the shared runtime state
//! through which the writer publishes records and readers see them.
//!
//! ```text
//! offset size field          meaning
//!   0     8   magic          b"LAMPSEG\n"
//!   8     4   version        1
//!  12     4   header_len     192
//!  16     4   salt           random per segment; seeds every frame CRC
//!  20     4   prev_crc       crc of the previous segment's last frame (0 for the first)
//!  24     8   first_seq      seq of the first record (also the file name)
//!  32     8   first_lamport  lower bound of every Lamport in the segment
//!  40     8   created_us     wall clock at creation, microseconds
//!  48     4   name_len       length of the stream name, 1..=128
//!  52     4   reserved       0
//!  56   128   name           the stream name, zero-padded
//! 184     4   reserved       0
//! 188     4   header_crc     CRC-32 of bytes 0..188
//! 192         first frame
//! ```
//! `docs/FORMAT.md` is the authority; this comment mirrors it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, RwLock};
use bytes::Bytes;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::backend::BackendFile;
use crate::error::{io_err, CorruptionKind, Error, Result};
use crate::frame::{self, Frame, FrameError};
use crate::index::SparseIndex;
use crate::map_cache::{MapCache, View};
use crate::name::NAME_LEN_MAX;

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LAMPSEG\n";
/// The folder, beside a stream's segments, that archived segments move to.
pub const ARCHIVE_DIR: &str = "archive";

/// The segment format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    version: U32,
    header_len: U32,
    salt: U32,
    prev_crc: U32,
    first_seq: U64,
    first_lamport: U64,
    created_us: U64,
    name_len: U32,
    reserved: U32,
    name: [u8; NAME_LEN_MAX],
    reserved2: U32,
    header_crc: U32,
}

/// Size of the segment header on disk; the first frame starts here.
pub const SEGMENT_HEADER_LEN: usize = size_of::<RawHeader>();
const HEADER_CRC_OFFSET: usize = SEGMENT_HEADER_LEN - size_of::<u32>();
const VERSION_END: usize = SEGMENT_MAGIC.len() + size_of::<u32>();
const _: () = assert!(SEGMENT_HEADER_LEN == 192);
const _: () = assert!(frame::FRAME_HEADER_LEN < SEGMENT_HEADER_LEN);

/// The decoded fields of a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub salt: u32,
    pub prev_crc: u32,
    pub first_seq: u64,
    pub first_lamport: u64,
    pub created_us: u64,
    pub stream: String,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut name = [0u8; NAME_LEN_MAX];
        name[..self.stream.len()].copy_from_slice(self.stream.as_bytes());
        let mut raw = RawHeader {
            magic: SEGMENT_MAGIC,
            version: FORMAT_VERSION.into(),
            header_len: (SEGMENT_HEADER_LEN as u32).into(),
            salt: self.salt.into(),
            prev_crc: self.prev_crc.into(),
            first_seq: self.first_seq.into(),
            first_lamport: self.first_lamport.into(),
            created_us: self.created_us.into(),
            name_len: (self.stream.len() as u32).into(),
            reserved: 0.into(),
            name,
            reserved2: 0.into(),
            header_crc: 0.into(),
        };
        raw.header_crc = crc32fast::hash(&raw.as_bytes()[..HEADER_CRC_OFFSET]).into();
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decode and check a header. `Err` carries the corruption kind; a
    /// future version is reported separately by the caller via `version`.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if bytes.len() < VERSION_END || bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
            return Err(HeaderError::Bad("magic"));
        }
        let version = u32::from_le_bytes(
            bytes[SEGMENT_MAGIC.len()..VERSION_END]
                .try_into()
                .expect("4 bytes"),
        );
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let raw = RawHeader::ref_from_prefix(bytes)
            .map_err(|_| HeaderError::Bad("truncated"))?
            .0;
        if crc32fast::hash(&raw.as_bytes()[..HEADER_CRC_OFFSET]) != raw.header_crc.get() {
            return Err(HeaderError::Bad("checksum"));
        }
        let name_len = raw.name_len.get() as usize;
        if raw.header_len.get() as usize != SEGMENT_HEADER_LEN
            || raw.reserved.get() != 0
            || raw.reserved2.get() != 0
            || name_len == 0
            || name_len > NAME_LEN_MAX
            || raw.first_seq.get() == 0
            || raw.first_seq.get() >= frame::CLOCK_LIMIT
            || raw.first_lamport.get() >= frame::CLOCK_LIMIT
        {
            return Err(HeaderError::Bad("field out of range"));
        }
        let stream = std::str::from_utf8(&raw.name[..name_len])
            .map_err(|_| HeaderError::Bad("stream name"))?;
        Ok(SegmentHeader {
            salt: raw.salt.get(),
            prev_crc: raw.prev_crc.get(),
            first_seq: raw.first_seq.get(),
            first_lamport: raw.first_lamport.get(),
            created_us: raw.created_us.get(),
            stream: stream.to_string(),
        })
    }
}

/// Why a header did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    Bad(&'static str),
    Version(u32),
}

/// The file name of the segment whose first record is `first_seq`.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The file name of that segment's sparse index.
pub(crate) fn index_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.idx")
}

/// The first seq named by a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

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
        *self.published.lock() = p;
        self.end.store(p.end, Ordering::Release);
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
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
    hasher.write_u64(crate::clock::now_us());
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// The segments of one stream, oldest first, shared by the writer (which
/// appends new ones) and readers (which look segments up by seq or Lamport).
#[derive(Debug, Default)]
pub(crate) struct SegmentList {
    list: RwLock<Vec<Arc<Segment>>>,
    /// The stream's name and the folder archived segments went to, for the
    /// error that readers of an archived seq get.
    stream: String,
    archive_dir: PathBuf,
}

impl SegmentList {
    pub fn new(stream: &str, archive_dir: PathBuf, segments: Vec<Arc<Segment>>) -> SegmentList {
        SegmentList {
            list: RwLock::new(segments),
            stream: stream.to_string(),
            archive_dir,
        }
    }

    /// Seq of the first record of the live log (1 for an empty stream).
    pub fn first_seq(&self) -> u64 {
        self.list.read().first().map_or(1, |s| s.header.first_seq)
    }

    /// The error for reading `seq`, which lies before the live log.
    pub fn archived(&self, seq: u64) -> Error {
        Error::Archived {
            stream: self.stream.clone(),
            seq,
            location: self.archive_dir.clone(),
        }
    }

    pub fn push(&self, segment: Arc<Segment>) {
        self.list.write().push(segment);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            salt: 0x1234,
            prev_crc: 99,
            first_seq: 42,
            first_lamport: 40,
            created_us: 5,
            stream: "s-1".into(),
        }
    }

    #[test]
    fn header_round_trip_and_damage() {
        let bytes = header().encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header());
        for i in 0..SEGMENT_HEADER_LEN {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert!(SegmentHeader::decode(&bad).is_err(), "flip at {i} accepted");
        }
        let mut future = bytes;
        future[8] = 2;
        assert_eq!(SegmentHeader::decode(&future), Err(HeaderError::Version(2)));
        assert!(SegmentHeader::decode(&bytes[..100]).is_err());
    }

    #[test]
    fn file_names_sort_and_parse() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("7.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
