//! The seeds' validated-writeback journal, on lamplog.
//!
//! Every lifecycle transition that touches durable state goes through three
//! phases: the caller stages a typed op (the journal reserves a txn id and
//! records it), validates it, and commits it; or rejects it with a reason
//! code. A rejected entry stays in the log as evidence and changes no
//! state. The state is whatever replaying the committed entries gives.
//!
//! `cargo run --example writeback_journal`

use std::collections::BTreeMap;

use lamplog::{Durability, Options, Store, Stream};
use serde::{Deserialize, Serialize};

/// A typed operation being journalled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Compaction { before: u64, after: u64 },
    Save { pages: u64 },
    Reset,
}

/// Why a writeback was refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RejectReason {
    SchemaViolation,
    DestructiveSemantics,
    InvariantBroken,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Entry {
    Staged { txn: u64, op: Op },
    Validated { txn: u64 },
    Committed { txn: u64 },
    Rejected { txn: u64, reason: RejectReason },
}

/// What the committed ops add up to.
#[derive(Debug, Default, Clone, PartialEq)]
struct State {
    messages: u64,
    saved_pages: u64,
}

impl State {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Compaction { after, .. } => self.messages = *after,
            Op::Save { pages } => self.saved_pages += pages,
            Op::Reset => *self = State::default(),
        }
    }
}

/// A writeback journal over one lamplog stream.
struct Journal {
    stream: Stream,
    staged: BTreeMap<u64, Op>,
    validated: BTreeMap<u64, bool>,
    state: State,
    next_txn: u64,
}

impl Journal {
    /// Open the journal and rebuild the state from the committed entries.
    fn open(stream: Stream) -> lamplog::Result<Journal> {
        let mut journal = Journal {
            stream,
            staged: BTreeMap::new(),
            validated: BTreeMap::new(),
            state: State::default(),
            next_txn: 1,
        };
        for record in journal.stream.iter() {
            let record = record?;
            let entry: Entry =
                serde_json::from_slice(record.payload()).expect("the journal holds only entries");
            journal.absorb(&entry);
        }
        Ok(journal)
    }

    fn absorb(&mut self, entry: &Entry) {
        match entry {
            Entry::Staged { txn, op } => {
                self.staged.insert(*txn, op.clone());
                self.next_txn = self.next_txn.max(txn + 1);
            }
            Entry::Validated { txn } => {
                self.validated.insert(*txn, true);
            }
            Entry::Committed { txn } => {
                if let Some(op) = self.staged.remove(txn) {
                    self.state.apply(&op);
                }
            }
            Entry::Rejected { txn, .. } => {
                self.staged.remove(txn);
            }
        }
    }

    fn record(&mut self, entry: Entry) -> lamplog::Result<()> {
        self.stream.append(
            serde_json::to_vec(&entry).expect("entries serialise"),
            Durability::Sync,
        )?;
        self.absorb(&entry);
        Ok(())
    }

    /// Phase 1: propose an op; returns its txn id.
    fn stage(&mut self, op: Op) -> lamplog::Result<u64> {
        let txn = self.next_txn;
        self.record(Entry::Staged { txn, op })?;
        Ok(txn)
    }

    /// Phase 2: check the op; a failing check rejects it with a reason code.
    fn validate(&mut self, txn: u64) -> lamplog::Result<Result<(), RejectReason>> {
        let verdict = match self.staged.get(&txn) {
            Some(Op::Compaction { before, after }) if after > before => {
                Err(RejectReason::InvariantBroken)
            }
            Some(Op::Reset) => Err(RejectReason::DestructiveSemantics),
            Some(_) => Ok(()),
            None => Err(RejectReason::SchemaViolation),
        };
        match verdict {
            Ok(()) => self.record(Entry::Validated { txn })?,
            Err(reason) => self.record(Entry::Rejected { txn, reason })?,
        }
        Ok(verdict)
    }

    /// Phase 3: apply a validated op.
    fn commit(&mut self, txn: u64) -> lamplog::Result<bool> {
        if !self.validated.contains_key(&txn) || !self.staged.contains_key(&txn) {
            return Ok(false);
        }
        self.record(Entry::Committed { txn })?;
        Ok(true)
    }
}

fn main() -> lamplog::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path(), Options::default())?;
    let mut journal = Journal::open(store.stream("session-42.journal")?)?;
    let ok = journal.stage(Op::Compaction {
        before: 120,
        after: 24,
    })?;
    println!(
        "txn {ok}: {:?}, committed {}",
        journal.validate(ok)?,
        journal.commit(ok)?
    );
    let bad = journal.stage(Op::Compaction {
        before: 10,
        after: 99,
    })?;
    println!(
        "txn {bad}: {:?}, committed {}",
        journal.validate(bad)?,
        journal.commit(bad)?
    );
    println!(
        "state: {:?}; journal entries: {}",
        journal.state,
        journal.stream.last_seq()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_entries_stay_in_the_log_and_change_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let mut journal = Journal::open(store.stream("j").unwrap()).unwrap();
        let a = journal
            .stage(Op::Compaction {
                before: 120,
                after: 24,
            })
            .unwrap();
        assert_eq!(journal.validate(a).unwrap(), Ok(()));
        assert!(journal.commit(a).unwrap());
        let b = journal.stage(Op::Reset).unwrap();
        assert_eq!(
            journal.validate(b).unwrap(),
            Err(RejectReason::DestructiveSemantics)
        );
        assert!(!journal.commit(b).unwrap(), "a rejected txn cannot commit");
        let c = journal.stage(Op::Save { pages: 3 }).unwrap();
        assert!(
            !journal.commit(c).unwrap(),
            "an unvalidated txn cannot commit"
        );
        let expected = State {
            messages: 24,
            saved_pages: 0,
        };
        assert_eq!(journal.state, expected);
        drop(journal);
        drop(store);
        // Replaying the journal gives the same state; the rejection is on record.
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let stream = store.stream("j").unwrap();
        let journal = Journal::open(stream.clone()).unwrap();
        assert_eq!(journal.state, expected);
        let entries: Vec<Entry> = stream
            .iter()
            .map(|r| serde_json::from_slice(r.unwrap().payload()).unwrap())
            .collect();
        assert!(entries.contains(&Entry::Rejected {
            txn: b,
            reason: RejectReason::DestructiveSemantics
        }));
        assert_eq!(entries.len(), 6);
    }
}
