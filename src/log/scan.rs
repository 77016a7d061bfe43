//! Walking a segment's frames in order and checking the rules that tie each
//! frame to the one before it (docs/FORMAT.md, "Frame"), and the search for
//! proof that damaged bytes had been synced (docs/FORMAT.md, "Recovery").

use crate::error::CorruptionKind;
use crate::format::frame::{self, FrameMeta, Kind, FRAME_HEADER_LEN};
use crate::format::index::IndexEntry;
use crate::format::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::log::index::{IndexMark, SparseIndex};
use crate::log::segment::{corruption_kind, Published};

/// The rule that ties a segment to the one before it (docs/FORMAT.md,
/// "Segment header"): it starts at the next seq, chained by CRC to the
/// previous segment's last frame, with a larger Lamport. Recovery's walk
/// and `verify` both judge by it.
pub(crate) fn chain_break(prev: &Published, h: &SegmentHeader) -> Option<CorruptionKind> {
    if h.first_seq != prev.last_seq + 1 {
        Some(CorruptionKind::SequenceGap {
            expected: prev.last_seq + 1,
            found: h.first_seq,
        })
    } else if h.prev_crc != prev.last_crc {
        Some(CorruptionKind::BrokenChain)
    } else if h.first_lamport <= prev.last_lamport {
        Some(CorruptionKind::LamportNotIncreasing)
    } else {
        None
    }
}

/// Where a scan stands: the next frame expected at `offset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor {
    pub offset: u64,
    pub next_seq: u64,
    /// The previous frame's CRC, when known (a scan that starts at an index
    /// point does not know it).
    pub prev_crc: Option<u32>,
    pub last_lamport: u64,
    /// The previous frame continues an atomic batch.
    pub in_batch: bool,
    /// Seqs that gaps (a repair's record of what it lost) passed so far.
    pub lost: u64,
}

impl Cursor {
    pub fn at_header(h: &SegmentHeader) -> Cursor {
        Cursor {
            offset: SEGMENT_HEADER_LEN as u64,
            next_seq: h.first_seq,
            prev_crc: Some(h.prev_crc),
            last_lamport: h.first_lamport.saturating_sub(1),
            in_batch: false,
            lost: 0,
        }
    }

    pub fn at_entry(e: &IndexEntry) -> Cursor {
        Cursor {
            offset: e.offset,
            next_seq: e.seq,
            prev_crc: None,
            last_lamport: e.lamport.saturating_sub(1),
            in_batch: false,
            lost: 0,
        }
    }

    /// Whether the frame `m`, checksum-verified, may come next.
    fn check(&self, m: &FrameMeta) -> Option<CorruptionKind> {
        // A data record takes the next seq and a higher Lamport; a commit
        // marker repeats the last record's; a gap stands for the seqs up to
        // its own (none, or more) and repeats the last record's Lamport.
        let (seq, lamport_ok) = match m.kind {
            Kind::Data | Kind::Checkpoint | Kind::Redacted => {
                (self.next_seq, m.lamport > self.last_lamport)
            }
            Kind::Commit => (self.next_seq - 1, m.lamport == self.last_lamport),
            Kind::Gap => (m.seq.max(self.next_seq - 1), m.lamport == self.last_lamport),
        };
        if m.seq != seq {
            Some(CorruptionKind::SequenceGap {
                expected: seq,
                found: m.seq,
            })
        } else if self.prev_crc.is_some_and(|p| p != m.prev_crc) {
            Some(CorruptionKind::BrokenChain)
        } else if self.in_batch && m.kind == Kind::Commit {
            // A marker is written on its own, never inside a batch.
            Some(CorruptionKind::BadRecordHeader)
        } else if !lamport_ok {
            Some(CorruptionKind::LamportNotIncreasing)
        } else if m.seq >= frame::CLOCK_LIMIT
            || m.lamport >= frame::CLOCK_LIMIT
            || (!m.kind.replaces() && u64::from(m.durable_end) > self.offset)
        {
            // Out of range, or claims to have been synced before it was written.
            Some(CorruptionKind::BadRecordHeader)
        } else {
            None
        }
    }

    pub fn published(&self, h: &SegmentHeader) -> Published {
        Published {
            end: self.offset,
            last_seq: self.next_seq - 1,
            last_lamport: self.last_lamport,
            last_crc: self.prev_crc.unwrap_or(h.prev_crc),
        }
    }
}

/// Decode frames from `cursor` up to `limit`, checking the checksum, the CRC
/// chain, seq contiguity, Lamport order and that each payload is JSON, and
/// feed each to `index`.
/// Returns the cursor after the last good frame and why the scan stopped
/// before `limit`, if it did.
pub(crate) fn scan(
    bytes: &[u8],
    limit: u64,
    salt: u32,
    c: Cursor,
    index: &mut SparseIndex,
) -> (Cursor, Option<CorruptionKind>) {
    scan_to_stop(bytes, limit, salt, c, index).rolled_back(index)
}

/// Where a scan stopped, before any rollback of an open batch.
pub(crate) struct Stop {
    /// After the last good frame: where the problem is.
    pub at: Cursor,
    /// Why it stopped before its limit, if it did.
    pub problem: Option<CorruptionKind>,
    /// Where the batch that `at` is inside began, and the index state to
    /// roll back to.
    pub batch: Option<(Cursor, IndexMark)>,
}

