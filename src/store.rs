//! [`Store`]: a directory of named streams with one writer at a time.
//!
//! ```text
//! <dir>/
//!   LOCK                       held (flock) by the one writing process
//!   streams/<name>/            one folder per stream
//!     <first_seq:020>.seg      segment files
//!     <first_seq:020>.idx      their sparse indexes (derived, rebuildable)
//!     quarantine/              bytes recovery cut, kept for inspection
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{io_err, Error, Result};
use crate::format::name;
use crate::io::backend::{Backend, SharedLock, StdBackend};
use crate::log::commit::syncer::{Stats, Syncer};
use crate::log::map_cache::MapCache;
use crate::log::quarantine::Cut;
use crate::log::recovery::recover_stream;
use crate::oplog::merge::Merge;
use crate::options::Options;
use crate::stream::Stream;

/// What a writable open holds: the writer lock, the folders made durable,
/// and the store's syncer thread.
fn take_writer(
    backend: &dyn Backend,
    dir: &Path,
    opts: &Options,
) -> Result<(Arc<Syncer>, Arc<SharedLock>)> {
    let streams_dir = dir.join(STREAMS_DIR);
    backend
        .create_dir_all(&streams_dir)
        .map_err(io_err("create", &streams_dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let Some(guard) = backend
        .try_lock(&lock_path)
        .map_err(io_err("lock", &lock_path))?
    else {
        return Err(Error::Locked { path: lock_path });
    };
    // Make the folders' entries durable: a segment that survives a
    // power cut must be reachable from the store's parent directory.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for created in [dir, parent] {
        backend
            .sync_dir(created)
            .map_err(io_err("fsync directory", created))?;
    }
    let syncer = Arc::new(Syncer::start(
        Duration::from_micros(opts.sync_interval_us),
        opts.io_backend,
        opts.sync_scope,
    ));
    Ok((syncer, Arc::new(SharedLock::new(Some(guard)))))
}

fn is_empty_dir(backend: &dyn Backend, dir: &Path) -> bool {
    backend.list_dir(dir).is_ok_and(|names| names.is_empty())
}

/// Name of the writer lock file in a store directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the folder holding one folder per stream.
pub const STREAMS_DIR: &str = "streams";

/// What open found and did while recovering the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Streams opened.
    pub streams: usize,
    /// Bytes cut from logs (torn tails, interrupted segment creations,
    /// repairs), each kept in its stream's `quarantine/` folder.
    pub cuts: Vec<Cut>,
    /// Index files rebuilt from their segments because they were missing,
    /// stale or damaged.
    pub indexes_rebuilt: u64,
}

/// An open lamplog store.
///
/// Cheap to clone and `Send + Sync`. The writer lock is held until the
/// store and every [`Stream`] handle from it are dropped, or until
/// [`close`](Store::close).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use lamplog::{Durability, Options, Store};
/// let store = Store::open(dir.path(), Options::default())?;
/// let ops = store.stream("agent-001")?;
/// ops.append(br#"{"op":"write","path":"src/main.rs","blob":"a1b2"}"#, Durability::Sync)?;
/// for record in ops.iter() {
///     let record = record?;
///     println!("{} {}", record.seq(), std::str::from_utf8(record.payload()).unwrap());
/// }
/// # Ok::<(), lamplog::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    dir: PathBuf,
    opts: Options,
    /// The segment maps every stream shares (map_cache.rs).
    cache: Arc<MapCache>,
    backend: Arc<dyn Backend>,
    /// The syncer thread and the writer lock; `None` for a read-only store.
    writing: Option<(Arc<Syncer>, Arc<SharedLock>)>,
    /// One slot per stream name. The map's lock is held only to find a
    /// slot; a stream is opened under its own slot's lock, so a slow open
    /// (a directory fsync, a recovery) stalls only callers of that name.
    streams: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Set by `close`: no stream is opened or written after it.
    closed: AtomicBool,
    report: RecoveryReport,
}

/// A stream of the store, opened once.
#[derive(Debug, Default)]
struct Slot {
    /// Held while the stream is being opened (and by `close`, to wait for
    /// an open in progress).
    opening: Mutex<()>,
    stream: OnceLock<Stream>,
}

impl Slot {
    fn opened(stream: Stream) -> Arc<Slot> {
        let slot = Slot::default();
        let _ = slot.stream.set(stream);
        Arc::new(slot)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("read_only", &self.inner.opts.read_only)
            .finish()
    }
}

