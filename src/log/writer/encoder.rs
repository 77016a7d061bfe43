//! The encoder: seq and Lamport assignment and framing, in memory, under
//! the stream's lock; it decides where segments roll.

use crate::error::{Error, Result};
use crate::format::frame::{self, stamp_after, FrameMeta, Kind, FRAME_HEADER_LEN};
use crate::format::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::log::clock::now_us;
use crate::log::segment::{new_salt, Published, Segment};
use crate::log::writer::{Appended, Chunk, FrameInfo, Pos, WriterLimits};

/// What the encoder puts in a frame header.
struct NewFrame {
    kind: Kind,
    seq: u64,
    lamport: u64,
    ts_us: u64,
    continues: bool,
    /// Whether a sparse index point may start here: only at the start of a
    /// batch, so that recovery never starts a scan inside one.
    indexable: bool,
}

/// Seq assignment and framing, in memory.
#[derive(Debug)]
pub(crate) struct Encoder {
    limits: WriterLimits,
    stream: String,
    /// Salt and position of the segment being encoded into.
    salt: u32,
    base: Pos,
    tip: Published,
    /// How far the log is known to be on disk.
    durable: Pos,
    pending: Vec<Chunk>,
    /// Buffers of a written chunk, for the next one: no allocation per
    /// append when one appender writes its own records.
    spare_bytes: Vec<u8>,
    spare_frames: Vec<FrameInfo>,
    /// Whether the last frame is a commit marker.
    marked: bool,
}

/// Chunk buffers larger than this are freed after their write, not kept.
const SPARE_BYTES_MAX: usize = 1 << 20;

impl Encoder {
    /// Continue after the last record of `active`, all of which is durable.
    pub fn new(limits: WriterLimits, active: &Segment) -> Encoder {
        let tip = active.published();
        Encoder {
            limits,
            stream: active.header.stream.clone(),
            salt: active.header.salt,
            base: 0,
            tip,
            durable: tip.end,
            pending: Vec::new(),
            spare_bytes: Vec::new(),
            spare_frames: Vec::new(),
            marked: false,
        }
    }

    /// The end of the last frame encoded.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn pos(&self) -> Pos {
        self.base + self.tip.end
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn take_pending(&mut self) -> Vec<Chunk> {
        std::mem::take(&mut self.pending)
    }

    /// Take back the buffers of chunks that were written, for the next
    /// chunks to fill.
    pub fn recycle(&mut self, mut written: Vec<Chunk>) {
        if let Some(chunk) = written.pop() {
            let (mut bytes, mut frames) = (chunk.bytes, chunk.frames);
            if bytes.capacity() <= SPARE_BYTES_MAX {
                bytes.clear();
                self.spare_bytes = bytes;
            }
            frames.clear();
            self.spare_frames = frames;
        }
        if self.pending.is_empty() {
            written.clear();
            self.pending = written;
        }
    }

    /// Frames encoded but not yet taken for writing are dropped (their
    /// write failed); later appends must not chain to them.
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Record that the log up to `pos` is on disk.
    pub fn note_durable(&mut self, pos: Pos) {
        self.durable = self.durable.max(pos);
    }

    /// Frame a record of `kind` with a Lamport after both this stream's
    /// clock and `observed` (0 when the record observed nothing).
    pub fn encode(&mut self, kind: Kind, payload: &[u8], observed: u64) -> Result<Appended> {
        let mut last = None;
        self.encode_records(kind, &[(payload, observed)], |a| last = Some(a))?;
        Ok(last.expect("one record was framed"))
    }

    /// Frame records as one atomic batch: contiguous seqs, in one segment,
    /// every frame but the last flagged as continued (docs/FORMAT.md), so
    /// that recovery keeps all of them or none. Each record is stamped
    /// after the one before it and after its own observed Lamport.
    /// Nothing is framed if the batch cannot fit in one segment or a
    /// Lamport would pass [`LAMPORT_MAX`].
    pub fn encode_batch(&mut self, records: &[(&[u8], u64)]) -> Result<Vec<Appended>> {
        let mut appended = Vec::with_capacity(records.len());
        self.encode_records(Kind::Data, records, |a| appended.push(a))?;
        Ok(appended)
    }

    /// The seq and Lamport the next record would get, having observed `observed`.
    pub fn next_stamp(&self, observed: u64) -> Result<(u64, u64)> {
        let lamport = stamp_after(self.tip.last_lamport, observed)?;
        Ok((self.tip.last_seq + 1, lamport))
    }

