//! The tail segment: what follows its last whole record (nothing, a torn
//! tail, or damage a later frame proves durable), settled against a writer
//! in another process.

use super::*;

impl Recovery<'_> {
    /// `scan_tail`, made safe against a writer in another process. A
    /// read-only open may read the tail while that writer writes it, so a
    /// frame it saw half-written can seem damaged while a later frame it saw
    /// complete seems to prove the damage durable. But that later frame was
    /// written after the damaged bytes were whole and synced: read again,
    /// through a fresh map, after the proof was seen, they decode. So a
    /// verdict of damage counts only if a second reading finds the same
    /// damage at the same offset; one that never settles is where this
    /// reader's view ends (a read-only open changes nothing). Returns the
    /// verdict and the bytes it was reached on.
    pub(super) fn scan_tail_settled(
        &self,
        file: &dyn BackendFile,
        path: &Path,
        mut bytes: Bytes,
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> Result<(TailChecked, Bytes)> {
        let mut verdict = self.scan_tail(&bytes, h, parsed.clone());
        if self.writable() {
            return Ok((verdict, bytes));
        }
        for _ in 0..TAIL_READINGS_MAX {
            let Err((offset, kind, _)) = &verdict else {
                return Ok((verdict, bytes));
            };
            let (offset, kind) = (*offset, kind.clone());
            drop(bytes);
            let len = file.len().map_err(io_err("stat", path))?;
            bytes = self.map(file, path, len)?;
            verdict = self.scan_tail(&bytes, h, parsed.clone());
            if matches!(&verdict, Err((o, k, _)) if *o == offset && *k == kind) {
                return Ok((verdict, bytes));
            }
        }
        let settled = match verdict {
            Err((offset, _, found)) => Ok((found, Some(bytes.len() as u64 - offset))),
            ok => ok,
        };
        Ok((settled, bytes))
    }

    /// Scan the tail from the last index point known to be durable, then
    /// decide what the bytes after the last whole record are: nothing (only
    /// zeros), a torn tail (`Some` of its length up to the last non-zero
    /// byte), or damage that a later frame proves was durable.
    pub(super) fn scan_tail(
        &self,
        bytes: &[u8],
        h: &SegmentHeader,
        parsed: Option<ParsedIndex>,
    ) -> TailChecked {
        let entries = parsed.map(|p| p.entries).unwrap_or_default();
        let decode_entry = |e: &IndexEntry| {
            frame::decode(bytes.get(e.offset as usize..).unwrap_or_default(), h.salt)
                .ok()
                .filter(|f| {
                    f.meta.seq == e.seq
                        && f.meta.lamport == e.lamport
                        && e.offset >= SEGMENT_HEADER_LEN as u64
                })
        };
        // The newest index point that still decodes says how far the segment
        // had been synced; start from the last index point below that, since
        // bytes past it may have been torn by a power cut.
        let synced = entries
            .iter()
            .rev()
            .find_map(&decode_entry)
            .map(|f| u64::from(f.meta.durable_end));
        let start = synced.and_then(|d| {
            entries
                .iter()
                .rposition(|e| e.offset <= d && decode_entry(e).is_some())
        });
        let len = bytes.len() as u64;
        let mut sparse = SparseIndex::new(self.opts.index_interval_bytes);
        let (mut c, mut problem) = (Cursor::at_header(h), None);
        if let Some(i) = start {
            sparse.load(entries[..i].to_vec(), entries[i].ts_us_max);
            (c, problem) = scan(
                bytes,
                len,
                h.salt,
                Cursor::at_entry(&entries[i]),
                &mut sparse,
            );
        }
        if start.is_none() || c.prev_crc.is_none() {
            // No usable index point, or not one whole frame after it: scan
            // the whole segment so the chain is known from the header on.
            sparse = SparseIndex::new(self.opts.index_interval_bytes);
            (c, problem) = scan(bytes, len, h.salt, Cursor::at_header(h), &mut sparse);
        }
        let found = (c.published(h), sparse);
        let last_nonzero = bytes[c.offset as usize..].iter().rposition(|&b| b != 0);
        let (Some(kind), Some(last_nonzero)) = (problem, last_nonzero) else {
            return Ok((found, None));
        };
        if durable_after(bytes, c.offset, h.salt, c.next_seq - 1) {
            return Err((c.offset, kind, found));
        }
        Ok((found, Some(last_nonzero as u64 + 1)))
    }
}
