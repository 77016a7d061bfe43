//! Consolidation: several streams read as one, in a deterministic causal
//! order, by a k-way merge that holds one record per stream in memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::frame::frame_len;
use crate::format::frame::stamp_after;
use crate::log::reader::{Iter, Record};
use crate::stream::Stream;

/// A record and the stream it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// Append the merge of `sources` to `target`, all or nothing (see
/// [`Store::merge_into`](crate::Store::merge_into)), in atomic batches of at
/// most `room` bytes of frames. Returns the number of records written.
pub(crate) fn merge_into(
    sources: &[(Arc<str>, Stream)],
    target: &Stream,
    room: u64,
) -> Result<u64> {
    // Both passes read each source up to the same record.
    let bounds: Vec<u64> = sources.iter().map(|(_, s)| s.last_seq()).collect();
    let merge = || {
        Merge::new(
            sources
                .iter()
                .zip(&bounds)
                .map(|((name, s), &last)| (name.clone(), s.iter_through(last)))
                .collect(),
        )
    };
    // Pass 1: what the target would refuse, before anything is written.
    let (record_max, mut clock, mut total) = (target.record_bytes_max(), target.last_lamport(), 0);
    for merged in merge() {
        let record = merged?.record;
        let len = record.payload().len();
        if len > record_max {
            return Err(Error::RecordTooLarge {
                len,
                max: record_max,
            });
        }
        clock = stamp_after(clock, record.lamport())?;
        total += 1;
    }
    // Pass 2: the writes.
    let mut batch: Vec<Record> = Vec::new();
    let mut batch_bytes = 0;
    for merged in merge() {
        let record = merged?.record;
        let len = frame_len(record.payload().len()) as u64;
        if batch_bytes + len > room {
            append(target, &std::mem::take(&mut batch))?;
            batch_bytes = 0;
        }
        batch_bytes += len;
        batch.push(record);
    }
    append(target, &batch)?;
    target.sync()?;
    Ok(total)
}

/// Append `records` to `target` as one atomic batch, each stamped after its
/// source record.
fn append(target: &Stream, records: &[Record]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let observed: Vec<(&[u8], u64)> = records.iter().map(|r| (r.payload(), r.lamport())).collect();
    target.log()?.append_batch(&observed, false).map(drop)
}
