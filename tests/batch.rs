//! Atomic batches: contiguous seqs, validated as a whole, kept whole or not
//! at all by recovery.

mod common;

use common::*;
use lamplog::{Durability, Error, Store};

#[test]
fn a_batch_gets_contiguous_seqs_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    fill(&stream, 0..3, Durability::Sync);
    let appended = stream
        .append_batch((3..10).map(payload), Durability::Sync)
        .unwrap();
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        appended.iter().map(|a| a.lamport).collect::<Vec<_>>(),
        (4..=10).collect::<Vec<_>>()
    );
    assert!(stream
        .append_batch(Vec::<Vec<u8>>::new(), Durability::Sync)
        .unwrap()
        .is_empty());
    fill(&stream, 10..12, Durability::Sync);
    assert_holds(&stream, 12);
    drop(stream);
    drop(store);
    assert_holds(&open(dir.path(), small_opts()).stream("s").unwrap(), 12);
}

#[test]
fn one_bad_payload_fails_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    fill(&stream, 0..2, Durability::Sync);
    let batch = vec![payload(2), payload(3), b"{nope".to_vec(), payload(4)];
    match stream.append_batch(batch, Durability::Sync) {
        Err(Error::InvalidJson { message, .. }) => {
            assert!(message.contains("batch record 2"), "{message}")
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
    let huge: Vec<Vec<u8>> = (0..20)
        .map(|i| format!(r#"{{"blob":"{}","i":{i}}}"#, "x".repeat(2000)).into_bytes())
        .collect();
    assert!(matches!(
        stream.append_batch(huge, Durability::Sync),
        Err(Error::BatchTooLarge { .. })
    ));
    fill(&stream, 2..4, Durability::Sync);
    assert_holds(&stream, 4);
}

#[test]
fn a_batch_that_does_not_fit_starts_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    let mut n = 0;
    while segments(dir.path(), "s").len() < 4 {
        let size = 5 + n % 40;
        stream
            .append_batch((n..n + size).map(payload), Durability::Buffered)
            .unwrap();
        n += size;
    }
    stream.sync().unwrap();
    // No batch straddles two segments: each segment ends with a batch's last frame.
    for segment in &segments(dir.path(), "s")[..3] {
        let bytes = std::fs::read(segment).unwrap();
        let last = frame_spans(segment).last().copied().unwrap();
        assert_eq!(
            bytes[last.0 as usize + 41] & 1,
            0,
            "{} ends inside a batch",
            segment.display()
        );
    }
    assert_holds(&stream, n);
}

#[test]
fn a_batch_cut_anywhere_by_a_crash_is_all_or_nothing() {
    let base = tempfile::tempdir().unwrap();
    let store = open(base.path(), small_opts());
    let stream = store.stream("s").unwrap();
    fill(&stream, 0..5, Durability::Sync);
    stream
        .append_batch((5..11).map(payload), Durability::Buffered)
        .unwrap();
    drop(stream);
    store.abandon();
    let tail = segments(base.path(), "s").pop().unwrap();
    let spans = frame_spans(&tail);
    let (batch_start, batch_end) = (spans[5].0, spans[10].1);
    for cut in batch_start..=batch_end {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        truncate(&segments(dir.path(), "s").pop().unwrap(), cut);
        let expected = if cut == batch_end { 11 } else { 5 };
        let store = Store::open(dir.path(), small_opts()).unwrap();
        assert_holds(&store.stream("s").unwrap(), expected);
    }
    // A torn sector inside the batch, with its later frames intact: the whole batch goes.
    for victim in &spans[5..11] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        patch(
            &segments(dir.path(), "s").pop().unwrap(),
            victim.0 + 44,
            b"\0\0\0\0\0\0\0\0",
        );
        let store = Store::open(dir.path(), small_opts()).unwrap();
        assert_holds(&store.stream("s").unwrap(), 5);
        assert_eq!(store.recovery_report().cuts.len(), 1);
    }
}

#[test]
fn batches_and_single_appends_from_many_threads_interleave_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let stream = stream.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let make = |k: u64| format!(r#"{{"t":{t},"i":{i},"k":{k}}}"#).into_bytes();
                    if t % 2 == 0 {
                        let seqs: Vec<u64> = stream
                            .append_batch((0..4).map(make), Durability::Sync)
                            .unwrap()
                            .iter()
                            .map(|a| a.seq)
                            .collect();
                        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
                    } else {
                        stream.append(make(0), Durability::Buffered).unwrap();
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(stream.last_seq(), 3 * 40 * 4 + 3 * 40);
}
