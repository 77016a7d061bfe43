//! openraft's log storage on a lamplog store: stream `raft.log` holds one
//! JSON entry per record, stream `raft.meta` the vote, the committed and
//! purged log ids and the index-to-seq runs (`meta.rs`).
//!
//! Durability follows openraft's io-ordering rule: `save_vote`,
//! `truncate_after` and `purge` sync the log stream before they write their
//! meta record, durably, so a durable vote implies every entry appended
//! before it is durable. `append` writes its entries (readable when it
//! returns) and hands the last one's pending append to a completion task,
//! which fires openraft's callback once a sync covers it, in order, woken
//! by lamplog's sync machinery rather than by polling.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use lamplog::{Durability, Options, Pending, Store, Stream};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::meta::Meta;

const LOG_STREAM: &str = "raft.log";
const META_STREAM: &str = "raft.meta";

/// How many meta records may pass between purges of the older ones.
const META_PURGE_EVERY: u64 = 1024;

type State<C> = Meta<VoteOf<C>, LogIdOf<C>>;

/// What the adapter needs of a type config: its entries, votes and log ids
/// travel as JSON.
pub trait JsonTypes:
    RaftTypeConfig<Entry: Serialize + DeserializeOwned, Vote: Serialize + DeserializeOwned>
{
}

impl<C> JsonTypes for C where
    C: RaftTypeConfig<Entry: Serialize + DeserializeOwned, Vote: Serialize + DeserializeOwned>
{
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The log store of one Raft node: a lamplog [`Store`] in a directory of
/// its own.
pub struct LogStore<C: JsonTypes> {
    store: Store,
    reader: LogReader<C>,
    meta_stream: Stream,
    /// Meta records written since the meta stream was last purged.
    meta_since_purge: u64,
    /// Appends whose callbacks wait for a sync, in order.
    flushes: mpsc::UnboundedSender<(Option<Pending>, IOFlushed<C>)>,
}

/// Reads entries and the vote; cheap to clone, one per replication task.
pub struct LogReader<C: JsonTypes> {
    log: Stream,
    state: Arc<Mutex<State<C>>>,
}

impl<C: JsonTypes> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        LogReader {
            log: self.log.clone(),
            state: self.state.clone(),
        }
    }
}

impl<C: JsonTypes> LogReader<C> {
    fn state(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry at `index`, checked to carry that index.
    fn entry(&self, index: u64, seq: u64) -> io::Result<C::Entry> {
        let record = self
            .log
            .get(seq)
            .map_err(io_error)?
            .ok_or_else(|| io_error(format!("entry {index} (seq {seq}) is missing")))?;
        let entry: C::Entry = serde_json::from_slice(record.payload()).map_err(io_error)?;
        if openraft::entry::RaftEntry::index(&entry) != index {
            return Err(io_error(format!(
                "seq {seq} holds entry {}, not {index}",
                openraft::entry::RaftEntry::index(&entry)
            )));
        }
        Ok(entry)
    }

    /// The indexes a read may return: after the last purged, up to the
    /// last stored.
    fn bounds(&self) -> (u64, Option<u64>) {
        let state = self.state();
        let last_seq = self.log.last_seq();
        let after_purge = state.last_purged.as_ref().map_or(0, |l| l.index + 1);
        let first = state.first_stored(last_seq).unwrap_or(0).max(after_purge);
        (first, state.last_index(last_seq))
    }
}

impl<C: JsonTypes> RaftLogReader<C> for LogReader<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let (first, last) = self.bounds();
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(&i) => i.min(last),
            Bound::Excluded(&0) => return Ok(Vec::new()),
            Bound::Excluded(&i) => (i - 1).min(last),
            Bound::Unbounded => last,
        };
        let seqs = {
            let (state, last_seq) = (self.state(), self.log.last_seq());
            (start..=end)
                .map(|index| {
                    state
                        .seq_of(index, last_seq)
                        .map(|seq| (index, seq))
                        .ok_or_else(|| io_error(format!("no run holds entry {index}")))
                })
                .collect::<io::Result<Vec<_>>>()?
        };
        seqs.into_iter()
            .map(|(index, seq)| self.entry(index, seq))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.state().vote.clone())
    }
}

