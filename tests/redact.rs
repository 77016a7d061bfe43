//! Redaction: a record's payload is gone from every file of the store,
//! reads return the documented stub, every other record is byte-identical,
//! the chain still verifies, and a crash at any point of a redaction leaves
//! the original or the redacted record (a writable open finishes it).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use lamplog::op::{OpEntry, OpLog};
use lamplog::testing::{Backend, Fate, SimDisk};
use lamplog::{Durability, Error, Options, Store};

const SECRET: &str = "sk-live-4f9a0c7e1b2d3a5f";

fn secret_payload() -> Vec<u8> {
    format!(r#"{{"op":"paste","text":"the key is {SECRET}"}}"#).into_bytes()
}

fn stub_of(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap()
}

#[test]
fn a_redacted_payload_is_gone_from_every_file_and_reads_return_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..500, Durability::Buffered);
    let secret_seq = s
        .append(secret_payload(), Durability::Buffered)
        .unwrap()
        .seq;
    fill(&s, 501..1000, Durability::Sync);
    // A crash's leftover in quarantine holding the same bytes.
    let q = stream_dir(dir.path(), "s").join(lamplog::QUARANTINE_DIR);
    std::fs::create_dir_all(&q).unwrap();
    // A frame header (its length field is what matters) and the payload.
    let mut cut = b"garbage".to_vec();
    cut.extend_from_slice(&(secret_payload().len() as u32).to_le_bytes());
    cut.extend_from_slice(&[7; 40]);
    cut.extend_from_slice(&secret_payload());
    cut.extend_from_slice(b"1 unrelated bytes that stay");
    std::fs::write(q.join("00000000000000000001.seg.4000.1.cut"), &cut).unwrap();
    let before: Vec<_> = read_all(&s);
    let lamport = s.get(secret_seq).unwrap().unwrap().lamport();
    assert!(!files_holding(dir.path(), SECRET.as_bytes()).is_empty());

    let done = s.redact(secret_seq, "leaked API key \"prod\"").unwrap();
    assert_eq!((done.seq, done.lamport), (secret_seq, lamport));
    assert_eq!(done.sha256.len(), 64);
    assert_eq!(
        files_holding(dir.path(), SECRET.as_bytes()),
        Vec::<PathBuf>::new(),
        "the secret is in no file of the store"
    );
    let kept = std::fs::read(q.join("00000000000000000001.seg.4000.1.cut")).unwrap();
    assert!(
        kept.ends_with(b"1 unrelated bytes that stay"),
        "only the copy is zeroed"
    );
    let check = |s: &lamplog::Stream| {
        let after = read_all(s);
        assert_eq!(after.len(), before.len());
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(
                (a.seq(), a.lamport(), a.ts_us()),
                (b.seq(), b.lamport(), b.ts_us())
            );
            if a.seq() == secret_seq {
                assert!(b.is_redacted());
                let stub = stub_of(b.payload());
                assert_eq!(stub["redacted"], true);
                assert_eq!(stub["reason"], "leaked API key \"prod\"");
                assert_eq!(stub["sha256"], done.sha256.as_str());
            } else {
                assert_eq!(a.payload(), b.payload(), "seq {}", a.seq());
                assert!(!b.is_redacted());
            }
        }
        s.verify().unwrap();
        assert!(s.get(secret_seq).unwrap().unwrap().is_redacted());
    };
    check(&s);
    // Twice: nothing changes.
    assert_eq!(s.redact(secret_seq, "again").unwrap().sha256, done.sha256);
    check(&s);
    // Writing goes on; reopened, the same.
    s.append(payload(1000), Durability::Sync).unwrap();
    drop(s);
    store.close().unwrap();
    let store = open(dir.path(), small_opts());
    assert!(store.recovery_report().cuts.is_empty());
    let s = store.stream("s").unwrap();
    assert_eq!(s.last_seq(), 1001);
    let after = read_all(&s);
    assert!(after[secret_seq as usize - 1].is_redacted());
    s.verify().unwrap();
    let ro = open(dir.path(), small_opts().read_only(true));
    assert_eq!(
        stub_of(
            ro.stream("s")
                .unwrap()
                .get(secret_seq)
                .unwrap()
                .unwrap()
                .payload()
        )["reason"],
        "leaked API key \"prod\""
    );
}

