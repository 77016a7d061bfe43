//! Reading records back: zero-copy through the segments' memory maps, every
//! record's checksum verified, seeks through the sparse index.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{CorruptionKind, Result};
use crate::format::frame::Kind;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::log::segment::{corruption_kind, Segment, SegmentList};

/// One record read back from a stream.
///
/// The payload shares the segment's memory map: cloning a `Record` or its
/// payload copies no bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    seq: u64,
    lamport: u64,
    ts_us: u64,
    kind: Kind,
    payload: Bytes,
    redacted: bool,
}

impl Record {
    /// The record's sequence number (contiguous per stream, from 1).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record's Lamport timestamp.
    pub fn lamport(&self) -> u64 {
        self.lamport
    }

    /// Wall-clock time of the append, in microseconds since the Unix epoch.
    pub fn ts_us(&self) -> u64 {
        self.ts_us
    }

    /// What kind of record this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the record was redacted
    /// ([`Stream::redact`](crate::Stream::redact)): its payload is then the
    /// stub `{"redacted":true,"reason":..,"sha256":..}` (docs/FORMAT.md,
    /// "Redaction"), not what was appended.
    pub fn is_redacted(&self) -> bool {
        self.redacted
    }

    /// The JSON payload, exactly as appended (a stub if it was redacted).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as [`Bytes`] sharing the memory map.
    pub fn payload_bytes(&self) -> &Bytes {
        &self.payload
    }

    /// Take the payload.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

/// Where an iterator starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum From {
    Start,
    Seq(u64),
    Lamport(u64),
}

/// An iterator over a stream's records, oldest first.
///
/// It yields the records that existed when it was created, every seq in
/// order, skipping only the seqs a repair lost
/// ([`RecoveryMode::Repair`](crate::RecoveryMode::Repair)). A damaged record ends it with an
/// [`Error::Corruption`](crate::Error::Corruption); it never yields a record
/// whose checksum does not match. Records it can no longer read because
/// [`archive_before`](crate::Stream::archive_before) moved them out (before
/// or while it runs) end it with [`Error::Archived`](crate::Error::Archived)
/// naming the first such seq: it never skips one.
#[derive(Debug)]
pub struct Iter {
    segments: Arc<SegmentList>,
    segment: Option<Arc<Segment>>,
    bytes: Bytes,
    offset: u64,
    end: u64,
    next_seq: u64,
    last_seq: u64,
    from: From,
    /// An error to yield before anything else (a seek into archived records).
    failure: Option<crate::error::Error>,
}

impl Iter {
    /// An iterator that yields `error` and ends.
    pub(crate) fn failed(segments: Arc<SegmentList>, error: crate::error::Error) -> Iter {
        let mut iter = Iter::new(segments, 0, From::Start);
        iter.failure = Some(error);
        iter
    }

    pub(crate) fn new(segments: Arc<SegmentList>, last_seq: u64, from: From) -> Iter {
        // Seqs start at 1: a seek to 0 is a seek to the start.
        let from = match from {
            From::Seq(seq) => From::Seq(seq.max(1)),
            other => other,
        };
        let (segment, failure) = match from {
            From::Start => (segments.first(), None),
            From::Seq(seq) => match segments.for_seq(seq) {
                Some(segment) => (Some(segment), None),
                // No live segment starts at or before `seq`: if there are
                // any, `seq` lies before the live log.
                None => (None, segments.first().map(|_| segments.archived(seq))),
            },
            From::Lamport(lamport) => match segments.for_lamport(lamport) {
                // Only the first live segment can start above `lamport`;
                // if records came before it, they were archived.
                Some(first)
                    if lamport < first.header.first_lamport && first.header.first_seq > 1 =>
                {
                    (None, Some(segments.archived(first.header.first_seq - 1)))
                }
                found => (found, None),
            },
        };
        let mut iter = Iter {
            segments,
            segment: None,
            bytes: Bytes::new(),
            offset: 0,
            end: 0,
            next_seq: 0,
            last_seq,
            from,
            failure,
        };
        if let Some(segment) = segment {
            iter.enter(segment);
        }
        iter
    }

    /// Position at the start of `segment`, or at the index point nearest
    /// before the seek target when it lies in this segment.
    fn enter(&mut self, segment: Arc<Segment>) {
        self.offset = SEGMENT_HEADER_LEN as u64;
        self.next_seq = segment.header.first_seq;
        self.end = 0;
        let entry = {
            let index = segment.index.read();
            match self.from {
                From::Start => None,
                From::Seq(seq) => index.seek_seq(seq),
                From::Lamport(lamport) => index.seek_lamport(lamport),
            }
        };
        // The index is derived data: use an index point only if the segment
        // agrees with it, otherwise scan from the segment's start.
        if let Some(e) = entry {
            let end = segment.end();
            let agrees = segment
                .bytes(end)
                .ok()
                .and_then(|bytes| {
                    segment
                        .decode_at(&bytes, e.offset, end)
                        .ok()
                        .map(|f| f.meta.seq == e.seq)
                })
                .unwrap_or(false);
            if agrees {
                self.offset = e.offset;
                self.next_seq = e.seq;
            }
        }
        self.segment = Some(segment);
    }

