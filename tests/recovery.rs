//! Recovery: torn tails are cut and quarantined, damaged durable data is
//! reported, derived index files are rebuilt. Every test runs on the real
//! filesystem and on the simulated disk.

mod common;

use std::path::{Path, PathBuf};

use common::disk::Disk;
use common::*;
use lamplog::{CorruptionKind, CutReason, Durability, Error, Options, RecoveryMode};

/// `disk` with `n` records in stream "s", all appended with `durability`.
fn prepared(disk: Disk, n: u64, durability: Durability) -> Disk {
    prepared_with(disk, n, durability, small_opts())
}

fn prepared_with(disk: Disk, n: u64, durability: Durability, opts: Options) -> Disk {
    let store = disk.open(opts);
    fill(&store.stream("s").unwrap(), 0..n, durability);
    store.close().unwrap();
    disk
}

/// Like `prepared`, but the writer stops as a crash would: nothing more is
/// synced and no commit marker is written.
fn crashed(disk: Disk, n: u64, durability: Durability) -> Disk {
    let store = disk.open(small_opts());
    fill(&store.stream("s").unwrap(), 0..n, durability);
    store.abandon();
    disk
}

/// Options whose only index point per segment is its first record, so that
/// open scans the whole tail segment. With denser index points open scans
/// only from the last one a crash cannot have touched; damage before that
/// point is durable data that readers report (see
/// `damage_before_the_last_durable_index_point_is_reported_by_readers`).
fn sparse_opts() -> Options {
    small_opts().index_interval_bytes(1 << 20)
}

fn last_segment(disk: &Disk) -> PathBuf {
    disk.segments("s").pop().unwrap()
}

fn expect_corruption(disk: &Disk, opts: Options) -> (PathBuf, u64, CorruptionKind) {
    match disk.try_open(opts) {
        Err(Error::Corruption {
            stream,
            segment,
            offset,
            kind,
        }) => {
            assert_eq!(stream, "s");
            (segment, offset, kind)
        }
        other => panic!("expected corruption on the {}, got {other:?}", disk.name()),
    }
}

#[test]
fn truncation_anywhere_in_the_last_three_frames_keeps_the_whole_records_before_it() {
    for disk in Disk::both() {
        let n = 200;
        let base = prepared(disk, n, Durability::Sync);
        let original = base.read(&last_segment(&base));
        let spans = frame_spans_of(&original);
        let tail_first_seq = n - spans.len() as u64 + 1;
        let last_three = &spans[spans.len() - 3..];
        let mut checked = 0;
        for cut in last_three[0].0..last_three[2].1 {
            let disk = base.copy();
            disk.truncate(&last_segment(&disk), cut);
            let whole = spans.iter().filter(|s| s.1 <= cut).count() as u64;
            let kept = tail_first_seq - 1 + whole;
            let store = disk.open(small_opts());
            let stream = store.stream("s").unwrap();
            assert_holds(&stream, kept);
            // The partial frame, if any, is in quarantine, byte for byte.
            let frame_start = spans.iter().find(|s| s.1 > cut).map_or(cut, |s| s.0);
            let torn_len = cut - frame_start.min(cut);
            let cuts = &store.recovery_report().cuts;
            if torn_len == 0 {
                assert!(
                    cuts.is_empty(),
                    "cut at a frame boundary {cut} is a clean end"
                );
            } else {
                assert_eq!(cuts.len(), 1);
                assert_eq!(
                    (cuts[0].offset, &cuts[0].reason),
                    (frame_start, &CutReason::TornTail)
                );
                assert!(cuts[0].len <= torn_len);
                // Trailing zeros carry nothing and are not kept.
                let kept_bytes = disk.read(cuts[0].quarantine_file.as_ref().unwrap());
                let torn = &original[frame_start as usize..cut as usize];
                let significant = torn.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                assert_eq!(kept_bytes, &torn[..significant]);
            }
            // Appends continue right after the last whole record, and survive another reopen.
            assert_eq!(
                stream.append(payload(kept), Durability::Sync).unwrap().seq,
                kept + 1
            );
            drop(stream);
            drop(store);
            let store = disk.open(small_opts());
            assert_eq!(store.recovery_report().cuts, vec![]);
            assert_holds(&store.stream("s").unwrap(), kept + 1);
            checked += 1;
        }
        assert!(checked > 300, "checked {checked} cut points");
    }
}

