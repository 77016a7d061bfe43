//! What a store keeps open is bounded, whatever the number of streams and
//! segments: tens of thousands of streams open and read under a descriptor
//! limit of 256, and a stream of 100,000 segments keeps at most
//! `open_segments_max` of them mapped (the kernel allows 65,530 maps).
//!
//! Both tests change the process's descriptor limit, so they take turns.

mod common;

use std::sync::{Arc, Mutex};

use common::hooked::{Hooked, HookedBackend};
use common::*;
use lamplog::{Durability, Options, Store};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The tests of this file change a process-wide limit: one at a time.
static LIMIT: Mutex<()> = Mutex::new(());

/// A backend whose syncs do nothing, to build large fixtures fast.
fn unsynced() -> Arc<HookedBackend> {
    Arc::new(HookedBackend(Arc::new(Hooked {
        skip_syncs: true,
        ..Hooked::default()
    })))
}

/// Run `f` with the soft descriptor limit at `n`, then restore it.
fn with_descriptor_limit<T>(n: u64, f: impl FnOnce() -> T) -> T {
    let before = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum: before.maximum,
        },
    )
    .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    setrlimit(Resource::Nofile, before).unwrap();
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn stream_name(i: usize) -> String {
    format!("agent-{i:05}")
}

/// Regression (issue 10): every stream held two descriptors from open on,
/// so writable opens failed at about 509 streams under `ulimit -n 1024`,
/// and a store of about 10,000 streams could not even be read. Now a
/// stream holds none until it is written.
#[test]
fn twenty_thousand_streams_open_and_read_under_a_limit_of_256_descriptors() {
    let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    const STREAMS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let opts = tiny_opts();
    // The fixture, in rounds: a writer holds two descriptors per stream
    // written until the store closes.
    let hard = getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX);
    let round = ((hard.min(1 << 20) as usize).saturating_sub(200) / 2).clamp(100, STREAMS);
    for start in (0..STREAMS).step_by(round) {
        let store = Store::open_with(unsynced(), dir.path(), opts.clone()).unwrap();
        for i in start..(start + round).min(STREAMS) {
            let s = store.stream(&stream_name(i)).unwrap();
            s.append(payload(i as u64), Durability::Buffered).unwrap();
        }
        store.close().unwrap();
    }
    with_descriptor_limit(256, || {
        // What `lamplog read` of one stream does, then every stream.
        let store = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
        assert_eq!(store.streams().len(), STREAMS);
        let one = read_all(&store.stream(&stream_name(12_345)).unwrap());
        assert_eq!(one[0].payload(), payload(12_345));
        for i in 0..STREAMS {
            let records = read_all(&store.stream(&stream_name(i)).unwrap());
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].payload(), payload(i as u64));
        }
        assert!(descriptors() < 64, "{} descriptors open", descriptors());
        drop(store);
        // A writable open, writes to a hundred streams, and a new one.
        let store = open(dir.path(), opts.clone());
        // Syncing every stream opens no writer that has nothing to sync.
        store.sync().unwrap();
        assert!(descriptors() < 64, "{} descriptors open", descriptors());
        for i in (0..STREAMS).step_by(STREAMS / 100) {
            let s = store.stream(&stream_name(i)).unwrap();
            assert_eq!(s.append(payload(0), Durability::Sync).unwrap().seq, 2);
        }
        assert!(descriptors() < 256);
        store.stream("newcomer").unwrap();
        // A writer holds two descriptors for as long as the store is open:
        // writing to more streams than the limit allows fails with a typed
        // error (EMFILE), not a panic, and the streams written go on.
        let failed = (1..STREAMS)
            .step_by(STREAMS / 200)
            .map(|i| {
                store
                    .stream(&stream_name(i))
                    .and_then(|s| s.append(payload(0), Durability::Sync))
            })
            .find_map(Result::err);
        match failed {
            Some(lamplog::Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(24)),
            other => panic!("expected EMFILE, got {other:?}"),
        }
        let s = store.stream(&stream_name(0)).unwrap();
        assert_eq!(s.append(payload(1), Durability::Sync).unwrap().seq, 3);
        store.close().unwrap();
        let store = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
        assert_eq!(store.streams().len(), STREAMS + 1);
        assert_eq!(store.stream(&stream_name(200)).unwrap().last_seq(), 2);
        assert_eq!(store.stream(&stream_name(0)).unwrap().last_seq(), 3);
    });
}

/// Regression (issue 10): every sealed segment stayed mapped, so past
/// `vm.max_map_count` (65,530) each new segment failed to map, leaked a
/// descriptor (14,512 open after 80,000 segments), and the store no longer
/// opened, even read-only. Now at most `open_segments_max` stay mapped.
#[test]
fn a_stream_of_100000_segments_opens_and_reads_with_bounded_maps_and_descriptors() {
    let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    const SEGMENTS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    // Segments that hold one record each.
    let opts = Options::default()
        .segment_bytes_max(400)
        .record_bytes_max(128)
        .index_interval_bytes(64)
        .open_segments_max(1000);
    let mut n = 0;
    {
        let store = Store::open_with(unsynced(), dir.path(), opts.clone()).unwrap();
        let s = store.stream("s").unwrap();
        while segments(dir.path(), "s").len() < SEGMENTS || n % 1000 != 0 {
            for _ in 0..1000 {
                s.append(payload(n), Durability::Buffered).unwrap();
                n += 1;
            }
        }
        store.close().unwrap();
    }
    let maps_before = maps();
    with_descriptor_limit(256, || {
        for read_only in [true, false] {
            let store = open(dir.path(), opts.clone().read_only(read_only));
            let s = store.stream("s").unwrap();
            assert_eq!(s.last_seq(), n);
            let mut seq = 0;
            for r in s.iter() {
                let r = r.unwrap();
                seq += 1;
                assert_eq!(r.seq(), seq);
                if seq % 10_007 == 0 {
                    assert_eq!(r.payload(), payload(seq - 1));
                }
            }
            assert_eq!(seq, n);
            assert_eq!(s.get(n / 2).unwrap().unwrap().payload(), payload(n / 2 - 1));
            let kept = maps().saturating_sub(maps_before);
            assert!(kept <= 1000 + 64, "{kept} more maps than before the open");
            assert!(descriptors() < 64, "{} descriptors open", descriptors());
            s.verify().unwrap();
        }
    });
}