    /// Frame `records`, handing each one's stamp to `appended`.
    fn encode_records(
        &mut self,
        kind: Kind,
        records: &[(&[u8], u64)],
        mut appended: impl FnMut(Appended),
    ) -> Result<()> {
        let bytes: u64 = records
            .iter()
            .map(|(p, _)| frame::frame_len(p.len()) as u64)
            .sum();
        if SEGMENT_HEADER_LEN as u64 + bytes > self.limits.segment_bytes_max {
            return Err(Error::BatchTooLarge {
                len: bytes,
                max: self.limits.segment_bytes_max,
            });
        }
        // The Lamport bound, checked for the whole batch before any frame.
        let mut clock = self.tip.last_lamport;
        for &(_, observed) in records {
            clock = stamp_after(clock, observed)?;
        }
        if self.tip.end + bytes > self.limits.segment_bytes_max {
            self.roll(self.tip.last_seq + 1, self.tip.last_lamport + 1);
        }
        // One clock reading per batch: its records are appended together.
        let ts_us = now_us();
        for (i, &(payload, observed)) in records.iter().enumerate() {
            let seq = self.tip.last_seq + 1;
            let lamport = stamp_after(self.tip.last_lamport, observed)
                .expect("the batch's Lamports were checked above");
            let continues = i + 1 < records.len();
            let new = NewFrame {
                kind,
                seq,
                lamport,
                ts_us,
                continues,
                indexable: i == 0,
            };
            self.push(new, payload);
            appended(Appended { seq, lamport });
        }
        Ok(())
    }

    /// Frame a commit marker if one is useful and fits: after at least one
    /// record, not right after another marker. Call only when everything
    /// before it is durable and noted.
    pub fn encode_marker(&mut self) -> bool {
        let empty = self.tip.end == SEGMENT_HEADER_LEN as u64;
        let full = self.tip.end + FRAME_HEADER_LEN as u64 > self.limits.segment_bytes_max;
        if self.marked || empty || full {
            return false;
        }
        let (seq, lamport) = (self.tip.last_seq, self.tip.last_lamport);
        let new = NewFrame {
            kind: Kind::Commit,
            seq,
            lamport,
            ts_us: now_us(),
            continues: false,
            indexable: false,
        };
        self.push(new, b"");
        self.marked = true;
        true
    }

    /// Start a new segment now if the active one holds anything, so that
    /// it is sealed: the writer never writes it again (a redaction rewrites
    /// only sealed segments).
    pub fn roll_now(&mut self) -> Result<()> {
        if self.tip.end == SEGMENT_HEADER_LEN as u64 {
            return Ok(());
        }
        let first_lamport = stamp_after(self.tip.last_lamport, 0)?;
        self.roll(self.tip.last_seq + 1, first_lamport);
        Ok(())
    }

    fn roll(&mut self, first_seq: u64, first_lamport: u64) {
        let header = SegmentHeader {
            salt: new_salt(),
            prev_crc: self.tip.last_crc,
            first_seq,
            first_lamport,
            created_us: now_us(),
            stream: self.stream.clone(),
        };
        self.salt = header.salt;
        self.base += self.tip.end;
        self.tip.end = SEGMENT_HEADER_LEN as u64;
        self.pending.push(Chunk {
            roll: Some(header),
            base: self.base,
            offset: self.tip.end,
            bytes: Vec::new(),
            frames: Vec::new(),
            tip: self.tip,
        });
    }

    /// Frame one record; `indexable` if a sparse index point may start here
    /// (only at the start of a batch, so that recovery never starts a scan
    /// inside one).
    fn push(&mut self, new: NewFrame, payload: &[u8]) {
        let NewFrame {
            kind,
            seq,
            lamport,
            ts_us,
            continues,
            indexable,
        } = new;
        if kind.is_record() {
            assert!(
                seq == self.tip.last_seq + 1 && lamport > self.tip.last_lamport,
                "the encoder stamps seq + 1 and a larger Lamport"
            );
        }
        let offset = self.tip.end;
        // The header of a segment is on disk before any frame is written to it.
        let durable_end = self
            .durable
            .saturating_sub(self.base)
            .max(SEGMENT_HEADER_LEN as u64);
        let meta = FrameMeta {
            seq,
            lamport,
            ts_us,
            prev_crc: self.tip.last_crc,
            durable_end: u32::try_from(durable_end)
                .expect("segment offsets fit u32 (SEGMENT_BYTES_MAX_LIMIT)"),
            kind,
            continues,
        };
        let starts_chunk = self.pending.last().is_none_or(|c| c.base != self.base);
        if starts_chunk {
            let base = self.base;
            self.pending.push(Chunk {
                roll: None,
                base,
                offset,
                bytes: std::mem::take(&mut self.spare_bytes),
                frames: std::mem::take(&mut self.spare_frames),
                tip: self.tip,
            });
        }
        let chunk = self.pending.last_mut().expect("a chunk was just ensured");
        let crc = frame::encode(&mut chunk.bytes, &meta, payload, self.salt);
        if kind.is_record() {
            chunk.frames.push(FrameInfo {
                seq,
                lamport,
                ts_us,
                offset,
                indexable,
            });
        }
        self.tip = Published {
            end: offset + frame::frame_len(payload.len()) as u64,
            last_seq: seq,
            last_lamport: lamport,
            last_crc: crc,
        };
        chunk.tip = self.tip;
        self.marked = false;
    }
}
