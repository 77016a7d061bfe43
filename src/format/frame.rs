//! The record frame codec: one length-prefixed, CRC-checked record.
//!
//! ```text
//! offset size field        meaning
//!  0      4   len          payload length in bytes (u32 LE): >= 1 for data, 0 for a marker
//!  4      4   crc          CRC-32 (IEEE, crc32fast) seeded with the segment
//!                          salt, over bytes 0..4, 8..44 and the payload
//!  8      8   seq          sequence number, contiguous per stream from 1
//! 16      8   lamport      Lamport timestamp, strictly increasing per stream
//! 24      8   ts_us        wall-clock time of the append, microseconds since the epoch
//! 32      4   prev_crc     `crc` of the previous frame (the segment header's
//!                          `prev_crc` for a segment's first frame)
//! 36      4   durable_end  segment offset up to which the segment was fdatasynced
//!                          when this frame was written (a gap: its link crc)
//! 40      1   kind         1 = data, 2 = commit marker (no payload), 3 = checkpoint,
//!                          4 = gap (what a repair lost; payload zeros),
//!                          5 = redacted record (payload zeros; durable_end: link crc)
//! 41      1   flags        bit 0: the next frame belongs to the same atomic batch
//! 42      2   reserved     0
//! 44    len   payload      the JSON bytes, unchanged
//! ```
//! `docs/FORMAT.md` is the authority; this comment mirrors it.

use zerocopy::little_endian::{U16, U32, U64};

use crate::error::{Error, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The fixed-width header that precedes every payload.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct FrameHeader {
    len: U32,
    crc: U32,
    seq: U64,
    lamport: U64,
    ts_us: U64,
    prev_crc: U32,
    durable_end: U32,
    kind: u8,
    flags: u8,
    reserved: U16,
}

/// Size of a frame header on disk.
pub const FRAME_HEADER_LEN: usize = size_of::<FrameHeader>();
const LEN_END: usize = size_of::<u32>();
/// The CRC covers everything after the CRC field itself.
const CRC_END: usize = LEN_END + size_of::<u32>();
const _: () = assert!(FRAME_HEADER_LEN == 44);

/// The format's own bound on a payload: a frame lies inside one segment, and
/// a segment is at most 2 GiB (its offsets are u32, see docs/FORMAT.md).
/// Readers judge every length by this bound, never by the `record_bytes_max`
/// of the current open: that option limits new appends only, so a store
/// reopened with a lower limit still reads every record written before.
pub const PAYLOAD_LEN_LIMIT: usize = (1 << 31) - FRAME_HEADER_LEN;

/// The largest Lamport timestamp a record may hold (docs/FORMAT.md: below
/// 2^63). It is the one Lamport bound: an observed timestamp is accepted
/// wherever it comes from (`append_observed`, a merge, `insert_op`) exactly
/// when the record stamped after it stays within this.
pub const LAMPORT_MAX: u64 = (1 << 63) - 1;

/// The Lamport merge rule: a record that observed `observed` on a stream
/// whose clock is `clock` is stamped after both, or refused past the bound.
pub(crate) fn stamp_after(clock: u64, observed: u64) -> Result<u64> {
    let seen = clock.max(observed);
    if seen >= LAMPORT_MAX {
        return Err(Error::LamportOutOfRange {
            observed,
            max: LAMPORT_MAX - 1,
        });
    }
    Ok(seen + 1)
}

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    /// An appended payload.
    Data = 1,
    /// A marker written after a sync on a clean close: it has no payload,
    /// takes no seq, and is never returned by readers. Its `durable_end`
    /// proves the records before it were on disk (see docs/FORMAT.md).
    Commit = 2,
    /// A checkpoint: a record (it takes a seq) whose JSON payload names a
    /// snapshot and the seq and Lamport it covers.
    Checkpoint = 3,
    /// Where a repair removed damaged bytes: not a record, it stands for
    /// the seqs up to its own that were lost, and names (in its
    /// `durable_end` field) the CRC the next frame chains to, so the chain
    /// stays checkable across it (see docs/FORMAT.md, "Repair").
    Gap = 4,
    /// A data record whose payload was redacted: it keeps its seq, Lamport,
    /// wall clock and length, its payload bytes are zeros, and its
    /// `durable_end` field names the CRC it had before, which the next
    /// frame chains to (see docs/FORMAT.md, "Redaction"). Readers return it
    /// as a [`Kind::Data`] record whose payload is a stub.
    Redacted = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Commit),
            3 => Some(Kind::Checkpoint),
            4 => Some(Kind::Gap),
            5 => Some(Kind::Redacted),
            _ => None,
        }
    }

    /// Whether a payload of `len` bytes is allowed for this kind.
    fn allows_len(self, len: usize) -> bool {
        match self {
            Kind::Data | Kind::Checkpoint | Kind::Redacted => len > 0,
            Kind::Commit => len == 0,
            Kind::Gap => true,
        }
    }

    /// Whether frames of this kind were written over other frames (by a
    /// repair or a redaction): their `durable_end` field holds their link CRC.
    pub(crate) fn replaces(self) -> bool {
        matches!(self, Kind::Gap | Kind::Redacted)
    }

    /// Whether frames of this kind are records: they take a seq and a
    /// Lamport timestamp and readers return them.
    pub fn is_record(self) -> bool {
        matches!(self, Kind::Data | Kind::Checkpoint | Kind::Redacted)
    }
}

