//! The state beside the entries: the vote, the committed and last purged
//! log ids, and the runs that map log indexes to seqs of the log stream.
//! Each change is one whole-state JSON record of the meta stream, appended
//! durably; the last record is the state.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A stretch of log indexes stored at consecutive seqs: index
/// `first_index + k` is the record at seq `first_seq + k`. A truncation
/// starts a new run at the stream's next seq, so the records it discards
/// stay in the stream, unreachable, until they are purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub first_index: u64,
    pub first_seq: u64,
}

/// The whole state of the meta stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "V: Serialize + DeserializeOwned, L: Serialize + DeserializeOwned")]
pub struct Meta<V, L> {
    pub vote: Option<V>,
    pub committed: Option<L>,
    pub last_purged: Option<L>,
    /// Ascending in both index and seq; the last run is where appends go.
    pub runs: Vec<Run>,
}

impl<V, L> Default for Meta<V, L> {
    fn default() -> Self {
        Meta {
            vote: None,
            committed: None,
            last_purged: None,
            runs: vec![Run {
                first_index: 0,
                first_seq: 1,
            }],
        }
    }
}

impl<V, L> Meta<V, L> {
    /// The seq of log index `index`, given the stream's last seq, if a run
    /// holds it.
    pub fn seq_of(&self, index: u64, last_seq: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.first_index <= index);
        let run = self.runs.get(i.checked_sub(1)?)?;
        // A run ends where the next begins, or at the stream's end.
        let seq = run.first_seq + (index - run.first_index);
        (seq < self.end_seq(i - 1, last_seq)).then_some(seq)
    }

    /// The seq after run `i`'s last record: where the next run's indexes
    /// begin, or its records, or the stream ends, whichever is first.
    fn end_seq(&self, i: usize, last_seq: u64) -> u64 {
        let run = self.runs[i];
        match self.runs.get(i + 1) {
            Some(next) => {
                (run.first_seq + (next.first_index - run.first_index)).min(next.first_seq)
            }
            None => last_seq + 1,
        }
    }

    /// The first log index that a record holds.
    pub fn first_stored(&self, last_seq: u64) -> Option<u64> {
        (0..self.runs.len())
            .find(|&i| self.runs[i].first_seq < self.end_seq(i, last_seq))
            .map(|i| self.runs[i].first_index)
    }

    /// The last log index stored, given the stream's last seq (`None` for
    /// an empty log).
    pub fn last_index(&self, last_seq: u64) -> Option<u64> {
        let run = self.runs.last().expect("there is always a run");
        (run.first_index + (last_seq + 1).checked_sub(run.first_seq)?).checked_sub(1)
    }

    /// Start a new run: the entry after `last_index` goes to `next_seq`.
    /// Runs that begin after it are dropped, and the one it cuts ends
    /// there.
    pub fn truncate_after(&mut self, last_index: Option<u64>, next_seq: u64) {
        let first_index = last_index.map_or(0, |i| i + 1);
        self.runs.retain(|r| r.first_index < first_index);
        self.runs.push(Run {
            first_index,
            first_seq: next_seq,
        });
    }

    /// Forget runs wholly below `first_index`, the first index kept.
    pub fn forget_below(&mut self, first_index: u64) {
        let keep_from = self
            .runs
            .partition_point(|r| r.first_index <= first_index)
            .saturating_sub(1);
        self.runs.drain(..keep_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type M = Meta<u64, u64>;

    #[test]
    fn indexes_map_to_seqs_through_runs_and_truncations() {
        let mut m = M::default();
        // Entries 0..=9 at seqs 1..=10.
        assert_eq!(m.last_index(0), None);
        assert_eq!(m.seq_of(0, 10), Some(1));
        assert_eq!(m.seq_of(9, 10), Some(10));
        assert_eq!(m.seq_of(10, 10), None);
        assert_eq!(m.last_index(10), Some(9));
        // Keep 0..=5; the next entry, 6, goes to seq 11.
        m.truncate_after(Some(5), 11);
        assert_eq!(m.last_index(10), Some(5));
        assert_eq!(m.seq_of(5, 10), Some(6));
        assert_eq!(m.seq_of(6, 10), None, "discarded entries are unreachable");
        assert_eq!(m.seq_of(6, 12), Some(11));
        assert_eq!(m.last_index(12), Some(7));
        // Back past the start of the second run: it goes.
        m.truncate_after(Some(2), 13);
        assert_eq!(m.runs.len(), 2);
        assert_eq!(m.seq_of(3, 13), Some(13));
        assert_eq!(m.seq_of(2, 13), Some(3));
        assert_eq!(m.first_stored(13), Some(0));
        // Everything: an empty log from index 0 at seq 14.
        m.truncate_after(None, 14);
        assert_eq!(
            m.runs,
            vec![Run {
                first_index: 0,
                first_seq: 14
            }]
        );
        assert_eq!(m.last_index(13), None);
        assert_eq!(m.first_stored(13), None);
    }

    #[test]
    fn a_log_may_start_at_any_index() {
        let mut m = M::default();
        m.truncate_after(Some(0), 1);
        assert_eq!(m.seq_of(0, 3), None, "the first run holds nothing");
        assert_eq!(m.seq_of(1, 3), Some(1));
        assert_eq!(m.first_stored(3), Some(1));
        assert_eq!(m.first_stored(0), None);
    }

    #[test]
    fn forgetting_keeps_the_run_that_holds_the_first_kept_index() {
        let mut m = M::default();
        m.truncate_after(Some(5), 11);
        m.truncate_after(Some(8), 20);
        m.forget_below(7);
        assert_eq!(m.runs[0].first_index, 6);
        assert_eq!(m.seq_of(7, 25), Some(12));
        m.forget_below(9);
        assert_eq!(m.runs.len(), 1);
    }
}