#[test]
fn redacting_a_record_of_the_segment_being_written_seals_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..3, Durability::Buffered);
    let seq = s
        .append(secret_payload(), Durability::Buffered)
        .unwrap()
        .seq;
    let segments_before = segments(dir.path(), "s").len();
    s.redact(seq, "pasted a key").unwrap();
    assert_eq!(segments(dir.path(), "s").len(), segments_before + 1);
    assert!(files_holding(dir.path(), SECRET.as_bytes()).is_empty());
    // Readers in this process that map again see the stub; appends go on.
    let next = s.append(payload(9), Durability::Sync).unwrap();
    assert_eq!(next.seq, seq + 1);
    assert!(s.get(seq).unwrap().unwrap().is_redacted());
    s.verify().unwrap();
    drop(s);
    store.close().unwrap();
    let store = open(dir.path(), small_opts());
    store.verify().unwrap();
    assert_eq!(store.stream("s").unwrap().last_seq(), seq + 1);
}

#[test]
fn what_cannot_be_redacted_is_refused_with_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..5, Durability::Sync);
    let checkpoint = s.checkpoint("snap").unwrap();
    for (seq, reason) in [
        (0, "x".to_string()),
        (99, "x".to_string()),
        (checkpoint.record_seq, "x".to_string()),
        (2, "r".repeat(lamplog::REASON_LEN_MAX + 1)),
    ] {
        match s.redact(seq, &reason) {
            Err(Error::CannotRedact { seq: q, .. }) => assert_eq!(q, seq),
            other => panic!("seq {seq}: {other:?}"),
        }
    }
    assert!(read_all(&s).iter().all(|r| !r.is_redacted()));
    assert!(!stream_dir(dir.path(), "s")
        .join(lamplog::REDACTIONS_FILE)
        .exists());
    let ro = open(dir.path(), small_opts().read_only(true));
    assert!(matches!(
        ro.stream("s").unwrap().redact(2, "x"),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn redacting_an_op_keeps_its_id_and_lamport_and_it_is_never_inserted_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("s").unwrap());
    let op = |i: u64, text: &str| {
        let mut op = OpEntry {
            op_id: String::new(),
            actor_id: "agent-1".into(),
            lamport_ts: i + 1,
            parent_op_ids: Vec::new(),
            domain: "code".into(),
            domain_op: serde_json::value::RawValue::from_string(
                serde_json::json!({"i": i, "text": text}).to_string(),
            )
            .unwrap(),
            created_at: "2026-11-23T00:00:00.000000Z".into(),
            intent_id: String::new(),
            reservation_id: String::new(),
        };
        op.op_id = op.compute_id();
        op
    };
    let mut ops = Vec::new();
    for i in 0..300 {
        let text = if i == 150 { SECRET } else { "fine" };
        let entry = op(i, text);
        let inserted = log.insert_op(&entry, Durability::Buffered).unwrap();
        ops.push((entry, inserted.seq));
    }
    let (secret_op, seq) = ops[150].clone();
    let redacted = log.stream().redact(seq, "secret in an op").unwrap();
    let stub = stub_of(&redacted.stub);
    assert_eq!(stub["op_id"], secret_op.op_id.as_str());
    let record = log.stream().get(seq).unwrap().unwrap();
    assert_eq!(stub["lamport_ts"], record.lamport());
    assert!(files_holding(dir.path(), SECRET.as_bytes()).is_empty());
    // Replay skips the redacted op; inserting it again is a duplicate.
    let replayed: Vec<_> = log.ops().collect::<Result<_, _>>().unwrap();
    assert_eq!(replayed.len(), 299);
    assert!(
        !log.insert_op(&secret_op, Durability::Sync)
            .unwrap()
            .inserted
    );
    drop(log);
    store.close().unwrap();
    let store = open(dir.path(), small_opts());
    let log = OpLog::new(store.stream("s").unwrap());
    assert!(
        !log.insert_op(&secret_op, Durability::Sync)
            .unwrap()
            .inserted
    );
}

