//! Consolidation: several streams read as one, in a deterministic causal
//! order, by a k-way merge that holds one record per stream in memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::error::Result;
use crate::reader::{Iter, Record};

/// A record and the stream it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedRecord {
    /// The source stream's name.
    pub stream: Arc<str>,
    /// The record.
    pub record: Record,
}

/// A source's next record in merge order: (Lamport, stream, seq, source).
type Head = (u64, Arc<str>, u64, usize);

/// Records of several streams in one total order: Lamport timestamp, then
/// stream name, then seq. Two runs over the same logs give the same order.
#[derive(Debug)]
pub struct Merge {
    sources: Vec<(Arc<str>, Iter)>,
    /// The next record of each source, keyed by its place in the order.
    heads: BinaryHeap<Reverse<Head>>,
    pending: Vec<Option<Record>>,
    started: bool,
}

impl Merge {
    pub(crate) fn new(mut sources: Vec<(Arc<str>, Iter)>) -> Merge {
        // Sorted by name, so that equal names cannot happen and ties are stable.
        sources.sort_by(|a, b| a.0.cmp(&b.0));
        let pending = (0..sources.len()).map(|_| None).collect();
        Merge {
            sources,
            heads: BinaryHeap::new(),
            pending,
            started: false,
        }
    }

    /// Read the next record of source `i` into the heap.
    fn refill(&mut self, i: usize) -> Result<()> {
        let (name, iter) = &mut self.sources[i];
        if let Some(record) = iter.next().transpose()? {
            self.heads
                .push(Reverse((record.lamport(), name.clone(), record.seq(), i)));
            self.pending[i] = Some(record);
        }
        Ok(())
    }

    fn next_record(&mut self) -> Result<Option<MergedRecord>> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                self.refill(i)?;
            }
        }
        let Some(Reverse((_, stream, _, i))) = self.heads.pop() else {
            return Ok(None);
        };
        let record = self.pending[i].take().expect("every head has its record");
        self.refill(i)?;
        Ok(Some(MergedRecord { stream, record }))
    }
}

impl Iterator for Merge {
    type Item = Result<MergedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(merged) => merged.map(Ok),
            Err(e) => {
                // A damaged source ends the merge.
                self.heads.clear();
                self.sources.clear();
                Some(Err(e))
            }
        }
    }
}
