//! Archiving: whole segments before a checkpoint leave the live log; reads
//! of them say where they went; recovery accepts the shorter log.

mod common;

use std::fs;

use common::*;
use lamplog::{CorruptionKind, Durability, Error, Store, ARCHIVE_DIR};

#[test]
fn archived_segments_leave_the_live_log_and_reads_say_where_they_went() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..2000, Durability::Buffered);
    let ckpt = s.checkpoint("snap").unwrap();
    fill(&s, 2000..2100, Durability::Sync);
    let before = segments(dir.path(), "s").len();
    let archived = s.archive_before(&ckpt).unwrap();
    assert!(archived.segments > 5, "{archived:?}");
    assert!(archived.live_from_seq > 1 && archived.live_from_seq <= ckpt.seq + 1);
    assert_eq!(s.first_seq(), archived.live_from_seq);
    assert_eq!(segments(dir.path(), "s").len(), before - archived.segments);
    let archive = stream_dir(dir.path(), "s").join(ARCHIVE_DIR);
    assert_eq!(files_with_ext(&archive, &["seg"]).len(), archived.segments);
    // The archived range: a typed error naming the archive.
    match s.get(1) {
        Err(Error::Archived {
            seq: 1, location, ..
        }) => assert_eq!(location, archive),
        other => panic!("expected Archived, got {other:?}"),
    }
    assert!(matches!(
        s.iter_from_seq(2).next(),
        Some(Err(Error::Archived { .. }))
    ));
    assert!(matches!(
        s.iter_from_lamport(1).next(),
        Some(Err(Error::Archived { .. }))
    ));
    // So do queries whose seq or Lamport range starts there.
    assert!(matches!(
        s.query().lamport(1..).iter().next(),
        Some(Err(Error::Archived { .. }))
    ));
    assert!(matches!(
        s.query().seq(2..).iter().next(),
        Some(Err(Error::Archived { .. }))
    ));
    // The live log reads as before from its first record.
    let live: Vec<_> = read_all(&s);
    assert_eq!(live[0].seq(), archived.live_from_seq);
    assert_eq!(live.last().unwrap().seq(), 2101);
    assert_eq!(s.replay_since_checkpoint().unwrap().count(), 100);
    // Nothing more to archive before the same checkpoint.
    assert_eq!(s.archive_before(&ckpt).unwrap().segments, 0);
    drop(s);
    drop(store);
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    assert_eq!(s.first_seq(), archived.live_from_seq);
    assert_eq!(s.append(payload(2100), Durability::Sync).unwrap().seq, 2102);
    assert_eq!(
        s.get(2000).unwrap().unwrap().payload(),
        payload(1999).as_slice()
    );
}

#[test]
fn a_crash_during_archiving_or_a_lost_marker() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        fill(&s, 0..1500, Durability::Buffered);
    }
    // The marker was written but no segment moved yet: the log is whole.
    let segs = segments(dir.path(), "s");
    let third = first_seq_of(&segs[2]);
    fs::write(
        stream_dir(dir.path(), "s").join("archive.json"),
        format!(r#"{{"live_from_seq":{third}}}"#),
    )
    .unwrap();
    let store = open(dir.path(), small_opts());
    assert_eq!(store.stream("s").unwrap().first_seq(), 1);
    drop(store);
    // Only the first segment moved before the crash: still accepted.
    let archive = stream_dir(dir.path(), "s").join(ARCHIVE_DIR);
    fs::create_dir_all(&archive).unwrap();
    fs::rename(&segs[0], archive.join(segs[0].file_name().unwrap())).unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    assert!(s.first_seq() > 1);
    assert_eq!(read_all(&s).last().unwrap().seq(), 1500);
    drop(s);
    drop(store);
    // Without the marker, a log that starts late has lost its beginning.
    fs::remove_file(stream_dir(dir.path(), "s").join("archive.json")).unwrap();
    match Store::open(dir.path(), small_opts()) {
        Err(Error::Corruption {
            kind: CorruptionKind::SequenceGap { expected: 1, .. },
            ..
        }) => {}
        other => panic!("expected a sequence gap, got {other:?}"),
    }
}