impl Stop {
    /// A scan that stops inside a batch rolls back to its start, so a batch
    /// is kept whole or not at all: where the good frames end, and why.
    pub fn rolled_back(self, index: &mut SparseIndex) -> (Cursor, Option<CorruptionKind>) {
        match self.batch {
            Some((start, mark)) => {
                index.rollback(mark);
                (
                    start,
                    Some(self.problem.unwrap_or(CorruptionKind::TornBatch)),
                )
            }
            None => (self.at, self.problem),
        }
    }
}

/// `scan` without the rollback: for a repair, which keeps the good frames
/// of a batch that damage cut, and for reports of damage, which name the
/// damaged frame rather than the start of its batch.
pub(crate) fn scan_to_stop(
    bytes: &[u8],
    limit: u64,
    salt: u32,
    mut c: Cursor,
    index: &mut SparseIndex,
) -> Stop {
    let mut batch: Option<(Cursor, IndexMark)> = None;
    let problem = loop {
        if c.offset >= limit {
            break None;
        }
        let window = &bytes[c.offset as usize..limit as usize];
        let f = match frame::decode(window, salt) {
            Ok(f) => f,
            Err(e) => break Some(corruption_kind(e)),
        };
        if let Some(problem) = c.check(&f.meta) {
            break Some(problem);
        }
        if !payload_ok(f.meta.kind, f.payload) {
            break Some(CorruptionKind::BadPayload);
        }
        let m = f.meta;
        if m.kind == Kind::Gap {
            // What a repair lost may have been part of a batch: the batch
            // ends here with what survived (docs/FORMAT.md, "Repair").
            batch = None;
            c.lost += m.seq + 1 - c.next_seq;
            c.next_seq = m.seq + 1;
        }
        if m.continues && batch.is_none() {
            batch = Some((c, index.mark()));
        }
        if m.kind.is_record() {
            index.observe(m.seq, m.lamport, m.ts_us, c.offset, !c.in_batch);
            c.next_seq = m.seq + 1;
            c.last_lamport = m.lamport;
        }
        c.offset += f.len_on_disk() as u64;
        c.prev_crc = Some(f.link_crc());
        c.in_batch = m.continues;
        if !m.continues {
            batch = None;
        }
    };
    Stop {
        at: c,
        problem,
        batch,
    }
}

/// Whether a frame's payload is what its kind holds: one JSON value for a
/// record lamplog wrote (a frame whose CRC matches but whose payload is not
/// JSON was not written by lamplog, or passed a CRC-32 by chance: damage),
/// zeros for a gap or a redacted record (where the old bytes were).
pub(crate) fn payload_ok(kind: Kind, payload: &[u8]) -> bool {
    match kind.replaces() {
        true => payload.iter().all(|&b| b == 0),
        false => !kind.is_record() || is_json(payload),
    }
}

fn is_json(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

/// Whether a valid frame after `bad` proves that the bytes at `bad` had been
/// synced (its `durable_end` lies beyond `bad`). Unparseable noise that would
/// cost more than a few passes over the tail to search counts as proof: when
/// in doubt, lamplog refuses rather than cuts.
pub(crate) fn durable_after(bytes: &[u8], bad: u64, salt: u32, last_seq: u64) -> bool {
    let len = bytes.len();
    let tail = (len as u64).saturating_sub(bad);
    let mut budget = tail.saturating_mul(8).saturating_add(1 << 20);
    for y in (bad as usize + 1)..len.saturating_sub(FRAME_HEADER_LEN - 1) {
        let window = &bytes[y..];
        let Some((seq, frame_len)) = frame::plausible(window) else {
            continue;
        };
        // Frames are at least FRAME_HEADER_LEN + 1 bytes, which bounds how far seq can advance.
        if seq <= last_seq || seq - last_seq > tail {
            continue;
        }
        budget = budget.saturating_sub(frame_len as u64);
        if budget == 0 {
            return true;
        }
        if let Ok(f) = frame::decode(window, salt) {
            if f.proves_durable_end() && u64::from(f.meta.durable_end) > bad {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the `segment_recover` fuzz target once it ran
    /// on the simulated disk at 13,000 executions/s): a frame whose CRC
    /// matches but whose payload is not JSON was returned as a record.
    #[test]
    fn a_frame_with_a_valid_checksum_and_a_payload_that_is_not_json_is_damage() {
        let header = SegmentHeader {
            salt: 7,
            prev_crc: 0,
            first_seq: 1,
            first_lamport: 1,
            created_us: 0,
            stream: "s".into(),
        };
        let mut bytes = header.encode().to_vec();
        let mut prev_crc = 0;
        for (seq, payload) in [(1, &b"{\"ok\":1}"[..]), (2, b"{\"o\x01")] {
            let meta = FrameMeta {
                seq,
                lamport: seq,
                ts_us: 0,
                prev_crc,
                durable_end: 0,
                kind: Kind::Data,
                continues: false,
            };
            prev_crc = frame::encode(&mut bytes, &meta, payload, header.salt);
        }
        let end = bytes.len() as u64;
        let mut index = SparseIndex::new(u64::MAX);
        let (c, problem) = scan(
            &bytes,
            end,
            header.salt,
            Cursor::at_header(&header),
            &mut index,
        );
        assert_eq!(problem, Some(CorruptionKind::BadPayload));
        assert_eq!(c.next_seq, 2, "the JSON record before it stands");
    }
}
