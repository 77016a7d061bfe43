//! Typed ops: content addresses, Lamport stamps, per-domain deltas.

mod common;

use common::*;
use lamplog::op::{NewOp, OpEntry, OpLog};
use lamplog::Durability;
use serde_json::value::RawValue;

/// A change to one field of an op.
type Change = Box<dyn Fn(&mut OpEntry)>;

fn sample() -> OpEntry {
    OpEntry {
        op_id: String::new(),
        actor_id: "agent-7".into(),
        lamport_ts: 42,
        parent_op_ids: vec!["sha256:aa".into()],
        domain: "music".into(),
        domain_op: RawValue::from_string(
            r#"{"insert_note": {"pitch": 60, "track": "bass"}}"#.into(),
        )
        .unwrap(),
        created_at: "2026-11-22T03:00:00.000000Z".into(),
        intent_id: "intent-1".into(),
        reservation_id: String::new(),
    }
}

#[test]
fn op_ids_are_stable_and_change_with_every_field() {
    let op = sample();
    let id = op.compute_id();
    assert_eq!(id, sample().compute_id());
    // The content address is part of the format (docs/FORMAT.md, "Typed
    // ops"): SHA-256 of the canonical array below, computed independently
    // (Python: json.dumps(..., separators=(",", ":"), sort_keys=True)).
    // ["agent-7",42,["sha256:aa"],"music",{"insert_note":{"pitch":60,"track":"bass"}},
    //  "2026-11-22T03:00:00.000000Z","intent-1",""]
    assert_eq!(
        id, "sha256:b239fd820a13825fad4cdae88dbb97a9817318f11bad47b855a7eb7dbda677eb",
        "canonical encoding changed"
    );
    // Formatting of domain_op does not matter; its content does.
    let mut reformatted = sample();
    reformatted.domain_op =
        RawValue::from_string(r#"{"insert_note":{"track":"bass","pitch":60}}"#.into()).unwrap();
    assert_eq!(reformatted.compute_id(), id);
    let changes: Vec<Change> = vec![
        Box::new(|o| o.actor_id.push('x')),
        Box::new(|o| o.lamport_ts += 1),
        Box::new(|o| o.parent_op_ids.push("sha256:bb".into())),
        Box::new(|o| o.domain = "code".into()),
        Box::new(|o| {
            o.domain_op =
                RawValue::from_string(r#"{"insert_note":{"pitch":61,"track":"bass"}}"#.into())
                    .unwrap()
        }),
        Box::new(|o| o.created_at.push('x')),
        Box::new(|o| o.intent_id.clear()),
        Box::new(|o| o.reservation_id.push('r')),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut changed = sample();
        change(&mut changed);
        assert_ne!(changed.compute_id(), id, "field change {i} kept the id");
    }
}

#[test]
fn ops_are_stamped_stored_unchanged_and_sliced_by_domain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("session-1").unwrap());
    let raw = r#"{ "edit" : [1, 2.50, "x"] }"#;
    let first = log
        .append_op(NewOp::new("human", "code", raw).unwrap(), Durability::Sync)
        .unwrap();
    assert_eq!(
        (first.lamport_ts, first.op_id.clone()),
        (1, first.compute_id())
    );
    assert_eq!(first.domain_op.get(), raw, "stored unchanged");
    let mut child = NewOp::new("agent-2", "music", r#"{"tempo":120}"#).unwrap();
    child.parent_op_ids = vec![first.op_id.clone()];
    child.observed_lamport = 10;
    let second = log.append_op(child, Durability::Sync).unwrap();
    assert_eq!(second.lamport_ts, 11);
    assert_eq!(
        log.stream().get(2).unwrap().unwrap().lamport(),
        11,
        "the op's stamp is its record's Lamport"
    );
    log.checkpoint("snap-1").unwrap();
    for i in 0..5 {
        let domain = if i % 2 == 0 { "music" } else { "code" };
        log.append_op(
            NewOp::new("agent-2", domain, &format!(r#"{{"n":{i}}}"#)).unwrap(),
            Durability::Buffered,
        )
        .unwrap();
    }
    let music = log.ops_since_checkpoint("music").unwrap();
    assert_eq!(music.ops.len(), 3);
    assert!(music.ops.iter().all(|o| o.domain == "music"));
    assert_eq!(
        music.lamport_range,
        Some((music.ops[0].lamport_ts, music.ops[2].lamport_ts))
    );
    assert_eq!(log.ops_since_checkpoint("code").unwrap().ops.len(), 2);
    assert!(log
        .ops_since_checkpoint("video")
        .unwrap()
        .lamport_range
        .is_none());
    drop(log);
    drop(store);
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("session-1").unwrap());
    let ops: Vec<OpEntry> = log.ops().map(|o| o.unwrap()).collect();
    assert_eq!(ops.len(), 7);
    assert_eq!(ops[0], first);
    assert!(ops.iter().all(|o| o.op_id == o.compute_id()));
    assert_eq!(store.streams(), vec!["session-1"]);
}

fn op_numbered(i: u64) -> OpEntry {
    let mut op = sample();
    op.lamport_ts = i;
    op.domain_op = RawValue::from_string(format!(r#"{{"n":{i}}}"#)).unwrap();
    op.op_id = op.compute_id();
    op
}

#[test]
fn inserting_an_op_twice_writes_it_once_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ids_files = |root: &std::path::Path| files_with_ext(&stream_dir(root, "s"), &["ids"]).len();
    {
        let store = open(dir.path(), small_opts());
        let log = OpLog::new(store.stream("s").unwrap());
        for i in 1..=400 {
            let first = log
                .insert_op(&op_numbered(i), Durability::Buffered)
                .unwrap();
            assert!(first.inserted);
            let again = log
                .insert_op(&op_numbered(i), Durability::Buffered)
                .unwrap();
            assert_eq!(
                (again.seq, again.lamport, again.inserted),
                (first.seq, first.lamport, false)
            );
        }
        assert_eq!(log.stream().last_seq(), 400);
        // Ops appended the ordinary way are found too.
        let appended = log
            .append_op(NewOp::new("a", "code", "{}").unwrap(), Durability::Sync)
            .unwrap();
        assert!(!log.insert_op(&appended, Durability::Sync).unwrap().inserted);
        let mut forged = op_numbered(1);
        forged.actor_id = "someone-else".into();
        assert!(matches!(
            log.insert_op(&forged, Durability::Sync),
            Err(lamplog::Error::OpIdMismatch { .. })
        ));
    }
    assert!(segments(dir.path(), "s").len() > 3);
    assert!(
        ids_files(dir.path()) >= segments(dir.path(), "s").len() - 1,
        "sealed segments keep their ids on disk"
    );
    // After reopen (ids read from disk, or rebuilt where the file is gone or damaged).
    let first_ids = stream_dir(dir.path(), "s").join("00000000000000000001.ids");
    std::fs::remove_file(&first_ids).unwrap();
    let second = files_with_ext(&stream_dir(dir.path(), "s"), &["ids"])[0].clone();
    std::fs::write(&second, b"garbage").unwrap();
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("s").unwrap());
    for i in [1, 2, 150, 399, 400] {
        assert!(
            !log.insert_op(&op_numbered(i), Durability::Sync)
                .unwrap()
                .inserted,
            "op {i} written again"
        );
    }
    assert!(
        log.insert_op(&op_numbered(401), Durability::Sync)
            .unwrap()
            .inserted
    );
    assert_eq!(log.stream().last_seq(), 402);
    assert!(first_ids.exists(), "a missing ids file is rebuilt");
}

#[test]
fn concurrent_inserts_of_one_op_write_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("s").unwrap());
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                (1..=50)
                    .filter(|&i| {
                        log.insert_op(&op_numbered(i), Durability::Sync)
                            .unwrap()
                            .inserted
                    })
                    .count()
            })
        })
        .collect();
    let inserted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(inserted, 50);
    assert_eq!(log.stream().last_seq(), 50);
}