/// Sequence numbers and Lamport timestamps stay below this bound; a record
/// claiming more is damaged (and the writer's `+ 1` can never overflow).
pub(crate) const CLOCK_LIMIT: u64 = 1 << 63;

/// Flag bit: the next frame belongs to the same atomic batch.
const FLAG_CONTINUES: u8 = 1;

/// Everything in a frame header except the length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    pub seq: u64,
    pub lamport: u64,
    pub ts_us: u64,
    pub prev_crc: u32,
    pub durable_end: u32,
    pub kind: Kind,
    /// The next frame belongs to the same atomic batch (data frames only).
    pub continues: bool,
}

/// A decoded, checksum-verified frame borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub meta: FrameMeta,
    pub crc: u32,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies on disk.
    pub fn len_on_disk(&self) -> usize {
        FRAME_HEADER_LEN + self.payload.len()
    }

    /// The CRC the next frame carries as its `prev_crc`: the frame's own,
    /// except for a frame that replaced others (a gap, a redacted record),
    /// which names the CRC of what it replaced.
    pub fn link_crc(&self) -> u32 {
        match self.meta.kind.replaces() {
            true => self.meta.durable_end,
            false => self.crc,
        }
    }

    /// Whether the frame's `durable_end` says how far the segment had been
    /// synced (a frame that replaced others holds its link CRC there).
    pub fn proves_durable_end(&self) -> bool {
        !self.meta.kind.replaces()
    }
}

/// Why bytes did not decode as a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends inside the header or the payload.
    Truncated,
    /// The length field is over the record limit.
    BadLength,
    /// The checksum does not match.
    BadChecksum,
    /// The checksum matches but the kind or reserved bits are unknown.
    BadRecordHeader,
}

/// The on-disk size of a frame carrying `payload_len` bytes.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

fn checksum(salt: u32, header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(salt);
    hasher.update(&header[..LEN_END]);
    hasher.update(&header[CRC_END..FRAME_HEADER_LEN]);
    hasher.update(payload);
    hasher.finalize()
}

