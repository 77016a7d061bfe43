//! I/O failures in the write path: a failed fdatasync poisons the store, a
//! failed write fails its batch, nothing unacknowledged is reported durable,
//! nothing acknowledged is lost, and reopening recovers.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use lamplog::backend::{Backend, BackendFile, LockGuard, Map, OpenMode, StdBackend};
use lamplog::{Durability, Error, Options, Store};

/// The real filesystem, with switches that make segment writes or syncs fail.
#[derive(Debug, Default)]
struct Faulty {
    fail_sync: AtomicBool,
    fail_write: AtomicBool,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn BackendFile>,
    faults: Arc<Faulty>,
    segment: bool,
}

#[derive(Debug)]
struct FaultyBackend(Arc<Faulty>);

impl Backend for FaultyBackend {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdBackend.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdBackend.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        let segment = path.extension().is_some_and(|e| e == "seg");
        Ok(Arc::new(FaultyFile {
            inner: StdBackend.open(path, mode)?,
            faults: self.0.clone(),
            segment,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdBackend.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdBackend.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdBackend.sync_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        StdBackend.try_lock(path)
    }
}

impl BackendFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.segment && self.faults.fail_write.load(Ordering::SeqCst) {
            // A short write: half the bytes land, then the disk is full.
            self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.segment && self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn map(&self, len: u64) -> io::Result<Map> {
        self.inner.map(len)
    }
}

fn faulty_store(root: &Path) -> (Store, Arc<Faulty>) {
    let faults = Arc::new(Faulty::default());
    let store =
        Store::open_with(Arc::new(FaultyBackend(faults.clone())), root, small_opts()).unwrap();
    (store, faults)
}

#[test]
fn a_failed_fdatasync_poisons_the_store_and_reopen_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faults) = faulty_store(dir.path());
    let stream = store.stream("s").unwrap();
    let other = store.stream("other").unwrap();
    fill(&stream, 0..50, Durability::Sync);
    faults.fail_sync.store(true, Ordering::SeqCst);
    // Every waiter of the failing sync gets an error; none is acknowledged.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let stream = stream.clone();
            std::thread::spawn(move || stream.append(payload(1000 + t), Durability::Sync))
        })
        .collect();
    for t in threads {
        match t.join().unwrap() {
            Err(Error::Poisoned { cause }) => assert!(cause.contains("fdatasync"), "{cause}"),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    // Later appends, to any stream of the store, are refused.
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        stream.append(payload(0), Durability::Buffered),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        other.append(payload(0), Durability::Sync),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(stream.sync(), Err(Error::Poisoned { .. })));
    drop((stream, other, store));
    // Reopening recovers from what is on disk: every acknowledged record is there.
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    let records = read_all(&stream);
    assert!(records.len() >= 50);
    for (i, r) in records.iter().take(50).enumerate() {
        assert_eq!(r.payload(), payload(i as u64).as_slice());
    }
    stream.append(payload(1), Durability::Sync).unwrap();
}

#[test]
fn a_failed_fdatasync_of_the_writer_itself_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faulty::default());
    // No interval syncs: the only fdatasync is the one before a roll.
    let opts = Options {
        sync_interval_us: 3_600_000_000,
        ..small_opts()
    };
    let store =
        Store::open_with(Arc::new(FaultyBackend(faults.clone())), dir.path(), opts).unwrap();
    let stream = store.stream("s").unwrap();
    let other = store.stream("other").unwrap();
    fill(&stream, 0..20, Durability::Sync);
    faults.fail_sync.store(true, Ordering::SeqCst);
    // Buffered appends until the segment rolls: its fdatasync fails.
    let failed = (20..1000)
        .map(|i| stream.append(payload(i), Durability::Buffered))
        .find_map(Result::err);
    match failed {
        Some(Error::Poisoned { cause }) => assert!(cause.contains("fdatasync"), "{cause}"),
        other => panic!("expected the roll's fdatasync to fail, got {other:?}"),
    }
    // The kernel may have dropped pages of the failed sync, which a later
    // sync of the same file could report as durable: the whole store stops.
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        other.append(payload(0), Durability::Sync),
        Err(Error::Poisoned { .. })
    ));
    drop((stream, other, store));
    // Reopening recovers a prefix that holds every acknowledged record.
    let store = open(dir.path(), small_opts());
    let records = read_all(&store.stream("s").unwrap());
    assert!(records.len() >= 20, "{} records", records.len());
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.payload(), payload(i as u64).as_slice());
    }
}

#[test]
fn a_failed_write_fails_its_batch_and_the_log_stays_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faults) = faulty_store(dir.path());
    let stream = store.stream("s").unwrap();
    fill(&stream, 0..30, Durability::Sync);
    faults.fail_write.store(true, Ordering::SeqCst);
    match stream.append(payload(30), Durability::Sync) {
        Err(Error::Poisoned { cause }) => assert!(cause.contains("write"), "{cause}"),
        other => panic!("expected a failed append, got {other:?}"),
    }
    faults.fail_write.store(false, Ordering::SeqCst);
    assert!(matches!(
        stream.append(payload(30), Durability::Sync),
        Err(Error::Poisoned { .. })
    ));
    // Readers never see the half-written record.
    assert_holds(&stream, 30);
    drop((stream, store));
    let store = open(dir.path(), small_opts());
    assert_eq!(
        store.recovery_report().cuts.len(),
        1,
        "the partial frame is cut as a torn tail"
    );
    let stream = store.stream("s").unwrap();
    assert_holds(&stream, 30);
    fill(&stream, 30..40, Durability::Sync);
    assert_holds(&stream, 40);
}

#[test]
fn io_uring_backend_syncs_many_streams_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        io_backend: lamplog::IoBackend::IoUring,
        ..small_opts()
    };
    let store = open(dir.path(), opts.clone());
    let stats = store.stats();
    assert!(
        stats.io_backend == lamplog::IoBackend::IoUring || stats.io_fallback.is_some(),
        "{stats:?}"
    );
    let streams: Vec<_> = (0..12)
        .map(|i| store.stream(&format!("s{i}")).unwrap())
        .collect();
    let threads: Vec<_> = streams
        .iter()
        .cloned()
        .map(|s| std::thread::spawn(move || fill(&s, 0..40, Durability::Sync)))
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    drop(streams);
    drop(store);
    let store = open(dir.path(), opts);
    for i in 0..12 {
        assert_holds(&store.stream(&format!("s{i}")).unwrap(), 40);
    }
}
