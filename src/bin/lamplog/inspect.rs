//! Commands that inspect a store or its checkpoints: `fsck`, `streams`,
//! `checkpoint`, `checkpoints`.

use std::path::Path;

use lamplog::{Checkpoint, Options, Store, Stream};
use serde::Serialize;

use crate::failure::Failure;

pub fn fsck(dir: &Path) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default().read_only(true))?;
    let v = store.verify()?;
    println!(
        "ok: {} streams, {} segments, {} records, {} bytes of frames verified",
        store.streams().len(),
        v.segments,
        v.records,
        v.bytes
    );
    Ok(())
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
        let records = (last_seq + 1).saturating_sub(first_seq);
        let last_write = match last_seq {
            0 => None,
            seq => stream.get(seq)?.map(|r| rfc3339(r.ts_us())),
        };
        let checkpoints = stream.checkpoints()?;
        let since_checkpoint = checkpoints
            .last()
            .map_or(records, |c| last_seq.saturating_sub(c.record_seq));
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
            checkpoints: checkpoints.len(),
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
        return Err(lamplog::Error::StreamNotFound { name: name.into() }.into());
    }
    Ok(store.stream(name)?)
}

/// Microseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(ts_us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(ts_us);
    humantime::format_rfc3339_seconds(t).to_string()
}