/// A crash at any operation of a redaction (unsynced writes lost or kept)
/// leaves the original record or the redacted one, every other record as
/// it was; a writable open finishes an interrupted redaction, after which
/// the secret is in no file.
#[test]
fn a_crash_at_any_point_of_a_redaction_is_finished_by_the_next_open() {
    let disk = SimDisk::default();
    let opts = tiny_opts();
    let store = Store::open_with(Arc::new(disk.clone()), "/db", opts.clone()).unwrap();
    let s = store.stream("s").unwrap();
    fill(&s, 0..100, Durability::Buffered);
    let seq = s
        .append(secret_payload(), Durability::Buffered)
        .unwrap()
        .seq;
    fill(&s, 101..200, Durability::Sync);
    let start = disk.ops();
    s.redact(seq, "key").unwrap();
    let end = disk.ops();
    drop(s);
    drop(store);
    let points: Vec<usize> = (start..=end).collect();
    let mut finished = 0;
    disk.crash_images(
        &points,
        &[(Fate::Lost, false), (Fate::Kept, true)],
        |at, fate, _, image| {
            let open = |opts: Options| {
                Store::open_with(Arc::new(image.clone()), "/db", opts)
                    .unwrap_or_else(|e| panic!("op {at} {fate:?}: {e}"))
            };
            let check = |store: &Store| {
                let s = store.stream("s").unwrap();
                let records = read_all(&s);
                assert_eq!(records.len(), 200, "op {at} {fate:?}");
                for r in &records {
                    if r.seq() == seq {
                        assert!(r.is_redacted() || r.payload() == secret_payload().as_slice());
                    } else {
                        let expected = payload(r.seq() - 1);
                        assert_eq!(r.payload(), expected.as_slice(), "op {at} seq {}", r.seq());
                    }
                }
                s.verify().unwrap();
                records[seq as usize - 1].is_redacted()
            };
            check(&open(opts.clone().read_only(true)));
            let store = open(opts.clone());
            let redacted = check(&store);
            let recorded = image
                .file_bytes(Path::new("/db/streams/s/redactions.json"))
                .is_some();
            // Recorded means finished by this open.
            assert!(redacted || !recorded, "op {at} {fate:?}");
            if redacted {
                finished += 1;
                for name in image.list_dir(Path::new("/db/streams/s")).unwrap() {
                    let path = Path::new("/db/streams/s").join(&name);
                    if let Some(bytes) = image.file_bytes(&path) {
                        assert!(
                            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                            "op {at} {fate:?}: the secret is still in {name}"
                        );
                    }
                }
            }
        },
    );
    assert!(finished > 5, "{finished}");
}

/// Redactions racing appends from other threads (each redaction of a
/// recent record rolls the segment being written under them) and readers:
/// no append is lost, the chain verifies, and only the redacted records
/// changed.
#[test]
fn redactions_racing_appends_and_readers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..50, Durability::Sync);
    let redacted: Vec<u64> = std::thread::scope(|scope| {
        for t in 0..3u64 {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..200 {
                    let p = format!(r#"{{"t":{t},"i":{i}}}"#);
                    s.append(p, Durability::Buffered).unwrap();
                }
            });
        }
        let reader = s.clone();
        scope.spawn(move || {
            for _ in 0..20 {
                for r in reader.iter() {
                    let r = r.unwrap();
                    assert!(
                        r.is_redacted()
                            || serde_json::from_slice::<serde_json::Value>(r.payload()).is_ok()
                    );
                }
            }
        });
        let mut done = Vec::new();
        for k in 0..20 {
            let seq = s.last_seq().max(1 + k);
            s.redact(seq, "race").unwrap();
            done.push(seq);
        }
        done
    });
    let records = read_all(&s);
    assert_eq!(records.len(), 50 + 600);
    for r in &records {
        assert_eq!(
            r.is_redacted(),
            redacted.contains(&r.seq()),
            "seq {}",
            r.seq()
        );
    }
    s.verify().unwrap();
    drop(s);
    store.close().unwrap();
    let store = open(dir.path(), small_opts());
    store.verify().unwrap();
    assert_eq!(read_all(&store.stream("s").unwrap()).len(), 650);
}
