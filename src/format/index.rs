//! The index file codec: the sparse seq/Lamport index of one segment,
//! as bytes.
//!
//! The index is derived data: recovery checks it against the segment and
//! rebuilds it from the segment when it is missing, stale or damaged.
//!
//! ```text
//! index file = header, then 40-byte entries
//! header:
//!   0   8  magic      b"LAMPIDX\n"
//!   8   4  version    1
//!  12   4  salt       the segment's salt
//!  16   8  first_seq  the segment's first seq
//!  24   4  reserved   0
//!  28   4  crc        CRC-32 of bytes 0..28
//! entry:
//!   0   8  seq        seq of the record at `offset`   (seal: last seq)
//!   8   8  lamport    its Lamport timestamp           (seal: last Lamport)
//!  16   8  ts_us_max  highest wall clock up to it     (seal: of the segment)
//!  24   8  offset     its byte offset in the segment  (seal: end of the records)
//!  32   4  tag        1 = entry, 2 = seal (the segment is complete)
//!  36   4  crc        CRC-32 seeded with the salt, of bytes 0..36
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Magic number at the start of every index file.
pub const INDEX_MAGIC: [u8; 8] = *b"LAMPIDX\n";
const INDEX_VERSION: u32 = 1;
const TAG_ENTRY: u32 = 1;
const TAG_SEAL: u32 = 2;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    version: U32,
    salt: U32,
    first_seq: U64,
    reserved: U32,
    crc: U32,
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawEntry {
    seq: U64,
    lamport: U64,
    ts_us_max: U64,
    offset: U64,
    tag: U32,
    crc: U32,
}

/// Size of the index file header.
pub const INDEX_HEADER_LEN: usize = size_of::<RawHeader>();
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: usize = size_of::<RawEntry>();
const HEADER_CRC_OFFSET: usize = INDEX_HEADER_LEN - size_of::<u32>();
const ENTRY_CRC_OFFSET: usize = INDEX_ENTRY_LEN - size_of::<u32>();
const _: () = assert!(INDEX_HEADER_LEN == 32 && INDEX_ENTRY_LEN == 40);

/// One sparse index point: the record at `offset` has this seq and Lamport,
/// and no record up to it has a wall clock above `ts_us_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub seq: u64,
    pub lamport: u64,
    pub ts_us_max: u64,
    pub offset: u64,
}

/// The end of a complete (sealed) segment, as recorded in its index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seal {
    pub last_seq: u64,
    pub last_lamport: u64,
    pub ts_us_max: u64,
    pub end: u64,
}

/// Encode an index file header.
pub(crate) fn encode_header(salt: u32, first_seq: u64) -> [u8; INDEX_HEADER_LEN] {
    let mut raw = RawHeader {
        magic: INDEX_MAGIC,
        version: INDEX_VERSION.into(),
        salt: salt.into(),
        first_seq: first_seq.into(),
        reserved: 0.into(),
        crc: 0.into(),
    };
    raw.crc = crc32fast::hash(&raw.as_bytes()[..HEADER_CRC_OFFSET]).into();
    let mut out = [0u8; INDEX_HEADER_LEN];
    out.copy_from_slice(raw.as_bytes());
    out
}

fn encode_raw(
    seq: u64,
    lamport: u64,
    ts_us_max: u64,
    offset: u64,
    tag: u32,
    salt: u32,
) -> [u8; INDEX_ENTRY_LEN] {
    let mut raw = RawEntry {
        seq: seq.into(),
        lamport: lamport.into(),
        ts_us_max: ts_us_max.into(),
        offset: offset.into(),
        tag: tag.into(),
        crc: 0.into(),
    };
    let mut hasher = crc32fast::Hasher::new_with_initial(salt);
    hasher.update(&raw.as_bytes()[..ENTRY_CRC_OFFSET]);
    raw.crc = hasher.finalize().into();
    let mut out = [0u8; INDEX_ENTRY_LEN];
    out.copy_from_slice(raw.as_bytes());
    out
}

/// Encode one index point.
pub(crate) fn encode_entry(e: &IndexEntry, salt: u32) -> [u8; INDEX_ENTRY_LEN] {
    encode_raw(e.seq, e.lamport, e.ts_us_max, e.offset, TAG_ENTRY, salt)
}

/// Encode the seal that marks a segment complete.
pub(crate) fn encode_seal(s: &Seal, salt: u32) -> [u8; INDEX_ENTRY_LEN] {
    encode_raw(
        s.last_seq,
        s.last_lamport,
        s.ts_us_max,
        s.end,
        TAG_SEAL,
        salt,
    )
}

/// Encode a whole index file.
pub(crate) fn encode_file(
    entries: &[IndexEntry],
    seal: Option<&Seal>,
    salt: u32,
    first_seq: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + (entries.len() + 1) * INDEX_ENTRY_LEN);
    out.extend_from_slice(&encode_header(salt, first_seq));
    for e in entries {
        out.extend_from_slice(&encode_entry(e, salt));
    }
    if let Some(seal) = seal {
        out.extend_from_slice(&encode_seal(seal, salt));
    }
    out
}

/// What a readable index file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedIndex {
    pub entries: Vec<IndexEntry>,
    pub seal: Option<Seal>,
}

/// Parse an index file for the segment with `salt` and `first_seq`.
///
/// Returns `None` when the header does not belong to that segment. Entries
/// are read up to the first damaged, torn or out-of-order one: a partial
/// index is still a valid (sparser) index. Entries past the segment's real
/// end are the caller's to check.
pub(crate) fn parse_file(bytes: &[u8], salt: u32, first_seq: u64) -> Option<ParsedIndex> {
    let (header, mut rest) = RawHeader::ref_from_prefix(bytes).ok()?;
    let header_ok = header.magic == INDEX_MAGIC
        && header.version.get() == INDEX_VERSION
        && header.salt.get() == salt
        && header.first_seq.get() == first_seq
        && header.reserved.get() == 0
        && crc32fast::hash(&header.as_bytes()[..HEADER_CRC_OFFSET]) == header.crc.get();
    if !header_ok {
        return None;
    }
    let mut parsed = ParsedIndex {
        entries: Vec::new(),
        seal: None,
    };
    while let Ok((raw, tail)) = RawEntry::ref_from_prefix(rest) {
        rest = tail;
        let mut hasher = crc32fast::Hasher::new_with_initial(salt);
        hasher.update(&raw.as_bytes()[..ENTRY_CRC_OFFSET]);
        if hasher.finalize() != raw.crc.get() {
            break;
        }
        let (seq, lamport, ts_us_max, offset) = (
            raw.seq.get(),
            raw.lamport.get(),
            raw.ts_us_max.get(),
            raw.offset.get(),
        );
        let in_order = seq >= first_seq
            && parsed
                .entries
                .last()
                .is_none_or(|p| seq > p.seq && lamport > p.lamport && offset > p.offset);
        match raw.tag.get() {
            TAG_ENTRY if in_order => {
                parsed.entries.push(IndexEntry {
                    seq,
                    lamport,
                    ts_us_max,
                    offset,
                });
            }
            // A segment with no record (a repair's gap) has a seal alone.
            TAG_SEAL
                if parsed
                    .entries
                    .last()
                    .map_or(seq >= first_seq, |p| seq >= p.seq && offset > p.offset) =>
            {
                parsed.seal = Some(Seal {
                    last_seq: seq,
                    last_lamport: lamport,
                    ts_us_max,
                    end: offset,
                });
                break;
            }
            _ => break,
        }
    }
    Some(parsed)
}
