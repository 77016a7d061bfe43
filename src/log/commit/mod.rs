//! Group commit: how appends from many threads become written, then durable,
//! with as few `pwrite`s and `fdatasync`s as the load allows.
//!
//! - An appender frames its record under the stream's encoder lock (that
//!   fixes its seq and its place in the CRC chain) and queues it.
//! - Writes are combined: the appender that finds no write in progress
//!   becomes the stream's flusher and writes everything queued, in one
//!   write per segment (a `pwrite` or a copy into a write map), until the
//!   queue is empty. A lone appender therefore writes its own record
//!   without a thread hop, and under contention one write carries many
//!   records. `Buffered` appenders wait for "written".
//! - Syncs are combined by the store's syncer (`syncer.rs`): a `Sync`
//!   appender marks its position as wanted durable and waits once, for
//!   "durable"; the flusher asks the syncer for a sync after writing it
//!   (or, when the syncer is idle and this is the only waiter, syncs in its
//!   own thread). The syncer takes every stream asked for and makes each
//!   file durable once for all their waiters; while it syncs, the next
//!   batch of requests gathers.
//!
//! Acknowledging position P means every frame of the stream up to P is
//! written (Buffered) or on disk (Sync). A failed write poisons the stream;
//! a failed fdatasync (the syncer's, or the writer's own before a roll)
//! poisons the whole store. Every waiter not yet covered gets the error and
//! later appends get `Error::Poisoned`; reopening recovers from what is on
//! disk.

mod durable;
pub(crate) mod pending;
pub(crate) mod poison;
pub(crate) mod syncer;

use crate::error::{Error, Result};
use crate::format::frame::Kind;
use crate::log::segment::Published;
use crate::log::sync::{Arc, AtomicBool, AtomicU64, Event, Mutex, Ordering};
use crate::log::writer::{Appended, Chunk, Encoder, Pos, SegmentIo, WriterLimits};
use poison::Poison;
use syncer::{Syncable, Syncer, SyncerShared};

/// How a wait for a durable record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Reached,
    TimedOut,
    /// The log was closed first: nothing more will become durable.
    Closed,
}

struct EncoderState {
    encoder: Encoder,
    /// Whether some appender is writing the queue.
    flushing: bool,
}

/// The write side of one stream: encoder, files, and how far they got.
pub(crate) struct StreamLog {
    encoder: Mutex<EncoderState>,
    io: Mutex<SegmentIo>,
    /// How far the log is encoded, written and durable (positions only grow).
    encoded: AtomicU64,
    written: AtomicU64,
    durable: AtomicU64,
    /// Seq of the last record on disk (for subscribers).
    durable_seq: AtomicU64,
    /// Notified when `written` (or a poison) changes.
    written_changed: Event,
    /// Notified when `durable` (or a poison) changes. Apart from
    /// `written_changed` so that each write does not wake every thread
    /// waiting for a sync.
    durable_changed: Event,
    sync_requested: AtomicBool,
    /// The highest position some appender waits to see durable.
    sync_wanted: AtomicU64,
    poison: Poison,
    store_poison: Arc<Poison>,
    /// Set once the log is closed: nothing more is written through it.
    closed: AtomicBool,
    syncer: Arc<SyncerShared>,
    batch_bytes_max: u64,
    /// Seq and Lamport of the last record written, for `Stream::last_seq`.
    last_seq: AtomicU64,
    last_lamport: AtomicU64,
    /// Tasks awaiting pending appends.
    wakers: pending::Wakers,
}

