//! Crash images from the simulated disk: after a power cut at any operation
//! (every write, sync, creation, rename), with unsynced writes lost, kept,
//! cut short or torn sector by sector, and unsynced directory entries lost
//! or kept, recovery succeeds (a crash is never corruption), returns a
//! prefix holding every acknowledged record byte for byte, and appends go
//! on. Images are taken where acknowledgements happen, not only at syncs:
//! an image at a sync point already holds that sync, so it cannot tell an
//! append acknowledged after its sync from one acknowledged before
//! (`.ci/mutants` checks that these tests catch the latter).

mod common;

use std::sync::Arc;

use common::images::{check_image, Ack};
use common::tiny_opts;
use lamplog::testing::{Fate, Fault, SimDisk};
use lamplog::{Durability, Store};

const ROOT: &str = "/store";

fn body(i: u64) -> Vec<u8> {
    format!(
        r#"{{"i":{i},"pad":"{}"}}"#,
        "z".repeat((i * 7 % 90) as usize)
    )
    .into_bytes()
}

fn ack(stream: &str, seq: u64, payload: Vec<u8>, disk: &SimDisk) -> Ack {
    Ack {
        stream: stream.to_string(),
        seq,
        payload,
        at: disk.ops(),
    }
}

/// Append records of every kind; returns each acknowledged record with the
/// operation count at its acknowledgement.
fn workload(disk: &SimDisk, records: u64) -> Vec<Ack> {
    let store = Store::open_with(Arc::new(disk.clone()), ROOT, tiny_opts()).unwrap();
    let s = store.stream("s").unwrap();
    let mut acks = Vec::new();
    for i in 0..records {
        match i % 10 {
            0 => {
                let batch: Vec<Vec<u8>> = (0..3).map(|k| body(i * 100 + k)).collect();
                let done = s.append_batch(&batch, Durability::Sync).unwrap();
                for (a, payload) in done.into_iter().zip(batch) {
                    acks.push(ack("s", a.seq, payload, disk));
                }
            }
            4 => {
                s.checkpoint(&format!("snap-{i}")).unwrap();
            }
            1 | 2 | 5 | 6 | 8 => {
                s.append(body(i), Durability::Buffered).unwrap();
            }
            _ => {
                let a = s.append(body(i), Durability::Sync).unwrap();
                acks.push(ack("s", a.seq, body(i), disk));
            }
        }
    }
    drop(s);
    store.close().unwrap();
    acks
}

fn check(image: &SimDisk, acked: &[Ack], at: usize, label: &str) {
    check_image(image, ROOT, &tiny_opts(), acked, at, label);
}

#[test]
fn every_operation_of_a_small_workload_recovers() {
    let disk = SimDisk::default();
    let acked = workload(&disk, 300);
    let points: Vec<usize> = (1..=disk.ops()).collect();
    let fates = [
        Fate::Lost,
        Fate::Kept,
        Fate::Prefix(1),
        Fate::Prefix(2),
        Fate::Torn(7),
        Fate::Torn(31),
    ];
    let fates: Vec<(Fate, bool)> = fates
        .iter()
        .flat_map(|&f| [(f, false), (f, true)])
        .collect();
    let (mut images, ops) = (0, disk.ops());
    disk.crash_images(&points, &fates, |at, fate, entries_kept, image| {
        let label = format!("crash after op {at} of {ops}, {fate:?}, entries kept: {entries_kept}");
        check(&image, &acked, at, &label);
        images += 1;
    });
    assert!(disk.sync_points().len() > 100);
    eprintln!(
        "{images} crash images checked over {} operations ({} syncs)",
        points.len(),
        disk.sync_points().len()
    );
}

/// Threads appending to two streams at once, so that syncs are batched by
/// the syncer thread. (A lone appender syncs in its own thread before it
/// returns: a one-thread workload cannot tell an append acknowledged after
/// its sync from one acknowledged before it.)
fn concurrent_workload(disk: &SimDisk, threads: u64, records: u64) -> Vec<Ack> {
    let store = Store::open_with(Arc::new(disk.clone()), ROOT, tiny_opts()).unwrap();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (disk, name) = (disk.clone(), if t % 2 == 0 { "s" } else { "t" });
            let s = store.stream(name).unwrap();
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for i in 0..records {
                    let payload = body(t * 10_000 + i);
                    match i % 5 {
                        0 => {
                            s.append(&payload, Durability::Buffered).unwrap();
                        }
                        1 => {
                            let batch = vec![payload.clone(), body(t * 10_000 + i + 5_000)];
                            let done = s.append_batch(&batch, Durability::Sync).unwrap();
                            for (a, p) in done.into_iter().zip(batch) {
                                acks.push(ack(name, a.seq, p, &disk));
                            }
                        }
                        _ => {
                            let a = s.append(&payload, Durability::Sync).unwrap();
                            acks.push(ack(name, a.seq, payload, &disk));
                        }
                    }
                }
                acks
            })
        })
        .collect();
    let acks = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    store.close().unwrap();
    acks
}