impl<C: JsonTypes> LogStore<C> {
    /// Opens (or creates) the log store in `dir`. Call it from within a
    /// tokio runtime: the callbacks of appends complete on a task of it.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<LogStore<C>> {
        LogStore::open_with_options(dir, Options::default())
    }

    /// [`open`](LogStore::open) with lamplog's options, such as the size of
    /// its segments (what a purge frees at a time).
    pub fn open_with_options(dir: impl AsRef<Path>, options: Options) -> io::Result<LogStore<C>> {
        LogStore::on(Store::open(dir, options).map_err(io_error)?)
    }

    /// [`open`](LogStore::open) on another file backend, such as lamplog's
    /// simulated disk (the `testing` feature), for crash tests.
    #[cfg(feature = "testing")]
    pub fn open_with(
        backend: std::sync::Arc<dyn lamplog::testing::Backend>,
        dir: impl AsRef<Path>,
    ) -> io::Result<LogStore<C>> {
        LogStore::on(Store::open_with(backend, dir, Options::default()).map_err(io_error)?)
    }

    fn on(store: Store) -> io::Result<LogStore<C>> {
        let log = store.stream(LOG_STREAM).map_err(io_error)?;
        let meta_stream = store.stream(META_STREAM).map_err(io_error)?;
        let state: State<C> = match meta_stream.get(meta_stream.last_seq()).map_err(io_error)? {
            Some(record) => serde_json::from_slice(record.payload()).map_err(io_error)?,
            None => Meta::default(),
        };
        let (flushes, mut pending) = mpsc::unbounded_channel::<(Option<Pending>, IOFlushed<C>)>();
        tokio::spawn(async move {
            while let Some((append, callback)) = pending.recv().await {
                let result = match append {
                    // `.ci/mutants` builds the deliberate bug of firing the
                    // callback once written, which the crash test must catch.
                    #[cfg(not(lamplog_mutant = "raft_callback_before_sync"))]
                    Some(append) => append.await.map(drop).map_err(io_error),
                    _ => Ok(()),
                };
                callback.io_completed(result);
            }
        });
        Ok(LogStore {
            store,
            reader: LogReader {
                log,
                state: Arc::new(Mutex::new(state)),
            },
            meta_stream,
            meta_since_purge: 0,
            flushes,
        })
    }

    /// Makes every appended entry durable, then records `change` to the
    /// meta state durably.
    fn write_meta(&mut self, change: impl FnOnce(&mut State<C>, u64)) -> io::Result<()> {
        self.write_meta_as(Durability::Sync, change)
    }

    /// [`write_meta`](Self::write_meta) with the meta record's durability.
    fn write_meta_as(
        &mut self,
        durability: Durability,
        change: impl FnOnce(&mut State<C>, u64),
    ) -> io::Result<()> {
        self.reader.log.sync().map_err(io_error)?;
        let mut state = self.reader.state();
        change(&mut state, self.reader.log.last_seq());
        let record = serde_json::to_vec(&*state).map_err(io_error)?;
        let appended = self
            .meta_stream
            .append(record, durability)
            .map_err(io_error)?;
        drop(state);
        // Only the last meta record counts: the segments of older ones go,
        // once in a while, behind a durable one (a buffered record is not
        // yet a floor a crash keeps).
        self.meta_since_purge += 1;
        if durability == Durability::Sync && self.meta_since_purge >= META_PURGE_EVERY {
            self.meta_since_purge = 0;
            self.meta_stream
                .purge_through(appended.seq.saturating_sub(1))
                .map_err(io_error)?;
        }
        Ok(())
    }

    /// Closes the store cleanly.
    pub fn close(self) -> io::Result<()> {
        let LogStore {
            store,
            reader,
            meta_stream,
            flushes,
            ..
        } = self;
        drop((reader, meta_stream, flushes));
        store.close().map_err(io_error)
    }
}

impl<C: JsonTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged = self.reader.state().last_purged.clone();
        let (first, last) = self.reader.bounds();
        let last_log_id = match last {
            Some(last) if last >= first => {
                let seq = self
                    .reader
                    .state()
                    .seq_of(last, self.reader.log.last_seq())
                    .ok_or_else(|| io_error(format!("no run holds entry {last}")))?;
                Some(openraft::entry::RaftEntry::log_id(
                    &self.reader.entry(last, seq)?,
                ))
            }
            _ => last_purged.clone(),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let vote = vote.clone();
        self.write_meta(|state, _| state.vote = Some(vote))
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // openraft calls this at every commit and only reads it back as a
        // hint of how far to re-apply: the record may wait for the next
        // sync (a kill keeps it), but not become durable before the
        // entries it names, which are synced first (usually already).
        self.write_meta_as(Durability::Buffered, |state, _| state.committed = committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.reader.state().committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (first, last) = self.reader.bounds();
        let mut next = last.map_or(0, |i| i + 1);
        // An empty log (new, or purged to its end) starts wherever its first
        // entry says; a run records where, durably, before the entry is
        // written.
        let mut may_start_anywhere = last.is_none_or(|last| last < first);
        let mut written = None;
        for entry in entries {
            let index = openraft::entry::RaftEntry::index(&entry);
            if index != next {
                if !may_start_anywhere {
                    return Err(io_error(format!(
                        "entry {index} appended where entry {next} belongs"
                    )));
                }
                self.write_meta(|state, last_seq| {
                    state.truncate_after(index.checked_sub(1), last_seq + 1)
                })?;
            }
            let record = serde_json::to_vec(&entry).map_err(io_error)?;
            written = Some(self.reader.log.append_pending(record).map_err(io_error)?);
            may_start_anywhere = false;
            next = index + 1;
        }
        self.flushes
            .send((written, callback))
            .map_err(|_| io_error("the completion task is gone"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // `.ci/mutants` builds the deliberate bug of a truncation that does
        // nothing, which the cluster test must catch.
        #[cfg(lamplog_mutant = "raft_truncate_noop")]
        return Ok(());
        let last = last_log_id.map(|l| l.index);
        let (_, stored) = self.reader.bounds();
        // Nothing after `last` is stored: nothing to discard.
        if stored.is_none() || last >= stored {
            return Ok(());
        }
        self.write_meta(|state, last_seq| state.truncate_after(last, last_seq + 1))
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let index = log_id.index;
        let seq = self
            .reader
            .state()
            .seq_of(index, self.reader.log.last_seq());
        self.write_meta(|state, _| {
            state.last_purged = Some(log_id);
            state.forget_below(index + 1);
        })?;
        // The meta record says where the log starts; the segments at or
        // below it can go. (An index past the end has no seq: nothing of
        // the current run is purged.)
        if let Some(seq) = seq {
            self.reader.log.purge_through(seq).map_err(io_error)?;
        }
        Ok(())
    }
}