impl StreamLog {
    pub fn new(
        encoder: Encoder,
        io: SegmentIo,
        syncer: &Syncer,
        limits: WriterLimits,
    ) -> Arc<StreamLog> {
        let written = io.written_pos();
        let tip = io.written();
        let poison = Poison::of_stream(encoder.stream());
        let log = Arc::new(StreamLog {
            encoder: Mutex::new(EncoderState {
                encoder,
                flushing: false,
            }),
            io: Mutex::new(io),
            encoded: AtomicU64::new(written),
            written: AtomicU64::new(written),
            durable: AtomicU64::new(written),
            durable_seq: AtomicU64::new(tip.last_seq),
            written_changed: Event::new(),
            durable_changed: Event::new(),
            sync_requested: AtomicBool::new(false),
            sync_wanted: AtomicU64::new(0),
            poison,
            store_poison: syncer.shared.poison.clone(),
            closed: AtomicBool::new(false),
            syncer: syncer.shared.clone(),
            batch_bytes_max: limits.batch_bytes_max,
            last_seq: AtomicU64::new(tip.last_seq),
            last_lamport: AtomicU64::new(tip.last_lamport),
            wakers: pending::Wakers::default(),
        });
        syncer
            .shared
            .queue
            .lock()
            .registry
            .push(Arc::downgrade(&(log.clone() as Arc<dyn Syncable>)));
        log
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    pub fn last_lamport(&self) -> u64 {
        self.last_lamport.load(Ordering::Acquire)
    }

    /// A failure that ends every wait: a poison.
    fn check(&self) -> Result<()> {
        self.store_poison.check()?;
        self.poison.check()
    }

    /// Whether a new append may be encoded: no poison, not closed.
    fn check_open(&self) -> Result<()> {
        self.check()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Encode under the lock and write (as the flusher, or by leaving it to
    /// the flusher). With `sync`, the position is marked as wanted durable
    /// before the flusher can take it, so the flusher asks for the sync
    /// once it is written and the caller waits only once, for "durable".
    fn submit<T>(
        self: &Arc<Self>,
        sync: bool,
        encode: impl FnOnce(&mut Encoder) -> T,
    ) -> Result<(T, Pos)> {
        let (value, pos) = self.enqueue(sync, true, encode)?;
        if sync {
            // `.ci/mutants` builds the deliberate bug of acknowledging a
            // `Sync` append once written, which the crash images must catch.
            #[cfg(lamplog_mutant = "ack_after_write")]
            self.wait(pos, &self.written, &self.written_changed)?;
            #[cfg(not(lamplog_mutant = "ack_after_write"))]
            self.wait(pos, &self.durable, &self.durable_changed)?;
        } else {
            // A sweep must make this record durable within the interval.
            self.syncer.ensure_running();
            self.wait(pos, &self.written, &self.written_changed)?;
        }
        Ok((value, pos))
    }

    /// Encode under the stream's lock and queue; write the queue if no one
    /// is writing it; with `sync`, see that a sync will cover it (in this
    /// thread only if `inline` allows and the syncer is idle). Returns
    /// without waiting for "written" or "durable".
    fn enqueue<T>(
        self: &Arc<Self>,
        sync: bool,
        inline: bool,
        encode: impl FnOnce(&mut Encoder) -> T,
    ) -> Result<(T, Pos)> {
        // Backpressure: appenders wait for the flusher rather than let the
        // queue (and memory) grow past batch_bytes_max.
        // Saturating: any batch_bytes_max, u64::MAX included, is a bound.
        let written_needed = self
            .encoded
            .load(Ordering::Acquire)
            .saturating_sub(self.batch_bytes_max);
        if written_needed > self.written.load(Ordering::Acquire) {
            self.wait(written_needed, &self.written, &self.written_changed)?;
        }
        let (value, pos, lead) = {
            let mut state = self.encoder.lock();
            self.check_open()?;
            let value = encode(&mut state.encoder);
            let pos = state.encoder.pos();
            self.encoded.store(pos, Ordering::Release);
            if sync {
                self.sync_wanted.fetch_max(pos, Ordering::AcqRel);
                self.syncer.waiting.fetch_add(1, Ordering::AcqRel);
            }
            let lead = state.encoder.has_pending() && !state.flushing;
            state.flushing |= lead;
            (value, pos, lead)
        };
        if lead {
            self.flush(inline);
        }
        // Nothing was pending (a sync of what is already written): ask now,
        // unless it is durable already.
        if sync && !lead && self.written.load(Ordering::Acquire) >= pos {
            if self.durable.load(Ordering::Acquire) >= pos {
                self.unwait();
            } else {
                self.request_sync();
            }
        }
        Ok((value, pos))
    }

    /// Append one validated payload durably, returning at once: the
    /// [`Pending`](pending::Pending) completes when a sync covers it.
    pub fn append_pending(
        self: &Arc<Self>,
        payload: &[u8],
        observed: u64,
    ) -> Result<pending::Pending> {
        let (appended, pos) =
            self.enqueue(true, false, |e| e.encode(Kind::Data, payload, observed))?;
        Ok(pending::Pending::new(self.clone(), pos, appended?))
    }

    /// Append one validated payload.
    pub fn append(self: &Arc<Self>, payload: &[u8], observed: u64, sync: bool) -> Result<Appended> {
        self.submit(sync, |e| e.encode(Kind::Data, payload, observed))?
            .0
    }

    /// Append validated payloads, each with the Lamport it observed, as
    /// one atomic batch.
    pub fn append_batch(
        self: &Arc<Self>,
        records: &[(&[u8], u64)],
        sync: bool,
    ) -> Result<Vec<Appended>> {
        self.submit(sync, |e| e.encode_batch(records))?.0
    }

    /// Append a record whose payload depends on its own seq and Lamport:
    /// `build` runs under the stream's lock with the stamp the record will
    /// get, and returns the payload (or an error, and nothing is written).
    pub fn append_built<T>(
        self: &Arc<Self>,
        kind: Kind,
        observed: u64,
        sync: bool,
        build: impl FnOnce(u64, u64) -> Result<(Vec<u8>, T)>,
    ) -> Result<(Appended, T)> {
        let (built, _) = self.submit(sync, |e| {
            let (seq, lamport) = e.next_stamp(observed)?;
            let (payload, value) = build(seq, lamport)?;
            Ok((e.encode(kind, &payload, observed)?, value))
        })?;
        built
    }

    /// Seal the segment being written (its successor starts now) and make
    /// everything appended so far durable.
    pub fn seal_active(self: &Arc<Self>) -> Result<()> {
        self.submit(true, |e| e.roll_now())?.0
    }

    /// Make everything appended so far durable.
    pub fn sync(self: &Arc<Self>) -> Result<()> {
        self.submit(true, |_| ()).map(drop)
    }

    /// Sync, write a commit marker and sync it (docs/FORMAT.md), and close:
    /// later appends get `Error::Closed` and waiting subscribers end. Once
    /// called, nothing more is written through this log, even if the sync
    /// failed. Closing a closed log does nothing.
    pub fn close(self: &Arc<Self>) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let result = self.sync().and_then(|()| {
            // Closed under the encoder lock, right after the marker: every
            // append encoded before it is covered by the marker's sync.
            self.submit(true, |e| {
                e.encode_marker();
                self.closed.store(true, Ordering::Release);
            })
        });
        self.closed.store(true, Ordering::Release);
        self.io.lock().write_index_entries();
        self.written_changed.notify_all();
        self.durable_changed.notify_all();
        match result {
            // Another thread closed it first.
            Err(Error::Closed) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Stop as a crash would: nothing more is written or synced.
    pub fn abandon(&self) {
        let abandoned = "the store was abandoned";
        self.fail(
            &self.poison,
            abandoned.into(),
            std::io::Error::other(abandoned),
        );
    }

    /// Wait until `level` reaches `pos`, or a failure.
    fn wait(&self, pos: Pos, level: &AtomicU64, changed: &Event) -> Result<()> {
        let reached = || level.load(Ordering::Acquire) >= pos;
        changed.wait_until(|| reached() || self.check().is_err());
        if reached() {
            Ok(())
        } else {
            self.check()
        }
    }

    /// Write the queue until it is empty; only the flusher calls this.
    ///
    /// Whether a sync is wanted for what was written is decided under the
    /// encoder lock, at the top of the next round: `sync()` callers mark
    /// their position under that lock, so either the flusher sees the mark,
    /// or the caller runs after the flusher's last round and sees the write
    /// done (and asks itself). Checked without the lock, each side could miss
    /// the other's update and the sync would wait for the syncer's timer
    /// (found by the loom model `a_sync_racing_a_buffered_write_never_waits_for_the_timer`).
    fn flush(self: &Arc<Self>, inline: bool) {
        let mut wrote = false;
        let mut written = Vec::new();
        loop {
            let (chunks, sync_wanted) = {
                let mut state = self.encoder.lock();
                state.encoder.recycle(std::mem::take(&mut written));
                let sync_wanted = wrote
                    && self.sync_wanted.load(Ordering::Acquire)
                        > self.durable.load(Ordering::Acquire);
                if !state.encoder.has_pending() || self.check().is_err() {
                    state.flushing = false;
                    (Vec::new(), sync_wanted)
                } else {
                    (state.encoder.take_pending(), sync_wanted)
                }
            };
            if sync_wanted {
                if inline && self.syncer.idle_but_for_one() {
                    self.sync_inline();
                } else {
                    self.request_sync();
                }
            }
            if chunks.is_empty() {
                return;
            }
            if !self.write_chunks(&chunks) {
                return;
            }
            written = chunks;
            wrote = true;
        }
    }

    /// Write encoded chunks in order; on a failure, poison and drop what is
    /// queued (`false`).
    fn write_chunks(&self, chunks: &[Chunk]) -> bool {
        let mut io = self.io.lock();
        for chunk in chunks {
            let counters = &self.syncer.counters;
            counters.writes.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_written
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            // Bytes a sync is waiting for skip the write map (see
            // `BackendFile::write_all_at_before_sync`).
            let synced_next =
                self.sync_wanted.load(Ordering::Acquire) > self.durable.load(Ordering::Acquire);
            match io.write(chunk, synced_next) {
                Ok(rolled) => {
                    counters
                        .fsyncs
                        .fetch_add(u64::from(rolled.is_some()), Ordering::Relaxed);
                    self.advance(io.written(), io.written_pos(), rolled)
                }
                Err(e) => {
                    let poison = if io.sync_failed() {
                        &*self.store_poison
                    } else {
                        &self.poison
                    };
                    drop(io);
                    let cause = e.to_string();
                    let source = match e {
                        Error::Io { source, .. } => source,
                        other => std::io::Error::other(other.to_string()),
                    };
                    self.fail(poison, cause, source);
                    let mut state = self.encoder.lock();
                    state.encoder.discard_pending();
                    state.flushing = false;
                    return false;
                }
            }
        }
        true
    }

    fn advance(&self, tip: Published, written: Pos, durable: Option<(Pos, u64)>) {
        self.last_lamport.store(tip.last_lamport, Ordering::Release);
        self.last_seq.store(tip.last_seq, Ordering::Release);
        self.written.store(written, Ordering::Release);
        self.written_changed.notify_all();
        if let Some((pos, seq)) = durable {
            self.durable.fetch_max(pos, Ordering::AcqRel);
            self.durable_seq.fetch_max(seq, Ordering::AcqRel);
            self.durable_changed.notify_all();
            self.wake_durable();
        }
    }

    /// Record a failure in `poison` and answer every waiter.
    fn fail(&self, poison: &Poison, cause: String, source: std::io::Error) {
        poison.set(cause, source);
        self.written_changed.notify_all();
        self.durable_changed.notify_all();
        self.wake_durable();
    }
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog")
            .field("durable_seq", &self.durable_seq())
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom;
