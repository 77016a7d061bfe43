//! Commands that inspect a store or its checkpoints: `fsck`, `streams`,
//! `checkpoint`, `checkpoints`.

use std::path::Path;

use lamplog::{
    Checkpoint, CorruptionKind, Cut, CutReason, Error, Options, RecoveryMode, Store, Stream,
};
use serde::Serialize;

use crate::failure::Failure;

/// One stream's verdict, as `lamplog fsck` prints it.
#[derive(Serialize)]
struct FsckRow {
    stream: String,
    /// `ok` or `damaged`.
    status: &'static str,
    segments: u64,
    records: u64,
    bytes: u64,
    /// Seqs an earlier repair lost (information, not damage).
    lost_seqs: u64,
    /// Derived files that disagree with the log (each said on stderr; they
    /// lose nothing and are rebuilt by a writable open or `--repair`).
    stale: usize,
    /// Where the first damage is, and what it is.
    segment: Option<String>,
    offset: Option<u64>,
    problem: Option<String>,
}

/// One thing `fsck --repair` did.
#[derive(Serialize)]
struct RepairRow {
    stream: String,
    /// Why: the damage found, or a torn tail.
    reason: String,
    segment: String,
    offset: u64,
    /// Bytes taken out of the log.
    bytes: u64,
    /// Where they were kept.
    quarantine_file: Option<String>,
    /// The seqs whose records were lost, if any.
    lost_first: Option<u64>,
    lost_last: Option<u64>,
}

/// `lamplog fsck`: re-check every byte of every stream (or of one), and
/// report each stream, damaged or not. Read-only unless `repair`, which
/// salvages every damaged stream first (losing only the damaged records)
/// and prints what it moved to quarantine. Exit 1 if a stream is damaged
/// (after the repair, if one ran).
pub fn fsck(dir: &Path, only: Option<&str>, repair: bool, json: bool) -> Result<(), Failure> {
    crate::open::check_is_store(dir)?;
    // Repair mode: read-only, damage in one stream is reported as the cut a
    // repair would start with, and the other streams are still checked.
    let opts = Options::default()
        .read_only(!repair)
        .recovery(RecoveryMode::Repair);
    let store = Store::open(dir, opts)?;
    let cuts = &store.recovery_report().cuts;
    if repair {
        let done: Vec<RepairRow> = cuts.iter().map(repair_row).collect();
        if !done.is_empty() {
            let columns = [
                "stream",
                "reason",
                "segment",
                "offset",
                "bytes",
                "lost_first",
                "lost_last",
                "quarantine_file",
            ];
            crate::table::print(&done, &columns, json)?;
        }
        if !json {
            eprintln!("lamplog: repair: {} change(s)", done.len());
        }
    }
    for cut in cuts
        .iter()
        .filter(|c| !repair && !matches!(c.reason, CutReason::Repair(_)))
    {
        eprintln!(
            "lamplog: {}: {} of {} bytes at {}:{} (a crash's leftovers; a writer's open moves them to quarantine)",
            cut.stream,
            cut.reason,
            cut.len,
            cut.segment.display(),
            cut.offset
        );
    }
    let streams = match only {
        Some(name) => vec![existing_stream(&store, name)?],
        None => store
            .streams()
            .iter()
            .map(|name| store.stream(name))
            .collect::<lamplog::Result<_>>()?,
    };
    let mut rows = Vec::new();
    let bar = crate::progress::bar(streams.len() as u64, "checking streams");
    for stream in &streams {
        let repaired = cuts.iter().find_map(|c| match &c.reason {
            CutReason::Repair(kind) if !repair && c.stream == stream.name() => Some((c, kind)),
            _ => None,
        });
        rows.push(check_stream(stream, repaired, repair)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let damaged = rows.iter().filter(|r| r.status != "ok").count();
    let columns = [
        "stream",
        "status",
        "segments",
        "records",
        "bytes",
        "lost_seqs",
        "stale",
        "segment",
        "offset",
        "problem",
    ];
    crate::table::print(&rows, &columns, json)?;
    if damaged > 0 {
        return Err(Failure {
            code: 1,
            message: format!("{damaged} of {} streams damaged", rows.len()),
        });
    }
    Ok(())
}

/// Say each derived file of `stream` that disagrees with its log (after
/// rebuilding those a repair rebuilds: op id files, which are parsed again
/// when next needed, and `checkpoint.json`); returns how many remain.
fn stale_files(stream: &Stream, repair: bool) -> Result<usize, Failure> {
    let mut stale = stream.stale_files()?;
    if repair && !stale.is_empty() {
        for file in &stale {
            if file.path.extension().is_some_and(|e| e == "ids") {
                std::fs::remove_file(&file.path)?;
            }
        }
        stream.latest_checkpoint()?;
        let before = std::mem::replace(&mut stale, stream.stale_files()?);
        for file in before.iter().filter(|f| !stale.contains(f)) {
            eprintln!(
                "lamplog: {}: rebuilt {}",
                stream.name(),
                file.path.display()
            );
        }
    }
    for file in &stale {
        eprintln!(
            "lamplog: {}: stale derived file {}: {} (nothing is lost: lamplog checks it before use; a writable open or fsck --repair rebuilds it)",
            stream.name(),
            file.path.display(),
            file.problem
        );
    }
    Ok(stale.len())
}

fn repair_row(cut: &Cut) -> RepairRow {
    RepairRow {
        stream: cut.stream.clone(),
        reason: cut.reason.to_string(),
        segment: cut.segment.display().to_string(),
        offset: cut.offset,
        bytes: cut.len,
        quarantine_file: cut
            .quarantine_file
            .as_ref()
            .map(|p| p.display().to_string()),
        lost_first: cut.lost.as_ref().map(|r| *r.start()),
        lost_last: cut.lost.as_ref().map(|r| *r.end()),
    }
}

/// One stream's verdict: the damage a repair-mode open found in it (its
/// cut), or else what a full check of its live log finds.
fn check_stream(
    stream: &Stream,
    repaired: Option<(&Cut, &CorruptionKind)>,
    repair: bool,
) -> Result<FsckRow, Failure> {
    let mut row = FsckRow {
        stream: stream.name().to_string(),
        status: "ok",
        segments: 0,
        records: 0,
        bytes: 0,
        lost_seqs: 0,
        stale: 0,
        segment: None,
        offset: None,
        problem: None,
    };
    let (segment, offset, kind) = match repaired {
        Some((cut, kind)) => (cut.segment.clone(), cut.offset, kind.clone()),
        None => match stream.verify() {
            Ok(v) => {
                (row.segments, row.records, row.bytes) = (v.segments, v.records, v.bytes);
                row.lost_seqs = v.lost_seqs;
                row.stale = stale_files(stream, repair)?;
                return Ok(row);
            }
            Err(Error::Corruption {
                segment,
                offset,
                kind,
                ..
            }) => (segment, offset, kind),
            Err(e) => return Err(e.into()),
        },
    };
    row.status = "damaged";
    row.segment = Some(segment.display().to_string());
    row.offset = Some(offset);
    row.problem = Some(kind.to_string());
    Ok(row)
}

/// One stream, as `lamplog streams` lists it.
#[derive(Serialize)]
struct StreamRow {
    stream: String,
    records: u64,
    segments: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    last_lamport: u64,
    /// When its last record was appended (RFC 3339, UTC), if it has one.
    last_write: Option<String>,
    checkpoints: usize,
    /// Records after the latest checkpoint record (all, if none).
    since_checkpoint: u64,
}

/// `lamplog streams`: every stream of the store, with its size, its seqs
/// and how far it is from its latest checkpoint.
pub fn streams(dir: &Path, json: bool) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default().read_only(true))?;
    let mut rows = Vec::new();
    for name in store.streams() {
        let stream = store.stream(&name)?;
        let (first_seq, last_seq) = (stream.first_seq(), stream.last_seq());
        // One pass: the records (a repair's lost seqs are not), the
        // checkpoints, the time of the last record.
        let (mut records, mut checkpoints, mut last_ts) = (0u64, 0usize, None);
        // Records up to and including the latest checkpoint record.
        let mut through_checkpoint = 0;
        for record in stream.iter() {
            let record = record?;
            records += 1;
            last_ts = Some(record.ts_us());
            if Checkpoint::from_record(&name, &record).is_some() {
                checkpoints += 1;
                through_checkpoint = records;
            }
        }
        let last_write = last_ts.map(rfc3339);
        let since_checkpoint = records - through_checkpoint;
        let usage = stream.usage();
        rows.push(StreamRow {
            stream: name,
            records,
            segments: usage.segments,
            bytes: usage.bytes,
            first_seq,
            last_seq,
            last_lamport: stream.last_lamport(),
            last_write,
            checkpoints,
            since_checkpoint,
        });
    }
    let columns = [
        "stream",
        "records",
        "segments",
        "bytes",
        "first_seq",
        "last_seq",
        "last_lamport",
        "last_write",
        "checkpoints",
        "since_checkpoint",
    ];
    crate::table::print(&rows, &columns, json)
}

