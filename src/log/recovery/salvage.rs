//! Salvage: what a writable open in `RecoveryMode::Repair` does with damage
//! (docs/FORMAT.md, "Repair"). Only the records whose frames overlap
//! damaged bytes are lost: the damaged bytes go to quarantine, a gap frame
//! takes their place in the segment (it names the seqs lost and the CRC the
//! next frame chains to), and every other record keeps its seq, Lamport and
//! bytes. A damaged header is rebuilt from the frames after it when they
//! bear it out; a segment whose header is unusable is lost whole and
//! replaced by a segment holding one gap, so the segments after it stay. Segments are
//! never written in place: the repaired file is written beside the damaged
//! one and renamed over it, so a crash leaves one or the other, and a map
//! held by a reader never changes.

use std::ops::RangeInclusive;

use super::*;
use crate::format::frame::{FrameMeta, Kind, FRAME_HEADER_LEN};
use crate::format::segment::ids_file_name;
use crate::log::clock::now_us;
use crate::log::replace;
use crate::log::scan::{payload_ok, scan_to_stop};
use crate::log::segment::new_salt;

/// Bytes a repair replaces: with a gap frame, or with zeros.
struct Patch {
    at: u64,
    /// The bytes that replace `[at, at + new.len())`.
    new: Vec<u8>,
    /// How many of the original bytes from `at` were damaged (the rest of
    /// `new`, if longer, lies over zeros past them).
    damaged: u64,
    kind: CorruptionKind,
    lost: Option<RangeInclusive<u64>>,
}