impl Store {
    /// Open (or create) the store in `dir` on the real filesystem.
    ///
    /// Every stream is recovered: segment headers are checked, each stream's
    /// tail is scanned from its last durable index point, and a torn tail is
    /// cut into `quarantine/`. Damaged durable data is
    /// [`Error::Corruption`] unless `opts.recovery` is
    /// [`RecoveryMode::Repair`](crate::RecoveryMode::Repair). A second writer
    /// gets [`Error::Locked`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Store> {
        let backend = StdBackend::default().mapped_writes(opts.mapped_writes);
        Store::open_on(Arc::new(backend), dir.as_ref(), opts)
    }

    /// [`open`](Store::open) through another file backend: the simulated
    /// disk of [`testing`](crate::testing), or the real filesystem with
    /// faults injected. `opts.mapped_writes` is the backend's to honour
    /// ([`StdBackend::mapped_writes`](crate::testing::StdBackend::mapped_writes)).
    #[cfg(feature = "testing")]
    pub fn open_with(
        backend: Arc<dyn crate::testing::Backend>,
        dir: impl AsRef<Path>,
        opts: Options,
    ) -> Result<Store> {
        Store::open_on(backend, dir.as_ref(), opts)
    }

    fn open_on(backend: Arc<dyn Backend>, dir: &Path, opts: Options) -> Result<Store> {
        opts.validate()?;
        let dir = dir.to_path_buf();
        let streams_dir = dir.join(STREAMS_DIR);
        let writing = match opts.read_only {
            true => None,
            false => Some(take_writer(&*backend, &dir, &opts)?),
        };
        let names = match backend.list_dir(&streams_dir) {
            Ok(names) => names,
            Err(e) if opts.read_only && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("list", &streams_dir)(e)),
        };
        let cache = MapCache::new(backend.clone(), opts.open_segments_max);
        let mut report = RecoveryReport::default();
        let mut streams = BTreeMap::new();
        for stream_name in names.into_iter().filter(|n| name::validate(n).is_ok()) {
            let stream_dir = streams_dir.join(&stream_name);
            if writing.is_some() {
                crate::oplog::purge::finish_interrupted(&*backend, &stream_dir)?;
            }
            let start = || crate::oplog::archive::log_start(&*backend, &stream_dir);
            let recovered = match recover_stream(&cache, &stream_dir, &stream_name, &opts, &start) {
                Ok(recovered) => recovered,
                // A stray file among the stream folders is not a stream.
                Err(Error::Io { source, .. })
                    if source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if recovered.segments.is_empty() && is_empty_dir(&*backend, &stream_dir) {
                // A creation that failed before the first segment existed:
                // not a stream. (Best effort: a read-only open leaves it.)
                if writing.is_some() {
                    let _ = backend.remove_dir(&stream_dir);
                }
                continue;
            }
            report.streams += 1;
            report.indexes_rebuilt += recovered.indexes_rebuilt;
            report.cuts.extend(recovered.cuts.iter().cloned());
            let stream = Stream::open(
                &cache,
                &stream_name,
                stream_dir,
                &opts,
                recovered,
                writing.clone(),
            )?;
            stream.load_redactions()?;
            streams.insert(stream_name, Slot::opened(stream));
        }
        Ok(Store {
            inner: Arc::new(StoreInner {
                dir,
                opts,
                cache,
                backend,
                writing,
                streams: Mutex::new(streams),
                closed: AtomicBool::new(false),
                report,
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery found and did when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The stream called `name`, created on first use.
    ///
    /// Names are `[A-Za-z0-9._-]`, 1 to 128 characters, not starting with
    /// `.`; anything else is [`Error::InvalidName`]. A read-only store
    /// returns [`Error::StreamNotFound`] for a stream it does not have.
    pub fn stream(&self, stream_name: &str) -> Result<Stream> {
        name::validate(stream_name)?;
        let slot = {
            let mut streams = self.inner.streams.lock();
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            match streams.get(stream_name) {
                Some(slot) => slot.clone(),
                None if self.inner.writing.is_none() => {
                    return Err(Error::StreamNotFound {
                        name: stream_name.to_string(),
                    })
                }
                None => streams.entry(stream_name.to_string()).or_default().clone(),
            }
        };
        if let Some(stream) = slot.stream.get() {
            return Ok(stream.clone());
        }
        let _opening = slot.opening.lock();
        if let Some(stream) = slot.stream.get() {
            return Ok(stream.clone());
        }
        // `close` sets the flag before it waits for opens in progress, so a
        // stream opened here is either closed by it or refused here.
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let stream = self.create(stream_name)?;
        let _ = slot.stream.set(stream.clone());
        Ok(stream)
    }

    /// Create (or finish creating) the stream `stream_name` of a writable store.
    fn create(&self, stream_name: &str) -> Result<Stream> {
        let streams_dir = self.inner.dir.join(STREAMS_DIR);
        let stream_dir = streams_dir.join(stream_name);
        let backend = &self.inner.backend;
        backend
            .create_dir_all(&stream_dir)
            .map_err(io_err("create", &stream_dir))?;
        backend
            .sync_dir(&streams_dir)
            .map_err(io_err("fsync directory", &streams_dir))?;
        // The folder may hold files from an earlier, interrupted creation.
        let opts = &self.inner.opts;
        crate::oplog::purge::finish_interrupted(&**backend, &stream_dir)?;
        let start = || crate::oplog::archive::log_start(&**backend, &stream_dir);
        let opened = recover_stream(&self.inner.cache, &stream_dir, stream_name, opts, &start)
            .and_then(|recovered| {
                let writing = self.inner.writing.clone();
                let dir = stream_dir.clone();
                Stream::open(
                    &self.inner.cache,
                    stream_name,
                    dir,
                    opts,
                    recovered,
                    writing,
                )
            });
        if opened.is_err() && is_empty_dir(&**backend, &stream_dir) {
            // Out of space or descriptors before the first segment existed:
            // leave no folder that a later open could take for a stream.
            let _ = backend.remove_dir(&stream_dir);
        }
        opened
    }

    /// The streams opened so far.
    fn opened(&self) -> Vec<Stream> {
        self.inner
            .streams
            .lock()
            .values()
            .filter_map(|slot| slot.stream.get().cloned())
            .collect()
    }

    /// Counters of the writes and syncs issued since open (zero for a
    /// read-only store).
    pub fn stats(&self) -> Stats {
        self.inner
            .writing
            .as_ref()
            .map_or_else(Stats::default, |(syncer, _)| syncer.stats())
    }

    /// Several streams read as one, in a deterministic causal order:
    /// Lamport timestamp, then stream name, then seq. A k-way merge: it
    /// holds one record per stream, whatever the streams' length.
    pub fn merge(&self, streams: &[&str]) -> Result<Merge> {
        let sources = self.sources(streams)?;
        Ok(Merge::new(
            sources.iter().map(|(n, s)| (n.clone(), s.iter())).collect(),
        ))
    }

    /// The named streams, each once, for a merge.
    fn sources(&self, streams: &[&str]) -> Result<Vec<(Arc<str>, Stream)>> {
        let mut sources = Vec::with_capacity(streams.len());
        for name in streams {
            if sources.iter().any(|(n, _): &(Arc<str>, _)| &**n == *name) {
                continue;
            }
            sources.push((Arc::<str>::from(*name), self.existing(name)?));
        }
        Ok(sources)
    }

    /// Append the merge of `sources` to `target` (created on first use), in
    /// merge order, each record stamped after its source record, so that
    /// the target's clock ends after every source's. Returns the number of
    /// records written; they are durable when this returns.
    ///
    /// All or nothing: everything a write could refuse (a record over
    /// `record_bytes_max`, a Lamport past the bound, a damaged or archived
    /// source record) is checked before the first record is written, and a
    /// merge that fits in one segment is written as one atomic batch, which
    /// a crash keeps whole or drops whole. A larger merge is written in
    /// atomic batches of up to a segment each: a crash or I/O failure can
    /// then keep a prefix of whole batches.
    pub fn merge_into(&self, sources: &[&str], target: &str) -> Result<u64> {
        if sources.contains(&target) {
            return Err(Error::MergeTargetIsSource {
                name: target.to_string(),
            });
        }
        let sources = self.sources(sources)?;
        let target = self.stream(target)?;
        let room =
            self.inner.opts.segment_bytes_max - crate::format::segment::SEGMENT_HEADER_LEN as u64;
        crate::oplog::merge::merge_into(&sources, &target, room)
    }

    /// A stream that exists (never created by the call).
    fn existing(&self, stream_name: &str) -> Result<Stream> {
        name::validate(stream_name)?;
        let slot = self.inner.streams.lock().get(stream_name).cloned();
        slot.and_then(|slot| slot.stream.get().cloned())
            .ok_or_else(|| Error::StreamNotFound {
                name: stream_name.to_string(),
            })
    }

    /// The names of all streams, sorted.
    pub fn streams(&self) -> Vec<String> {
        self.inner
            .streams
            .lock()
            .iter()
            .filter(|(_, slot)| slot.stream.get().is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Make every record appended to any stream durable.
    pub fn sync(&self) -> Result<()> {
        if self.inner.writing.is_none() {
            return Ok(());
        }
        self.opened().iter().try_for_each(Stream::sync)
    }

    /// Close the store: sync every stream, mark each log as cleanly closed,
    /// and release the writer lock, so the next writer may open the store
    /// at once. This closes every handle of the store, clones included:
    /// writes and [`stream`](Store::stream) then fail with
    /// [`Error::Closed`], reads go on, and subscriptions end once they have
    /// yielded every durable record. Dropping the last handle does the
    /// same but cannot report an error.
    ///
    /// Every stream is closed even if one fails; the first error is returned.
    pub fn close(self) -> Result<()> {
        let slots: Vec<Arc<Slot>> = {
            let streams = self.inner.streams.lock();
            self.inner.closed.store(true, Ordering::Release);
            streams.values().cloned().collect()
        };
        let mut result = Ok(());
        for slot in slots {
            let _opening = slot.opening.lock();
            if let Some(stream) = slot.stream.get() {
                let closed = stream.close();
                result = result.and(closed);
            }
        }
        // Every log refuses writes now (even one whose close failed), so
        // no handle of this store can write after the next writer opens.
        if let Some((_, lock)) = &self.inner.writing {
            lock.lock().take();
        }
        result
    }

    /// Drop every handle without syncing, as a crash would leave the store
    /// (the operating system still writes back what was written). For tests.
    #[doc(hidden)]
    pub fn abandon(self) {
        self.opened().iter().for_each(Stream::abandon);
    }
}