/// A checkpoint, as `lamplog checkpoint` and `lamplog checkpoints` print it.
#[derive(Serialize)]
pub struct CheckpointRow {
    seq: u64,
    lamport: u64,
    snapshot_id: String,
    /// Seq of the checkpoint record itself.
    record_seq: u64,
}

impl From<Checkpoint> for CheckpointRow {
    fn from(c: Checkpoint) -> CheckpointRow {
        CheckpointRow {
            seq: c.seq,
            lamport: c.lamport,
            snapshot_id: c.snapshot_id,
            record_seq: c.record_seq,
        }
    }
}

/// `lamplog checkpoint`: mark everything appended so far as crystallised
/// into snapshot `snapshot_id`.
pub fn checkpoint(dir: &Path, stream_name: &str, snapshot_id: &str) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default())?;
    let stream = existing_stream(&store, stream_name)?;
    let row = CheckpointRow::from(stream.checkpoint(snapshot_id)?);
    store.close()?;
    crate::table::print(&[row], &[], true)
}

/// `lamplog checkpoints`: a stream's checkpoints, oldest first.
pub fn checkpoints(dir: &Path, stream_name: &str, json: bool) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default().read_only(true))?;
    let stream = store.stream(stream_name)?;
    let rows: Vec<CheckpointRow> = stream.checkpoints()?.into_iter().map(Into::into).collect();
    crate::table::print(
        &rows,
        &["seq", "lamport", "snapshot_id", "record_seq"],
        json,
    )
}

/// A stream that must exist already: a writing command must not create one
/// from a typo.
pub fn existing_stream(store: &Store, name: &str) -> Result<Stream, Failure> {
    if !store.streams().iter().any(|s| s == name) {
        return Err(Error::StreamNotFound { name: name.into() }.into());
    }
    Ok(store.stream(name)?)
}

/// Microseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(ts_us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(ts_us);
    humantime::format_rfc3339_seconds(t).to_string()
}
