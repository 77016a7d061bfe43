//! The syncer: one thread per store that turns sync requests from many
//! streams into as few `fdatasync`s (or one `syncfs`) as possible, and
//! counts what it did.

use std::time::Duration;

use crate::io::backend::BackendFile;
use crate::io::engine::SyncEngine;
use crate::log::commit::poison::Poison;
use crate::log::sync::{
    thread, Arc, AtomicBool, AtomicU64, Clock, Condvar, JoinHandle, Mutex, MutexGuard, Ordering,
    Weak,
};
use crate::log::writer::Pos;
use crate::options::{IoBackend, SyncScope};

/// Counters of the I/O the commit protocol issued, for [`Store::stats`](crate::Store::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// How the syncer issues fdatasyncs.
    pub io_backend: IoBackend,
    /// Why `io_backend` is not the one [`Options::io_backend`](crate::Options::io_backend) asked for, if it is not.
    pub io_fallback: Option<String>,
    /// `pwrite` calls that wrote frames.
    pub writes: u64,
    /// Frame bytes written.
    pub bytes_written: u64,
    /// `fdatasync` calls on segment files (segment creation excluded).
    pub fsyncs: u64,
    /// Time spent in `fdatasync` (or `syncfs`), in microseconds.
    pub fsync_us: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) writes: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) fsync_us: AtomicU64,
}

/// One stream's part of a sync batch.
pub(crate) struct SyncTarget {
    pub file: Arc<dyn BackendFile>,
    pub path: std::path::PathBuf,
    pub pos: Pos,
    /// Seq of the last record written when the sync began.
    pub seq: u64,
}

/// What the syncer syncs: a stream's log (commit.rs), seen through the
/// three calls the syncer makes, so that it depends on nothing above it.
pub(crate) trait Syncable: Send + Sync {
    /// Whether a sweep should sync it: unsynced records, no poison.
    fn needs_sync(&self) -> bool;
    /// Start a sync: the file to fdatasync and what it makes durable.
    fn begin_sync(&self) -> SyncTarget;
    /// The outcome of the sync `begin_sync` started.
    fn end_sync(&self, target: &SyncTarget, result: std::io::Result<()>);
}

pub(crate) struct SyncQueue {
    pub(crate) requests: Vec<Arc<dyn Syncable>>,
    pub(crate) registry: Vec<Weak<dyn Syncable>>,
    pub(crate) shutdown: bool,
}

/// What the syncer thread and the streams share.
pub(crate) struct SyncerShared {
    pub(crate) queue: Mutex<SyncQueue>,
    pub(crate) wake: Condvar,
    pub(crate) poison: Arc<Poison>,
    /// Time for the sweep deadline (a model's own clock under loom).
    pub(crate) clock: Clock,
    /// Longest wait between two sweeps of the streams with unsynced
    /// records (half of `sync_interval_us`, see `run`).
    pub(crate) sweep_period_us: u64,
    /// When the next sweep is due, on `clock`.
    pub(crate) next_sweep_us: AtomicU64,
    pub(crate) counters: Counters,
    /// Appends waiting for a sync that has not begun yet.
    pub(crate) waiting: AtomicU64,
    /// While the syncer gathers a batch, how many waiting appends end the
    /// gathering (0 otherwise): only the request that completes the batch
    /// wakes the syncer, not every request on the way there.
    pub(crate) gather_target: AtomicU64,
    /// Whether the syncer is gathering or syncing a batch.
    pub(crate) busy: AtomicBool,
    /// Appends the syncer's last batch covered.
    pub(crate) last_batch: AtomicU64,
    pub(crate) io_backend: IoBackend,
    pub(crate) io_fallback: Option<String>,
    /// The syncer thread, started when a stream first needs it (see
    /// [`ensure_running`](SyncerShared::ensure_running)).
    thread: Mutex<SyncerThread>,
    /// Whether `thread` has started (a lock-free check for the hot path).
    started: AtomicBool,
}

/// The syncer thread's life: a store whose streams are only read, or
/// written by one `Sync` appender at a time (which syncs in its own
/// thread), never starts it.
enum SyncerThread {
    NotStarted(SyncEngine),
    Running(JoinHandle<()>),
    Stopped,
}

impl SyncerShared {
    /// Wake the syncer for a queued request, unless it is gathering a batch
    /// that is not yet complete.
    pub(crate) fn nudge(&self) {
        let target = self.gather_target.load(Ordering::Acquire);
        if target == 0 || self.waiting.load(Ordering::Acquire) >= target {
            self.wake.notify_one();
        }
    }