/// Every op in the stream, re-inserted: none may be written again.
fn reinsert_all(log: &OpLog) {
    let present: Vec<OpEntry> = log.ops().map(|o| o.unwrap()).collect();
    let last = log.stream().last_seq();
    for op in &present {
        let again = log.insert_op(op, Durability::Buffered).unwrap();
        assert!(
            !again.inserted,
            "op at lamport {} written again",
            op.lamport_ts
        );
    }
    assert_eq!(log.stream().last_seq(), last);
}

/// Regression (issue 10): a repair that cut a sealed segment left its
/// `.ids` file; once the segment filled and sealed again, the stale file
/// was trusted and re-inserting existing ops wrote some of them again. An
/// `.ids` file names the exact segment contents it describes, and a repair
/// that rewrites a segment (issue 12: it keeps the records after the
/// damage) deletes the segment's derived files first.
#[test]
fn insert_op_stays_idempotent_after_a_repair_cuts_a_segment_with_an_ids_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_opts());
        let log = OpLog::new(store.stream("s").unwrap());
        for i in 1..=400 {
            log.insert_op(&op_numbered(i), Durability::Buffered)
                .unwrap();
        }
    }
    let segs = segments(dir.path(), "s");
    assert!(segs.len() > 4);
    let damaged = &segs[2];
    let ids = damaged.with_extension("ids");
    assert!(ids.exists());
    let spans = frame_spans(damaged);
    let (start, _) = spans[spans.len() / 2];
    patch(damaged, start + 50, b"\xff");
    let repair = small_opts().recovery(lamplog::RecoveryMode::Repair);
    {
        let store = open(dir.path(), repair);
        let lost: Vec<_> = store
            .recovery_report()
            .cuts
            .iter()
            .filter_map(|c| c.lost.clone())
            .collect();
        assert_eq!(lost.len(), 1, "one op lost");
        assert_eq!(
            segments(dir.path(), "s").len(),
            segs.len(),
            "nothing else cut"
        );
        assert!(!ids.exists(), "the stale ids file is gone");
        // New ops after the repair.
        let s = store.stream("s").unwrap();
        for i in 1000..1100 {
            let op = serde_json::to_vec(&op_numbered(i)).unwrap();
            s.append(op, Durability::Buffered).unwrap();
        }
    }
    let store = open(dir.path(), small_opts());
    reinsert_all(&OpLog::new(store.stream("s").unwrap()));
}

