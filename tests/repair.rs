//! Salvage repair: `RecoveryMode::Repair` loses only the records whose
//! frames overlap damaged bytes, keeps every other record byte for byte
//! under its seq and Lamport, leaves a log that a strict open and `verify`
//! accept, says which seqs it lost (reads of them are `Error::Lost`), and
//! is idempotent and crash-safe. Every scenario runs on the real filesystem
//! and on the simulated disk.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::disk::Disk;
use common::*;
use lamplog::format::SEGMENT_HEADER_LEN;
use lamplog::testing::{Fate, SimDisk};
use lamplog::{CutReason, Durability, Error, RecoveryMode, Store};

const N: u64 = 2000;

/// `N` records over many segments, closed cleanly.
fn prepared(disk: Disk) -> Disk {
    let store = disk.open(small_opts());
    fill(&store.stream("s").unwrap(), 0..N, Durability::Buffered);
    store.close().unwrap();
    disk
}

/// The seq of the data frame at `offset` of `segment`.
fn seq_at(disk: &Disk, segment: &Path, offset: u64) -> u64 {
    let bytes = disk.read(segment);
    let at = offset as usize + 8;
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Flip one bit of the byte at `offset` of `path`.
fn flip(disk: &Disk, path: &Path, offset: u64) {
    let b = disk.read(path)[offset as usize] ^ 0x20;
    disk.patch(path, offset, &[b]);
}

/// Open with `Repair` and check the promise: exactly `lost` is gone, every
/// other record reads as written, reads of a lost seq say so, the cuts name
/// the lost seqs, and a strict open and a full check accept the result,
/// which a second repair leaves alone.
fn repair_loses_exactly(disk: &Disk, lost: &BTreeSet<u64>) {
    let store = disk.open(small_opts().recovery(RecoveryMode::Repair));
    let reported: BTreeSet<u64> = store
        .recovery_report()
        .cuts
        .iter()
        .filter_map(|c| c.lost.clone())
        .flatten()
        .collect();
    assert_eq!(
        &reported,
        lost,
        "the cuts name the lost seqs ({})",
        disk.name()
    );
    assert!(store
        .recovery_report()
        .cuts
        .iter()
        .all(|c| matches!(c.reason, CutReason::Repair(_))));
    let s = store.stream("s").unwrap();
    assert_kept(&s, lost);
    let verified = s.verify().unwrap();
    assert_eq!(verified.lost_seqs, lost.len() as u64);
    assert_eq!(verified.records, N - lost.len() as u64);
    drop(s);
    store.close().unwrap();

    let store = disk.open(small_opts());
    assert!(store.recovery_report().cuts.is_empty());
    assert_eq!(store.recovery_report().indexes_rebuilt, 0);
    let s = store.stream("s").unwrap();
    assert_kept(&s, lost);
    s.verify().unwrap();
    // Writing goes on after the last seq.
    let next = s.append(payload(N), Durability::Sync).unwrap();
    assert_eq!(next.seq, N + 1);
    drop(s);
    store.close().unwrap();

    let store = disk.open(small_opts().recovery(RecoveryMode::Repair));
    assert!(
        store.recovery_report().cuts.is_empty(),
        "a second repair finds nothing to do"
    );
}

/// Every seq of `1..=N` but `lost` reads as written; each lost one is
/// `Error::Lost`; iteration skips exactly the lost ones.
fn assert_kept(s: &lamplog::Stream, lost: &BTreeSet<u64>) {
    let seqs: Vec<u64> = read_all(s)
        .iter()
        .map(|r| {
            assert_eq!(r.payload(), payload(r.seq() - 1).as_slice());
            r.seq()
        })
        .filter(|&seq| seq <= N)
        .collect();
    let expected: Vec<u64> = (1..=N).filter(|q| !lost.contains(q)).collect();
    assert_eq!(seqs, expected);
    for &seq in lost {
        assert!(
            matches!(s.get(seq), Err(Error::Lost { seq: q, .. }) if q == seq),
            "get({seq}) of a lost seq: {:?}",
            s.get(seq)
        );
    }
    if let Some(&first) = lost.iter().next() {
        // A seek into a gap starts after it.
        let after = s.iter_from_seq(first).next().unwrap().unwrap();
        assert!(after.seq() > first && !lost.contains(&after.seq()));
    }
}

fn middle_segment(disk: &Disk) -> PathBuf {
    let segs = disk.segments("s");
    assert!(segs.len() > 6, "{} segments", segs.len());
    segs[segs.len() / 2].clone()
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_loses_only_its_record() {
    for disk in Disk::both() {
        let base = prepared(disk);
        let seg = middle_segment(&base);
        let spans = base.frame_spans(&seg);
        // The first record, one in the middle, the last one: each has its
        // own way back into the chain.
        for (i, at) in [(0, 10), (spans.len() / 2, 30), (spans.len() - 1, 50)] {
            let disk = base.copy();
            let seg = middle_segment(&disk);
            let offset = spans[i].0 + at;
            let seq = seq_at(&disk, &seg, spans[i].0);
            flip(&disk, &seg, offset);
            // A normal open checks a sealed segment's last stretch only;
            // a full check finds damage anywhere.
            let found = match disk.try_open(small_opts()) {
                Ok(store) => store.verify().err(),
                Err(e) => Some(e),
            };
            assert!(matches!(found, Some(Error::Corruption { .. })), "{found:?}");
            repair_loses_exactly(&disk, &BTreeSet::from([seq]));
            assert!(!disk.quarantined("s").is_empty());
        }
    }
}

#[test]
fn a_flipped_length_field_loses_only_its_record() {
    for disk in Disk::both() {
        let disk = prepared(disk);
        let seg = middle_segment(&disk);
        let spans = disk.frame_spans(&seg);
        let (start, _) = spans[3];
        let seq = seq_at(&disk, &seg, start);
        // The length now points far past the frame: framing alone cannot
        // find the next record.
        flip(&disk, &seg, start + 1);
        repair_loses_exactly(&disk, &BTreeSet::from([seq]));
    }
}

#[test]
fn damage_in_the_tail_with_durable_records_after_it_loses_only_its_records() {
    for disk in Disk::both() {
        let disk = prepared(disk);
        let tail = disk.segments("s").pop().unwrap();
        let spans = disk.frame_spans(&tail);
        assert!(spans.len() > 8);
        let a = seq_at(&disk, &tail, spans[2].0);
        let b = seq_at(&disk, &tail, spans[6].0);
        flip(&disk, &tail, spans[2].0 + 47);
        flip(&disk, &tail, spans[6].0 + 20);
        repair_loses_exactly(&disk, &BTreeSet::from([a, b]));
    }
}

#[test]
fn two_adjacent_damaged_records_are_one_gap() {
    for disk in Disk::both() {
        let disk = prepared(disk);
        let seg = middle_segment(&disk);
        let spans = disk.frame_spans(&seg);
        let a = seq_at(&disk, &seg, spans[4].0);
        // Damage that straddles the boundary between two frames.
        disk.patch(&seg, spans[5].0 - 3, &[0xee; 6]);
        repair_loses_exactly(&disk, &BTreeSet::from([a, a + 1]));
    }
}

#[test]
fn a_damaged_header_is_rebuilt_from_the_frames_after_it_and_nothing_is_lost() {
    for disk in Disk::both() {
        let base = prepared(disk);
        let segs = base.segments("s");
        let i = segs.len() / 2;
        // The stream name, the first Lamport, the header checksum, the magic.
        for at in [60, 32, 188, 0] {
            let disk = base.copy();
            let seg = &disk.segments("s")[i];
            flip(&disk, seg, at);
            repair_loses_exactly(&disk, &BTreeSet::new());
            assert_eq!(disk.quarantined("s").len(), 1, "the old header is kept");
        }
    }
}

#[test]
fn a_segment_whose_header_lost_its_salt_is_lost_whole_and_the_rest_kept() {
    for disk in Disk::both() {
        let disk = prepared(disk);
        let segs = disk.segments("s");
        let i = segs.len() / 2;
        let (first, next) = (first_seq_of(&segs[i]), first_seq_of(&segs[i + 1]));
        // Without its salt no frame verifies: nothing vouches for them.
        flip(&disk, &segs[i], 17);
        repair_loses_exactly(&disk, &(first..next).collect());
    }
}

#[test]
fn a_missing_segment_becomes_a_gap() {
    for disk in Disk::both() {
        let disk = prepared(disk);
        let segs = disk.segments("s");
        let i = segs.len() / 2;
        let (first, next) = (first_seq_of(&segs[i]), first_seq_of(&segs[i + 1]));
        disk.remove(&segs[i]);
        repair_loses_exactly(&disk, &(first..next).collect());
    }
}

#[test]
fn a_first_segment_whose_header_and_first_frame_are_damaged_keeps_every_later_segment() {
    for disk in Disk::both() {
        let disk = prepared(disk);
        let segs = disk.segments("s");
        let next = first_seq_of(&segs[1]);
        disk.patch(&segs[0], 0, b"NOTASEG!");
        disk.patch(&segs[0], SEGMENT_HEADER_LEN as u64 + 2, b"\xff");
        repair_loses_exactly(&disk, &(1..next).collect());
    }
}

#[test]
fn a_damaged_header_field_of_the_first_frame_after_a_gap_is_also_salvaged() {
    // Damage in consecutive segments: the end of one and the start of the next.
    for disk in Disk::both() {
        let disk = prepared(disk);
        let segs = disk.segments("s");
        let i = segs.len() / 2;
        let last = *disk.frame_spans(&segs[i]).last().unwrap();
        let first = disk.frame_spans(&segs[i + 1])[0];
        let a = seq_at(&disk, &segs[i], last.0);
        let b = seq_at(&disk, &segs[i + 1], first.0);
        flip(&disk, &segs[i], last.0 + 30);
        flip(&disk, &segs[i + 1], first.0 + 30);
        repair_loses_exactly(&disk, &BTreeSet::from([a, b]));
    }
}

/// A crash at any point of a repair (every operation, with unsynced writes
/// lost or kept) leaves a store that strict open refuses or accepts whole,
/// and that a second repair finishes with exactly the same records.
#[test]
fn a_crash_at_any_point_of_a_repair_leaves_a_store_a_second_repair_finishes() {
    let disk = SimDisk::default();
    let opts = small_opts();
    let store = Store::open_with(Arc::new(disk.clone()), "/db", opts.clone()).unwrap();
    fill(&store.stream("s").unwrap(), 0..600, Durability::Buffered);
    store.close().unwrap();
    let dir = Path::new("/db/streams/s");
    let mut names: Vec<String> = lamplog::testing::Backend::list_dir(&disk, dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    assert!(names.len() > 4);
    // Damage in a sealed segment and in the tail.
    let sealed = dir.join(&names[1]);
    let tail = dir.join(names.last().unwrap());
    let sealed_spans = frame_spans_of(&disk.file_bytes(&sealed).unwrap());
    let tail_spans = frame_spans_of(&disk.file_bytes(&tail).unwrap());
    let seq_of = |path: &Path, at: u64| {
        let bytes = disk.file_bytes(path).unwrap();
        u64::from_le_bytes(bytes[at as usize + 8..at as usize + 16].try_into().unwrap())
    };
    let lost = BTreeSet::from([
        seq_of(&sealed, sealed_spans[3].0),
        seq_of(&tail, tail_spans[1].0),
    ]);
    for (path, at) in [
        (&sealed, sealed_spans[3].0 + 50),
        (&tail, tail_spans[1].0 + 50),
    ] {
        let file =
            lamplog::testing::Backend::open(&disk, path, lamplog::testing::OpenMode::ReadWrite)
                .unwrap();
        let mut b = [0u8];
        file.read_exact_at(&mut b, at).unwrap();
        file.write_all_at(&[b[0] ^ 1], at).unwrap();
        file.sync_data().unwrap();
    }
    let start = disk.ops();
    let repaired = Store::open_with(
        Arc::new(disk.clone()),
        "/db",
        opts.clone().recovery(RecoveryMode::Repair),
    )
    .unwrap();
    let end = disk.ops();
    drop(repaired);
    assert!(end - start > 10, "the repair wrote and synced");
    let points: Vec<usize> = (start..=end).collect();
    let mut checked = 0;
    disk.crash_images(
        &points,
        &[
            (Fate::Lost, false),
            (Fate::Kept, true),
            (Fate::Torn(7), false),
        ],
        |at, fate, _, image| {
            let strict = Store::open_with(Arc::new(image.clone()), "/db", opts.clone());
            if let Ok(store) = strict {
                if store.verify().is_ok() {
                    // Accepted whole: the repair is complete, nothing else changed.
                    let s = store.stream("s").unwrap();
                    let seqs: BTreeSet<u64> = read_all(&s).iter().map(|r| r.seq()).collect();
                    assert_eq!(seqs.len(), 600 - lost.len(), "op {at} {fate:?}");
                    return;
                }
            }
            let store = Store::open_with(
                Arc::new(image.clone()),
                "/db",
                opts.clone().recovery(RecoveryMode::Repair),
            )
            .unwrap_or_else(|e| panic!("op {at} {fate:?}: {e}"));
            let s = store.stream("s").unwrap();
            for r in read_all(&s) {
                assert_eq!(r.payload(), payload(r.seq() - 1).as_slice());
            }
            let kept: Vec<u64> = read_all(&s).iter().map(|r| r.seq()).collect();
            let expected: Vec<u64> = (1..=600).filter(|q| !lost.contains(q)).collect();
            assert_eq!(kept, expected, "op {at} {fate:?}");
            s.verify().unwrap();
            drop(s);
            drop(store);
            Store::open_with(Arc::new(image.clone()), "/db", opts.clone())
                .unwrap_or_else(|e| panic!("op {at} {fate:?}: strict after second repair: {e}"));
            checked += 1;
        },
    );
    assert!(
        checked > 10,
        "{checked} crash points needed a second repair"
    );
}

#[test]
fn a_segment_header_is_never_mistaken_for_a_frame() {
    // The gap segment a repair writes is a real segment: its header has
    // the stream's name and a fresh salt.
    for disk in Disk::both() {
        let disk = prepared(disk);
        let segs = disk.segments("s");
        let i = segs.len() / 2;
        disk.remove(&segs[i]);
        drop(disk.open(small_opts().recovery(RecoveryMode::Repair)));
        let gap = disk.read(&segs[i]);
        assert!(gap.len() > SEGMENT_HEADER_LEN);
        assert_eq!(&gap[..8], b"LAMPSEG\n");
    }
}
