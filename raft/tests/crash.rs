//! Power cuts after every operation of the adapter on lamplog's simulated
//! disk, in the scenarios where custom log stores lose entries:
//! truncate-then-append, purge-past-the-end-then-append, and appends left
//! in flight before a vote. Every crash image must reopen to a state that
//! openraft could have seen: the state after some operation at or after the
//! last one acknowledged before the cut, plus a prefix of the entries of
//! the appends in flight after it. That holds no holes, keeps every entry
//! whose callback fired byte for byte, makes a durable vote imply every
//! entry appended before it, and never shows an entry of an old run after
//! a newer run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lamplog::testing::{Fate, SimDisk};
use lamplog_raft::kv::KvConfig;
use lamplog_raft::LogStore;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log_id;
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::type_config::TypeConfigExt;
use openraft::Vote;

mod common;
use common::{append, entry};

const DIR: &str = "/raft";

/// What openraft expects the store to hold after an operation.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    entries: BTreeMap<u64, EntryOf<KvConfig>>,
    last_purged: Option<LogIdOf<KvConfig>>,
    vote: Option<VoteOf<KvConfig>>,
}

/// An operation of a scenario: the state after it, the entries it appends
/// (for an append), and the disk's operation count once it was
/// acknowledged (its callback fired, or the call returned), if it was.
struct Step {
    after: State,
    appended: Vec<EntryOf<KvConfig>>,
    acked_at: Option<usize>,
}

/// A scenario's run: its steps, in order.
struct Run {
    disk: SimDisk,
    store: LogStore<KvConfig>,
    state: State,
    steps: Vec<Step>,
}

impl Run {
    fn new() -> Run {
        let disk = SimDisk::default();
        let store = LogStore::open_with(Arc::new(disk.clone()), DIR).expect("open");
        // Syncs that take a while, as real ones do, so that an
        // acknowledgement that came before its sync is recorded before it.
        disk.set_sync_time(std::time::Duration::from_millis(3));
        // The empty store, acknowledged from the start.
        let start = Step {
            after: State::default(),
            appended: Vec::new(),
            acked_at: Some(0),
        };
        Run {
            disk,
            store,
            state: State::default(),
            steps: vec![start],
        }
    }

    fn next_index(&self) -> u64 {
        match (
            self.state.entries.keys().next_back(),
            &self.state.last_purged,
        ) {
            (Some(&last), _) => last + 1,
            (None, Some(purged)) => purged.index + 1,
            (None, None) => 0,
        }
    }

    fn record(&mut self, appended: Vec<EntryOf<KvConfig>>, acked: bool) {
        self.steps.push(Step {
            after: self.state.clone(),
            appended,
            acked_at: acked.then(|| self.disk.ops()),
        });
    }

    /// Appends `n` entries of `term` and waits for the callback.
    async fn append(&mut self, term: u64, n: u64) {
        let entries = self.entries(term, n);
        append(&mut self.store, entries.clone())
            .await
            .expect("append");
        self.record(entries, true);
    }

    /// Appends `n` entries of `term` without waiting for the callback; the
    /// receiver says when it fired.
    async fn append_in_flight(
        &mut self,
        term: u64,
        n: u64,
    ) -> openraft::type_config::alias::OneshotReceiverOf<KvConfig, std::io::Result<()>> {
        let entries = self.entries(term, n);
        let (tx, rx) = KvConfig::oneshot();
        self.store
            .append(entries.clone(), IOFlushed::signal(tx))
            .await
            .expect("append");
        self.record(entries, false);
        rx
    }

    fn entries(&mut self, term: u64, n: u64) -> Vec<EntryOf<KvConfig>> {
        let first = self.next_index();
        let entries: Vec<_> = (first..first + n).map(|i| entry(term, i)).collect();
        for e in &entries {
            self.state.entries.insert(e.log_id.index, e.clone());
        }
        entries
    }

    async fn truncate_after(&mut self, term: u64, last: Option<u64>) {
        self.state
            .entries
            .retain(|&i, _| last.is_some_and(|l| i <= l));
        let id = last.map(|l| log_id::<KvConfig>(term, 1, l));
        self.store.truncate_after(id).await.expect("truncate");
        self.record(Vec::new(), true);
    }

    async fn purge(&mut self, term: u64, through: u64) {
        let id = self
            .state
            .entries
            .get(&through)
            .map(|e| e.log_id)
            .unwrap_or_else(|| log_id::<KvConfig>(term, 1, through));
        self.state.entries.retain(|&i, _| i > through);
        self.state.last_purged = Some(id);
        self.store.purge(id).await.expect("purge");
        self.record(Vec::new(), true);
    }

