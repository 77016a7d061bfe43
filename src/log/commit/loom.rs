//! A loom model of the commit protocol (`RUSTFLAGS="--cfg loom" cargo test
//! --release --lib commit::loom`): appenders, the flusher role and the
//! syncer, over the simulated disk, which knows what each sync made durable.
//! Checked: no acknowledgement before the sync that covers it, no lost
//! wake-up (every model run terminates), every waiter answered on failure
//! and on shutdown, and readers that see a contiguous prefix while the
//! writer publishes and rolls segments.

use std::path::PathBuf;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use super::{StreamLog, Syncer};
use crate::format::frame::frame_len;
use crate::format::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use crate::io::backend::Backend;
use crate::io::sim::{Fault, SimDisk};
use crate::log::segment::SegmentList;
use crate::log::sync::Arc;
use crate::log::writer::{create_first_segment, Encoder, SegmentIo, WriterLimits};
use crate::options::{IoBackend, SyncScope};

/// Whether a power cut now would keep the first `end` bytes of stream
/// `name`'s first segment as they are written.
fn durable_through(disk: &SimDisk, name: &str, end: usize) -> bool {
    let path = PathBuf::from(name).join(segment_file_name(1));
    let written = disk.file_bytes(&path).expect("the segment exists");
    let durable = disk.durable_bytes(&path).unwrap_or_default();
    end <= written.len() && durable.get(..end) == written.get(..end)
}

const PAYLOAD: &[u8] = b"[1,2]";

fn limits() -> WriterLimits {
    WriterLimits {
        segment_bytes_max: 1 << 20,
        index_interval_bytes: 4096,
        batch_bytes_max: 1 << 20,
    }
}

/// A stream named "s" over a fresh simulated disk, and its syncer.
fn stream() -> (SimDisk, Arc<StreamLog>, Syncer) {
    let (disk, log, syncer, _) = stream_with(limits());
    (disk, log, syncer)
}

const INTERVAL: Duration = Duration::from_millis(100);

fn stream_with(
    limits: WriterLimits,
) -> (SimDisk, Arc<StreamLog>, Syncer, std::sync::Arc<SegmentList>) {
    let syncer = Syncer::start(INTERVAL, IoBackend::Pwrite, SyncScope::Files);
    let (disk, log, segments) = stream_on(&syncer, "s", limits);
    (disk, log, syncer, segments)
}

/// Another stream, named `name`, of the store that `syncer` serves.
fn stream_on(
    syncer: &Syncer,
    name: &str,
    limits: WriterLimits,
) -> (SimDisk, Arc<StreamLog>, std::sync::Arc<SegmentList>) {
    let disk = SimDisk::default();
    let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(disk.clone());
    let segments = std::sync::Arc::new(SegmentList::default());
    let cache = crate::log::map_cache::MapCache::new(backend, 64);
    let dir = PathBuf::from(name);
    let first = create_first_segment(&cache, &dir, name, limits).expect("in-memory create");
    segments.push(first.clone());
    let io =
        SegmentIo::resume(cache, dir, limits, segments.clone(), first).expect("in-memory resume");
    let encoder = Encoder::new(limits, io.active());
    let log = StreamLog::new(encoder, io, syncer, limits);
    (disk, log, segments)
}

fn record_end(seq: u64) -> usize {
    SEGMENT_HEADER_LEN + seq as usize * frame_len(PAYLOAD.len())
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(f);
}