#[test]
fn every_operation_of_a_concurrent_workload_recovers() {
    let disk = SimDisk::default();
    // Syncs that take time, as real ones do: `.ci/mutants` relies on this
    // test to catch a Sync append acknowledged before its sync, which it
    // can only see if the acknowledgement comes before the sync lands.
    disk.set_sync_time(std::time::Duration::from_micros(300));
    let acked = concurrent_workload(&disk, 4, 40);
    let points: Vec<usize> = (1..=disk.ops()).collect();
    let fates = [
        (Fate::Lost, false),
        (Fate::Kept, true),
        (Fate::Torn(5), false),
    ];
    let (mut images, ops) = (0, disk.ops());
    disk.crash_images(&points, &fates, |at, fate, entries_kept, image| {
        let label = format!(
            "concurrent: crash after op {at} of {ops}, {fate:?}, entries kept: {entries_kept}"
        );
        check(&image, &acked, at, &label);
        images += 1;
    });
    eprintln!(
        "{images} crash images of a 4-thread workload ({} acknowledged records)",
        acked.len()
    );
}

/// A seeded workload: record sizes, durability, batches and checkpoints
/// all drawn from `seed`.
fn random_workload(disk: &SimDisk, seed: u64, records: u64) -> Vec<Ack> {
    let store = Store::open_with(Arc::new(disk.clone()), ROOT, tiny_opts()).unwrap();
    let s = store.stream("s").unwrap();
    let mut rng = seed | 1;
    let mut roll = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acks = Vec::new();
    for i in 0..records {
        let r = roll();
        let payload = format!(
            r#"{{"seed":{seed},"i":{i},"pad":"{}"}}"#,
            "q".repeat((r % 700) as usize)
        )
        .into_bytes();
        match r % 16 {
            0 => {
                let batch: Vec<Vec<u8>> = (0..1 + r % 6)
                    .map(|k| format!(r#"{{"seed":{seed},"i":{i},"k":{k}}}"#).into_bytes())
                    .collect();
                let sync = r % 3 == 0;
                let done = s
                    .append_batch(
                        &batch,
                        if sync {
                            Durability::Sync
                        } else {
                            Durability::Buffered
                        },
                    )
                    .unwrap();
                if sync {
                    for (a, p) in done.into_iter().zip(batch) {
                        acks.push(ack("s", a.seq, p, disk));
                    }
                }
            }
            1 => {
                s.checkpoint(&format!("c{i}")).unwrap();
            }
            2..=8 => {
                s.append(&payload, Durability::Buffered).unwrap();
            }
            _ => {
                let a = s.append(&payload, Durability::Sync).unwrap();
                acks.push(ack("s", a.seq, payload, disk));
            }
        }
    }
    drop(s);
    store.abandon();
    acks
}

#[test]
fn random_crashes_of_seeded_workloads_recover() {
    let seeds: u64 = std::env::var("LAMPLOG_CRASH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut images = 0;
    for seed in 1..=seeds {
        let disk = SimDisk::default();
        let acked = random_workload(&disk, seed, 400);
        let ops = disk.ops();
        // Right at every acknowledgement, with nothing unsynced surviving:
        // what was acknowledged must already be durable there.
        let mut ack_points: Vec<usize> = acked.iter().map(|a| a.at).collect();
        ack_points.dedup();
        for &at in &ack_points {
            let label = format!("seed {seed}: crash right at the acknowledgement at op {at}");
            check(&disk.crash_image(at, Fate::Lost, false), &acked, at, &label);
            images += 1;
        }
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for _ in 0..60 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = 1 + (rng % ops as u64) as usize;
            let fate = match rng >> 32 & 3 {
                0 => Fate::Lost,
                1 => Fate::Kept,
                2 => Fate::Prefix((rng >> 40) as usize % 4),
                _ => Fate::Torn(rng),
            };
            let entries_kept = rng >> 50 & 1 == 1;
            let label = format!(
                "seed {seed}: crash after op {at} of {ops}, {fate:?}, entries kept: {entries_kept}"
            );
            check(
                &disk.crash_image(at, fate, entries_kept),
                &acked,
                at,
                &label,
            );
            images += 1;
        }
    }
    eprintln!("{images} crash images of {seeds} seeded workloads checked");
}

/// EIO on the Nth sync and ENOSPC (a half write) on the Nth write, for
/// every N of a workload: the failing append reports an error, nothing
/// acknowledged is lost in any crash image of that moment, later appends are
/// refused (a failed fsync poisons the store), and a reopen recovers.
#[test]
fn injected_io_errors_never_lose_an_acknowledged_record() {
    let mut injections = 0;
    for fault in [Fault::SyncEio, Fault::WriteEnospc] {
        for n in 1..90 {
            let disk = SimDisk::default();
            let store = Store::open_with(Arc::new(disk.clone()), ROOT, tiny_opts()).unwrap();
            let s = store.stream("s").unwrap();
            let mut acked = Vec::new();
            disk.inject(fault, n);
            let mut failed = false;
            for i in 0..60u64 {
                let result = if i % 7 == 3 {
                    s.append_batch([body(i * 10), body(i * 10 + 1)], Durability::Sync)
                        .map(|a| {
                            a.into_iter()
                                .zip([body(i * 10), body(i * 10 + 1)])
                                .collect::<Vec<_>>()
                        })
                } else {
                    s.append(body(i), Durability::Sync)
                        .map(|a| vec![(a, body(i))])
                };
                match result {
                    Ok(done) if !failed => {
                        acked.extend(done.into_iter().map(|(a, p)| ack("s", a.seq, p, &disk)))
                    }
                    Ok(_) => panic!("{fault:?} at {n}: an append succeeded after a failure"),
                    Err(_) => failed = true,
                }
            }
            assert!(failed, "{fault:?} at {n}: the fault never fired");
            injections += 1;
            disk.heal();
            drop(s);
            store.abandon();
            let at = disk.ops();
            for fate in [Fate::Lost, Fate::Kept, Fate::Torn(n as u64)] {
                check(
                    &disk.crash_image(at, fate, false),
                    &acked,
                    at,
                    &format!("{fault:?} at io {n}, {fate:?}"),
                );
            }
        }
    }
    eprintln!("{injections} fault injections checked");
}

/// A read error during recovery is an error, never an early end of the log.
#[test]
fn a_read_error_during_recovery_is_an_error() {
    let disk = SimDisk::default();
    let acked = workload(&disk, 60);
    assert!(!acked.is_empty());
    disk.inject(Fault::ReadEio, 0);
    match Store::open_with(Arc::new(disk.clone()), ROOT, tiny_opts()) {
        Err(lamplog::Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(5)),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    disk.heal();
    let store = Store::open_with(Arc::new(disk.clone()), ROOT, tiny_opts()).unwrap();
    assert!(store.stream("s").unwrap().last_seq() >= acked.last().unwrap().seq);
}

/// A segment large enough that a helper thread grows it ahead of the
/// writer (steps of 256 KiB and more, from 1 MiB on): power cuts at every
/// sync (and right after each acknowledgement) while buffered batches and
/// `Sync` appends fill it recover every acknowledged record.
#[test]
fn power_cuts_while_a_segment_grows_ahead_of_its_writer_recover() {
    let opts = lamplog::Options::default()
        .segment_bytes_max(4 << 20)
        .record_bytes_max(4 << 10)
        .sync_interval_us(u64::MAX / 4);
    let disk = SimDisk::default();
    let mut acked = Vec::new();
    {
        let store = Store::open_with(Arc::new(disk.clone()), ROOT, opts.clone()).unwrap();
        let s = store.stream("s").unwrap();
        let big = |i: u64| format!(r#"{{"i":{i},"pad":"{}"}}"#, "g".repeat(400)).into_bytes();
        for round in 0..100u64 {
            let batch: Vec<Vec<u8>> = (0..50).map(|k| big(round * 100 + k)).collect();
            s.append_batch(&batch, Durability::Buffered).unwrap();
            let a = s.append(big(round * 100 + 99), Durability::Sync).unwrap();
            acked.push(ack("s", a.seq, big(round * 100 + 99), &disk));
        }
        drop(s);
        store.close().unwrap();
    }
    // 100 rounds of about 21 KB: past 1 MiB, where steps reach 256 KiB.
    let mut points: Vec<usize> = disk.sync_points();
    points.extend(acked.iter().map(|a| a.at));
    points.sort_unstable();
    points.dedup();
    let fates = [
        (Fate::Lost, false),
        (Fate::Kept, true),
        (Fate::Torn(13), false),
    ];
    let mut images = 0;
    disk.crash_images(&points, &fates, |at, fate, entries_kept, image| {
        let label = format!("crash after op {at}, {fate:?}, entries kept: {entries_kept}");
        check_image(&image, ROOT, &opts, &acked, at, &label);
        images += 1;
    });
    assert!(images > 300, "{images} images");
}
