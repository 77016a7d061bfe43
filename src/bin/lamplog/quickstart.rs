//! `lamplog quickstart`: append, replay, seek and recover a demo stream.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lamplog::{Durability, Options, Store};

use crate::failure::Failure;

pub fn quickstart(records: u64, dir: Option<PathBuf>) -> Result<(), Failure> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!("lamplog quickstart in {}", dir.display());
    let opts = Options::default()
        .segment_bytes_max(8 << 20)
        .record_bytes_max(1 << 20);
    let total = quickstart_append(&dir, &opts, records)?;
    quickstart_replay(&dir, &opts, total)?;
    quickstart_torn_tail(&dir, &opts)
}

/// A realistic op of an agent session.
fn quickstart_op(i: u64) -> String {
    format!(
        r#"{{"actor":"agent-{:03}","op":"write","path":"src/module_{}/file_{}.rs","blob":"{:064x}","ts":{}}}"#,
        i % 16,
        i % 97,
        i % 1009,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        1_717_592_400_000_000 + i
    )
}

/// Append `records` buffered ops, then 200 durable ones; how many in all.
fn quickstart_append(dir: &Path, opts: &Options, records: u64) -> Result<u64, Failure> {
    let store = Store::open(dir, opts.clone())?;
    let stream = store.stream("agent-001")?;
    let t = Instant::now();
    for i in 0..records {
        stream.append(quickstart_op(i), Durability::Buffered)?;
    }
    stream.sync()?;
    let append_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sync_n = 200;
    for i in 0..sync_n {
        stream.append(quickstart_op(records + i), Durability::Sync)?;
    }
    let sync_s = t.elapsed().as_secs_f64();
    println!(
        "appended {records} records (buffered, JSON-validated) in {append_s:.3}s: {:.0} records/s",
        records as f64 / append_s
    );
    println!("appended {sync_n} records with Durability::Sync in {sync_s:.3}s: {:.0} us per durable append", sync_s * 1e6 / sync_n as f64);
    Ok(records + sync_n)
}

/// Reopen, replay everything (expecting `total` records) and seek.
fn quickstart_replay(dir: &Path, opts: &Options, total: u64) -> Result<(), Failure> {
    let t = Instant::now();
    let store = Store::open(dir, opts.clone())?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
    let stream = store.stream("agent-001")?;
    let t = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    for record in stream.iter() {
        let record = record?;
        n += 1;
        bytes += record.payload().len() as u64 + lamplog::format::FRAME_HEADER_LEN as u64;
    }
    let replay_s = t.elapsed().as_secs_f64();
    println!("reopened in {reopen_ms:.2} ms; replayed {n} records (CRC-verified, mmap) in {replay_s:.3}s: {:.2} GB/s", bytes as f64 / replay_s / 1e9);
    if n != total {
        return Err(Failure {
            code: 1,
            message: format!("replay returned {n} records, expected {total}"),
        });
    }
    let seek = stream.get(total / 2)?.map(|r| r.lamport());
    println!(
        "seek to seq {} via the sparse index: lamport {:?}",
        total / 2,
        seek
    );
    Ok(())
}

/// Simulate a crash that tore the last write (garbage after the last
/// record), reopen, and show what recovery did.
fn quickstart_torn_tail(dir: &Path, opts: &Options) -> Result<(), Failure> {
    let seg_dir = dir.join(lamplog::STREAMS_DIR).join("agent-001");
    let mut segments: Vec<_> = std::fs::read_dir(&seg_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let Some(tail) = segments.last() else {
        return Err(Failure {
            code: 1,
            message: format!("no segment in {}", seg_dir.display()),
        });
    };
    let file = std::fs::OpenOptions::new().append(true).open(tail)?;
    let len = file.metadata()?.len();
    std::os::unix::fs::FileExt::write_all_at(
        &file,
        b"\x2a\x00\x00\x00torn half-written frame",
        len,
    )?;
    let store = Store::open(dir, opts.clone())?;
    for cut in &store.recovery_report().cuts {
        println!(
            "recovery cut {} torn bytes at {}:{} into {}",
            cut.len,
            cut.segment.display(),
            cut.offset,
            cut.quarantine_file
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string())
        );
    }
    let stream = store.stream("agent-001")?;
    println!(
        "after recovery: last seq {} (every acknowledged record kept); appends continue at seq {}",
        stream.last_seq(),
        stream.append(quickstart_op(0), Durability::Sync)?.seq
    );
    Ok(())
}
