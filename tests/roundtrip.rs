//! Writing, reopening and reading back: byte-exact round trips and index
//! seeks, on the real filesystem and on the simulated disk.

mod common;

use common::disk::Disk;
use common::*;
use lamplog::{Durability, Options, Store};

#[test]
fn hundred_thousand_records_across_many_segments_round_trip() {
    for disk in Disk::both() {
        let n = 100_000;
        {
            let store = disk.open(small_opts());
            let stream = store.stream("big").unwrap();
            for i in 0..n {
                let durability = if i % 10_000 == 9_999 {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let a = stream.append(payload(i), durability).unwrap();
                assert_eq!((a.seq, a.lamport), (i + 1, i + 1));
            }
            store.close().unwrap();
        }
        assert!(disk.segments("big").len() > 500, "many small segments");
        let store = disk.open(small_opts());
        assert_eq!(store.recovery_report().cuts, vec![]);
        assert_eq!(
            store.recovery_report().indexes_rebuilt,
            0,
            "clean reopen trusts the indexes"
        );
        let stream = store.stream("big").unwrap();
        assert_holds(&stream, n);
        let records = read_all(&stream);
        assert!(records
            .windows(2)
            .all(|w| w[0].ts_us() <= w[1].ts_us() + 1_000_000));

        // Seeks by seq and by Lamport at many points, including segment edges.
        for target in (1..=n).step_by(997).chain([1, 2, n - 1, n]) {
            let got = stream.get(target).unwrap().unwrap();
            assert_eq!(got.seq(), target);
            assert_eq!(got.payload(), payload(target - 1).as_slice());
            let from_seq: Vec<u64> = stream
                .iter_from_seq(target)
                .take(3)
                .map(|r| r.unwrap().seq())
                .collect();
            assert_eq!(from_seq, (target..=n).take(3).collect::<Vec<_>>());
            let from_lamport = stream.iter_from_lamport(target).next().unwrap().unwrap();
            assert_eq!(from_lamport.lamport(), target);
        }
        assert!(stream.get(0).unwrap().is_none());
        assert!(stream.get(n + 1).unwrap().is_none());
        assert!(stream.iter_from_seq(n + 1).next().is_none());
        assert!(stream.iter_from_lamport(n + 1).next().is_none());
        assert_eq!(stream.iter_from_seq(n - 9).count(), 10);
    }
}

#[test]
fn appends_continue_after_reopen_with_seq_and_lamport() {
    for disk in Disk::both() {
        for round in 0..3u64 {
            let store = disk.open(small_opts());
            let stream = store.stream("s").unwrap();
            assert_eq!(stream.last_seq(), round * 300);
            assert_eq!(stream.last_lamport(), round * 300);
            fill(&stream, round * 300..(round + 1) * 300, Durability::Sync);
        }
        let store = disk.open(small_opts());
        assert_holds(&store.stream("s").unwrap(), 900);
    }
}

#[test]
fn streams_are_independent_and_listed() {
    for disk in Disk::both() {
        {
            let store = disk.open(Options::default());
            for name in ["b-stream", "a.stream", "c_stream"] {
                let stream = store.stream(name).unwrap();
                fill(&stream, 0..5, Durability::Buffered);
            }
            assert_eq!(store.streams(), vec!["a.stream", "b-stream", "c_stream"]);
            store.sync().unwrap();
        }
        let store = disk.open(Options::default());
        assert_eq!(store.streams(), vec!["a.stream", "b-stream", "c_stream"]);
        for name in store.streams() {
            assert_holds(&store.stream(&name).unwrap(), 5);
        }
    }
}

#[test]
fn concurrent_appenders_get_contiguous_seqs() {
    for disk in Disk::both() {
        let store = disk.open(small_opts());
        let stream = store.stream("shared").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let stream = stream.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|i| {
                            stream
                                .append(format!(r#"{{"t":{t},"i":{i}}}"#), Durability::Buffered)
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=4000).collect::<Vec<_>>());
        // Each thread's records appear in the order that thread appended them.
        let mut next = [0u64; 8];
        for record in read_all(&stream) {
            let v: serde_json::Value = serde_json::from_slice(record.payload()).unwrap();
            let (t, i) = (v["t"].as_u64().unwrap() as usize, v["i"].as_u64().unwrap());
            assert_eq!(i, next[t]);
            next[t] += 1;
        }
    }
}

#[test]
fn readers_see_appends_made_while_they_run() {
    for disk in Disk::both() {
        let store = disk.open(small_opts());
        let stream = store.stream("live").unwrap();
        let writer = {
            let stream = stream.clone();
            std::thread::spawn(move || fill(&stream, 0..3000, Durability::Buffered))
        };
        // Every snapshot a reader takes is a whole, verified prefix.
        while !writer.is_finished() {
            let records = read_all(&stream);
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.payload(), payload(i as u64).as_slice());
            }
        }
        writer.join().unwrap();
        assert_holds(&stream, 3000);
    }
}

#[test]
fn payloads_are_zero_copy_and_outlive_the_store() {
    for disk in Disk::both() {
        let store = disk.open(Options::default());
        let stream = store.stream("s").unwrap();
        stream.append(br#"{"k":"v"}"#, Durability::Sync).unwrap();
        let record = stream.get(1).unwrap().unwrap();
        let payload = record.payload_bytes().clone();
        drop(stream);
        drop(store);
        assert_eq!(&payload[..], br#"{"k":"v"}"#);
        let store = disk.open(Options::default().read_only(true));
        assert_holds_json(&store);
    }
}

fn assert_holds_json(store: &Store) {
    let record = store.stream("s").unwrap().get(1).unwrap().unwrap();
    assert_eq!(record.payload(), br#"{"k":"v"}"#);
}

#[test]
fn an_iterator_yields_the_records_that_existed_when_it_was_created() {
    for disk in Disk::both() {
        let store = disk.open(small_opts());
        let stream = store.stream("s").unwrap();
        fill(&stream, 0..100, Durability::Buffered);
        let mut iter = stream.iter();
        assert_eq!(iter.next().unwrap().unwrap().seq(), 1);
        fill(&stream, 100..400, Durability::Buffered);
        assert_eq!(iter.count(), 99, "appends after creation are not included");
        assert_eq!(stream.iter().count(), 400);
    }
}

#[test]
fn a_small_queue_bound_still_takes_every_append() {
    // With a queue bound smaller than one record, every appender waits for
    // the write before it: slower, never stuck, nothing lost.
    for disk in Disk::both() {
        let opts = small_opts().batch_bytes_max(1);
        let store = disk.open(opts);
        let stream = store.stream("s").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let stream = stream.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        stream
                            .append(format!(r#"{{"t":{t},"i":{i}}}"#), Durability::Buffered)
                            .unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(read_all(&stream).len(), 800);
    }
}