#[test]
fn flipped_byte_with_durable_records_after_it_is_corruption_and_repair_quarantines() {
    for disk in Disk::both() {
        let base = prepared_with(disk, 150, Durability::Sync, sparse_opts());
        let spans = base.frame_spans(&last_segment(&base));
        assert!(spans.len() >= 6);
        let victim = spans[spans.len() - 4];
        for byte in [
            victim.0,
            victim.0 + 5,
            victim.0 + 20,
            victim.0 + 50,
            victim.1 - 1,
        ] {
            let disk = base.copy();
            let tail = last_segment(&disk);
            let b = disk.read(&tail)[byte as usize] ^ 0x40;
            disk.patch(&tail, byte, &[b]);
            let (segment, offset, _) = expect_corruption(&disk, small_opts());
            assert_eq!(
                (segment, offset),
                (tail.clone(), victim.0),
                "flip at {byte}"
            );
            // The same for a read-only open, which changes nothing.
            let (_, offset, _) = expect_corruption(&disk, small_opts().read_only(true));
            assert_eq!(offset, victim.0);
            assert!(disk.quarantined("s").is_empty());

            // Repair loses the damaged record only (tests/repair.rs has more).
            let store = disk.open(small_opts().recovery(RecoveryMode::Repair));
            let cuts = &store.recovery_report().cuts;
            assert_eq!(cuts.len(), 1);
            assert!(matches!(cuts[0].reason, CutReason::Repair(_)));
            assert_eq!(cuts[0].offset, victim.0);
            let lost = 150 - 3;
            assert_eq!(cuts[0].lost, Some(lost..=lost));
            let stream = store.stream("s").unwrap();
            assert_eq!(read_all(&stream).len(), 149);
            assert_eq!(disk.quarantined("s").len(), 1);
            stream.append(payload(150), Durability::Sync).unwrap();
            drop(stream);
            drop(store);
            let store = disk.open(small_opts());
            assert_eq!(read_all(&store.stream("s").unwrap()).len(), 150);
        }
    }
}

#[test]
fn torn_write_followed_by_unsynced_records_is_a_torn_tail() {
    // Records after the last sync carry a durable_end below the damage, so
    // they prove nothing was synced there: a power cut can leave exactly this.
    for disk in Disk::both() {
        {
            let store = disk.open(small_opts());
            let stream = store.stream("s").unwrap();
            fill(&stream, 0..3, Durability::Sync);
            fill(&stream, 3..8, Durability::Buffered);
            store.abandon();
        }
        let tail = last_segment(&disk);
        let spans = disk.frame_spans(&tail);
        disk.patch(&tail, spans[4].0 + 30, b"\xff\xfe");
        let store = disk.open(small_opts());
        let cuts = &store.recovery_report().cuts;
        assert_eq!(
            (cuts.len(), cuts[0].offset, &cuts[0].reason),
            (1, spans[4].0, &CutReason::TornTail)
        );
        assert_holds(&store.stream("s").unwrap(), 4);
    }
}

#[test]
fn damage_in_a_synced_record_is_never_cut_as_torn() {
    // Every record after the first was written after the one before it was
    // synced, and the clean close wrote a commit marker after the last one,
    // so damage to any of them is provably in durable data.
    for disk in Disk::both() {
        let base = prepared_with(disk, 40, Durability::Sync, sparse_opts());
        let spans = base.frame_spans(&last_segment(&base));
        for (i, span) in spans.iter().enumerate() {
            let copy = base.copy();
            copy.patch(&last_segment(&copy), span.0 + 8, b"\x99");
            let (_, offset, _) = expect_corruption(&copy, small_opts());
            assert_eq!(offset, span.0, "record {i} on the {}", copy.name());
        }
    }
}