#[test]
fn no_acknowledgement_before_its_sync() {
    model(|| {
        let (disk, log, syncer) = stream();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (log, disk) = (log.clone(), disk.clone());
                loom::thread::spawn(move || {
                    let appended = log.append(PAYLOAD, 0, true).expect("no fault injected");
                    assert!(
                        durable_through(&disk, "s", record_end(appended.seq)),
                        "acknowledged seq {} before it was durable",
                        appended.seq
                    );
                    appended.seq
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, vec![1, 2]);
        drop(log);
        drop(syncer);
    });
}

#[test]
fn buffered_and_sync_appenders_are_all_answered() {
    model(|| {
        let (disk, log, syncer) = stream();
        let buffered = {
            let log = log.clone();
            loom::thread::spawn(move || log.append(PAYLOAD, 0, false).expect("no fault").seq)
        };
        let synced = log.append(PAYLOAD, 0, true).expect("no fault");
        assert!(durable_through(&disk, "s", record_end(synced.seq)));
        let other = buffered.join().unwrap();
        assert_ne!(other, synced.seq);
        // Shutdown with nothing outstanding still ends the syncer.
        drop(log);
        drop(syncer);
    });
}

#[test]
fn a_failed_sync_answers_every_waiter_with_an_error() {
    model(|| {
        let (disk, log, syncer) = stream();
        disk.inject(Fault::SyncEio, 1);
        let waiter = {
            let log = log.clone();
            loom::thread::spawn(move || log.append(PAYLOAD, 0, true).is_err())
        };
        assert!(log.append(PAYLOAD, 0, true).is_err());
        assert!(waiter.join().unwrap(), "the other waiter got an error too");
        drop(log);
        drop(syncer);
    });
}

#[test]
fn waiters_are_answered_when_the_syncer_shuts_down() {
    model(|| {
        let (disk, log, syncer) = stream();
        let appenders: Vec<_> = (0..2)
            .map(|_| {
                let (log, disk) = (log.clone(), disk.clone());
                loom::thread::spawn(move || {
                    let appended = log.append(PAYLOAD, 0, true).expect("no fault injected");
                    assert!(durable_through(&disk, "s", record_end(appended.seq)));
                })
            })
            .collect();
        // The store closes while the appenders wait (or before they ask).
        drop(syncer);
        for appender in appenders {
            appender.join().unwrap();
        }
        drop(log);
    });
}

/// Readers race a writer whose third record rolls into a new segment (two
/// records fit a segment). A reader bounded by `last_seq` must yield exactly
/// the records `1..=last_seq`, byte for byte, whichever segment they are in
/// and whatever the writer is doing: publishing an end, sealing the old
/// segment, listing the new one. A tailing iterator extended as the stream
/// grows must go on across the roll without a gap; the segments' shared
/// memory views must never cache bytes that were not yet written.
#[test]
fn readers_see_a_contiguous_prefix_while_the_writer_rolls() {
    use crate::log::reader::{From, Iter};

    const RECORDS: u64 = 3;
    let limits = WriterLimits {
        segment_bytes_max: record_end(2) as u64,
        ..limits()
    };
    // Which `last_seq` values readers saw over all runs: a model that never
    // put a reader in the middle of the roll would prove nothing.
    static SEEN: StdMutex<Vec<u64>> = StdMutex::new(Vec::new());
    model(move || {
        let (_, log, syncer, segments) = stream_with(limits);
        let reader = {
            let (log, segments) = (log.clone(), segments.clone());
            loom::thread::spawn(move || {
                let mut tail = Iter::new(segments.clone(), 0, From::Start);
                let mut tailed = 0;
                for _ in 0..2 {
                    let last = log.last_seq();
                    let read: Vec<u64> = Iter::new(segments.clone(), last, From::Start)
                        .map(|r| {
                            let r = r.expect("a published record reads back");
                            assert_eq!(r.payload(), PAYLOAD);
                            r.seq()
                        })
                        .collect();
                    assert_eq!(read, (1..=last).collect::<Vec<_>>(), "last_seq {last}");
                    // A seek finds the segment that holds the record.
                    let mut seek = Iter::new(segments.clone(), last, From::Seq(last));
                    if last > 0 {
                        assert_eq!(seek.next().expect("the record").expect("reads").seq(), last);
                    }
                    assert!(seek.next().is_none());
                    SEEN.lock().unwrap().push(last);
                    tail.extend_to(last);
                    for r in tail.by_ref() {
                        tailed += 1;
                        assert_eq!(r.expect("tailing reads back").seq(), tailed);
                    }
                    assert_eq!(tailed, last, "the tail stopped short");
                }
            })
        };
        for seq in 1..=RECORDS {
            assert_eq!(log.append(PAYLOAD, 0, false).expect("no fault").seq, seq);
        }
        reader.join().unwrap();
        assert_eq!(segments.all().len(), 2, "the third record rolled");
        drop(log);
        drop(syncer);
    });
    let mut seen = SEEN.lock().unwrap().clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (0..=RECORDS).collect::<Vec<_>>());
}