impl Recovery<'_> {
    /// Salvage the damaged segment starting at `first_seq` (or the hole
    /// before it): returns the segment that takes its place in the chain,
    /// if any, and the first seq of the segment to open after it. `expected`
    /// is where the chain needs the next segment to start, `later` the first
    /// seq of the next listed segment.
    pub(super) fn salvage_segment(
        &mut self,
        path: &Path,
        first_seq: u64,
        damage: Damage,
        expected: u64,
        prev: Option<Published>,
        later: Option<u64>,
    ) -> Result<(Option<Arc<Segment>>, Option<u64>)> {
        let link = |this: &Self, seq: u64| this.header_of(seq).map_or(0, |h| h.prev_crc);
        if let Some(good) = damage.good {
            let segment = self.salvage(path, good, later)?;
            let after = later.map(|_| segment.published().last_seq + 1);
            return Ok((Some(segment), after));
        }
        if let CorruptionKind::SequenceGap { .. } = damage.kind {
            if expected < first_seq {
                // Segments before this one are missing: a gap stands for them.
                let link = link(self, first_seq);
                let gap = self.fill_gap(expected, first_seq - 1, prev, link, damage.kind)?;
                return Ok((Some(gap), Some(first_seq)));
            }
        }
        if let CorruptionKind::BadHeader(_) = damage.kind {
            if self.rebuild_header(path, first_seq, prev, &damage.kind)? {
                // Open it again, now that its header is sound.
                return Ok((None, Some(first_seq)));
            }
        }
        // The header is unusable: the segment is lost whole.
        self.cut_whole(path, CutReason::Repair(damage.kind.clone()))?;
        let Some(later) = later else {
            return Ok((None, None));
        };
        let link = link(self, later);
        let gap = self.fill_gap(expected, later - 1, prev, link, damage.kind)?;
        Ok((Some(gap), Some(later)))
    }

    /// Salvage a segment whose header is sound and whose frames are
    /// damaged. `next_first` is the first seq of the next listed segment,
    /// if any: the segment is sealed and must chain to it.
    pub(super) fn salvage(
        &mut self,
        path: &Path,
        good: Good,
        next_first: Option<u64>,
    ) -> Result<Arc<Segment>> {
        let Good {
            header: h,
            file,
            bytes,
            ..
        } = good;
        let len = bytes.len() as u64;
        let mut scratch = SparseIndex::new(u64::MAX);
        let mut c = Cursor::at_header(&h);
        let mut patches: Vec<Patch> = Vec::new();
        let mut torn: Option<(u64, u64)> = None;
        let mut end_damage = None;
        loop {
            let stop = scan_to_stop(&bytes, len, h.salt, c, &mut scratch);
            let at = stop.at.offset;
            let nonzero_end = bytes[at as usize..]
                .iter()
                .rposition(|&b| b != 0)
                .map(|i| at + i as u64 + 1);
            let (Some(kind), Some(nonzero_end)) = (stop.problem.clone(), nonzero_end) else {
                // Zeros after the last good frame: the end. In the tail, a
                // batch that does not end there was torn by a crash.
                c = match (next_first, stop.batch) {
                    (None, Some((start, _))) => {
                        torn = Some((start.offset, at - start.offset));
                        start
                    }
                    _ => stop.at,
                };
                break;
            };
            let tail = next_first.is_none();
            let proven = !tail || durable_after(&bytes, at, h.salt, stop.at.next_seq - 1);
            let resume = proven
                .then(|| resume_after(&bytes, &stop.at, h.salt))
                .flatten();
            match resume {
                Some((y, f)) => {
                    patches.push(gap_patch(&stop.at, y, f.seq - 1, f.prev_crc, h.salt, kind));
                    c = Cursor {
                        offset: y,
                        next_seq: f.seq,
                        prev_crc: Some(f.prev_crc),
                        in_batch: false,
                        ..stop.at
                    };
                }
                // Nothing after it proves the tail's bytes durable, or they
                // cannot be resumed from: a torn tail, cut from the start of
                // its batch as at any open.
                None if tail => {
                    let start = stop.batch.map_or(stop.at, |(start, _)| start);
                    torn = Some((start.offset, nonzero_end - start.offset));
                    c = start;
                    break;
                }
                None => {
                    c = stop.at;
                    end_damage = Some((kind, nonzero_end));
                    break;
                }
            }
        }
        if let Some(next_first) = next_first {
            let next = self.header_of(next_first);
            let chains = next
                .as_ref()
                .is_some_and(|n| n.first_seq == c.next_seq && Some(n.prev_crc) == c.prev_crc);
            match (end_damage, chains) {
                (Some((kind, to)), true) => patches.push(Patch {
                    at: c.offset,
                    new: vec![0; (to - c.offset) as usize],
                    damaged: to - c.offset,
                    kind,
                    lost: None,
                }),
                (end_damage, false) => {
                    let (kind, to) = end_damage.unwrap_or((CorruptionKind::BrokenChain, c.offset));
                    let link = next.map_or(0, |n| n.prev_crc);
                    let last_lost = (next_first - 1).max(c.next_seq - 1);
                    let end = to.max(c.offset + FRAME_HEADER_LEN as u64);
                    let mut patch = gap_patch(&c, end, last_lost, link, h.salt, kind);
                    patch.damaged = to - c.offset;
                    patches.push(patch);
                }
                (None, true) => {}
            }
        }
        self.rewrite(path, &*file, bytes, &h, &patches, torn)?;
        self.reopen_salvaged(path, h, next_first.is_some())
    }

    /// Quarantine what the patches and the torn tail remove, then write the
    /// repaired segment beside the old one and rename it over it.
    fn rewrite(
        &mut self,
        path: &Path,
        file: &dyn BackendFile,
        bytes: Bytes,
        h: &SegmentHeader,
        patches: &[Patch],
        torn: Option<(u64, u64)>,
    ) -> Result<()> {
        for p in patches {
            let original = &bytes[p.at as usize..(p.at + p.damaged) as usize];
            let quarantine_file = match all_zero(original) {
                true => None,
                false => Some(quarantine::keep_bytes(
                    self.backend,
                    self.dir,
                    path,
                    p.at,
                    original,
                )?),
            };
            self.cuts.push(Cut {
                stream: self.stream.into(),
                segment: path.into(),
                offset: p.at,
                len: p.damaged,
                quarantine_file,
                reason: CutReason::Repair(p.kind.clone()),
                lost: p.lost.clone(),
            });
        }
        if patches.is_empty() {
            if let Some((at, len)) = torn {
                return self.cut_tail(path, file, bytes, at, len, CutReason::TornTail);
            }
            return Ok(());
        }
        if let Some((at, len)) = torn {
            let kept = &bytes[at as usize..(at + len) as usize];
            let quarantine_file = quarantine::keep_bytes(self.backend, self.dir, path, at, kept)?;
            self.cuts.push(Cut {
                stream: self.stream.into(),
                segment: path.into(),
                offset: at,
                len,
                quarantine_file: Some(quarantine_file),
                reason: CutReason::TornTail,
                lost: None,
            });
        }
        let patched_end = patches.iter().map(|p| p.at + p.new.len() as u64).max();
        let new_len = match torn {
            Some((at, _)) => at,
            None => (bytes.len() as u64).max(patched_end.unwrap_or(0)),
        };
        // Derived files describe the old contents: gone before the new ones arrive.
        self.remove_derived(h.first_seq);
        let writes: Vec<replace::Patch<'_>> = patches
            .iter()
            .map(|p| replace::Patch {
                at: p.at,
                bytes: &p.new,
            })
            .collect();
        replace::replace_segment(self.backend, path, &bytes, new_len, &writes)
    }

    /// Open a segment this repair just wrote, checking it as any segment:
    /// it must now scan clean to its end.
    fn reopen_salvaged(
        &mut self,
        path: &Path,
        h: SegmentHeader,
        sealed: bool,
    ) -> Result<Arc<Segment>> {
        let file = self.open_file(path)?;
        let len = file.len().map_err(io_err("stat", path))?;
        let bytes = self.map(&*file, path, len)?;
        // The same check as a sealed segment without an index gets.
        let found = self
            .scan_sealed(&bytes, &h, false)
            .map_err(|(offset, kind, _)| Error::Corruption {
                stream: self.stream.into(),
                segment: path.into(),
                offset,
                kind,
            })?;
        drop(bytes);
        if !sealed {
            file.sync_data().map_err(io_err("fdatasync", path))?;
            return Ok(self.tail_segment(path, h, found));
        }
        self.write_index(&h, &found);
        let segment = self.tail_segment(path, h, found);
        segment.seal();
        Ok(segment)
    }

    /// The seqs `[first, through]` are gone from the chain (a missing
    /// segment, or one lost whole): write a segment in their place holding
    /// one gap frame, which chains `prev` to the segment after it (whose
    /// header names `link` as the CRC before it).
    pub(super) fn fill_gap(
        &mut self,
        first: u64,
        through: u64,
        prev: Option<Published>,
        link: u32,
        kind: CorruptionKind,
    ) -> Result<Arc<Segment>> {
        let header = SegmentHeader {
            salt: new_salt(),
            prev_crc: prev.map_or(0, |p| p.last_crc),
            first_seq: first,
            first_lamport: prev.map_or(1, |p| p.last_lamport + 1),
            created_us: now_us(),
            stream: self.stream.into(),
        };
        let mut bytes = header.encode().to_vec();
        let start = Cursor::at_header(&header);
        let gap = gap_patch(
            &start,
            start.offset + FRAME_HEADER_LEN as u64,
            through,
            link,
            header.salt,
            kind.clone(),
        );
        bytes.extend_from_slice(&gap.new);
        let path = self.dir.join(segment_file_name(first));
        self.remove_derived(first);
        replace::replace_segment(self.backend, &path, &bytes, bytes.len() as u64, &[])?;
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: path.clone(),
            offset: 0,
            len: 0,
            quarantine_file: None,
            reason: CutReason::Repair(kind),
            lost: gap.lost,
        });
        self.reopen_salvaged(&path, header, true)
    }

    /// A header that does not decode, over frames that verify with the salt
    /// it still holds: the first frame is the record `first_seq`, chained to
    /// `prev`. Then every header field is known again (the salt; `prev_crc`
    /// and the seq from the first frame; a `first_lamport` between `prev`'s
    /// and the first frame's), and a new header replaces the damaged one,
    /// which goes to quarantine: no record is lost. `false` if the frames do
    /// not bear it out.
    fn rebuild_header(
        &mut self,
        path: &Path,
        first_seq: u64,
        prev: Option<Published>,
        kind: &CorruptionKind,
    ) -> Result<bool> {
        let Ok(file) = self.backend.open(path, OpenMode::Read) else {
            return Ok(false);
        };
        let len = file.len().map_err(io_err("stat", path))?;
        let bytes = self.map(&*file, path, len)?;
        let Some(salt) = crate::format::segment::salt_field(&bytes) else {
            return Ok(false);
        };
        let first = bytes
            .get(SEGMENT_HEADER_LEN..)
            .and_then(|b| frame::decode(b, salt).ok());
        let Some(f) = first.filter(|f| payload_ok(f.meta.kind, f.payload)) else {
            return Ok(false);
        };
        let m = f.meta;
        let fits = m.kind.is_record()
            && m.seq == first_seq
            && prev.is_none_or(|p| m.prev_crc == p.last_crc && m.lamport > p.last_lamport);
        if !fits {
            return Ok(false);
        }
        let header = SegmentHeader {
            salt,
            prev_crc: m.prev_crc,
            first_seq,
            first_lamport: prev.map_or(m.lamport, |p| p.last_lamport + 1),
            created_us: m.ts_us,
            stream: self.stream.into(),
        };
        let old = &bytes[..SEGMENT_HEADER_LEN];
        let quarantine_file = quarantine::keep_bytes(self.backend, self.dir, path, 0, old)?;
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: path.into(),
            offset: 0,
            len: SEGMENT_HEADER_LEN as u64,
            quarantine_file: Some(quarantine_file),
            reason: CutReason::Repair(kind.clone()),
            lost: None,
        });
        self.remove_derived(first_seq);
        let new = header.encode();
        let patch = replace::Patch { at: 0, bytes: &new };
        replace::replace_segment(self.backend, path, &bytes, len, &[patch])?;
        Ok(true)
    }

    /// The header of the segment starting at `first_seq`, if it decodes.
    fn header_of(&self, first_seq: u64) -> Option<SegmentHeader> {
        let path = self.dir.join(segment_file_name(first_seq));
        let file = self.backend.open(&path, OpenMode::Read).ok()?;
        let mut raw = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(&mut raw, 0).ok()?;
        SegmentHeader::decode(&raw).ok()
    }

    /// Delete the files derived from the segment starting at `first_seq`.
    pub(super) fn remove_derived(&self, first_seq: u64) {
        for name in [index_file_name(first_seq), ids_file_name(first_seq)] {
            let _ = self.backend.remove_file(&self.dir.join(name));
        }
    }
}