#[test]
fn zeroed_and_garbage_tails() {
    for disk in Disk::both() {
        let base = crashed(disk, 120, Durability::Buffered);
        let spans = base.frame_spans(&last_segment(&base));
        let (start, end) = (spans[spans.len() - 2].0, spans[spans.len() - 1].1);
        let whole_before = 120 - 2;

        // Zeros where the last two records were: the end of the log, nothing to keep.
        let disk = base.copy();
        disk.patch(
            &last_segment(&disk),
            start,
            &vec![0; (end - start) as usize],
        );
        let store = disk.open(small_opts());
        assert!(store.recovery_report().cuts.is_empty());
        assert_holds(&store.stream("s").unwrap(), whole_before);
        drop(store);

        // Garbage there (and past the old end): cut and quarantined.
        let disk = base.copy();
        let garbage: Vec<u8> = (0..(end - start) as usize + 100)
            .map(|i| (i * 131 % 251) as u8 | 1)
            .collect();
        disk.patch(&last_segment(&disk), start, &garbage);
        let store = disk.open(small_opts());
        let cuts = &store.recovery_report().cuts;
        assert_eq!(
            (cuts.len(), cuts[0].offset, cuts[0].len),
            (1, start, garbage.len() as u64)
        );
        assert_eq!(
            disk.read(cuts[0].quarantine_file.as_ref().unwrap()),
            garbage
        );
        assert_holds(&store.stream("s").unwrap(), whole_before);
        drop(store);

        // A length field that runs past the end of the file.
        let disk = base.copy();
        let tail = last_segment(&disk);
        disk.patch(&tail, spans[spans.len() - 1].0, &u32::MAX.to_le_bytes());
        let store = disk.open(small_opts());
        assert_eq!(store.recovery_report().cuts.len(), 1);
        assert_holds(&store.stream("s").unwrap(), 119);
    }
}

#[test]
fn after_a_clean_close_even_the_last_record_is_protected() {
    for disk in Disk::both() {
        let base = prepared(disk, 120, Durability::Buffered);
        let tail = last_segment(&base);
        let last = *base.frame_spans(&tail).last().unwrap();
        base.patch(&tail, last.0, &vec![0; (last.1 - last.0) as usize]);
        let (segment, offset, _) = expect_corruption(&base, small_opts());
        assert_eq!((segment, offset), (tail, last.0));
    }
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    for disk in Disk::both() {
        let base = prepared(disk, 2000, Durability::Buffered);
        let segs = base.segments("s");
        assert!(segs.len() > 5);
        let hole = &segs[segs.len() / 2];
        base.remove(hole);
        base.remove(&hole.with_extension("idx"));
        let (segment, offset, kind) = expect_corruption(&base, small_opts());
        assert_eq!((segment, offset), (segs[segs.len() / 2 + 1].clone(), 0));
        assert!(
            matches!(kind, CorruptionKind::SequenceGap { .. }),
            "{kind:?}"
        );

        // Repair puts a gap in the hole's place and keeps every other record
        // (tests/repair.rs has more).
        let store = base.open(small_opts().recovery(RecoveryMode::Repair));
        let stream = store.stream("s").unwrap();
        assert_eq!(stream.last_seq(), 2000);
        let lost = first_seq_of(&segs[segs.len() / 2 + 1]) - first_seq_of(hole);
        assert_eq!(read_all(&stream).len() as u64, 2000 - lost);
        assert!(base.quarantined("s").is_empty(), "a hole holds no bytes");
    }
}

