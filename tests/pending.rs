//! Pending appends: `append_pending` returns at once; its `Pending`
//! completes (by `wait` or as a `Future`) only once the record is on disk,
//! in seq order; a failed sync completes every pending append with the
//! error; dropping one withdraws nothing.

mod common;

use std::sync::Arc;

use common::*;
use lamplog::testing::{Fate, Fault, SimDisk};
use lamplog::{Durability, Store};

#[test]
fn thousands_in_flight_from_one_thread_complete_in_order_with_few_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let pending: Vec<_> = (0..5000)
        .map(|i| s.append_pending(payload(i)).unwrap())
        .collect();
    assert_eq!(
        pending.iter().map(|p| p.seq()).collect::<Vec<_>>(),
        (1..=5000).collect::<Vec<_>>()
    );
    let mut done_before = true;
    for p in &pending {
        let appended = p.wait().unwrap();
        assert_eq!(appended.seq, p.seq());
        // Durable in seq order: once one is not done, none after it was
        // done before it (checked as we go).
        assert!(s.durable_seq().unwrap() >= p.seq());
        done_before &= p.is_done();
    }
    assert!(done_before);
    let fsyncs = store.stats().fsyncs;
    assert!(fsyncs < 2500, "{fsyncs} fsyncs for 5,000 appends");
    drop(s);
    drop(pending);
    store.close().unwrap();
    assert_holds(&open(dir.path(), small_opts()).stream("s").unwrap(), 5000);
}

#[test]
fn a_dropped_pending_append_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    for i in 0..100 {
        drop(s.append_pending(payload(i)).unwrap());
    }
    s.sync().unwrap();
    assert_holds(&s, 100);
}

/// What a completed pending append promises holds after a power cut at any
/// operation: every record whose `Pending` had completed is there.
#[test]
fn a_completed_pending_append_survives_a_power_cut_at_any_point() {
    let disk = SimDisk::default();
    let opts = tiny_opts();
    let store = Store::open_with(Arc::new(disk.clone()), "/db", opts.clone()).unwrap();
    let s = store.stream("s").unwrap();
    // (ops when the completion was seen, seq completed)
    let mut seen = Vec::new();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..300 {
        in_flight.push_back(s.append_pending(payload(i)).unwrap());
        if in_flight.len() > 16 {
            let p = in_flight.pop_front().unwrap();
            p.wait().unwrap();
            seen.push((disk.ops(), p.seq()));
        }
    }
    store.abandon();
    let points: Vec<usize> = seen.iter().map(|&(at, _)| at).collect();
    let mut i = 0;
    disk.crash_images(&points, &[(Fate::Lost, false)], |at, _, _, image| {
        while i + 1 < seen.len() && seen[i + 1].0 <= at {
            i += 1;
        }
        let acked = seen[i].1;
        let store = Store::open_with(Arc::new(image), "/db", opts.clone()).unwrap();
        let records = read_all(&store.stream("s").unwrap());
        assert!(
            records.len() as u64 >= acked,
            "op {at}: {} < {acked}",
            records.len()
        );
        for r in &records {
            assert_eq!(r.payload(), payload(r.seq() - 1).as_slice());
        }
    });
}

#[test]
fn a_failed_sync_completes_every_pending_append_with_the_error() {
    let disk = SimDisk::default();
    let store = Store::open_with(Arc::new(disk.clone()), "/db", small_opts()).unwrap();
    let s = store.stream("s").unwrap();
    s.append(payload(0), Durability::Sync).unwrap();
    disk.inject(Fault::SyncEio, 0);
    // The first is queued before any sync fails; later ones either are too
    // or are refused once the store is poisoned.
    let first = s.append_pending(payload(1)).unwrap();
    let mut pending = vec![first];
    for i in 2..200 {
        match s.append_pending(payload(i)) {
            Ok(p) => pending.push(p),
            Err(e) => assert!(matches!(e, lamplog::Error::Poisoned { .. }), "{e}"),
        }
    }
    for p in &pending {
        assert!(
            p.wait().is_err(),
            "seq {} completed despite the failed sync",
            p.seq()
        );
    }
    // And as futures, without blocking forever.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for p in pending {
        assert!(rt.block_on(p).is_err());
    }
}

/// The async test: 1,000 tasks append concurrently on a 2-worker
/// tokio runtime, each awaiting its record's durability.
#[test]
fn a_thousand_tasks_await_their_appends_on_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let seqs = rt.block_on(async {
        let tasks: Vec<_> = (0..1000u64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let p = s.append_pending(format!("{{\"task\":{i}}}")).unwrap();
                    let appended = p.await.unwrap();
                    // Awaited means durable.
                    assert!(s.durable_seq().unwrap() >= appended.seq);
                    appended.seq
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs
    });
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=1000).collect::<Vec<_>>());
    let fsyncs = store.stats().fsyncs;
    assert!(fsyncs < 1000, "{fsyncs} fsyncs for 1,000 tasks");
    assert_eq!(read_all(&s).len(), 1000);
}

/// Pending appends racing blocking appends from other threads, then a
/// close: every one completes, every record is there.
#[test]
fn pending_appends_racing_blocking_ones_and_a_close_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let pending = std::thread::scope(|scope| {
        for t in 0..2 {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..300 {
                    let durability = if i % 2 == 0 {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    s.append(format!("{{\"t\":{t},\"i\":{i}}}"), durability)
                        .unwrap();
                }
            });
        }
        (0..2000)
            .map(|i| s.append_pending(format!("{{\"p\":{i}}}")).unwrap())
            .collect::<Vec<_>>()
    });
    drop(s);
    store.close().unwrap();
    for p in &pending {
        p.wait().unwrap();
    }
    let store = open(dir.path(), small_opts());
    assert_eq!(read_all(&store.stream("s").unwrap()).len(), 2600);
}
