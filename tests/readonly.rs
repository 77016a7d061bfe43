//! Read-only opens coexist with the writer: whatever the writer is doing
//! (appending, rolling segments, checkpointing, archiving), a read-only
//! open sees a consistent prefix of the log and never reports corruption
//! that is not there.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lamplog::{Durability, Kind, Options, Store};

fn big_payload(i: u64) -> Vec<u8> {
    format!(
        r#"{{"i":{i},"pad":"{}"}}"#,
        "b".repeat((i * 131 % 880) as usize)
    )
    .into_bytes()
}

/// Appends (sync, buffered, batches), checkpoints and, with `archive`,
/// archives, until `stop`; every acknowledged data record goes into `acked`.
fn writer(
    store: Store,
    archive: bool,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<u64, Vec<u8>>>>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let s = store.stream("s").unwrap();
        let mut checkpoints = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            match i % 13 {
                0 => {
                    let batch: Vec<Vec<u8>> = (0..3).map(|k| payload(i * 10 + k)).collect();
                    let done = s.append_batch(&batch, Durability::Sync).unwrap();
                    let mut acked = acked.lock().unwrap();
                    for (a, p) in done.into_iter().zip(batch) {
                        acked.insert(a.seq, p);
                    }
                }
                5 => checkpoints.push(s.checkpoint(&format!("c{i}")).unwrap()),
                9 if archive && checkpoints.len() > 4 => {
                    let c = checkpoints.remove(0);
                    s.archive_before(&c).unwrap();
                }
                _ => {
                    let d = if i % 3 == 0 {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    // Records of up to 900 bytes: a segment every few appends.
                    let p = big_payload(i);
                    let a = s.append(&p, d).unwrap();
                    acked.lock().unwrap().insert(a.seq, p);
                }
            }
        }
        i
    })
}

/// Open read-only again and again for `run`, checking each open.
fn read_only_opens(
    dir: &std::path::Path,
    run: Duration,
    acked: &Mutex<HashMap<u64, Vec<u8>>>,
) -> u64 {
    let started = Instant::now();
    let mut opens = 0;
    while started.elapsed() < run {
        opens += 1;
        let ro = Store::open(dir, tiny_opts().read_only(true))
            .unwrap_or_else(|e| panic!("read-only open {opens} failed: {e}"));
        let Ok(s) = ro.stream("s") else { continue };
        let records: Vec<_> = s
            .iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("read-only open {opens}: read failed: {e}"));
        let first = s.first_seq();
        for (n, r) in records.iter().enumerate() {
            assert_eq!(r.seq(), first + n as u64, "open {opens}: not contiguous");
            if r.kind() == Kind::Data {
                if let Some(p) = acked.lock().unwrap().get(&r.seq()) {
                    assert_eq!(
                        r.payload(),
                        p.as_slice(),
                        "open {opens}: seq {} changed",
                        r.seq()
                    );
                }
            }
        }
        assert_eq!(records.last().map_or(first - 1, |r| r.seq()), s.last_seq());
        ro.verify()
            .unwrap_or_else(|e| panic!("read-only open {opens}: verify (fsck) failed: {e}"));
    }
    opens
}

/// Regression (issue 9, defect 4): recovery took the directory listing as a
/// snapshot (a listing taken while segments are created can miss one and
/// see the next: a false sequence gap), judged the live tail from bytes
/// that were still being written (a false checksum mismatch), and failed
/// on segments archived between the listing and their opening.
#[test]
fn read_only_opens_see_a_consistent_prefix_while_the_writer_rolls() {
    for archive in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), tiny_opts());
        // Thousands of segments first: a directory that large is hashed, and
        // a listing of it is where segments created meanwhile go missing.
        let s = store.stream("s").unwrap();
        let batch: Vec<Vec<u8>> = (0..10).map(payload).collect();
        for _ in 0..300 {
            s.append_batch(&batch, Durability::Buffered).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let writing = writer(store.clone(), archive, stop.clone(), acked.clone());
        let opens = read_only_opens(dir.path(), Duration::from_secs(3), &acked);
        stop.store(true, Ordering::Relaxed);
        let appended = writing.join().unwrap();
        eprintln!("archive: {archive}: {opens} read-only opens while {appended} appends ran");
        assert!(opens > 20);
    }
}

