//! [`Stream`]: one named, append-only log of JSON records.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::io::backend::{Backend, SharedLock};
use crate::log::commit::pending::Pending;
use crate::log::commit::syncer::Syncer;
use crate::log::commit::StreamLog;
use crate::log::map_cache::MapCache;
use crate::log::reader::{From, Iter, Record};
use crate::log::recovery::Recovered;
use crate::log::segment::SegmentList;
use crate::log::writer::{create_first_segment, Appended, Encoder, SegmentIo, WriterLimits};
use crate::options::{Durability, Options};

/// A handle to one stream of a [`Store`](crate::Store).
///
/// Cheap to clone, `Send + Sync`: any number of threads may append and read
/// through clones of the same handle.
#[derive(Clone)]
pub struct Stream {
    inner: Arc<StreamInner>,
}

struct StreamInner {
    name: String,
    dir: PathBuf,
    segments: Arc<SegmentList>,
    /// The write side; `None` for a read-only store.
    writer: Option<Writer>,
    record_bytes_max: usize,
    backend: Arc<dyn Backend>,
    /// The store's views and options, for a read-only handle's refresh.
    cache: Arc<MapCache>,
    opts: Options,
    /// What features built on the stream keep per stream (the latest
    /// checkpoint, the op ids), each created on its first use: the
    /// stream's core knows none of them (see `extension`).
    extensions: parking_lot::Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
}

