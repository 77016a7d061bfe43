//! What `lamplog bench` prints: the header, a row per configuration (a
//! table line, or one JSON object with `--json`), and the replay line.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use lamplog::Durability;
use serde::Serialize;

use super::{durability_name, op, percentile, run_replay, Config, Measured, Settings};
use crate::Failure;

/// One measured row; field names are the `--json` contract.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    name: String,
    backend: &'static str,
    sync_scope: &'static str,
    writers: usize,
    /// Durable appends the writers kept in flight together, for an
    /// in-flight row (`append_pending`).
    inflight: Option<usize>,
    streams: usize,
    durability: &'static str,
    records: u64,
    seconds: f64,
    records_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    fsyncs: u64,
    fsync_avg_us: f64,
    records_per_fsync: f64,
    baseline_records_per_s: f64,
    ratio_to_baseline: f64,
    group_commit_limit_per_s: Option<f64>,
    ratio_to_limit: Option<f64>,
    /// Time to wake `writers` blocked threads once (`inflight` for an
    /// in-flight row), measured in this run.
    wake_round_us: Option<f64>,
    /// `writers / (t_fsync + wake round)`, for one stream: the most a group
    /// commit can do on this machine when each sync is followed by a round
    /// of wake-ups before the next (as when every appender waits for its
    /// record to be durable and appends again at once). For an in-flight
    /// row, the ceiling of as many blocked writers as it keeps in flight,
    /// which it is not bound by.
    lockstep_ceiling_per_s: Option<f64>,
    ratio_to_ceiling: Option<f64>,
    disk_bytes_per_payload_byte: Option<f64>,
}

pub(super) fn print_header(baseline_rate: f64) {
    println!("baseline: one writer, pwrite + fdatasync per record: {baseline_rate:.0} records/s ({:.0} us per record)\n", 1e6 / baseline_rate);
    println!(
        "{:<27} {:>12} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8}",
        "config",
        "records/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "fsyncs",
        "rec/fsync",
        "fsync us",
        "x base",
        "x limit",
        "x ceil",
        "disk/pl"
    );
}

/// One configuration's figures, with its ratios to the baseline, to the
/// group-commit limit and to the lockstep ceiling.
pub(super) fn row(
    config: &Config,
    settings: &Settings,
    m: &Measured,
    baseline_rate: f64,
    wake_round: Option<Duration>,
) -> Row {
    let t_fsync = 1.0 / baseline_rate;
    let durable = config.durability == Durability::Sync;
    let records = m.records;
    let payload_len = op(0, settings.record_bytes).len() as f64;
    let rate = records as f64 / m.seconds;
    // Records that can wait for one sync: one per blocked writer, or as
    // many as are kept in flight.
    let waiting = config.inflight.unwrap_or(config.writers) as f64;
    let limit = durable.then(|| waiting / t_fsync);
    let round_s = wake_round.map_or(0.0, |r| r.as_secs_f64());
    let ceiling = (durable && config.streams == 1).then(|| waiting / (t_fsync + round_s));
    let per_fsync = |x: f64| {
        if m.fsyncs == 0 {
            0.0
        } else {
            x / m.fsyncs as f64
        }
    };
    Row {
        name: config.name.clone(),
        backend: m.backend,
        sync_scope: match config.sync_scope.unwrap_or(settings.sync_scope) {
            lamplog::SyncScope::Filesystem => "filesystem",
            _ => "files",
        },
        writers: config.writers,
        inflight: config.inflight,
        streams: config.streams,
        durability: durability_name(config.durability),
        records,
        seconds: m.seconds,
        records_per_s: rate,
        mb_per_s: rate * payload_len / 1e6,
        p50_us: percentile(&m.latencies_ns, 0.50),
        p99_us: percentile(&m.latencies_ns, 0.99),
        p999_us: percentile(&m.latencies_ns, 0.999),
        fsyncs: m.fsyncs,
        fsync_avg_us: per_fsync(m.fsync_us as f64),
        records_per_fsync: per_fsync(records as f64),
        baseline_records_per_s: baseline_rate,
        ratio_to_baseline: rate / baseline_rate,
        group_commit_limit_per_s: limit,
        ratio_to_limit: limit.map(|l| rate / l),
        wake_round_us: wake_round.map(|r| r.as_secs_f64() * 1e6),
        lockstep_ceiling_per_s: ceiling,
        ratio_to_ceiling: ceiling.map(|c| rate / c),
        disk_bytes_per_payload_byte: Some(m.disk_bytes as f64 / (records as f64 * payload_len)),
    }
}

pub(super) fn print_replay(root: &Path, json: bool) -> Result<(), Failure> {
    let (records, bytes, seconds) = run_replay(root)?;
    if json {
        let row = serde_json::json!({
            "name": "replay", "records": records, "seconds": seconds,
            "records_per_s": records as f64 / seconds, "gb_per_s": bytes as f64 / seconds / 1e9,
        });
        println!("{row}");
    } else {
        println!(
            "{:<27} {:>12.0} {:>8.0}   ({:.2} GB/s of frames, CRC-verified through mmap)",
            "replay",
            records as f64 / seconds,
            bytes as f64 / seconds / 1e6,
            bytes as f64 / seconds / 1e9
        );
    }
    Ok(())
}

pub(super) fn print_row(row: &Row, json: bool) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(row).map_err(|e| Failure {
                code: 1,
                message: e.to_string()
            })?
        )?;
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    writeln!(
        out,
        "{:<27} {:>12.0} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>9.1} {:>8.0} {:>9.2} {:>9} {:>8} {:>8}",
        row.name,
        row.records_per_s,
        row.mb_per_s,
        row.p50_us,
        row.p99_us,
        row.p999_us,
        row.fsyncs,
        row.records_per_fsync,
        row.fsync_avg_us,
        row.ratio_to_baseline,
        opt(row.ratio_to_limit),
        opt(row.ratio_to_ceiling),
        opt(row.disk_bytes_per_payload_byte),
    )?;
    Ok(())
}