    /// Let the iterator go on to records up to `last_seq` (a subscription
    /// extends it as records become durable).
    pub(crate) fn extend_to(&mut self, last_seq: u64) {
        self.last_seq = self.last_seq.max(last_seq);
    }

    /// The seq the iterator yields next.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether every record up to the limit has been yielded (and no error
    /// is waiting to be).
    pub(crate) fn at_limit(&self) -> bool {
        self.failure.is_none() && self.next_seq > self.last_seq
    }

    /// A segment whose view the cache dropped is mapped again from its
    /// file; if archiving moved the file out meanwhile, the records are
    /// archived, not damaged.
    fn archived_meanwhile(&self, segment: &Segment) -> Option<crate::error::Error> {
        let live = self.segments.first_seq() <= segment.header.first_seq;
        (!live).then(|| self.segments.archived(self.next_seq))
    }

    /// The live segment after the one just read must start at the next
    /// seq. If it starts later, the segments between left the live log
    /// while this iterator was reading (archived): say so, never skip.
    fn check_successor(&self, next: &Segment) -> Result<()> {
        let first = next.header.first_seq;
        if first == self.next_seq {
            Ok(())
        } else if self.next_seq < self.segments.first_seq() {
            Err(self.segments.archived(self.next_seq))
        } else {
            Err(next.corruption(
                0,
                CorruptionKind::SequenceGap {
                    expected: self.next_seq,
                    found: first,
                },
            ))
        }
    }

    fn wanted(&self, record: &Record) -> bool {
        match self.from {
            From::Start => true,
            From::Seq(seq) => record.seq >= seq,
            From::Lamport(lamport) => record.lamport >= lamport,
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if self.next_seq > self.last_seq {
                return Ok(None);
            }
            let Some(segment) = self.segment.clone() else {
                return Ok(None);
            };
            if self.offset >= self.end {
                // Read `sealed` before `end`: a sealed segment's end is final.
                let sealed = segment.is_sealed();
                self.end = segment.end();
                if self.offset < self.end {
                    self.bytes = segment
                        .bytes(self.end)
                        .map_err(|e| self.archived_meanwhile(&segment).unwrap_or(e))?;
                    continue;
                }
                self.segment = None;
                if sealed {
                    if let Some(next) = self.segments.next(&segment) {
                        self.check_successor(&next)?;
                        self.enter(next);
                    }
                }
                continue;
            }
            let frame = segment
                .decode_at(&self.bytes, self.offset, self.end)
                .map_err(|e| segment.corruption(self.offset, corruption_kind(e)))?;
            if !frame.meta.kind.is_record() {
                // A gap stands for seqs a repair lost: skip them.
                if frame.meta.kind == Kind::Gap {
                    self.next_seq = self.next_seq.max(frame.meta.seq + 1);
                }
                self.offset += frame.len_on_disk() as u64;
                continue;
            }
            if frame.meta.seq != self.next_seq {
                return Err(segment.corruption(
                    self.offset,
                    CorruptionKind::SequenceGap {
                        expected: self.next_seq,
                        found: frame.meta.seq,
                    },
                ));
            }
            let start = self.offset as usize + crate::format::frame::FRAME_HEADER_LEN;
            let redacted = frame.meta.kind == Kind::Redacted;
            let record = Record {
                seq: frame.meta.seq,
                lamport: frame.meta.lamport,
                ts_us: frame.meta.ts_us,
                kind: if redacted {
                    Kind::Data
                } else {
                    frame.meta.kind
                },
                payload: match redacted {
                    true => self.segments.redaction_stub(frame.meta.seq),
                    false => self.bytes.slice(start..start + frame.payload.len()),
                },
                redacted,
            };
            self.offset += frame.len_on_disk() as u64;
            self.next_seq += 1;
            if self.wanted(&record) {
                return Ok(Some(record));
            }
        }
    }
}

impl Iterator for Iter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.failure.take() {
            self.segment = None;
            self.next_seq = u64::MAX;
            return Some(Err(error));
        }
        match self.next_record() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                // A damaged record ends the iteration.
                self.segment = None;
                self.next_seq = u64::MAX;
                Some(Err(e))
            }
        }
    }
}