/// A store of several segments, cleanly closed; its segment files.
fn closed_store(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let store = open(dir, tiny_opts());
    fill(&store.stream("s").unwrap(), 0..400, Durability::Buffered);
    store.close().unwrap();
    let segs = segments(dir, "s");
    assert!(segs.len() > 5);
    segs
}

fn open_hooked(
    dir: &std::path::Path,
    hooks: hooked::Hooked,
    opts: Options,
) -> lamplog::Result<Store> {
    Store::open_with(Arc::new(hooked::HookedBackend(Arc::new(hooks))), dir, opts)
}

/// Regression (issue 9, defect 4): a directory listing taken while the
/// writer creates segments can miss one and show a later one; recovery took
/// it for a snapshot and reported a sequence gap. A sealed segment's
/// successor is now opened by name.
#[test]
fn a_listing_that_misses_a_segment_created_meanwhile_is_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let segs = closed_store(dir.path());
    let missed = segs[segs.len() - 2]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for read_only in [true, false] {
        let missed = missed.clone();
        let hooks = hooked::Hooked {
            list_dir: Some(Box::new(move |_, names| names.retain(|n| *n != missed))),
            ..Default::default()
        };
        let store = open_hooked(dir.path(), hooks, tiny_opts().read_only(read_only))
            .unwrap_or_else(|e| panic!("read-only {read_only}: {e}"));
        let s = store.stream("s").unwrap();
        assert_eq!(read_all(&s).len(), 400);
        store.verify().unwrap();
    }
}

/// Regression (issue 9, defect 4): a read-only open judged the writer's
/// live tail from bytes still being written: a frame seen half-written,
/// followed by one that proves it durable, read as corruption. The verdict
/// now counts only if a second reading confirms it; real damage still does.
#[test]
fn a_tail_seen_mid_write_is_read_again_and_real_damage_is_still_reported() {
    use std::sync::atomic::AtomicUsize;
    let dir = tempfile::tempdir().unwrap();
    let segs = closed_store(dir.path());
    let tail = segs.last().unwrap().clone();
    let (start, _) = *frame_spans(&tail).last().unwrap();
    for persistent in [false, true] {
        let views = Arc::new(AtomicUsize::new(0));
        let (tail, seen) = (tail.clone(), views.clone());
        let hooks = hooked::Hooked {
            map: Some(Box::new(move |path, bytes| {
                // The last record's payload, as a reader racing its write sees it.
                if path != tail {
                    return;
                }
                let first_view = seen.fetch_add(1, Ordering::SeqCst) == 0;
                if persistent || first_view {
                    let at = start as usize + lamplog::format::FRAME_HEADER_LEN;
                    bytes[at..at + 4].fill(0);
                }
            })),
            ..Default::default()
        };
        let opened = open_hooked(dir.path(), hooks, tiny_opts().read_only(true));
        match (persistent, opened) {
            (false, Ok(store)) => {
                assert_eq!(read_all(&store.stream("s").unwrap()).len(), 400);
                assert!(views.load(Ordering::SeqCst) >= 2, "the tail was read again");
            }
            (true, Err(lamplog::Error::Corruption { offset, .. })) => assert_eq!(offset, start),
            (persistent, other) => panic!("persistent damage {persistent}: got {other:?}"),
        }
    }
}

/// A read-only handle follows another writer through `refreshed`, and
/// `durable_seq` counts only what the bytes prove synced: the newest
/// record waits for a later frame (or the close's commit marker).
#[test]
fn a_refreshed_read_only_handle_sees_new_records_and_what_is_proven_durable() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), small_opts());
    let w = writer.stream("s").unwrap();
    fill(&w, 0..3, Durability::Sync);
    let reader = open(dir.path(), small_opts().read_only(true));
    let r = reader.stream("s").unwrap();
    assert_eq!((r.last_seq(), r.durable_seq().unwrap()), (3, 2));
    fill(&w, 3..400, Durability::Sync);
    assert_eq!(r.last_seq(), 3, "a handle's view is fixed");
    let r = r.refreshed().unwrap();
    assert_eq!((r.last_seq(), r.durable_seq().unwrap()), (400, 399));
    assert_holds(&r, 400);
    drop(w);
    writer.close().unwrap();
    let r = r.refreshed().unwrap();
    assert_eq!(r.durable_seq().unwrap(), 400);
    assert_eq!(w_durable(&dir), 400);
}

fn w_durable(dir: &tempfile::TempDir) -> u64 {
    let store = open(dir.path(), small_opts());
    store.stream("s").unwrap().durable_seq().unwrap()
}
