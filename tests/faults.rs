//! I/O failures in the write path: a failed fdatasync poisons the store, a
//! failed write fails its batch, nothing unacknowledged is reported durable,
//! nothing acknowledged is lost, and reopening recovers.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use lamplog::{Durability, Error, Options, Store};

/// Switches that make segment writes or syncs fail.
#[derive(Debug, Default)]
struct Faulty {
    fail_sync: AtomicBool,
    fail_write: AtomicBool,
}

fn faulty_store(root: &Path) -> (Store, Arc<Faulty>) {
    faulty_store_with(root, small_opts())
}

fn faulty_store_with(root: &Path, opts: Options) -> (Store, Arc<Faulty>) {
    let faults = Arc::new(Faulty::default());
    let is_segment = |p: &Path| p.extension().is_some_and(|e| e == "seg");
    let (on_write, on_sync) = (faults.clone(), faults.clone());
    let hooks = hooked::Hooked {
        // A short write: half the bytes land, then the disk is full.
        write: Some(Box::new(move |path, _| {
            (is_segment(path) && on_write.fail_write.load(Ordering::SeqCst))
                .then(|| io::Error::from_raw_os_error(28))
        })),
        sync_data: Some(Box::new(move |path, _| {
            (is_segment(path) && on_sync.fail_sync.load(Ordering::SeqCst))
                .then(|| io::Error::from_raw_os_error(5))
        })),
        ..Default::default()
    };
    let backend = Arc::new(hooked::HookedBackend(Arc::new(hooks)));
    let store = Store::open_with(backend, root, opts).unwrap();
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
            Err(Error::Poisoned {
                stream: None,
                cause,
                source,
            }) => {
                assert!(cause.contains("fdatasync"), "{cause}");
                // The system's error travels with it, for callers to act on.
                assert_eq!(source.raw_os_error(), Some(5));
            }
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
    // No interval syncs: the only fdatasync is the one before a roll.
    let opts = small_opts().sync_interval_us(3_600_000_000);
    let (store, faults) = faulty_store_with(dir.path(), opts);
    let stream = store.stream("s").unwrap();
    let other = store.stream("other").unwrap();
    fill(&stream, 0..20, Durability::Sync);
    faults.fail_sync.store(true, Ordering::SeqCst);
    // Buffered appends until the segment rolls: its fdatasync fails.
    let failed = (20..1000)
        .map(|i| stream.append(payload(i), Durability::Buffered))
        .find_map(Result::err);
    match failed {
        Some(Error::Poisoned {
            stream: None,
            cause,
            ..
        }) => {
            assert!(cause.contains("fdatasync"), "{cause}")
        }
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
        Err(Error::Poisoned { cause, .. }) => assert!(cause.contains("write"), "{cause}"),
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
    let opts = small_opts().io_backend(lamplog::IoBackend::IoUring);
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

/// Regression (found reviewing issue 9): after a failed fdatasync poisoned
/// the store, the syncer's sweep went on syncing streams with unwritten
/// records, and a retry that "succeeded" (the kernel may have dropped the
/// pages, so a retry can falsely succeed) advanced the durable point:
/// subscribers were then given records as durable that may never reach disk.
#[test]
fn nothing_becomes_durable_after_a_failed_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts().sync_interval_us(5_000);
    let (store, faults) = faulty_store_with(dir.path(), opts);
    let s = store.stream("s").unwrap();
    fill(&s, 0..5, Durability::Sync);
    let mut tail = s.subscribe_from(6).unwrap();
    faults.fail_sync.store(true, Ordering::SeqCst);
    fill(&s, 5..8, Durability::Buffered);
    // The sweep's fdatasync fails and poisons the store.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(matches!(s.sync(), Err(Error::Poisoned { .. })));
    // The disk "recovers": a retried sync would now succeed. The sweeps
    // that follow must not retry it, and no subscriber, old or new, may be
    // given the records as durable.
    faults.fail_sync.store(false, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut late = s.subscribe_from(6).unwrap();
    for tail in [&mut tail, &mut late] {
        match tail.next_timeout(std::time::Duration::from_millis(100)) {
            Some(Err(Error::Poisoned { .. })) | None => {}
            Some(Ok(r)) => panic!("seq {} reported durable after a failed fdatasync", r.seq()),
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

/// Regression (issue 10): a failed write poisons only its stream, but the
/// error said "the store is poisoned". It names the stream, and the store's
/// other streams go on.
#[test]
fn a_failed_write_poisons_only_its_stream_and_the_error_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let (store, faults) = faulty_store(dir.path());
    let stream = store.stream("s").unwrap();
    let other = store.stream("other").unwrap();
    faults.fail_write.store(true, Ordering::SeqCst);
    let e = stream.append(payload(0), Durability::Sync).unwrap_err();
    faults.fail_write.store(false, Ordering::SeqCst);
    assert!(
        matches!(&e, Error::Poisoned { stream: Some(s), .. } if s == "s"),
        "{e:?}"
    );
    // The system's error travels with it, as the error's source.
    let source = std::error::Error::source(&e).expect("a source");
    assert!(source.to_string().contains("No space left"), "{source}");
    let message = e.to_string();
    assert!(
        message.starts_with(r#"stream "s" is poisoned"#),
        "{message}"
    );
    assert!(!message.contains("the store is"), "{message}");
    assert_eq!(other.append(payload(0), Durability::Sync).unwrap().seq, 1);
}

/// Regression (issue 10): a `store.stream()` that failed under ENOSPC (or
/// EMFILE) left an empty folder, which every later open took for a stream.
/// A stream exists once its first segment does: a failed creation removes
/// its folder, and an empty folder is never listed as a stream.
#[test]
fn a_stream_whose_creation_fails_leaves_no_folder_that_reopens_as_a_stream() {
    use common::hooked::{Hooked, HookedBackend};
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(HookedBackend(Arc::new(Hooked {
        write: Some(Box::new(|path: &Path, _: &[u8]| {
            path.to_str()
                .is_some_and(|p| p.ends_with(".seg"))
                .then(|| io::Error::from_raw_os_error(28))
        })),
        ..Hooked::default()
    })));
    {
        let store = Store::open_with(full, dir.path(), small_opts()).unwrap();
        match store.stream("x") {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert!(store.streams().is_empty());
    }
    assert!(!stream_dir(dir.path(), "x").exists(), "its folder is gone");
    // An empty folder left by an older version or another tool.
    std::fs::create_dir(stream_dir(dir.path(), "y")).unwrap();
    let reader = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
    assert!(reader.streams().is_empty());
    drop(reader);
    let store = open(dir.path(), small_opts());
    assert!(store.streams().is_empty());
    assert!(!stream_dir(dir.path(), "y").exists());
    let x = store.stream("x").unwrap();
    assert_eq!(x.append(payload(0), Durability::Sync).unwrap().seq, 1);
    assert_eq!(store.streams(), ["x"]);
}

/// Regression (issue 10): a directory under a segment's name made open
/// (and `fsck`) fail with "mmap: No such device". It is corruption, named
/// as such, and a repair moves it aside.
#[test]
fn a_directory_named_like_a_segment_is_corruption_not_a_failed_map() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_opts());
        fill(&store.stream("s").unwrap(), 0..10, Durability::Sync);
    }
    let impostor = stream_dir(dir.path(), "s").join(format!("{:020}.seg", 11));
    std::fs::create_dir(&impostor).unwrap();
    for opts in [Options::default().read_only(true), small_opts()] {
        match Store::open(dir.path(), opts) {
            Err(e @ Error::Corruption { .. }) => {
                let message = e.to_string();
                assert!(message.contains("not a regular file"), "{message}");
                assert!(!message.contains("mmap"), "{message}");
            }
            other => panic!("expected Corruption, got {other:?}"),
        }
    }
    let repair = small_opts().recovery(lamplog::RecoveryMode::Repair);
    let store = open(dir.path(), repair);
    assert!(!impostor.exists(), "moved to quarantine");
    let s = store.stream("s").unwrap();
    assert_holds(&s, 10);
    assert_eq!(s.append(payload(10), Durability::Sync).unwrap().seq, 11);
}