#[test]
fn deleted_garbage_or_stale_index_files_are_rebuilt() {
    for disk in Disk::both() {
        let base = prepared(disk, 1500, Durability::Buffered);
        let segs = base.segments("s");
        let idx = |i: usize| segs[i].with_extension("idx");
        base.remove(&idx(1));
        base.write(&idx(2), b"this is not an index");
        // An index that belongs to another segment (stale after a copy mix-up).
        base.write(&idx(3), &base.read(&idx(4)));
        // A truncated one.
        base.truncate(&idx(5), 50);
        let store = base.open(small_opts());
        assert_eq!(store.recovery_report().indexes_rebuilt, 4);
        let stream = store.stream("s").unwrap();
        assert_holds(&stream, 1500);
        for seq in (1..=1500).step_by(7) {
            assert_eq!(
                stream.get(seq).unwrap().unwrap().payload(),
                payload(seq - 1).as_slice()
            );
        }
        drop(stream);
        drop(store);
        // Rebuilt files are written back: the next open trusts them.
        let store = base.open(small_opts());
        assert_eq!(store.recovery_report().indexes_rebuilt, 0);
    }
}

#[test]
fn damage_in_a_sealed_segment_is_reported_by_readers() {
    for disk in Disk::both() {
        let base = prepared(disk, 1000, Durability::Buffered);
        let segs = base.segments("s");
        let victim = &segs[2];
        let spans = base.frame_spans(victim);
        base.patch(victim, spans[3].0 + 47, b"#");
        // Clean reopen does not scan sealed segments...
        let store = base.open(small_opts());
        let stream = store.stream("s").unwrap();
        // ...but no reader ever returns the damaged record.
        let mut good = 0;
        let mut failure = None;
        for record in stream.iter() {
            match record {
                Ok(r) => {
                    assert_eq!(r.payload(), payload(r.seq() - 1).as_slice());
                    good += 1;
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(Error::Corruption {
                segment,
                offset,
                kind,
                ..
            }) => {
                assert_eq!(
                    (&segment, offset, kind),
                    (victim, spans[3].0, CorruptionKind::BadChecksum)
                );
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        let first_seq_of_victim = first_seq_of(victim);
        assert_eq!(good, first_seq_of_victim - 1 + 3);
        // A seek past the damage still works; a get of the damaged record is an error.
        assert!(stream.get(first_seq_of_victim + 3).is_err());
        assert!(stream.get(900).unwrap().is_some());
    }
}

#[test]
fn damage_before_the_last_durable_index_point_is_reported_by_readers() {
    for disk in Disk::both() {
        let base = prepared(disk, 60, Durability::Sync);
        let tail = last_segment(&base);
        let spans = base.frame_spans(&tail);
        let victim = spans[1];
        base.patch(&tail, victim.0 + 45, b"!");
        let store = base.open(small_opts());
        let stream = store.stream("s").unwrap();
        let results: Vec<_> = stream.iter().collect();
        let first_bad = results.iter().position(|r| r.is_err()).unwrap();
        assert!(results[..first_bad].iter().all(|r| r.is_ok()));
        assert_eq!(
            first_bad,
            results.len() - 1,
            "a damaged record ends the iteration"
        );
        match &results[first_bad] {
            Err(Error::Corruption {
                segment, offset, ..
            }) => assert_eq!((segment, *offset), (&tail, victim.0)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn interrupted_segment_creation_is_discarded() {
    for disk in Disk::both() {
        let base = prepared(disk, 300, Durability::Sync);
        let next_seq = 301;
        let path = lamplog_path(&base.root(), next_seq);
        // The crash hit after the file was allocated but before its header was synced.
        base.write(&path, &[0u8; 4096]);
        let store = base.open(small_opts());
        let cuts = &store.recovery_report().cuts;
        assert_eq!(
            (cuts.len(), &cuts[0].reason),
            (1, &CutReason::TornSegmentCreation)
        );
        let stream = store.stream("s").unwrap();
        assert_holds(&stream, 300);
        fill(&stream, 300..400, Durability::Sync);
        drop(stream);
        drop(store);
        assert_holds(&base.open(small_opts()).stream("s").unwrap(), 400);
    }
}

#[test]
fn a_segment_from_another_stream_or_a_future_version_is_refused() {
    for disk in Disk::both() {
        let base = prepared(disk, 300, Durability::Sync);
        let segs = base.segments("s");
        let mut bytes = base.read(&segs[1]);
        bytes[8] = 9; // format version
        base.write(&segs[1], &bytes);
        match base.try_open(small_opts()) {
            Err(Error::UnsupportedVersion { found: 9, .. }) => {}
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        // A header copied from another stream's folder.
        let other = base.empty_like();
        let store = other.open(small_opts());
        fill(&store.stream("t").unwrap(), 0..10, Durability::Sync);
        drop(store);
        let foreign = other.read(&other.segments("t")[0]);
        base.write(&segs[0], &foreign);
        bytes[8] = 1;
        base.write(&segs[1], &bytes);
        let (_, offset, kind) = expect_corruption(&base, small_opts());
        assert_eq!(
            (offset, kind),
            (
                0,
                CorruptionKind::WrongSegment("stream name differs from its folder")
            )
        );
    }
}

#[test]
fn recovery_is_idempotent() {
    for disk in Disk::both() {
        let base = crashed(disk, 200, Durability::Buffered);
        let tail = last_segment(&base);
        let end = base.frame_spans(&tail).last().unwrap().1;
        base.patch(&tail, end - 10, b"garbage-garbage-garbage");
        let read_only = base.open(Options::default().read_only(true));
        let before: Vec<_> = read_all(&read_only.stream("s").unwrap());
        drop(read_only);
        let first = base.open(small_opts());
        assert_eq!(first.recovery_report().cuts.len(), 1);
        let after: Vec<_> = read_all(&first.stream("s").unwrap());
        assert_eq!(before, after, "a read-only open sees what recovery keeps");
        drop(first);
        let second = base.open(small_opts());
        assert!(second.recovery_report().cuts.is_empty());
        assert_eq!(read_all(&second.stream("s").unwrap()), after);
    }
}

fn lamplog_path(root: &Path, first_seq: u64) -> PathBuf {
    stream_dir(root, "s").join(format!("{first_seq:020}.seg"))
}

/// Regression (issue 10): reopening with a lower `record_bytes_max` cut a
/// Sync-acknowledged record as a "torn tail" after a crash (the next append
/// reused its seq), and after a clean close called it an impossible length.
/// The option limits new appends only: every frame valid when written stays
/// valid, in recovery, readers and `verify`.
#[test]
fn lowering_record_bytes_max_keeps_every_record_written_under_the_old_limit() {
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let higher = small_opts().record_bytes_max(8 << 10);
    let lower = small_opts().record_bytes_max(4096);
    for (clean, disk) in [false, true]
        .into_iter()
        .flat_map(|c| Disk::both().map(|d| (c, d)))
    {
        let store = disk.open(higher.clone());
        let stream = store.stream("s").unwrap();
        stream.append(br#"{"a":1}"#, Durability::Sync).unwrap();
        assert_eq!(
            stream.append(big.as_bytes(), Durability::Sync).unwrap().seq,
            2
        );
        drop(stream);
        if clean {
            store.close().unwrap();
        } else {
            store.abandon();
        }
        for read_only in [true, false] {
            let store = disk.open(lower.clone().read_only(read_only));
            let stream = store.stream("s").unwrap();
            assert_eq!(stream.last_seq(), 2, "clean close: {clean}");
            assert_eq!(stream.get(2).unwrap().unwrap().payload(), big.as_bytes());
            assert_eq!(read_all(&stream).len(), 2);
            stream.verify().unwrap();
            if !read_only {
                assert!(matches!(
                    stream.append(big.as_bytes(), Durability::Sync),
                    Err(Error::RecordTooLarge { max: 4096, .. })
                ));
                assert_eq!(stream.append(b"{}", Durability::Sync).unwrap().seq, 3);
            }
        }
    }
}