    async fn save_vote(&mut self, term: u64) {
        let vote = Vote::new(term, 1);
        self.state.vote = Some(vote);
        self.store.save_vote(&vote).await.expect("vote");
        self.record(Vec::new(), true);
    }

    /// Every crash image after every operation, each reopened and checked.
    async fn check_every_crash(self) -> usize {
        let Run {
            disk, store, steps, ..
        } = self;
        drop(store);
        // Right after every operation, not only after syncs: an
        // acknowledgement that came before its sync is caught at the
        // point just before that sync.
        let points: Vec<usize> = (0..=disk.ops()).collect();
        let fates = [
            (Fate::Lost, false),
            (Fate::Lost, true),
            (Fate::Kept, true),
            (Fate::Torn(7), true),
        ];
        let mut images = Vec::new();
        disk.crash_images(&points, &fates, |at, fate, kept, image| {
            images.push((at, format!("{fate:?} entries_kept={kept}"), image));
        });
        let checked = images.len();
        for (at, how, image) in images {
            let seen = reopen(image, Path::new(DIR)).await;
            let acked = steps
                .iter()
                .rposition(|s| s.acked_at.is_some_and(|a| a <= at))
                .expect("the start is acknowledged");
            let possible = (acked..steps.len())
                .any(|j| matches_with_in_flight(&seen, &steps[j].after, &steps[j + 1..]));
            assert!(
                possible,
                "crash after op {at} ({how}): the store reopened to a state openraft never saw \
                 after the last acknowledged step {acked}:\n{seen:#?}"
            );
        }
        checked
    }
}

/// `seen` is `base` plus a prefix of the entries that the appends right
/// after it (before any other kind of step) were writing.
fn matches_with_in_flight(seen: &State, base: &State, after: &[Step]) -> bool {
    if (seen.vote, seen.last_purged) != (base.vote, base.last_purged) {
        return false;
    }
    let in_flight: Vec<_> = after
        .iter()
        .take_while(|s| !s.appended.is_empty())
        .flat_map(|s| s.appended.iter().cloned())
        .collect();
    let mut expected = base.entries.clone();
    if seen.entries.len() < expected.len() {
        return false;
    }
    let extra = seen.entries.len() - expected.len();
    if extra > in_flight.len() {
        return false;
    }
    for e in &in_flight[..extra] {
        expected.insert(e.log_id.index, e.clone());
    }
    expected == seen.entries
}

/// The state a crash image reopens to.
async fn reopen(image: SimDisk, dir: &Path) -> State {
    let mut store =
        LogStore::<KvConfig>::open_with(Arc::new(image), dir).expect("an image reopens");
    let log_state = store.get_log_state().await.expect("log state");
    let mut reader = store.get_log_reader().await;
    let entries = reader
        .try_get_log_entries(0..u64::MAX)
        .await
        .expect("the entries read back, with no hole");
    let vote = reader.read_vote().await.expect("the vote");
    let last = entries
        .last()
        .map(|e| e.log_id)
        .or(log_state.last_purged_log_id);
    assert_eq!(
        log_state.last_log_id, last,
        "the log state agrees with the entries"
    );
    State {
        entries: entries.into_iter().map(|e| (e.log_id.index, e)).collect(),
        last_purged: log_state.last_purged_log_id,
        vote,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_during_truncate_then_append_keep_every_acknowledged_entry() {
    let mut run = Run::new();
    run.append(1, 12).await;
    run.save_vote(1).await;
    run.truncate_after(1, Some(7)).await;
    run.append(2, 9).await;
    run.truncate_after(2, Some(3)).await;
    run.append(3, 5).await;
    assert!(run.check_every_crash().await > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_during_purge_past_the_end_then_append_keep_every_acknowledged_entry() {
    let mut run = Run::new();
    run.append(1, 10).await;
    run.purge(1, 4).await;
    run.append(1, 3).await;
    // Past the end: a snapshot covered more than this node had.
    run.purge(2, 20).await;
    run.append(2, 6).await;
    assert!(run.check_every_crash().await > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_around_a_vote_after_appends_in_flight_never_show_the_vote_without_them() {
    let mut run = Run::new();
    run.append(1, 4).await;
    let a = run.append_in_flight(1, 5).await;
    let b = run.append_in_flight(1, 7).await;
    run.save_vote(2).await;
    // The vote returned: its appends are durable, and their callbacks fire.
    a.await.expect("a callback").expect("durable");
    b.await.expect("a callback").expect("durable");
    run.append(2, 3).await;
    assert!(run.check_every_crash().await > 20);
}
