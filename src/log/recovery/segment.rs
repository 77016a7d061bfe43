//! Recovery of one segment: its header, its place in the chain, and its
//! records, checked through its index (sealed) or by a scan.

use super::*;
use crate::log::scan::{chain_break, scan_to_stop};

impl Recovery<'_> {
    pub(super) fn open_segment(
        &mut self,
        path: &Path,
        first_seq: u64,
        prev: Option<Published>,
        is_last: bool,
        live_from: u64,
    ) -> Result<Opened> {
        let damaged = |offset, kind| {
            Ok(Opened::Damaged(Damage {
                offset,
                kind,
                good: None,
            }))
        };
        let file = match self.open_file(path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::InvalidInput => {
                return damaged(0, CorruptionKind::WrongSegment("not a regular file"));
            }
            other => other?,
        };
        let len = file.len().map_err(io_err("stat", path))?;
        let mut bytes = self.map(&*file, path, len)?;
        let header =
            match self.header_in_chain(&bytes, path, first_seq, prev, is_last, live_from)? {
                Ok(header) => header,
                Err(opened) => return Ok(opened),
            };
        let index_path = self.dir.join(index_file_name(first_seq));
        let index_max = (len / self.opts.index_interval_bytes + 2) * index::INDEX_ENTRY_LEN as u64
            + index::INDEX_HEADER_LEN as u64;
        let parsed =
            index_file::read_file(self.backend, &index_path, header.salt, first_seq, index_max);
        // A repair checks every frame, as `verify` does: damage that a
        // normal open does not scan is what it is there to find.
        let every_frame = self.opts.recovery == RecoveryMode::Repair && self.writable();
        let checked = if is_last {
            let parsed = parsed.filter(|_| !every_frame);
            let (checked, seen) = self.scan_tail_settled(&*file, path, bytes, &header, parsed)?;
            bytes = seen;
            checked
        } else {
            match self.check_sealed(&bytes, &header, parsed) {
                Some(found) if !every_frame => Ok((found, None)),
                // A repair also rewrites an index that disagrees with the
                // segment anywhere, not only in its last stretch.
                trusted => {
                    let full = self.scan_sealed(&bytes, &header, trusted.is_none());
                    if let (Some((_, index)), Ok(found)) = (&trusted, &full) {
                        if index.entries() != found.1.entries() {
                            self.indexes_rebuilt += 1;
                            self.write_index(&header, found);
                        }
                    }
                    full.map(|found| (found, None))
                }
            }
        };
        let ((published, sparse), torn) = match checked {
            Ok(outcome) => outcome,
            Err((offset, kind, found)) => {
                let good = Some(Good {
                    header,
                    file,
                    bytes,
                    found,
                });
                return Ok(Opened::Damaged(Damage { offset, kind, good }));
            }
        };
        if !is_last {
            let segment = Segment::recovered(
                path.into(),
                header,
                bytes,
                published,
                sparse,
                self.cache.clone(),
            );
            segment.seal();
            return Ok(Opened::Segment(Arc::new(segment)));
        }
        self.finish_tail(path, &*file, bytes, header, (published, sparse), torn)
    }

    /// Trust a sealed segment's index only if its last stretch re-decodes
    /// to exactly the recorded end: O(index interval), not O(segment).
    pub(super) fn check_sealed(
        &self,
        bytes: &[u8],
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> Option<Found> {
        let parsed = parsed?;
        let seal = parsed.seal?;
        if seal.end > bytes.len() as u64 {
            return None;
        }
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        let start = match (parsed.entries.first(), parsed.entries.last()) {
            (Some(first), Some(last)) => {
                // The first index point is the first record: the first
                // frame, or the one after the gaps a repair left before it.
                let (offset, seq) = after_leading_gaps(bytes, h);
                if first.offset != offset || first.seq != seq || first.lamport < h.first_lamport {
                    return None;
                }
                sparse.load(
                    parsed.entries[..parsed.entries.len() - 1].to_vec(),
                    last.ts_us_max,
                );
                Cursor::at_entry(last)
            }
            // No index point: no record, only what a repair left (a gap),
            // which is short. Scan it from the header.
            _ => Cursor::at_header(h),
        };
        let (c, problem) = scan(bytes, seal.end, h.salt, start, &mut sparse);
        let ok = problem.is_none()
            && c.offset == seal.end
            && c.next_seq - 1 == seal.last_seq
            && c.last_lamport == seal.last_lamport;
        ok.then(|| (c.published(h), sparse))
    }

    /// Scan a sealed segment whole (its index is missing or stale, or a
    /// repair checks every frame), and rewrite its index if `rebuild`. It
    /// was synced in full before the next segment existed, so anything but
    /// zeros after its last record is corruption.
    pub(super) fn scan_sealed(
        &mut self,
        bytes: &[u8],
        h: &SegmentHeader,
        rebuild: bool,
    ) -> Checked<Found> {
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        let len = bytes.len() as u64;
        let stop = scan_to_stop(bytes, len, h.salt, Cursor::at_header(h), &mut sparse);
        // Damage is reported where it is, not at the start of its batch.
        let damaged_at = stop.at.offset;
        let (c, problem) = stop.rolled_back(&mut sparse);
        let found = (c.published(h), sparse);
        if let Some(kind) = problem.filter(|_| !all_zero(&bytes[c.offset as usize..])) {
            return Err((damaged_at, kind, found));
        }
        if rebuild {
            self.indexes_rebuilt += 1;
            self.write_index(h, &found);
        }
        Ok(found)
    }

    /// Write a sealed segment's index file (a writable open only).
    pub(super) fn write_index(&self, h: &SegmentHeader, (p, sparse): &Found) {
        if !self.writable() {
            return;
        }
        let seal = Seal {
            last_seq: p.last_seq,
            last_lamport: p.last_lamport,
            ts_us_max: sparse.ts_us_max(),
            end: p.end,
        };
        index_file::write_file(
            self.backend,
            &self.dir.join(index_file_name(h.first_seq)),
            &index::encode_file(sparse.entries(), Some(&seal), h.salt, h.first_seq),
        );
    }
    /// The segment's header, if it decodes and fits the chain: the stream's
    /// name, the seq its file name says, right after `prev` (or where the
    /// live log starts), chained by CRC, with a larger Lamport. Otherwise
    /// what was found instead (`Err`), or a segment of a future version.
    fn header_in_chain(
        &self,
        bytes: &[u8],
        path: &Path,
        first_seq: u64,
        prev: Option<Published>,
        is_last: bool,
        live_from: u64,
    ) -> Result<std::result::Result<SegmentHeader, Opened>> {
        let damaged = |offset, kind| {
            Ok(Err(Opened::Damaged(Damage {
                offset,
                kind,
                good: None,
            })))
        };
        let header = match SegmentHeader::decode(bytes) {
            Ok(h) => h,
            Err(HeaderError::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path: path.into(),
                    found,
                    supported: crate::format::segment::FORMAT_VERSION,
                })
            }
            // A segment is created, synced, and only then written to, so a
            // bad header with nothing after it is an interrupted creation.
            Err(HeaderError::Bad(_))
                if is_last && bytes.get(SEGMENT_HEADER_LEN..).is_none_or(all_zero) =>
            {
                return Ok(Err(Opened::TornCreation))
            }
            Err(HeaderError::Bad(what)) => return damaged(0, CorruptionKind::BadHeader(what)),
        };
        if header.stream != self.stream {
            return damaged(
                0,
                CorruptionKind::WrongSegment("stream name differs from its folder"),
            );
        }
        if header.first_seq != first_seq {
            return damaged(
                0,
                CorruptionKind::WrongSegment("first seq differs from its file name"),
            );
        }
        if let Some(kind) = prev.as_ref().and_then(|p| chain_break(p, &header)) {
            return damaged(0, kind);
        }
        // The first segment starts where the live log starts (or before,
        // when an archive was interrupted).
        let expected = first_seq.min(live_from).max(1);
        if prev.is_none() && first_seq != expected {
            return damaged(
                0,
                CorruptionKind::SequenceGap {
                    expected,
                    found: first_seq,
                },
            );
        }
        Ok(Ok(header))
    }

    /// The tail is checked: cut its torn bytes, make it durable (a writable
    /// open), and hand it out without a descriptor.
    fn finish_tail(
        &mut self,
        path: &Path,
        file: &dyn BackendFile,
        bytes: Bytes,
        header: SegmentHeader,
        (published, sparse): Found,
        torn: Option<u64>,
    ) -> Result<Opened> {
        match torn {
            Some(len) => {
                self.cut_tail(path, file, bytes, published.end, len, CutReason::TornTail)?
            }
            None => drop(bytes),
        }
        // Make the recovered tail durable before the writer builds on it:
        // after a process kill its bytes may still sit only in the page cache.
        if self.writable() {
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
        Ok(Opened::Segment(self.tail_segment(
            path,
            header,
            (published, sparse),
        )))
    }

    /// The recovered tail, holding no descriptor and no view: a writer opens
    /// its own file when it first writes, and readers map through the cache.
    pub(super) fn tail_segment(
        &self,
        path: &Path,
        header: SegmentHeader,
        (published, sparse): Found,
    ) -> Arc<Segment> {
        Arc::new(Segment::recovered(
            path.into(),
            header,
            Bytes::new(),
            published,
            sparse,
            self.cache.clone(),
        ))
    }
}

/// Where the first record of a segment would start, and its seq: after the
/// gap frames (if a repair left any) at the segment's start.
fn after_leading_gaps(bytes: &[u8], h: &SegmentHeader) -> (u64, u64) {
    let (mut offset, mut seq) = (SEGMENT_HEADER_LEN as u64, h.first_seq);
    while let Ok(f) = frame::decode(bytes.get(offset as usize..).unwrap_or_default(), h.salt) {
        if f.meta.kind != frame::Kind::Gap || f.meta.seq + 1 < seq {
            break;
        }
        offset += f.len_on_disk() as u64;
        seq = f.meta.seq + 1;
    }
    (offset, seq)
}
