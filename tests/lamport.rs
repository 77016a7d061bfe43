//! Lamport clocks: resume on reopen, the merge rule, seeks across gaps.

mod common;

use common::*;
use lamplog::{Durability, Error};

#[test]
fn observed_ops_move_the_clock_past_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let b = store.stream("agent-b").unwrap();
    assert_eq!(
        b.append(payload(0), Durability::Buffered).unwrap().lamport,
        1
    );
    // Another actor's op at 41: this stream continues after it.
    assert_eq!(
        b.append_observed(payload(1), 41, Durability::Buffered)
            .unwrap()
            .lamport,
        42
    );
    // An observed op behind our clock changes nothing but the +1.
    assert_eq!(
        b.append_observed(payload(2), 7, Durability::Buffered)
            .unwrap()
            .lamport,
        43
    );
    assert_eq!(b.append(payload(3), Durability::Sync).unwrap().lamport, 44);
    assert!(matches!(
        b.append_observed(payload(4), u64::MAX, Durability::Sync),
        Err(Error::LamportOutOfRange { .. })
    ));
    assert_eq!(b.last_lamport(), 44);
    drop(b);
    drop(store);
    // The clock resumes from the highest Lamport in the log.
    let store = open(dir.path(), small_opts());
    let b = store.stream("agent-b").unwrap();
    assert_eq!(b.last_lamport(), 44);
    assert_eq!(b.append(payload(4), Durability::Sync).unwrap().lamport, 45);
    let lamports: Vec<u64> = read_all(&b).iter().map(|r| r.lamport()).collect();
    assert_eq!(lamports, vec![1, 42, 43, 44, 45]);
}

#[test]
fn seeks_by_lamport_land_after_gaps_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    // Lamports jump by 10 every 25 records, over many segments.
    let mut expected = Vec::new();
    for i in 0..2000u64 {
        let observed = if i % 25 == 0 {
            s.last_lamport() + 10
        } else {
            0
        };
        expected.push(
            s.append_observed(payload(i), observed, Durability::Buffered)
                .unwrap()
                .lamport,
        );
    }
    drop(s);
    drop(store);
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    assert_holds(&s, 2000);
    assert!(segments(dir.path(), "s").len() > 10);
    for target in (0..expected.last().unwrap() + 2).step_by(13) {
        let want = expected.iter().position(|&l| l >= target);
        let got = s.iter_from_lamport(target).next().transpose().unwrap();
        assert_eq!(
            got.map(|r| r.seq()),
            want.map(|i| i as u64 + 1),
            "seek to Lamport {target}"
        );
    }
}