/// A gap frame over `[c.offset, to)` (at least a frame header long), after
/// the frames `c` stands after: it loses the seqs from `c.next_seq` through
/// `last_lost` and tells the next frame to chain to `link`.
fn gap_patch(
    c: &Cursor,
    to: u64,
    last_lost: u64,
    link: u32,
    salt: u32,
    kind: CorruptionKind,
) -> Patch {
    let meta = FrameMeta {
        seq: last_lost,
        lamport: c.last_lamport,
        ts_us: now_us(),
        prev_crc: c.prev_crc.unwrap_or(0),
        durable_end: link,
        kind: Kind::Gap,
        continues: false,
    };
    let payload = vec![0; (to - c.offset) as usize - FRAME_HEADER_LEN];
    let mut new = Vec::with_capacity((to - c.offset) as usize);
    frame::encode(&mut new, &meta, &payload, salt);
    Patch {
        at: c.offset,
        damaged: to - c.offset,
        new,
        kind,
        lost: (last_lost >= c.next_seq).then_some(c.next_seq..=last_lost),
    }
}

/// The first frame after damage at `c.offset` from which the log can go
/// on: at least a frame header later, verified with the segment's salt, a
/// record with a seq and Lamport after the last good ones and a JSON
/// payload. Returns its offset and header.
fn resume_after(bytes: &[u8], c: &Cursor, salt: u32) -> Option<(u64, FrameMeta)> {
    let from = c.offset as usize + FRAME_HEADER_LEN;
    (from..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1)).find_map(|y| {
        let window = &bytes[y..];
        let (seq, _) = frame::plausible(window)?;
        if seq < c.next_seq || seq >= frame::CLOCK_LIMIT {
            return None;
        }
        let f = frame::decode(window, salt).ok()?;
        let m = f.meta;
        let fits = m.kind.is_record()
            && m.lamport > c.last_lamport
            && m.lamport < frame::CLOCK_LIMIT
            && u64::from(m.durable_end) <= y as u64
            && payload_ok(m.kind, f.payload);
        fits.then_some((y as u64, m))
    })
}
