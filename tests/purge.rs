//! Purging: whole segments at or below a seq are deleted for good, live or
//! archived; reads of them say they were purged; recovery, `verify` and a
//! crash at any point agree on where the log starts.

mod common;

use std::sync::Arc;

use common::*;
use lamplog::testing::{Fate, SimDisk};
use lamplog::{Durability, Error, Store, ARCHIVE_DIR};

fn assert_purged<T: std::fmt::Debug>(result: Option<lamplog::Result<T>>, seq: u64) {
    match result {
        Some(Err(Error::Purged { seq: s, .. })) => assert_eq!(s, seq),
        other => panic!("expected Purged for seq {seq}, got {other:?}"),
    }
}

#[test]
fn purged_segments_are_deleted_and_reads_say_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..2000, Durability::Buffered);
    let before = segments(dir.path(), "s");
    let purged = s.purge_through(1000).unwrap();
    assert!(purged.segments > 5, "{purged:?}");
    let start = purged.purged_before_seq;
    assert!(start > 1 && start <= 1001, "{purged:?}");
    assert_eq!(s.first_seq(), start);
    let after = segments(dir.path(), "s");
    assert_eq!(after.len(), before.len() - purged.segments);
    assert!(after.iter().all(|p| first_seq_of(p) >= start));
    let idx = files_with_ext(&stream_dir(dir.path(), "s"), &["idx"]);
    assert!(
        idx.iter().all(|p| first_seq_of(p) >= start),
        "no index is left behind"
    );
    // Purged seqs: a typed error; the rest reads as before.
    assert!(matches!(s.get(1), Err(Error::Purged { seq: 1, .. })));
    assert!(matches!(s.get(start - 1), Err(Error::Purged { .. })));
    assert_purged(s.iter_from_seq(2).next(), 2);
    assert_eq!(
        s.get(start).unwrap().unwrap().payload(),
        payload(start - 1).as_slice()
    );
    let live = read_all(&s);
    assert_eq!(live.first().unwrap().seq(), start);
    assert_eq!(live.len() as u64, 2000 - start + 1);
    s.verify().unwrap();
    // Nothing more below the same point; the tail segment is never purged.
    assert_eq!(s.purge_through(1000).unwrap().segments, 0);
    let all = s.purge_through(u64::MAX).unwrap();
    assert_eq!(segments(dir.path(), "s").len(), 1, "{all:?}");
    assert_eq!(s.last_seq(), 2000);
    s.append(payload(2000), Durability::Sync).unwrap();
    let start = all.purged_before_seq;
    drop(s);
    drop(store);

    for read_only in [true, false] {
        let store = open(dir.path(), small_opts().read_only(read_only));
        let s = store.stream("s").unwrap();
        assert_eq!(s.first_seq(), start);
        assert!(matches!(s.get(start - 1), Err(Error::Purged { .. })));
        assert_eq!(read_all(&s).len() as u64, 2001 - start + 1);
        assert_eq!(s.last_seq(), 2001);
        s.verify().unwrap();
    }
}

#[test]
fn purge_deletes_archived_segments_and_keeps_their_op_ids() {
    use lamplog::op::{NewOp, OpLog};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let ops = OpLog::new(s.clone());
    let first = ops
        .append_op(
            NewOp::new("agent", "code", r#"{"n":0}"#).unwrap(),
            Durability::Sync,
        )
        .unwrap();
    fill(&s, 1..2000, Durability::Buffered);
    let ckpt = s.checkpoint("snap").unwrap();
    fill(&s, 2000..2100, Durability::Sync);
    let archived = s.archive_before(&ckpt).unwrap();
    assert!(archived.segments > 5);
    let archive = stream_dir(dir.path(), "s").join(ARCHIVE_DIR);
    let archived_segs = files_with_ext(&archive, &["seg"]);
    // Purge half of the archive: those reads say purged, the rest archived.
    let mid = first_seq_of(&archived_segs[archived_segs.len() / 2]);
    let purged = s.purge_through(mid - 1).unwrap();
    assert_eq!(purged.purged_before_seq, mid);
    assert_eq!(purged.segments, archived_segs.len() / 2);
    assert!(files_with_ext(&archive, &["seg", "idx"])
        .iter()
        .all(|p| first_seq_of(p) >= mid));
    assert!(matches!(s.get(mid - 1), Err(Error::Purged { .. })));
    assert!(matches!(s.get(mid), Err(Error::Archived { .. })));
    // The op of the purged first segment is still known: never inserted
    // again (as an archived op, it is an error naming its fate).
    assert!(matches!(
        ops.insert_op(&first, Durability::Sync),
        Err(Error::Purged { seq: 1, .. })
    ));
    drop((s, ops));
    drop(store);
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    assert!(matches!(s.get(mid - 1), Err(Error::Purged { .. })));
    assert!(matches!(s.get(mid), Err(Error::Archived { .. })));
    let ops = OpLog::new(s);
    assert!(matches!(
        ops.insert_op(&first, Durability::Sync),
        Err(Error::Purged { seq: 1, .. })
    ));
}

#[test]
fn purge_refuses_a_read_only_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    fill(&store.stream("s").unwrap(), 0..10, Durability::Sync);
    drop(store);
    let store = open(dir.path(), small_opts().read_only(true));
    assert!(matches!(
        store.stream("s").unwrap().purge_through(5),
        Err(Error::ReadOnly)
    ));
}

/// A power cut at every operation of a purge: the image opens (read-only
/// and writable), holds every record above the purge point byte for byte,
/// and each record below it either reads as before (the purge had not
/// begun) or is purged, never anything else; a writable open leaves no
/// purged file behind.
#[test]
fn a_crash_at_any_point_of_a_purge_loses_nothing_it_keeps() {
    let disk = SimDisk::default();
    let opts = tiny_opts();
    let store = Store::open_with(Arc::new(disk.clone()), "/db", opts.clone()).unwrap();
    let s = store.stream("s").unwrap();
    fill(&s, 0..300, Durability::Sync);
    let start_ops = disk.ops();
    let purged = s.purge_through(150).unwrap();
    let end_ops = disk.ops();
    assert!(purged.segments > 3, "{purged:?}");
    let cut = purged.purged_before_seq;
    drop(s);
    drop(store);
    let points: Vec<usize> = (start_ops..=end_ops).collect();
    let mut checked = 0;
    disk.crash_images(
        &points,
        &[(Fate::Lost, false), (Fate::Kept, true)],
        |at, fate, _, image| {
            for read_only in [true, false] {
                let store = Store::open_with(
                    Arc::new(image.clone()),
                    "/db",
                    opts.clone().read_only(read_only),
                )
                .unwrap_or_else(|e| panic!("op {at} {fate:?}: {e}"));
                let s = store.stream("s").unwrap();
                let first = s.first_seq();
                assert!(first == 1 || first == cut, "op {at}: log starts at {first}");
                for seq in 1..=300u64 {
                    match s.get(seq) {
                        Ok(Some(r)) => assert_eq!(r.payload(), payload(seq - 1).as_slice()),
                        Err(Error::Purged { .. }) if seq < cut => {}
                        other => panic!("op {at} {fate:?} seq {seq}: {other:?}"),
                    }
                }
                s.verify().unwrap();
                if !read_only && first == cut {
                    // Nothing below the purge point is left in the live folder.
                    let live = image.file_bytes(
                        &std::path::Path::new("/db/streams/s").join(format!("{:020}.seg", 1)),
                    );
                    assert!(live.is_none(), "op {at}: a purged segment is still there");
                }
            }
            checked += 1;
        },
    );
    assert!(checked > 10, "{checked} crash points");
}
