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
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        store.merge(&["agent-a", "nobody"]),
        Err(Error::StreamNotFound { .. })
    ));
}
