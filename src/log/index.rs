//! The sparse seq/Lamport index of one segment in memory, and its file.
//!
//! The index is derived data: recovery checks it against the segment and
//! rebuilds it from the segment when it is missing, stale or damaged. Its
//! bytes are in `format::index`.

use std::path::Path;
use std::sync::Arc;

use crate::format::index::{parse_file, IndexEntry, ParsedIndex};
use crate::io::backend::{Backend, BackendFile, OpenMode};

/// The state of a [`SparseIndex`] to roll back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexMark {
    entries: usize,
    ts_us_max: u64,
}

/// The in-memory sparse index of one segment.
#[derive(Debug, Clone)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
    interval: u64,
    ts_us_max: u64,
}

impl SparseIndex {
    pub fn new(interval: u64) -> SparseIndex {
        SparseIndex {
            entries: Vec::new(),
            interval,
            ts_us_max: 0,
        }
    }

    /// The index points, oldest first.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Highest wall clock of the records observed so far.
    pub fn ts_us_max(&self) -> u64 {
        self.ts_us_max
    }

    /// Account for the record at `offset`; returns the entry if it became
    /// an index point. Only `indexable` records (the first of an atomic
    /// batch) can become one.
    pub fn observe(
        &mut self,
        seq: u64,
        lamport: u64,
        ts_us: u64,
        offset: u64,
        indexable: bool,
    ) -> Option<IndexEntry> {
        self.ts_us_max = self.ts_us_max.max(ts_us);
        let due = indexable
            && self
                .entries
                .last()
                .is_none_or(|last| offset >= last.offset.saturating_add(self.interval));
        if !due {
            return None;
        }
        if let Some(last) = self.entries.last() {
            assert!(
                seq > last.seq && lamport > last.lamport && offset > last.offset,
                "index points grow in seq, Lamport and offset"
            );
        }
        let entry = IndexEntry {
            seq,
            lamport,
            ts_us_max: self.ts_us_max,
            offset,
        };
        self.entries.push(entry);
        Some(entry)
    }

    pub fn mark(&self) -> IndexMark {
        IndexMark {
            entries: self.entries.len(),
            ts_us_max: self.ts_us_max,
        }
    }

    /// Forget what was observed since `mark` (a batch that did not end).
    pub fn rollback(&mut self, mark: IndexMark) {
        self.entries.truncate(mark.entries);
        self.ts_us_max = mark.ts_us_max;
    }

    /// The last index point at or before `seq`.
    pub fn seek_seq(&self, seq: u64) -> Option<IndexEntry> {
        let n = self.entries.partition_point(|e| e.seq <= seq);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last index point up to which every record's wall clock is
    /// below `ts_us` (the running maximum only grows).
    pub fn last_with_ts_max_below(&self, ts_us: u64) -> Option<IndexEntry> {
        let n = self.entries.partition_point(|e| e.ts_us_max < ts_us);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last index point with a Lamport at or below `lamport`.
    pub fn seek_lamport(&self, lamport: u64) -> Option<IndexEntry> {
        let n = self.entries.partition_point(|e| e.lamport <= lamport);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Replace the entries with those loaded from a file (already checked).
    pub fn load(&mut self, entries: Vec<IndexEntry>, ts_us_max: u64) {
        self.entries = entries;
        self.ts_us_max = ts_us_max;
    }
}

/// Replace the index file at `path` with `bytes` and return it open for
/// appending; `None` if that failed. The index is derived data, so a failure
/// costs only a rebuild at the next open, and the file is not fsynced.
pub(crate) fn write_file(
    backend: &dyn Backend,
    path: &Path,
    bytes: &[u8],
) -> Option<Arc<dyn BackendFile>> {
    let _ = backend.remove_file(path);
    let file = backend.open(path, OpenMode::CreateNew).ok()?;
    file.write_all_at(bytes, 0).ok()?;
    Some(file)
}

/// Read and parse the index file at `path`; `None` if it is missing,
/// unreadable or belongs to another segment.
/// A file longer than `len_max` is not read (it cannot be a real index).
pub(crate) fn read_file(
    backend: &dyn Backend,
    path: &Path,
    salt: u32,
    first_seq: u64,
    len_max: u64,
) -> Option<ParsedIndex> {
    let bytes = crate::io::backend::read_small_file(backend, path, len_max)?;
    parse_file(&bytes, salt, first_seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{encode_file, Seal, INDEX_ENTRY_LEN, INDEX_HEADER_LEN};

    fn sample() -> SparseIndex {
        let mut index = SparseIndex::new(100);
        for i in 0..50u64 {
            index.observe(10 + i, 20 + 2 * i, 1000 + (i % 7), 192 + 40 * i, true);
        }
        index
    }

    #[test]
    fn entries_are_sparse_and_seekable() {
        let index = sample();
        assert_eq!(index.entries().len(), 17);
        assert_eq!(index.entries()[0].offset, 192);
        assert_eq!(index.seek_seq(9), None);
        assert_eq!(index.seek_seq(10).unwrap().seq, 10);
        assert_eq!(index.seek_seq(14).unwrap().seq, 13);
        assert_eq!(index.seek_lamport(27).unwrap().seq, 13);
        assert!(index
            .entries()
            .windows(2)
            .all(|w| w[0].ts_us_max <= w[1].ts_us_max));
    }

    #[test]
    fn file_round_trip_with_seal() {
        let index = sample();
        let seal = Seal {
            last_seq: 59,
            last_lamport: 118,
            ts_us_max: 1006,
            end: 192 + 40 * 50,
        };
        let bytes = encode_file(index.entries(), Some(&seal), 77, 10);
        let parsed = parse_file(&bytes, 77, 10).unwrap();
        assert_eq!(parsed.entries, index.entries());
        assert_eq!(parsed.seal, Some(seal));
        assert!(
            parse_file(&bytes, 78, 10).is_none(),
            "another segment's index"
        );
        assert!(
            parse_file(&bytes, 77, 11).is_none(),
            "another segment's index"
        );
    }

    #[test]
    fn damage_keeps_the_valid_prefix() {
        let index = sample();
        let bytes = encode_file(index.entries(), None, 5, 10);
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 3);
        assert_eq!(parse_file(&torn, 5, 10).unwrap().entries.len(), 16);
        let mut flipped = bytes.clone();
        flipped[INDEX_HEADER_LEN + 3 * INDEX_ENTRY_LEN + 5] ^= 1;
        assert_eq!(parse_file(&flipped, 5, 10).unwrap().entries.len(), 3);
        assert!(parse_file(&bytes[..10], 5, 10).is_none());
    }
}
