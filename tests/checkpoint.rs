//! Checkpoints: records that crystallise history, replay after them, and a
//! derived checkpoint.json that is rebuilt from the log.

mod common;

use std::fs;

use common::*;
use lamplog::{Checkpoint, Durability, Kind, Options, Store, CHECKPOINT_FILE};

#[test]
fn replay_since_checkpoint_yields_only_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("session").unwrap();
    assert!(s.latest_checkpoint().unwrap().is_none());
    assert_eq!(s.replay_since_checkpoint().unwrap().count(), 0);
    fill(&s, 0..500, Durability::Buffered);
    let first = s.checkpoint("snap-1").unwrap();
    assert_eq!(
        (first.seq, first.record_seq, first.snapshot_id.as_str()),
        (500, 501, "snap-1")
    );
    assert_eq!(first.lamport, 500);
    for i in 500..800 {
        s.append(payload(i), Durability::Buffered).unwrap();
    }
    let second = s.checkpoint("snap-2").unwrap();
    s.append(br#"{"after":"snap-2"}"#, Durability::Sync)
        .unwrap();
    let since: Vec<_> = s
        .replay_since_checkpoint()
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].payload(), br#"{"after":"snap-2"}"#);
    // An older checkpoint replays from its own point.
    let since_first: Vec<_> = s.replay_since(&first).map(|r| r.unwrap()).collect();
    assert_eq!(since_first.len(), 300 + 1 + 1);
    assert_eq!(since_first[300].kind(), Kind::Checkpoint);
    assert_eq!(
        Checkpoint::from_record("session", &since_first[300]),
        Some(second.clone())
    );
    assert_eq!(s.checkpoints().unwrap(), vec![first, second.clone()]);
    drop(s);
    drop(store);
    let store = open(dir.path(), small_opts());
    let s = store.stream("session").unwrap();
    assert_eq!(s.latest_checkpoint().unwrap(), Some(second));
    assert_eq!(s.replay_since_checkpoint().unwrap().count(), 1);
}

#[test]
fn a_missing_garbled_or_stale_checkpoint_file_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = stream_dir(dir.path(), "s").join(CHECKPOINT_FILE);
    let (older, newest) = {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        fill(&s, 0..300, Durability::Buffered);
        let older = s.checkpoint("a").unwrap();
        fill(&s, 300..1200, Durability::Buffered);
        let newest = s.checkpoint("b").unwrap();
        fill(&s, 1200..1210, Durability::Sync);
        (older, newest)
    };
    let stale = fs::read(&file).unwrap();
    let as_stored: Checkpoint = serde_json::from_slice(&stale).unwrap();
    assert_eq!(as_stored, newest);
    let older_json = serde_json::to_vec(&older).unwrap();
    for damage in [
        None,
        Some(b"{ not json".to_vec()),
        Some(older_json.clone()),
        Some(br#"{"snapshot_id":"b","seq":5,"lamport":5,"record_seq":6}"#.to_vec()),
    ] {
        match &damage {
            None => fs::remove_file(&file).unwrap(),
            Some(bytes) => fs::write(&file, bytes).unwrap(),
        }
        // Read-only: found from the log, nothing written.
        let reader = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
        assert_eq!(
            reader.stream("s").unwrap().latest_checkpoint().unwrap(),
            Some(newest.clone())
        );
        assert_eq!(fs::read(&file).ok(), damage.clone());
        drop(reader);
        // Writable: found and the file rewritten.
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        assert_eq!(
            s.latest_checkpoint().unwrap(),
            Some(newest.clone()),
            "after {damage:?}"
        );
        assert_eq!(
            serde_json::from_slice::<Checkpoint>(&fs::read(&file).unwrap()).unwrap(),
            newest
        );
        assert_eq!(s.replay_since_checkpoint().unwrap().count(), 10);
    }
}

/// Regression (issue 9, defect 3): every checkpoint call replaced
/// checkpoint.json through one fixed temp name, so concurrent calls renamed
/// each other's temp file away and failed (`rename ... NotFound`), some after
/// their checkpoint record was durable.
#[test]
fn concurrent_checkpoints_all_succeed_and_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        s.append(payload(t * 100 + i), Durability::Buffered)
                            .unwrap();
                        s.checkpoint(&format!("t{t}-{i}"))
                            .unwrap_or_else(|e| panic!("checkpoint t{t}-{i}: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut made: Vec<Checkpoint> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    made.sort_by_key(|c| c.record_seq);
    assert_eq!(made.len(), 160);
    assert_eq!(s.checkpoints().unwrap(), made);
    let newest = made.last().unwrap().clone();
    assert_eq!(s.latest_checkpoint().unwrap().as_ref(), Some(&newest));
    // The derived file names the newest checkpoint, not the last to finish.
    let on_disk: Checkpoint = serde_json::from_slice(
        &fs::read(stream_dir(dir.path(), "s").join(CHECKPOINT_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk, newest);
    drop(s);
    store.close().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    assert_eq!(s.checkpoints().unwrap(), made);
    assert_eq!(s.latest_checkpoint().unwrap(), Some(newest));
    // No temp file is left behind.
    let leftovers: Vec<_> = fs::read_dir(stream_dir(dir.path(), "s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Regression (issue 10): a snapshot id that needs a JSON escape was stored
/// but invisible: its payload was parsed into a borrowed `&str`, which
/// cannot hold an unescaped copy, so `checkpoints()` left it out,
/// `latest_checkpoint()` returned the one before and replay started there.
/// Any id a caller may pass round-trips.
#[test]
fn snapshot_ids_that_need_json_escapes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        "plain",
        r#"C:\snap\"2""#,
        "tab\tnew\nline",
        "\u{0}\u{1f}\u{7f}",
        "ünïcødé ✓ 🦀",
        "\\u0041 is not A",
        "</script>",
    ];
    {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        for (i, id) in ids.iter().enumerate() {
            s.append(payload(i as u64), Durability::Buffered).unwrap();
            let c = s.checkpoint(id).unwrap();
            assert_eq!(c.snapshot_id, *id);
            assert_eq!(s.latest_checkpoint().unwrap(), Some(c.clone()));
            assert_eq!(s.replay_since_checkpoint().unwrap().count(), 0, "{id:?}");
        }
        for bad in [String::new(), "x".repeat(1025)] {
            assert!(matches!(
                s.checkpoint(&bad),
                Err(lamplog::Error::InvalidSnapshotId { .. })
            ));
        }
        let listed: Vec<String> = s
            .checkpoints()
            .unwrap()
            .into_iter()
            .map(|c| c.snapshot_id)
            .collect();
        assert_eq!(listed, ids);
    }
    for opts in [small_opts(), Options::default().read_only(true)] {
        let store = open(dir.path(), opts);
        let s = store.stream("s").unwrap();
        let latest = s.latest_checkpoint().unwrap().unwrap();
        assert_eq!(latest.snapshot_id, *ids.last().unwrap());
        assert_eq!(s.checkpoints().unwrap().len(), ids.len());
    }
}
