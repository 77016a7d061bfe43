//! Bit rot in sealed segments: flip each byte of a window in turn. Open,
//! reads and `verify` (fsck) report it; a byte after the last record changes
//! nothing; never a record with wrong bytes, never a panic.

mod common;

use common::*;
use lamplog::{Durability, Error, Options, Store};

fn opts() -> Options {
    Options::default()
        .segment_bytes_max(8192)
        .record_bytes_max(1024)
        .index_interval_bytes(512)
}

#[test]
fn every_flipped_byte_in_a_sealed_segment_is_reported_or_harmless() {
    let base = tempfile::tempdir().unwrap();
    {
        let store = open(base.path(), opts());
        let s = store.stream("s").unwrap();
        for i in 0..400 {
            s.append(
                payload(i),
                if i % 3 == 0 {
                    Durability::Buffered
                } else {
                    Durability::Sync
                },
            )
            .unwrap();
        }
        store.close().unwrap();
    }
    let original = read_all(&open(base.path(), opts()).stream("s").unwrap());
    let segs = segments(base.path(), "s");
    assert!(segs.len() > 4);
    let mut checked = 0;
    for victim in [1, segs.len() / 2] {
        let spans = frame_spans(&segs[victim]);
        let end = spans.last().unwrap().1;
        let mid = spans[spans.len() / 2].0;
        let windows = [(0, 260), (mid, mid + 120), (end - 60, end + 40)];
        for (from, to) in windows {
            for at in from..to {
                let dir = tempfile::tempdir().unwrap();
                copy_dir(base.path(), dir.path());
                let path = &segments(dir.path(), "s")[victim];
                let mut bytes = std::fs::read(path).unwrap();
                if at as usize >= bytes.len() {
                    continue;
                }
                bytes[at as usize] ^= 0x5a;
                std::fs::write(path, &bytes).unwrap();
                checked += 1;
                let label = format!("segment {victim}, byte {at} (records end at {end})");
                let store = match Store::open(dir.path(), opts()) {
                    Ok(store) => store,
                    Err(e) => {
                        assert!(e.is_corruption(), "{label}: {e}");
                        assert!(
                            at < end,
                            "{label}: a byte after the records refused the open"
                        );
                        continue;
                    }
                };
                let s = store.stream("s").unwrap();
                let mut reported = false;
                for record in s.iter() {
                    match record {
                        Ok(r) => assert_eq!(
                            r.payload(),
                            original[r.seq() as usize - 1].payload(),
                            "{label}: wrong bytes returned"
                        ),
                        Err(e) => {
                            assert!(matches!(e, Error::Corruption { .. }), "{label}: {e}");
                            reported = true;
                        }
                    }
                }
                let verified = s.verify();
                if at < end {
                    assert!(
                        matches!(verified, Err(Error::Corruption { .. })),
                        "{label}: fsck missed it: {verified:?}"
                    );
                    assert!(reported, "{label}: a full read missed it");
                } else {
                    assert_eq!(verified.unwrap().records, original.len() as u64, "{label}");
                    assert!(!reported, "{label}");
                }
            }
        }
    }
    assert!(checked > 800, "{checked} flips");
    eprintln!("{checked} bytes flipped");
}

#[test]
fn verify_counts_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), opts());
    fill(&store.stream("a").unwrap(), 0..300, Durability::Buffered);
    fill(&store.stream("b").unwrap(), 0..50, Durability::Sync);
    let v = store.verify().unwrap();
    assert_eq!(v.records, 350);
    assert!(v.segments >= 3);
}

/// `verify` checks segments on several cores at once; the damage it reports
/// is still the first in log order, whichever check finishes first.
#[test]
fn verify_names_the_first_damaged_segment_when_several_are() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), opts());
        fill(&store.stream("s").unwrap(), 0..400, Durability::Buffered);
        store.close().unwrap();
    }
    let segs = segments(dir.path(), "s");
    assert!(segs.len() >= 6, "{} segments", segs.len());
    // A byte of a record in the middle of segments 1, 3 and 4.
    for seg in [&segs[4], &segs[1], &segs[3]] {
        let spans = frame_spans(seg);
        let (_, end) = spans[spans.len() / 2];
        patch(seg, end - 2, b"~");
    }
    let store = Store::open(dir.path(), opts().read_only(true)).unwrap();
    for _ in 0..5 {
        match store.stream("s").unwrap().verify() {
            Err(Error::Corruption { segment, .. }) => assert_eq!(segment, segs[1]),
            other => panic!("{other:?}"),
        }
    }
}