/// Append one frame to `out` and return its CRC.
pub(crate) fn encode(out: &mut Vec<u8>, meta: &FrameMeta, payload: &[u8], salt: u32) -> u32 {
    let len = u32::try_from(payload.len())
        .expect("payload length is bounded by PAYLOAD_LEN_LIMIT < 4 GiB");
    let header = FrameHeader {
        len: len.into(),
        crc: 0.into(),
        seq: meta.seq.into(),
        lamport: meta.lamport.into(),
        ts_us: meta.ts_us.into(),
        prev_crc: meta.prev_crc.into(),
        durable_end: meta.durable_end.into(),
        kind: meta.kind as u8,
        flags: if meta.continues { FLAG_CONTINUES } else { 0 },
        reserved: 0.into(),
    };
    // Checksummed where it lands, so that the header's tail and the
    // payload are one contiguous run for the CRC.
    let start = out.len();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    let frame = &out[start..];
    let mut hasher = crc32fast::Hasher::new_with_initial(salt);
    hasher.update(&frame[..LEN_END]);
    hasher.update(&frame[CRC_END..]);
    let crc = hasher.finalize();
    out[start + LEN_END..start + CRC_END].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// A cheap test, before any checksum, of whether a frame could start at
/// `buf`: known kind, zero reserved bits, a length that fits. Returns the
/// seq it claims and the frame's length on disk.
pub(crate) fn plausible(buf: &[u8]) -> Option<(u64, usize)> {
    let (header, rest) = FrameHeader::ref_from_prefix(buf).ok()?;
    let len = header.len.get() as usize;
    let ok = Kind::from_u8(header.kind).is_some_and(|k| k.allows_len(len))
        && header.flags & !FLAG_CONTINUES == 0
        && header.reserved.get() == 0
        && len <= PAYLOAD_LEN_LIMIT
        && len <= rest.len();
    ok.then(|| (header.seq.get(), frame_len(len)))
}

/// Decode the frame at the start of `buf`, verifying its checksum.
///
/// `buf` may extend past the frame; only the frame's own bytes are read.
pub(crate) fn decode(buf: &[u8], salt: u32) -> Result<Frame<'_>, FrameError> {
    let (header, rest) = FrameHeader::ref_from_prefix(buf).map_err(|_| FrameError::Truncated)?;
    let len = header.len.get() as usize;
    if len > PAYLOAD_LEN_LIMIT {
        return Err(FrameError::BadLength);
    }
    let payload = rest.get(..len).ok_or(FrameError::Truncated)?;
    let crc = header.crc.get();
    if checksum(salt, header.as_bytes(), payload) != crc {
        return Err(FrameError::BadChecksum);
    }
    let kind = Kind::from_u8(header.kind).ok_or(FrameError::BadRecordHeader)?;
    let continues = header.flags & FLAG_CONTINUES != 0;
    let flags_ok = header.flags & !FLAG_CONTINUES == 0
        && !(continues && matches!(kind, Kind::Commit | Kind::Gap));
    if !flags_ok || header.reserved.get() != 0 || !kind.allows_len(len) {
        return Err(FrameError::BadRecordHeader);
    }
    let meta = FrameMeta {
        seq: header.seq.get(),
        lamport: header.lamport.get(),
        ts_us: header.ts_us.get(),
        prev_crc: header.prev_crc.get(),
        durable_end: header.durable_end.get(),
        kind,
        continues,
    };
    Ok(Frame { meta, crc, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> FrameMeta {
        FrameMeta {
            seq,
            lamport: seq + 10,
            ts_us: 1_700_000_000_000_000,
            prev_crc: 7,
            durable_end: 192,
            kind: Kind::Data,
            continues: false,
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let crc = encode(&mut buf, &meta(3), br#"{"op":"write"}"#, 0xdead_beef);
        assert_eq!(buf.len(), frame_len(14));
        let frame = decode(&buf, 0xdead_beef).unwrap();
        assert_eq!(frame.meta, meta(3));
        assert_eq!(frame.crc, crc);
        assert_eq!(frame.payload, br#"{"op":"write"}"#);
        assert_eq!(frame.len_on_disk(), buf.len());
    }

    #[test]
    fn another_salt_does_not_verify() {
        let mut buf = Vec::new();
        encode(&mut buf, &meta(1), b"{}", 1);
        assert_eq!(decode(&buf, 2).unwrap_err(), FrameError::BadChecksum);
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, &meta(9), br#"[1,2,3]"#, 42);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 42).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn markers_have_no_payload_and_data_has_one() {
        let mut buf = Vec::new();
        let marker = FrameMeta {
            kind: Kind::Commit,
            ..meta(4)
        };
        encode(&mut buf, &marker, b"", 8);
        assert_eq!(decode(&buf, 8).unwrap().meta, marker);
        assert_eq!(plausible(&buf), Some((4, FRAME_HEADER_LEN)));
        let mut empty_data = Vec::new();
        encode(&mut empty_data, &meta(4), b"", 8);
        assert_eq!(
            decode(&empty_data, 8).unwrap_err(),
            FrameError::BadRecordHeader
        );
        let mut full_marker = Vec::new();
        encode(&mut full_marker, &marker, b"{}", 8);
        assert_eq!(
            decode(&full_marker, 8).unwrap_err(),
            FrameError::BadRecordHeader
        );
    }

    #[test]
    fn truncation_and_zeros() {
        let mut buf = Vec::new();
        encode(&mut buf, &meta(1), b"true", 5);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut], 5).is_err());
        }
        assert!(decode(&[0; 64], 5).is_err());
        let mut huge = buf.clone();
        huge[..LEN_END].copy_from_slice(&(PAYLOAD_LEN_LIMIT as u32 + 1).to_le_bytes());
        assert_eq!(decode(&huge, 5).unwrap_err(), FrameError::BadLength);
    }
}