/// The write side of a stream, opened on its first write: a stream that is
/// never written holds no descriptor, so a store of tens of thousands of
/// streams opens under a small descriptor limit.
struct Writer {
    log: OnceLock<Arc<StreamLog>>,
    /// Held while the log is built, and by `close`.
    opening: parking_lot::Mutex<()>,
    closed: AtomicBool,
    cache: Arc<MapCache>,
    limits: WriterLimits,
    /// Keeps the store's syncer running as long as any handle can write.
    syncer: Arc<Syncer>,
    /// Keeps the store's writer lock as long as any handle can write
    /// (unless the store is closed, which releases it).
    _lock: Arc<SharedLock>,
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        // Best effort: a caller who needs the outcome calls `Store::close`.
        if let Some(log) = self.writer.as_ref().and_then(|w| w.log.get()) {
            let _ = log.close();
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.inner.name)
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

/// Check that `payload` is one JSON value and within the size limit.
fn validate_payload(payload: &[u8], record_bytes_max: usize) -> Result<()> {
    if payload.len() > record_bytes_max {
        return Err(Error::RecordTooLarge {
            len: payload.len(),
            max: record_bytes_max,
        });
    }
    // JSON text is UTF-8 (RFC 8259), and serde_json does not check the
    // strings it skips: check the whole payload first.
    if let Err(e) = std::str::from_utf8(payload) {
        let before = &payload[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = before.len() - line_start + 1;
        return Err(Error::InvalidJson {
            line,
            column,
            message: format!("invalid UTF-8 at line {line} column {column}"),
        });
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(payload)
        .map(|_| ())
        .map_err(|e| Error::invalid_json(&e, ""))
}

/// The size of a stream's live log, from [`Stream::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Usage {
    /// Segment files.
    pub segments: u64,
    /// Bytes of segment headers and frames (a segment's preallocated
    /// space beyond its last frame is not counted).
    pub bytes: u64,
}

impl Stream {
    /// Wrap a recovered stream; `writing` is `None` for a read-only store.
    /// A writable stream without segments (a new one) gets its first.
    pub(crate) fn open(
        cache: &Arc<MapCache>,
        name: &str,
        dir: PathBuf,
        opts: &Options,
        recovered: Recovered,
        writing: Option<(Arc<Syncer>, Arc<SharedLock>)>,
    ) -> Result<Stream> {
        let limits = WriterLimits {
            segment_bytes_max: opts.segment_bytes_max,
            index_interval_bytes: opts.index_interval_bytes,
            batch_bytes_max: opts.batch_bytes_max,
        };
        let segments = Arc::new(SegmentList::new(
            name,
            dir.join(crate::format::segment::ARCHIVE_DIR),
            recovered.segments,
            recovered.purged_before,
        ));
        if writing.is_some() && segments.last().is_none() {
            segments.push(create_first_segment(cache, &dir, name, limits)?);
        }
        let writer = writing.map(|(syncer, lock)| Writer {
            log: OnceLock::new(),
            opening: parking_lot::Mutex::new(()),
            closed: AtomicBool::new(false),
            cache: cache.clone(),
            limits,
            syncer,
            _lock: lock,
        });
        Ok(Stream {
            inner: Arc::new(StreamInner {
                name: name.to_string(),
                dir,
                segments,
                writer,
                record_bytes_max: opts.record_bytes_max,
                backend: cache.backend().clone(),
                cache: cache.clone(),
                opts: opts.clone(),
                extensions: parking_lot::Mutex::new(Vec::new()),
            }),
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The directory holding the stream's segments.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// The size of the stream's live log (archived segments excluded).
    pub fn usage(&self) -> Usage {
        let segments = self.segments().all();
        Usage {
            segments: segments.len() as u64,
            bytes: segments.iter().map(|s| s.end()).sum(),
        }
    }

    pub(crate) fn record_bytes_max(&self) -> usize {
        self.inner.record_bytes_max
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub(crate) fn segments(&self) -> &Arc<SegmentList> {
        &self.inner.segments
    }

    /// This stream's state of type `T`, created on first use: how a
    /// feature keeps per-stream state (a cache, a lock) without the
    /// stream's core knowing it. One value per type.
    pub(crate) fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut all = self.inner.extensions.lock();
        if let Some(found) = all.iter().find(|e| e.is::<T>()) {
            return found.clone().downcast::<T>().expect("checked by is::<T>");
        }
        let created = Arc::new(T::default());
        all.push(created.clone());
        created
    }

    pub(crate) fn log(&self) -> Result<&Arc<StreamLog>> {
        let writer = self.inner.writer.as_ref().ok_or(Error::ReadOnly)?;
        if let Some(log) = writer.log.get() {
            return Ok(log);
        }
        let _opening = writer.opening.lock();
        if let Some(log) = writer.log.get() {
            return Ok(log);
        }
        if writer.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let tail = self
            .inner
            .segments
            .last()
            .expect("a writable stream has a segment from its creation on");
        let io = SegmentIo::resume(
            writer.cache.clone(),
            self.inner.dir.clone(),
            writer.limits,
            self.inner.segments.clone(),
            tail,
        )?;
        let encoder = Encoder::new(writer.limits, io.active());
        let log = StreamLog::new(encoder, io, &writer.syncer, writer.limits);
        Ok(writer.log.get_or_init(|| log))
    }

    /// Whether writes may go through this handle (a writable store, not
    /// closed), without opening the writer.
    pub(crate) fn is_writable(&self) -> bool {
        self.check_writable().is_ok()
    }

    /// `ReadOnly` or `Closed` unless writes may go through this handle,
    /// without opening the writer (for writes to files beside the log).
    pub(crate) fn check_writable(&self) -> Result<()> {
        let writer = self.inner.writer.as_ref().ok_or(Error::ReadOnly)?;
        match writer.closed.load(Ordering::Acquire) {
            true => Err(Error::Closed),
            false => Ok(()),
        }
    }

    /// Append one JSON value.
    ///
    /// The payload is validated first: invalid JSON is
    /// [`Error::InvalidJson`], a payload over `record_bytes_max` is
    /// [`Error::RecordTooLarge`], and in both cases nothing is written. With
    /// [`Durability::Sync`] the call returns once the record and every
    /// earlier one of this stream are on disk.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
    /// let stream = store.stream("session-1")?;
    /// let a = stream.append(br#"{"op":"write","path":"src/main.rs"}"#, lamplog::Durability::Sync)?;
    /// assert_eq!((a.seq, a.lamport), (1, 1));
    /// # Ok::<(), lamplog::Error>(())
    /// ```
    pub fn append(&self, payload: impl AsRef<[u8]>, durability: Durability) -> Result<Appended> {
        self.append_observed(payload, 0, durability)
    }

    /// Append one JSON value that took in another actor's op stamped
    /// `observed`: it is stamped `max(clock, observed) + 1`, so this stream
    /// continues after both (the Lamport merge rule). Otherwise like
    /// [`append`](Stream::append). A stamp past
    /// [`format::LAMPORT_MAX`](crate::format::LAMPORT_MAX) is
    /// [`Error::LamportOutOfRange`], with nothing written.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
    /// let stream = store.stream("agent-b")?;
    /// stream.append(b"{}", lamplog::Durability::Buffered)?;
    /// let a = stream.append_observed(br#"{"saw":"agent-a@41"}"#, 41, lamplog::Durability::Sync)?;
    /// assert_eq!((a.seq, a.lamport), (2, 42));
    /// # Ok::<(), lamplog::Error>(())
    /// ```
    pub fn append_observed(
        &self,
        payload: impl AsRef<[u8]>,
        observed_lamport: u64,
        durability: Durability,
    ) -> Result<Appended> {
        let payload = payload.as_ref();
        let log = self.log()?;
        validate_payload(payload, self.inner.record_bytes_max)?;
        log.append(payload, observed_lamport, durability == Durability::Sync)
    }

    /// Append one JSON value durably without waiting: the call frames and
    /// queues the record (and writes it, unless another thread is writing)
    /// and returns its [`Pending`] at once, which completes when a sync
    /// covers the record: [`Pending::wait`] blocks for it, and `Pending` is
    /// a `Future` for async hosts (no runtime needed: the sync machinery
    /// wakes the task). One thread can keep thousands of appends in flight,
    /// which the syncer covers with few fsyncs. Validation is
    /// [`append`](Stream::append)'s.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
    /// let stream = store.stream("s")?;
    /// let pending: Vec<_> = (0..100)
    ///     .map(|i| stream.append_pending(format!("{{\"i\":{i}}}")))
    ///     .collect::<Result<_, _>>()?;
    /// for p in &pending {
    ///     p.wait()?; // on disk, in seq order
    /// }
    /// assert_eq!(stream.durable_seq()?, 100);
    /// # Ok::<(), lamplog::Error>(())
    /// ```
    pub fn append_pending(&self, payload: impl AsRef<[u8]>) -> Result<Pending> {
        let payload = payload.as_ref();
        let log = self.log()?;
        validate_payload(payload, self.inner.record_bytes_max)?;
        log.append_pending(payload, 0)
    }

    /// Append several JSON values as one atomic batch: they get contiguous
    /// seqs, are written together, and survive a crash all or not at all.
    ///
    /// Every payload is validated first; one invalid payload fails the
    /// whole batch with nothing written. The batch must fit in one segment
    /// ([`Error::BatchTooLarge`] otherwise). One call writes the batch with
    /// one `pwrite` (and, with [`Durability::Sync`], one `fdatasync`), which
    /// makes it the fast way to ingest many records from one thread.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
    /// let stream = store.stream("s")?;
    /// let done = stream.append_batch([&b"{\"op\":\"stage\"}"[..], b"{\"op\":\"commit\"}"], lamplog::Durability::Sync)?;
    /// assert_eq!(done.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);
    /// # Ok::<(), lamplog::Error>(())
    /// ```
    pub fn append_batch<P: AsRef<[u8]>>(
        &self,
        payloads: impl IntoIterator<Item = P>,
        durability: Durability,
    ) -> Result<Vec<Appended>> {
        let log = self.log()?;
        let payloads: Vec<P> = payloads.into_iter().collect();
        let slices: Vec<&[u8]> = payloads.iter().map(AsRef::as_ref).collect();
        for (i, payload) in slices.iter().enumerate() {
            validate_payload(payload, self.inner.record_bytes_max).map_err(|e| match e {
                Error::InvalidJson {
                    line,
                    column,
                    message,
                } => Error::InvalidJson {
                    line,
                    column,
                    message: format!("batch record {i}: {message}"),
                },
                other => other,
            })?;
        }
        if slices.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<(&[u8], u64)> = slices.iter().map(|p| (*p, 0)).collect();
        log.append_batch(&records, durability == Durability::Sync)
    }

    /// Make every record appended so far durable.
    pub fn sync(&self) -> Result<()> {
        match self.opened_log() {
            Some(log) => log.sync(),
            // Nothing was written since open (recovery left the log
            // durable): no need to open the writer's files for it.
            None if self.is_writable() => Ok(()),
            None => self.log().map(drop),
        }
    }

    /// Sync, mark the log as cleanly closed, and refuse later appends with
    /// [`Error::Closed`] (the store's `close` and the last handle's drop
    /// call this).
    pub(crate) fn close(&self) -> Result<()> {
        let Some(writer) = &self.inner.writer else {
            return Ok(());
        };
        let _opening = writer.opening.lock();
        writer.closed.store(true, Ordering::Release);
        writer.log.get().map_or(Ok(()), |log| log.close())
    }

    pub(crate) fn abandon(&self) {
        if let Some(writer) = &self.inner.writer {
            let _opening = writer.opening.lock();
            writer.closed.store(true, Ordering::Release);
            if let Some(log) = writer.log.get() {
                log.abandon();
            }
        }
    }

    /// The write side, if this stream was written since it was opened.
    /// The store's views and options (to recover this stream again).
    pub(crate) fn store_parts(&self) -> (&Arc<MapCache>, &Options) {
        (&self.inner.cache, &self.inner.opts)
    }

    pub(crate) fn opened_log(&self) -> Option<&Arc<StreamLog>> {
        self.inner.writer.as_ref().and_then(|w| w.log.get())
    }

    /// Seq of the last record (0 for an empty stream).
    pub fn last_seq(&self) -> u64 {
        match self.opened_log() {
            Some(log) => log.last_seq(),
            None => self
                .inner
                .segments
                .last()
                .map_or(0, |s| s.published().last_seq),
        }
    }

    /// Lamport timestamp of the last record (0 for an empty stream).
    pub fn last_lamport(&self) -> u64 {
        match self.opened_log() {
            Some(log) => log.last_lamport(),
            None => self
                .inner
                .segments
                .last()
                .map_or(0, |s| s.published().last_lamport),
        }
    }

    /// Every record up to `last_seq` (at most the last one appended).
    pub(crate) fn iter_through(&self, last_seq: u64) -> Iter {
        Iter::new(
            self.inner.segments.clone(),
            last_seq.min(self.last_seq()),
            From::Start,
        )
    }

    fn iter_with(&self, from: From) -> Iter {
        Iter::new(self.inner.segments.clone(), self.last_seq(), from)
    }

    /// Every record, oldest first, up to the last one appended before this call.
    pub fn iter(&self) -> Iter {
        self.iter_with(From::Start)
    }

    /// Records from `seq` on. The seek goes through the sparse index, so its
    /// cost does not grow with the records before `seq`.
    ///
    /// A seek into records moved out by [`archive_before`](Stream::archive_before)
    /// yields [`Error::Archived`]. Seqs start at 1: `iter_from_seq(0)` is `iter()`.
    pub fn iter_from_seq(&self, seq: u64) -> Iter {
        self.iter_with(From::Seq(seq))
    }

    /// Records from the first one whose Lamport timestamp is at least
    /// `lamport`; [`Error::Archived`] if records before the live log may
    /// hold it.
    pub fn iter_from_lamport(&self, lamport: u64) -> Iter {
        self.iter_with(From::Lamport(lamport))
    }

    /// The record with sequence number `seq`, if the stream has it
    /// ([`Error::Archived`] if it was archived).
    pub fn get(&self, seq: u64) -> Result<Option<Record>> {
        if seq == 0 || seq > self.last_seq() {
            return Ok(None);
        }
        // Every seq up to the last is in the live log unless it was
        // archived or purged (the iterator says so) or a repair lost it
        // (the iterator skips it).
        match self.iter_from_seq(seq).next().transpose()? {
            Some(record) if record.seq() == seq => Ok(Some(record)),
            _ => Err(Error::Lost {
                stream: self.name().to_string(),
                seq,
            }),
        }
    }
}
