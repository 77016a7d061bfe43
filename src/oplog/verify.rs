//! A full check of a stream, as `fsck` does: every frame of every segment
//! re-decoded and re-checked (checksum, CRC chain, seq, Lamport, batches),
//! and the chain across segments. Open checks only what a crash can have
//! torn; this checks everything.

use crate::error::{CorruptionKind, Result};
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::log::index::SparseIndex;
use crate::log::parallel::map_in_order;
use crate::log::scan::{chain_break, scan_to_stop, Cursor};
use crate::log::segment::{Published, Segment};
use crate::store::Store;
use crate::stream::Stream;

/// What a full check found in a healthy stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Verified {
    /// Segments checked.
    pub segments: u64,
    /// Records checked.
    pub records: u64,
    /// Bytes of frames checked.
    pub bytes: u64,
    /// Seqs that an earlier repair lost (information, not damage: the log
    /// records them as gaps, see [`Error::Lost`](crate::Error::Lost)).
    pub lost_seqs: u64,
}

/// What a check of one segment found: its records, and the state the next
/// segment must chain to.
struct Checked {
    records: u64,
    lost: u64,
    bytes: u64,
    end: Published,
}

/// Check every frame of `segment`: checksums, the CRC chain, seqs,
/// Lamports and batches inside it.
fn check_segment(segment: &Segment) -> Result<Checked> {
    let h = &segment.header;
    let end = segment.end();
    let bytes = segment.bytes(end)?;
    let header = crate::format::segment::SegmentHeader::decode(&bytes).ok();
    if header.as_ref() != Some(h) {
        return Err(segment.corruption(0, CorruptionKind::BadHeader("changed since open")));
    }
    let mut scratch = SparseIndex::new(u64::MAX);
    let stop = scan_to_stop(&bytes, end, h.salt, Cursor::at_header(h), &mut scratch);
    // Damage is reported where it is, not at the start of its batch.
    let damaged_at = stop.at.offset;
    let (c, problem) = stop.rolled_back(&mut scratch);
    if let Some(kind) = problem {
        return Err(segment.corruption(damaged_at, kind));
    }
    Ok(Checked {
        records: c.next_seq - h.first_seq - c.lost,
        lost: c.lost,
        bytes: end - SEGMENT_HEADER_LEN as u64,
        end: c.published(h),
    })
}

impl Stream {
    /// Re-check every byte of every segment of the live log, the segments
    /// shared among the machine's cores. Damage is
    /// [`Error::Corruption`](crate::Error::Corruption) naming the segment
    /// and byte offset (the first damage in log order).
    pub fn verify(&self) -> Result<Verified> {
        let segments = self.segments().all();
        let checked = map_in_order(&segments, |s| check_segment(s));
        let mut report = Verified::default();
        let mut prev: Option<Published> = None;
        for (segment, checked) in segments.iter().zip(checked) {
            if let Some(kind) = prev.as_ref().and_then(|p| chain_break(p, &segment.header)) {
                return Err(segment.corruption(0, kind));
            }
            let c = checked?;
            report.segments += 1;
            report.records += c.records;
            report.lost_seqs += c.lost;
            report.bytes += c.bytes;
            prev = Some(c.end);
        }
        Ok(report)
    }
}

impl Store {
    /// [`Stream::verify`] for every stream; the first damage found is the error.
    pub fn verify(&self) -> Result<Verified> {
        let mut total = Verified::default();
        for name in self.streams() {
            let v = self.stream(&name)?.verify()?;
            total.segments += v.segments;
            total.records += v.records;
            total.bytes += v.bytes;
            total.lost_seqs += v.lost_seqs;
        }
        Ok(total)
    }
}