/// A `sync()` with nothing new to write, racing a buffered appender that is
/// writing: whichever finishes last must ask for the sync. In loom the
/// syncer has no timer (its timed wait only ends when notified), so a
/// missed request is a deadlock here, where the real store would wait for
/// `sync_interval_us`.
#[test]
fn a_sync_racing_a_buffered_write_never_waits_for_the_timer() {
    model(|| {
        let (disk, log, syncer) = stream();
        let appender = {
            let log = log.clone();
            loom::thread::spawn(move || log.append(PAYLOAD, 0, false).expect("no fault").seq)
        };
        log.sync().expect("no fault");
        let seq = appender.join().unwrap();
        // The sync covers whatever was encoded before it; the record is
        // durable by the end either way, once a later sync runs.
        let _ = (seq, disk);
        drop(log);
        drop(syncer);
    });
}

/// The sync-interval bound under load: once a sweep is due, the syncer's
/// next batch syncs every stream with unsynced records, whatever else is
/// queued, and no appender syncs inline in its place. A batch whose streams
/// were chosen before the deadline may still cover a later append (it reads
/// its target when it begins), so the check is: after two `Sync` appends of
/// a busy stream made one after the other past the deadline, a quiet
/// stream's buffered record is durable. Sweeping only when no stream asked
/// for a sync fails this where the second request is queued before the
/// syncer looks again.
#[test]
fn a_due_sweep_syncs_every_dirty_stream_whatever_else_is_queued() {
    model(|| {
        let syncer = Syncer::start(INTERVAL, IoBackend::Pwrite, SyncScope::Files);
        let (_, quiet, _) = stream_on(&syncer, "quiet", limits());
        let (_, busy, _) = stream_on(&syncer, "busy", limits());
        let quiet_seq = quiet.append(PAYLOAD, 0, false).expect("no fault").seq;
        syncer.advance_clock(INTERVAL);
        for _ in 0..2 {
            busy.append(PAYLOAD, 0, true).expect("no fault");
        }
        assert!(
            quiet.durable_seq() >= quiet_seq,
            "two syncs ran after the sweep was due and left a dirty stream out"
        );
        drop((quiet, busy));
        drop(syncer);
    });
}

/// A pending append awaited as a future, racing a blocking `Sync` append:
/// the sync machinery wakes the awaiting task (loom's `block_on` parks the
/// thread until its waker fires, so a lost wake-up is a deadlock the model
/// reports), and the future completes only once its record is durable.
#[test]
fn an_awaited_pending_append_is_woken_once_durable() {
    model(|| {
        let (disk, log, syncer) = stream();
        let blocking = {
            let log = log.clone();
            loom::thread::spawn(move || log.append(PAYLOAD, 0, true).expect("no fault").seq)
        };
        let pending = log.append_pending(PAYLOAD, 0).expect("no fault injected");
        let appended = loom::future::block_on(pending).expect("no fault injected");
        assert!(
            durable_through(&disk, "s", record_end(appended.seq)),
            "pending seq {} completed before it was durable",
            appended.seq
        );
        let other = blocking.join().unwrap();
        assert_eq!(appended.seq + other, 3);
        drop(log);
        drop(syncer);
    });
}
