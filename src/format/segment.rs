//! A segment file's header codec and the names of a stream's files.
//!
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

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::format::frame;
use crate::format::name::NAME_LEN_MAX;

/// Upper bound for `segment_bytes_max`: offsets within a segment are stored as `u32`.
pub const SEGMENT_BYTES_MAX_LIMIT: u64 = 1 << 31;

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
/// The salt field of a header that may not decode (a repair tries it on
/// the frames after a damaged header).
pub(crate) fn salt_field(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(16..20)?.try_into().ok()?))
}

pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The file name of that segment's sparse index.
pub(crate) fn index_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.idx")
}

/// The file name of that segment's op ids.
pub(crate) fn ids_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.ids")
}

/// The first seq named by a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
