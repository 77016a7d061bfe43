//! The `.ids` file codec: the op ids of one sealed segment, as 64-bit
//! prefixes of their hashes with the seq of the record holding each.
//!
//! ```text
//! offset size field      meaning
//!  0      8   magic      b"LAMPIDS\n"
//!  8      4   version    2
//! 12      4   salt       the segment's salt
//! 16      8   first_seq  the segment's first seq
//! 24      8   last_seq   the segment's last seq
//! 32      4   last_crc   the crc of the segment's last frame
//! 36      4   reserved   0
//! 40      8   count      pairs that follow
//! 48   16*n   pairs      (prefix u64, seq u64)
//! end     4   crc        CRC-32 of every byte before it
//! ```
//! `docs/FORMAT.md` ("Typed ops") is the authority; this comment mirrors it.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

const IDS_MAGIC: [u8; 8] = *b"LAMPIDS\n";
const IDS_VERSION: u32 = 2;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    version: U32,
    salt: U32,
    first_seq: U64,
    last_seq: U64,
    last_crc: U32,
    reserved: U32,
    count: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawPair {
    prefix: U64,
    seq: U64,
}

const HEADER_LEN: usize = size_of::<RawHeader>();
const PAIR_LEN: usize = size_of::<RawPair>();
const CRC_LEN: usize = size_of::<u32>();
const _: () = assert!(HEADER_LEN == 48 && PAIR_LEN == 16);

/// The segment contents a `.ids` file describes: it is trusted only for a
/// segment with exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Describes {
    pub salt: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_crc: u32,
}

/// The longest `.ids` file of a segment of `segment_len` bytes: at most one
/// record per smallest frame.
pub(crate) fn len_max(segment_len: u64) -> u64 {
    let records_max = segment_len / crate::format::frame::frame_len(1) as u64 + 1;
    (HEADER_LEN + CRC_LEN) as u64 + records_max * PAIR_LEN as u64
}

/// Encode a `.ids` file.
pub(crate) fn encode(describes: &Describes, pairs: &[(u64, u64)]) -> Vec<u8> {
    let header = RawHeader {
        magic: IDS_MAGIC,
        version: IDS_VERSION.into(),
        salt: describes.salt.into(),
        first_seq: describes.first_seq.into(),
        last_seq: describes.last_seq.into(),
        last_crc: describes.last_crc.into(),
        reserved: 0.into(),
        count: (pairs.len() as u64).into(),
    };
    let mut bytes = Vec::with_capacity(HEADER_LEN + pairs.len() * PAIR_LEN + CRC_LEN);
    bytes.extend_from_slice(header.as_bytes());
    for &(prefix, seq) in pairs {
        let pair = RawPair {
            prefix: prefix.into(),
            seq: seq.into(),
        };
        bytes.extend_from_slice(pair.as_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decode a `.ids` file: what it describes and its pairs, if its framing,
/// checksum and seqs hold (not yet that it describes any given segment).
pub(crate) fn decode(bytes: &[u8]) -> Option<(Describes, Vec<(u64, u64)>)> {
    let body = bytes.get(..bytes.len().checked_sub(CRC_LEN)?)?;
    let crc = u32::from_le_bytes(bytes.get(body.len()..)?.try_into().ok()?);
    let (header, rest) = RawHeader::ref_from_prefix(body).ok()?;
    let pairs = <[RawPair]>::ref_from_bytes(rest).ok()?;
    let framing_ok = header.magic == IDS_MAGIC
        && header.version.get() == IDS_VERSION
        && header.reserved.get() == 0
        && header.count.get() == pairs.len() as u64
        && crc32fast::hash(body) == crc;
    if !framing_ok {
        return None;
    }
    let describes = Describes {
        salt: header.salt.get(),
        first_seq: header.first_seq.get(),
        last_seq: header.last_seq.get(),
        last_crc: header.last_crc.get(),
    };
    let pairs: Vec<(u64, u64)> = pairs
        .iter()
        .map(|p| (p.prefix.get(), p.seq.get()))
        .collect();
    let in_range = |&(_, s): &(u64, u64)| s >= describes.first_seq && s <= describes.last_seq;
    pairs.iter().all(in_range).then_some((describes, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let describes = Describes {
            salt: 7,
            first_seq: 10,
            last_seq: 20,
            last_crc: 99,
        };
        let pairs = vec![(0xab, 10), (0x01, 15), (0xab, 20)];
        let bytes = encode(&describes, &pairs);
        assert_eq!(bytes.len(), HEADER_LEN + 3 * PAIR_LEN + CRC_LEN);
        assert_eq!(decode(&bytes), Some((describes, pairs)));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let out_of_range = encode(&describes, &[(1, 21)]);
        assert_eq!(decode(&out_of_range), None);
    }
}
