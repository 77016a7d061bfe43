//! Damaged bytes on disk, chosen at random but replayable by seed: open and
//! read must never panic, and must never return a record whose bytes differ
//! from what was appended. (The fault-injecting disk and cargo-fuzz targets
//! extend this; this test runs on stable in every CI run.)

mod common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::*;
use lamplog::{Durability, Error, Options, RecoveryMode, Store};

/// xorshift64*: a tiny deterministic generator, so a failing seed replays.
fn damage(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let len = bytes.len() as u64;
    let at = rng.below(len.max(1)) as usize;
    match rng.below(7) {
        0 => {
            let bit = 1u8 << rng.below(8);
            if let Some(b) = bytes.get_mut(at) {
                *b ^= bit;
            }
            format!("flip bit {bit:#x} at {at}")
        }
        1 => {
            let n = (rng.below(600) as usize).min(bytes.len() - at.min(bytes.len()));
            bytes[at..at + n].fill(0);
            format!("zero {n} bytes at {at}")
        }
        2 => {
            let n = (rng.below(600) as usize).min(bytes.len() - at.min(bytes.len()));
            for b in &mut bytes[at..at + n] {
                *b = rng.next() as u8;
            }
            format!("garbage {n} bytes at {at}")
        }
        3 => {
            bytes.truncate(at);
            format!("truncate to {at}")
        }
        4 => {
            let n = rng.below(2000) as usize;
            bytes.extend((0..n).map(|_| rng.next() as u8));
            format!("append {n} garbage bytes")
        }
        5 => {
            let value = [0, 1, u32::MAX, rng.next() as u32, 0x7fff_ffff][rng.below(5) as usize];
            if at + 4 <= bytes.len() {
                bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            format!("u32 {value:#x} at {at}")
        }
        _ => {
            let n = rng.below(200) as usize;
            let end = (at + n).min(bytes.len());
            bytes.drain(at.min(end)..end);
            format!("remove {n} bytes at {at}")
        }
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let dir = stream_dir(root, "s");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Open, read everything, and check every returned record against what was appended.
/// Payloads are unique per seq, so a record with the wrong bytes (or a seq
/// that was never appended) cannot pass.
fn open_and_check(root: &Path, opts: Options) -> Result<u64, Error> {
    let writable = !opts.read_only;
    let store = Store::open(root, opts)?;
    let stream = store.stream("s")?;
    let mut n = 0;
    for record in stream.iter() {
        let Ok(record) = record else { break };
        assert_eq!(
            record.payload(),
            payload(record.seq() - 1).as_slice(),
            "wrong bytes for seq {}",
            record.seq()
        );
        n += 1;
    }
    if writable {
        // A store that opened for writing takes appends.
        let next = stream.last_seq();
        stream.append(payload(next), Durability::Sync)?;
    }
    Ok(n)
}

fn campaign(base: &Path, seeds: std::ops::Range<u64>) -> (u64, u64) {
    let (mut opened, mut refused) = (0, 0);
    for seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base, dir.path());
        let mut rng = Rng::new(seed);
        let targets = files(dir.path());
        let mut what = Vec::new();
        for _ in 0..=rng.below(3) {
            let target = &targets[rng.below(targets.len() as u64) as usize];
            let mut bytes = fs::read(target).unwrap();
            what.push(format!(
                "{}: {}",
                target.file_name().unwrap().to_string_lossy(),
                damage(&mut rng, &mut bytes)
            ));
            fs::write(target, bytes).unwrap();
        }
        let small = small_opts();
        for opts in [
            small.clone().read_only(true),
            small.clone().read_only(true).recovery(RecoveryMode::Repair),
            small.clone(),
            small.clone().recovery(RecoveryMode::Repair),
        ] {
            let label = format!("seed {seed}, {what:?}, {opts:?}");
            match catch_unwind(AssertUnwindSafe(|| {
                open_and_check(dir.path(), opts.clone())
            })) {
                Ok(Ok(_)) => opened += 1,
                Ok(Err(e)) => {
                    assert!(
                        opts.recovery == RecoveryMode::Strict
                            || !matches!(e, Error::Corruption { .. }),
                        "repair refused: {e} ({label})"
                    );
                    refused += 1
                }
                Err(_) => panic!("panicked: {label}"),
            }
        }
        // Repair always opens (the last pass ran it and appended once more).
        let repaired = open_and_check(dir.path(), small_opts().recovery(RecoveryMode::Repair));
        assert!(repaired.is_ok(), "seed {seed}: {repaired:?}");
        // And leaves what a strict open and a full check accept, every
        // record readable (issue 12: salvage repair).
        let store = Store::open(dir.path(), small_opts())
            .unwrap_or_else(|e| panic!("seed {seed} {what:?}: strict open after repair: {e}"));
        store
            .verify()
            .unwrap_or_else(|e| panic!("seed {seed} {what:?}: verify after repair: {e}"));
        for record in store.stream("s").unwrap().iter() {
            let record = record.unwrap_or_else(|e| panic!("seed {seed} {what:?}: {e}"));
            assert_eq!(record.payload(), payload(record.seq() - 1).as_slice());
        }
    }
    (opened, refused)
}

#[test]
fn random_damage_never_panics_or_returns_wrong_bytes() {
    for clean_close in [true, false] {
        let base = tempfile::tempdir().unwrap();
        let store = open(base.path(), small_opts());
        let stream = store.stream("s").unwrap();
        fill(&stream, 0..200, Durability::Sync);
        fill(&stream, 200..260, Durability::Buffered);
        drop(stream);
        if clean_close {
            store.close().unwrap();
        } else {
            store.abandon();
        }
        // LAMPLOG_BAD_BYTES_SEEDS=30000 for a long campaign.
        let seeds = std::env::var("LAMPLOG_BAD_BYTES_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(150);
        let (opened, refused) = campaign(base.path(), 0..seeds);
        assert!(
            opened > 0 && refused > 0,
            "opened {opened}, refused {refused}"
        );
    }
}
