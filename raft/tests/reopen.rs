//! Persistence beyond openraft's suite, which never reopens a store: random
//! sequences of appends, truncations (inside the log and past its end),
//! purges (inside the log and past its end), votes and committed ids, with
//! the store closed and reopened at random points, checked after every
//! step against a model of what openraft expects it to hold.

use std::collections::BTreeMap;

use lamplog_raft::kv::KvConfig;
use lamplog_raft::LogStore;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::Vote;

mod common;
use common::{append, entry};

/// What the store must hold.
#[derive(Default)]
struct Model {
    entries: BTreeMap<u64, EntryOf<KvConfig>>,
    last_purged: Option<LogIdOf<KvConfig>>,
    vote: Option<VoteOf<KvConfig>>,
    committed: Option<LogIdOf<KvConfig>>,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.keys().next_back(), &self.last_purged) {
            (Some(&last), _) => last + 1,
            (None, Some(purged)) => purged.index + 1,
            (None, None) => 0,
        }
    }
}

/// A small deterministic generator (xorshift), so that a failing seed
/// reruns the same way.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn check(store: &mut LogStore<KvConfig>, model: &Model, step: &str) {
    let state = store.get_log_state().await.expect("log state");
    let last = model
        .entries
        .values()
        .next_back()
        .map(|e| e.log_id)
        .or(model.last_purged);
    assert_eq!(
        state.last_purged_log_id, model.last_purged,
        "{step}: last purged"
    );
    assert_eq!(state.last_log_id, last, "{step}: last log id");
    let mut reader = store.get_log_reader().await;
    let read = reader
        .try_get_log_entries(0..u64::MAX)
        .await
        .expect("entries");
    let expected: Vec<_> = model.entries.values().cloned().collect();
    assert_eq!(read, expected, "{step}: entries");
    assert_eq!(
        reader.read_vote().await.expect("vote"),
        model.vote,
        "{step}: vote"
    );
    assert_eq!(
        store.read_committed().await.expect("committed"),
        model.committed,
        "{step}: committed"
    );
}

async fn run(seed: u64, dir: &std::path::Path) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut model = Model::default();
    let mut store = LogStore::<KvConfig>::open(dir).expect("open");
    let mut term = 1;
    for step in 0..60 {
        let what = rng.below(10);
        let label = format!("seed {seed} step {step} op {what}");
        match what {
            0..=3 => {
                let first = model.next_index();
                let n = 1 + rng.below(40);
                let entries: Vec<_> = (first..first + n).map(|i| entry(term, i)).collect();
                for e in &entries {
                    model.entries.insert(e.log_id.index, e.clone());
                }
                append(&mut store, entries).await.expect("append");
            }
            4 => {
                // Truncate inside the log, or past its end (a no-op).
                let next = model.next_index();
                let keep = rng.below(next + 3);
                let last = (keep > 0).then(|| log_id::<KvConfig>(term, 1, keep - 1));
                if let Some(purged) = &model.last_purged {
                    if keep <= purged.index {
                        continue; // openraft never truncates purged entries
                    }
                }
                model.entries.retain(|&i, _| keep > 0 && i < keep);
                store.truncate_after(last).await.expect("truncate");
                term += 1;
            }
            5 => {
                // Purge inside the log, or past its end.
                let next = model.next_index();
                let through = rng.below(next + 5);
                if model.last_purged.is_some_and(|p| through <= p.index) {
                    continue;
                }
                let id = model
                    .entries
                    .get(&through)
                    .map(|e| e.log_id)
                    .unwrap_or_else(|| log_id::<KvConfig>(term, 1, through));
                model.entries.retain(|&i, _| i > through);
                model.last_purged = Some(id);
                store.purge(id).await.expect("purge");
            }
            6 => {
                let vote = Vote::new(term, rng.below(3));
                model.vote = Some(vote);
                store.save_vote(&vote).await.expect("vote");
            }
            7 => {
                let committed = model.entries.values().next_back().map(|e| e.log_id);
                model.committed = committed;
                store.save_committed(committed).await.expect("committed");
            }
            _ => {
                store.close().expect("close");
                store = LogStore::open(dir).expect("reopen");
            }
        }
        check(&mut store, &model, &label).await;
    }
    store.close().expect("close");
    let mut store = LogStore::<KvConfig>::open(dir).expect("reopen at the end");
    check(
        &mut store,
        &model,
        &format!("seed {seed} after the last reopen"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_survives_a_reopen() {
    let seeds: u64 = std::env::var("LAMPLOG_RAFT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        let dir = tempfile::tempdir().expect("a temporary directory");
        run(seed, dir.path()).await;
    }
}

/// The meta stream keeps only its last record's worth of segments: a long
/// run of votes (each a whole-state record) does not grow it without end,
/// and the last vote survives the purges and a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_stream_is_purged_behind_its_last_record() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = lamplog_raft::Options::default()
        .segment_bytes_max(64 << 10)
        .record_bytes_max(16 << 10);
    let mut store =
        LogStore::<KvConfig>::open_with_options(dir.path(), options.clone()).expect("open");
    append(&mut store, (0..10).map(|i| entry(1, i)).collect())
        .await
        .expect("append");
    let votes = 5_000;
    for term in 1..=votes {
        store
            .save_vote(&Vote::new(term, term % 3))
            .await
            .expect("vote");
    }
    store.close().expect("close");
    let meta_bytes = bytes_under(&dir.path().join("streams").join("raft.meta"));
    // 5,000 records of ~100 bytes would be ~500 KiB unpurged.
    assert!(
        meta_bytes < 300 << 10,
        "the meta stream holds {meta_bytes} bytes after {votes} votes"
    );
    let mut store = LogStore::<KvConfig>::open_with_options(dir.path(), options).expect("reopen");
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.read_vote().await.expect("vote"),
        Some(Vote::new(votes, votes % 3))
    );
    assert_eq!(
        reader.try_get_log_entries(0..10).await.expect("entries"),
        (0..10).map(|i| entry(1, i)).collect::<Vec<_>>()
    );
}

/// The bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            let path = e.expect("an entry").path();
            if path.is_dir() {
                bytes_under(&path)
            } else {
                path.metadata().expect("metadata").len()
            }
        })
        .sum()
}
