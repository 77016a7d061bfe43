//! Consolidation: a k-way merge of streams in one deterministic causal order.

mod common;

use common::*;
use lamplog::{Durability, Error};

fn prepare(root: &std::path::Path) -> lamplog::Store {
    let store = open(root, small_opts());
    let names = ["agent-c", "agent-a", "agent-b"];
    // Interleaved clocks with ties: each stream observes the others now and then.
    for i in 0..600u64 {
        let name = names[(i % 3) as usize];
        let stream = store.stream(name).unwrap();
        let observed = if i % 7 == 0 { i / 2 } else { 0 };
        stream
            .append_observed(payload(i), observed, Durability::Buffered)
            .unwrap();
    }
    store
}

#[test]
fn merge_order_is_total_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let store = prepare(dir.path());
    let names = ["agent-a", "agent-b", "agent-c"];
    let merged: Vec<(u64, String, u64)> = store
        .merge(&names)
        .unwrap()
        .map(|m| {
            let m = m.unwrap();
            (m.record.lamport(), m.stream.to_string(), m.record.seq())
        })
        .collect();
    let mut expected: Vec<(u64, String, u64)> = names
        .iter()
        .flat_map(|n| {
            read_all(&store.stream(n).unwrap())
                .into_iter()
                .map(move |r| (r.lamport(), n.to_string(), r.seq()))
        })
        .collect();
    expected.sort();
    assert_eq!(merged.len(), 600);
    assert_eq!(merged, expected, "Lamport, then stream name, then seq");
    assert!(
        merged.windows(2).any(|w| w[0].0 == w[1].0),
        "the data has Lamport ties to break"
    );
    // The order does not depend on how the sources are named in the call, or on reopening.
    let again: Vec<_> = store
        .merge(&["agent-c", "agent-b", "agent-a", "agent-c"])
        .unwrap()
        .map(|m| m.unwrap().record.seq())
        .collect();
    assert_eq!(again, merged.iter().map(|m| m.2).collect::<Vec<_>>());
    drop(store);
    let store = open(dir.path(), small_opts());
    let reopened: Vec<_> = store
        .merge(&names)
        .unwrap()
        .map(|m| m.unwrap())
        .map(|m| (m.record.lamport(), m.stream.to_string(), m.record.seq()))
        .collect();
    assert_eq!(reopened, merged);
}

#[test]
fn merge_into_writes_the_order_with_a_clock_after_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = prepare(dir.path());
    let names = ["agent-a", "agent-b", "agent-c"];
    let order: Vec<Vec<u8>> = store
        .merge(&names)
        .unwrap()
        .map(|m| m.unwrap().record.payload().to_vec())
        .collect();
    let max_source = names
        .iter()
        .map(|n| store.stream(n).unwrap().last_lamport())
        .max()
        .unwrap();
    assert_eq!(store.merge_into(&names, "consolidated").unwrap(), 600);
    let target = store.stream("consolidated").unwrap();
    let records = read_all(&target);
    assert_eq!(
        records
            .iter()
            .map(|r| r.payload().to_vec())
            .collect::<Vec<_>>(),
        order
    );
    assert!(target.last_lamport() > max_source);
    assert!(records.windows(2).all(|w| w[0].lamport() < w[1].lamport()));
    assert!(matches!(
        store.merge_into(&names, "agent-a"),
        Err(Error::MergeTargetIsSource { .. })
    ));
    assert!(matches!(
        store.merge(&["agent-a", "nobody"]),
        Err(Error::StreamNotFound { .. })
    ));
}

/// Regression (issue 10): a merge that failed partway (a source whose
/// clock sat above 2^62, which `append_observed` accepted but the merge
/// then refused) left 3 records in the target, and a retry 6. A merge is
/// all or nothing, and the Lamport bound is one rule: what
/// `append_observed` accepts, a merge and `insert_op` accept too.
#[test]
fn merge_into_writes_all_or_nothing_and_accepts_every_clock_append_observed_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let (a, b) = (store.stream("a").unwrap(), store.stream("b").unwrap());
    fill(&a, 0..3, Durability::Buffered);
    fill(&b, 0..3, Durability::Buffered);
    // A clock pushed past 2^62 by what a caller observed.
    let high = a
        .append_observed(payload(3), (1 << 62) + 5, Durability::Sync)
        .unwrap();
    a.append(payload(4), Durability::Sync).unwrap();
    assert_eq!(store.merge_into(&["a", "b"], "t").unwrap(), 8);
    let t = store.stream("t").unwrap();
    assert_eq!(t.last_lamport(), high.lamport + 2);
    let op = lamplog::op::OpLog::new(store.stream("ops").unwrap());
    let mut new = lamplog::op::NewOp::new("actor", "d", "{}").unwrap();
    new.observed_lamport = high.lamport + 1;
    let entry = op.append_op(new, Durability::Sync).unwrap();
    let copy = lamplog::op::OpLog::new(store.stream("copy").unwrap());
    assert!(copy.insert_op(&entry, Durability::Sync).unwrap().inserted);

    // The end of the clock: b's last record holds the largest Lamport a
    // record may hold, which nothing can be stamped after.
    let end = b
        .append_observed(
            payload(5),
            lamplog::format::LAMPORT_MAX - 1,
            Durability::Sync,
        )
        .unwrap();
    assert_eq!(end.lamport, lamplog::format::LAMPORT_MAX);
    assert!(matches!(
        b.append(payload(6), Durability::Sync),
        Err(Error::LamportOutOfRange { .. })
    ));
    for _retry in 0..2 {
        assert!(matches!(
            store.merge_into(&["a", "b"], "u"),
            Err(Error::LamportOutOfRange { .. })
        ));
        assert_eq!(store.stream("u").unwrap().last_seq(), 0, "nothing written");
    }
    assert!(matches!(
        b.append_observed(payload(6), end.lamport, Durability::Sync),
        Err(Error::LamportOutOfRange { .. })
    ));
    assert_eq!(b.last_seq(), 4);
}

/// A merge larger than a segment is written in several atomic batches, in
/// merge order; one that a target's lower `record_bytes_max` refuses
/// writes nothing.
#[test]
fn a_merge_larger_than_a_segment_and_one_the_target_refuses() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_opts());
        let (a, b) = (store.stream("a").unwrap(), store.stream("b").unwrap());
        fill(&a, 0..1500, Durability::Buffered);
        fill(&b, 1500..3000, Durability::Buffered);
        b.append(
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(3000)),
            Durability::Sync,
        )
        .unwrap();
        let order: Vec<Vec<u8>> = store
            .merge(&["a", "b"])
            .unwrap()
            .map(|m| m.unwrap().record.payload().to_vec())
            .collect();
        assert_eq!(store.merge_into(&["a", "b"], "t").unwrap(), 3001);
        let t = store.stream("t").unwrap();
        let written: Vec<Vec<u8>> = read_all(&t).iter().map(|r| r.payload().to_vec()).collect();
        assert_eq!(written, order);
        assert!(segments(dir.path(), "t").len() > 3);
    }
    let lower = small_opts().record_bytes_max(1024);
    let store = open(dir.path(), lower);
    assert!(matches!(
        store.merge_into(&["a", "b"], "u"),
        Err(Error::RecordTooLarge { .. })
    ));
    assert_eq!(store.stream("u").unwrap().last_seq(), 0);
}