/// Regression (issue 9, found by reading): two concurrent `archive_before`
/// calls each computed what to move from the same segment list, and the one
/// with the older checkpoint could write archive.json last, naming a seq
/// below the first live segment: a strict open then reported a sequence gap.
#[test]
fn concurrent_archive_before_calls_leave_a_log_that_opens() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let (older, newer) = {
            let store = open(dir.path(), small_opts());
            let s = store.stream("s").unwrap();
            fill(&s, 0..600, Durability::Buffered);
            let older = s.checkpoint("older").unwrap();
            fill(&s, 600..1500, Durability::Buffered);
            let newer = s.checkpoint("newer").unwrap();
            fill(&s, 1500..1600, Durability::Sync);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let calls: Vec<_> = [older.clone(), newer.clone()]
                .into_iter()
                .map(|c| {
                    let (s, barrier) = (s.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        s.archive_before(&c).unwrap()
                    })
                })
                .collect();
            for call in calls {
                call.join().unwrap();
            }
            assert!(s.first_seq() > older.seq / 2, "round {round}");
            (older, newer)
        };
        let store = Store::open(dir.path(), small_opts())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let s = store.stream("s").unwrap();
        assert!(s.first_seq() <= newer.seq + 1 && s.first_seq() > older.seq / 2);
        let live = read_all(&s);
        assert_eq!(live[0].seq(), s.first_seq());
        assert_eq!(live.last().unwrap().seq(), 1602);
    }
}

/// Regression (issue 9, defect 5): an iterator that had read into the
/// archived range went on to the next live segment, skipping every seq in
/// between without a word; `subscribe_from` a seq before the live log
/// started at the first live seq. A reader sees every seq in order, or gets
/// `Error::Archived` for the first one it can no longer read.
#[test]
fn an_iterator_held_across_archive_before_reports_archived_instead_of_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..2000, Durability::Buffered);
    let ckpt = s.checkpoint("snap").unwrap();
    fill(&s, 2000..2100, Durability::Sync);
    let mut iter = s.iter();
    let mut seek = s.iter_from_seq(40);
    let mut tail = s.subscribe_from(1).unwrap();
    let read: Vec<u64> = iter.by_ref().take(79).map(|r| r.unwrap().seq()).collect();
    assert_eq!(read, (1..=79).collect::<Vec<_>>());
    assert_eq!(seek.next().unwrap().unwrap().seq(), 40);
    assert_eq!(tail.next().unwrap().unwrap().seq(), 1);
    let archived = s.archive_before(&ckpt).unwrap();
    assert!(archived.live_from_seq > 200, "{archived:?}");
    for (name, reader, mut next) in [
        (
            "iter",
            &mut iter as &mut dyn Iterator<Item = lamplog::Result<lamplog::Record>>,
            80,
        ),
        ("iter_from_seq", &mut seek, 41),
        ("subscription", &mut tail, 2),
    ] {
        loop {
            match reader.next() {
                Some(Ok(r)) => {
                    assert_eq!(r.seq(), next, "{name}: a record was skipped");
                    next += 1;
                }
                Some(Err(Error::Archived { seq, .. })) => {
                    assert_eq!(seq, next, "{name}: archived error names the wrong seq");
                    break;
                }
                other => panic!("{name}: expected records then Archived at {next}, got {other:?}"),
            }
        }
        assert!(next < archived.live_from_seq, "{name}");
        assert!(reader.next().is_none(), "{name}: nothing after the error");
    }
    // A subscription that starts before the live log says so at once.
    let mut late = s.subscribe_from(1).unwrap();
    assert!(matches!(
        late.next_timeout(std::time::Duration::from_secs(1)),
        Some(Err(Error::Archived { seq: 1, .. }))
    ));
    let mut live = s.subscribe_from(archived.live_from_seq).unwrap();
    assert_eq!(live.next().unwrap().unwrap().seq(), archived.live_from_seq);
}

/// Seqs start at 1, so a seek to seq 0 is a seek to the start, never an
/// `Archived` error on a stream that was never archived (issue 10, item 7).
#[test]
fn a_seek_to_seq_zero_reads_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..5, Durability::Sync);
    let seqs = |it: &mut dyn Iterator<Item = lamplog::Result<lamplog::Record>>| {
        it.map(|r| r.unwrap().seq()).collect::<Vec<_>>()
    };
    assert_eq!(seqs(&mut s.iter_from_seq(0)), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&mut s.query().seq(0..).iter()), [1, 2, 3, 4, 5]);
    assert!(s.get(0).unwrap().is_none());
}