    /// Whether the one append waiting for a sync is the caller's, the
    /// syncer is not at work, its last batch was a lone append too (so no
    /// other appenders are about to come back), and no sweep is due (which
    /// the syncer must fold into the next sync).
    pub(crate) fn idle_but_for_one(&self) -> bool {
        !self.busy.load(Ordering::Acquire)
            && self.waiting.load(Ordering::Acquire) <= 1
            && self.last_batch.load(Ordering::Acquire) <= 1
            && !self.sweep_due()
    }

    /// Whether the streams with unsynced records are due for a sync.
    pub(crate) fn sweep_due(&self) -> bool {
        self.clock.now_us() >= self.next_sweep_us.load(Ordering::Acquire)
    }

    /// How long until the next sweep is due.
    fn until_sweep(&self) -> Duration {
        let due = self.next_sweep_us.load(Ordering::Acquire);
        Duration::from_micros(due.saturating_sub(self.clock.now_us()))
    }

    /// Start the syncer thread unless it runs (or has stopped). Called
    /// before anything relies on it: a sync request, and a `Buffered`
    /// record (which a sweep must make durable).
    pub(crate) fn ensure_running(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut thread = self.thread.lock();
        if self.queue.lock().shutdown {
            return;
        }
        match std::mem::replace(&mut *thread, SyncerThread::Stopped) {
            SyncerThread::NotStarted(engine) => {
                let runner = self.clone();
                *thread = SyncerThread::Running(thread::spawn(move || runner.run(engine)));
                self.started.store(true, Ordering::Release);
            }
            other => *thread = other,
        }
    }

    /// Queue a sync of `log`; `false` if the syncer is shutting down and
    /// the caller must sync itself.
    pub(crate) fn request(self: &Arc<Self>, log: Arc<dyn Syncable>) -> bool {
        self.ensure_running();
        let mut queue = self.queue.lock();
        if queue.shutdown {
            return false;
        }
        queue.requests.push(log);
        drop(queue);
        self.nudge();
        true
    }

    /// The syncer's loop. Each batch syncs the streams that asked, and,
    /// once a sweep is due, every stream with unsynced records, whatever
    /// else is queued: so a `Buffered` record written at time t is durable
    /// by t + `sweep_period_us` + the syncs of two batches (the one under
    /// way, then the sweep), however busy other streams keep the syncer.
    /// The period is half of `sync_interval_us`, so that bound stays within
    /// the interval while a batch syncs in under a quarter of it.
    fn run(&self, mut engine: SyncEngine) {
        let mut gather = Gather::default();
        loop {
            let batch = {
                let mut queue = self.queue.lock();
                while queue.requests.is_empty() && !queue.shutdown && !self.sweep_due() {
                    (queue, _) = self.wake.wait_timeout(queue, self.until_sweep());
                }
                self.busy.store(true, Ordering::Release);
                queue = gather.wait(self, queue);
                let mut batch = std::mem::take(&mut queue.requests);
                if self.sweep_due() || (batch.is_empty() && queue.shutdown) {
                    let now = self.clock.now_us();
                    self.next_sweep_us
                        .store(now + self.sweep_period_us, Ordering::Release);
                    queue.registry.retain(|w| w.strong_count() > 0);
                    batch.extend(
                        queue
                            .registry
                            .iter()
                            .filter_map(Weak::upgrade)
                            .filter(|l| l.needs_sync()),
                    );
                }
                if batch.is_empty() && queue.shutdown {
                    return;
                }
                batch
            };
            let requests = self.waiting.swap(0, Ordering::AcqRel);
            self.last_batch.store(requests, Ordering::Release);
            let started = gather.clock();
            let mut logs: Vec<Arc<dyn Syncable>> = Vec::with_capacity(batch.len());
            for log in batch {
                if !logs
                    .iter()
                    .any(|l| std::ptr::addr_eq(Arc::as_ptr(l), Arc::as_ptr(&log)))
                {
                    logs.push(log);
                }
            }
            let targets: Vec<SyncTarget> = logs.iter().map(|l| l.begin_sync()).collect();
            let files: Vec<Arc<dyn BackendFile>> = targets.iter().map(|t| t.file.clone()).collect();
            self.counters
                .fsyncs
                .fetch_add(files.len() as u64, Ordering::Relaxed);
            let results = engine.sync_all(&files);
            // Each stream is acknowledged by its own file's sync, and by
            // nothing else: a missing answer would leave its waiters hung.
            assert_eq!(results.len(), files.len(), "one sync result per file");
            for ((log, target), result) in logs.iter().zip(&targets).zip(results) {
                log.end_sync(target, result);
            }
            if let Some(started) = started {
                self.counters
                    .fsync_us
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            gather.learn(requests, files.len(), started);
            self.busy.store(false, Ordering::Release);
        }
    }
}

/// Adaptive batching. Right after a sync wakes its waiters, the first of
/// them to append again would otherwise trigger the next sync alone while
/// the others are still waking up. So when the last sync covered more
/// requests than are waiting now, the syncer waits for them to arrive,
/// for at most half of a recent sync's duration. A lone writer (last batch
/// of one) never waits, nor do batches of about one append per file.
#[derive(Debug, Default)]
struct Gather {
    /// Requests the last sync covered.
    expected: u64,
    /// How long a recent sync took.
    sync_time: Duration,
}

impl Gather {
    #[cfg(not(loom))]
    fn clock(&self) -> Option<std::time::Instant> {
        Some(std::time::Instant::now())
    }