/// Regression (issue 10): after `archive_before` and a reopen, re-inserting
/// an archived op wrote it again (in the same process it said `Archived`).
/// The `.ids` files go into the archive with their segments (written first
/// if missing), so an archived op is `Archived` in both cases.
#[test]
fn an_archived_op_is_never_inserted_again_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let live_from = {
        let store = open(dir.path(), small_opts());
        let s = store.stream("s").unwrap();
        // Appended, never inserted: no ids file exists before the archive.
        let log = OpLog::new(s.clone());
        for i in 1..=400 {
            let op = op_numbered(i);
            s.append(serde_json::to_vec(&op).unwrap(), Durability::Buffered)
                .unwrap();
        }
        let checkpoint = log.checkpoint("snap").unwrap();
        let archived = s.archive_before(&checkpoint).unwrap();
        assert!(archived.segments > 2);
        for i in [1, 2] {
            assert!(matches!(
                log.insert_op(&op_numbered(i), Durability::Sync),
                Err(lamplog::Error::Archived { .. })
            ));
        }
        archived.live_from_seq
    };
    let live = stream_dir(dir.path(), "s");
    let archive = live.join(lamplog::ARCHIVE_DIR);
    for ext in ["ids", "idx"] {
        for path in files_with_ext(&live, &[ext]) {
            let seq: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert!(
                seq >= live_from,
                "{} left in the live folder",
                path.display()
            );
        }
        let archived = files_with_ext(&archive, &[ext]).len();
        assert!(archived > 2, "{ext} files archived");
    }
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("s").unwrap());
    let last = log.stream().last_seq();
    for i in [1, 2, 3] {
        assert!(matches!(
            log.insert_op(&op_numbered(i), Durability::Sync),
            Err(lamplog::Error::Archived { .. })
        ));
    }
    assert!(
        !log.insert_op(&op_numbered(400), Durability::Sync)
            .unwrap()
            .inserted
    );
    assert_eq!(log.stream().last_seq(), last);
}

/// Regression (found while writing purge, issue 12): once the op id set was
/// built, an `archive_before` in the same process made every later
/// `insert_op` fail with `Archived`: the set went on reading from where it
/// had stopped, now archived. It now takes the archived segments' ids from
/// their `.ids` files and reads on from the live log.
#[test]
fn insert_op_after_an_archive_in_the_same_process_still_inserts_new_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let log = OpLog::new(s.clone());
    let first = log
        .append_op(
            NewOp::new("agent", "code", r#"{"n":0}"#).unwrap(),
            Durability::Sync,
        )
        .unwrap();
    // The set exists and covers the stream so far.
    assert!(!log.insert_op(&first, Durability::Sync).unwrap().inserted);
    fill(&s, 1..2000, Durability::Buffered);
    let ckpt = s.checkpoint("snap").unwrap();
    assert!(s.archive_before(&ckpt).unwrap().segments > 0);
    let new = log
        .append_op(
            NewOp::new("agent", "code", r#"{"n":1}"#).unwrap(),
            Durability::Buffered,
        )
        .unwrap();
    let fresh = op_numbered(5000);
    assert!(log.insert_op(&fresh, Durability::Sync).unwrap().inserted);
    assert!(!log.insert_op(&new, Durability::Sync).unwrap().inserted);
    // The archived op is still known: never inserted again.
    assert!(matches!(
        log.insert_op(&first, Durability::Sync),
        Err(lamplog::Error::Archived { seq: 1, .. })
    ));
}