/// Regression (issue 10): `archive_before` took another stream's checkpoint
/// on its word and archived segments of a stream that had no checkpoint at
/// all. A checkpoint names its stream and must be held by the log it is
/// used on; anything else is `UnknownCheckpoint` and moves nothing.
#[test]
fn archive_before_refuses_a_checkpoint_this_stream_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let a = store.stream("a").unwrap();
    let b = store.stream("b").unwrap();
    fill(&a, 0..2000, Durability::Buffered);
    fill(&b, 0..2000, Durability::Buffered);
    let theirs = a.checkpoint("snap").unwrap();
    let before = segments(dir.path(), "b");
    assert!(before.len() > 5);
    let mut forged = theirs.clone();
    forged.stream = "b".into();
    let mut misplaced = b.checkpoint("real").unwrap();
    misplaced.record_seq -= 1;
    misplaced.seq -= 1;
    for wrong in [&theirs, &forged, &misplaced] {
        match b.archive_before(wrong) {
            Err(Error::UnknownCheckpoint { stream, .. }) => assert_eq!(stream, "b"),
            other => panic!("{wrong:?}: expected UnknownCheckpoint, got {other:?}"),
        }
        assert!(matches!(
            b.replay_since(wrong).next(),
            Some(Err(Error::UnknownCheckpoint { .. }))
        ));
    }
    assert_eq!(segments(dir.path(), "b"), before, "nothing moved");
    assert_eq!(read_all(&b).len(), 2001);
    // The stream's own checkpoint works, and again once it was used.
    let own = b.latest_checkpoint().unwrap().unwrap();
    assert!(b.archive_before(&own).unwrap().segments > 5);
    assert_eq!(b.archive_before(&own).unwrap().segments, 0);
}

/// Regression (issue 10): a crash between a checkpoint record and the
/// replacement of checkpoint.json left the file naming the older
/// checkpoint; once `archive_before(newest)` archived the older one's
/// record, every checkpoint lookup failed with `Archived` (after reopen
/// too) instead of checking the hint against the live log.
#[test]
fn a_stale_checkpoint_file_naming_an_archived_record_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let file = stream_dir(dir.path(), "s").join(lamplog::CHECKPOINT_FILE);
    let newest = {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        fill(&s, 0..300, Durability::Buffered);
        s.checkpoint("old").unwrap();
        let stale = fs::read(&file).unwrap();
        fill(&s, 300..2000, Durability::Buffered);
        let newest = s.checkpoint("new").unwrap();
        fill(&s, 2000..2010, Durability::Sync);
        // What a crash before the file's replacement leaves.
        fs::write(&file, stale).unwrap();
        newest
    };
    let check = |s: &lamplog::Stream| {
        assert_eq!(s.latest_checkpoint().unwrap(), Some(newest.clone()));
        assert_eq!(s.replay_since_checkpoint().unwrap().count(), 10);
    };
    {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        // A fresh handle: archive on the newest checkpoint (found in the
        // log), with the stale file still in place.
        let stale = fs::read(&file).unwrap();
        assert!(s.archive_before(&newest).unwrap().segments > 5);
        fs::write(&file, stale).unwrap();
    }
    for opts in [lamplog::Options::default().read_only(true), small_opts()] {
        let store = open(dir.path(), opts);
        check(&store.stream("s").unwrap());
    }
}

/// Regression (issue 10): a kill part way through archiving could leave a
/// segment's `.idx` in the live folder after the segment had moved (the
/// segment moved first). Derived files now move before their segment, and
/// a writable open deletes any derived file whose segment is not in the
/// folder (what older versions, or a filesystem that reorders renames,
/// may leave).
#[test]
fn derived_files_left_without_their_segment_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        fill(&s, 0..2000, Durability::Buffered);
        let ckpt = s.checkpoint("snap").unwrap();
        assert!(s.archive_before(&ckpt).unwrap().segments > 2);
    }
    let live = stream_dir(dir.path(), "s");
    let archive = live.join(ARCHIVE_DIR);
    let mut orphans = Vec::new();
    for path in files_with_ext(&archive, &["idx", "ids"]) {
        let orphan = live.join(path.file_name().unwrap());
        fs::copy(&path, &orphan).unwrap();
        orphans.push(orphan);
    }
    assert!(orphans.len() > 4);
    let reader = Store::open(dir.path(), lamplog::Options::default().read_only(true)).unwrap();
    let s = reader.stream("s").unwrap();
    assert_eq!(read_all(&s).len() as u64, s.last_seq() - s.first_seq() + 1);
    drop(s);
    drop(reader);
    assert!(
        orphans.iter().all(|o| o.exists()),
        "a read-only open changes nothing"
    );
    let store = open(dir.path(), small_opts());
    assert!(orphans.iter().all(|o| !o.exists()), "orphans removed");
    for path in files_with_ext(&live, &["idx", "ids"]) {
        assert!(path.with_extension("seg").exists(), "{}", path.display());
    }
    store.stream("s").unwrap().verify().unwrap();
}