    /// loom has no clock: the model checks the protocol without gathering.
    #[cfg(loom)]
    fn clock(&self) -> Option<std::time::Instant> {
        None
    }

    fn wait<'a>(
        &self,
        shared: &SyncerShared,
        mut queue: MutexGuard<'a, SyncQueue>,
    ) -> MutexGuard<'a, SyncQueue> {
        let Some(start) = self.clock() else {
            return queue;
        };
        if queue.requests.is_empty() || queue.shutdown {
            return queue;
        }
        let deadline = start + self.sync_time / 2;
        shared.gather_target.store(self.expected, Ordering::Release);
        while shared.waiting.load(Ordering::Acquire) < self.expected && !queue.shutdown {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            (queue, _) = shared.wake.wait_timeout(queue, deadline - now);
        }
        shared.gather_target.store(0, Ordering::Release);
        queue
    }

    fn learn(&mut self, requests: u64, files: usize, started: Option<std::time::Instant>) {
        // Waiting pays when the appends share their files' syncs. With about
        // one append per file (many streams, a writer each), every file
        // costs a sync of its own however the batch is cut, and waiting only
        // leaves the disk idle while the next appends are ready.
        self.expected = if requests >= 2 * files as u64 {
            requests
        } else {
            0
        };
        if let Some(started) = started {
            let took = started.elapsed();
            // A moving estimate: one slow sync should not stretch every wait.
            self.sync_time = (self.sync_time * 3 + took) / 4;
        }
    }
}

/// The store's syncer; dropping the last handle stops and joins its thread
/// after it has answered every request.
pub(crate) struct Syncer {
    pub(crate) shared: Arc<SyncerShared>,
}

impl Syncer {
    pub fn start(interval: Duration, backend: IoBackend, scope: SyncScope) -> Syncer {
        let (engine, io_fallback) = SyncEngine::new(backend, scope);
        let shared = Arc::new(SyncerShared {
            queue: Mutex::new(SyncQueue {
                requests: Vec::new(),
                registry: Vec::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
            poison: Arc::new(Poison::default()),
            clock: Clock::new(),
            sweep_period_us: (interval.as_micros() as u64 / 2).max(1),
            next_sweep_us: AtomicU64::new((interval.as_micros() as u64 / 2).max(1)),
            counters: Counters::default(),
            waiting: AtomicU64::new(0),
            gather_target: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            last_batch: AtomicU64::new(0),
            io_backend: engine.backend(),
            io_fallback,
            thread: Mutex::new(SyncerThread::NotStarted(engine)),
            started: AtomicBool::new(false),
        });
        Syncer { shared }
    }
}

impl Syncer {
    /// Move the model's clock forward and let the syncer see it (loom has
    /// no time of its own).
    #[cfg(all(loom, test))]
    pub(crate) fn advance_clock(&self, by: Duration) {
        let queue = self.shared.queue.lock();
        self.shared.clock.advance_us(by.as_micros() as u64);
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// What the store's writers and syncer have done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            io_backend: self.shared.io_backend,
            io_fallback: self.shared.io_fallback.clone(),
            writes: c.writes.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_us: c.fsync_us.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Under the thread lock, so that no thread starts after this.
        let thread = {
            let mut thread = self.shared.thread.lock();
            self.shared.queue.lock().shutdown = true;
            std::mem::replace(&mut *thread, SyncerThread::Stopped)
        };
        self.shared.wake.notify_one();
        if let SyncerThread::Running(thread) = thread {
            let _ = thread.join();
        }
    }
}
