//! `lamplog doctor`: slow-growing trouble, with advice. Read-only.

use std::path::Path;
use std::time::{Duration, Instant};

use lamplog::{
    CutReason, Error, Options, RecoveryMode, Store, Stream, ARCHIVE_DIR, QUARANTINE_DIR,
};
use serde::Serialize;

use crate::failure::Failure;

/// One thing worth an operator's attention.
#[derive(Serialize)]
struct Finding {
    stream: String,
    /// What was looked at.
    check: &'static str,
    /// What was found.
    value: String,
    /// What to do about it.
    advice: String,
}

/// A replay estimate over this many seconds is worth a checkpoint.
const REPLAY_SLOW: Duration = Duration::from_secs(1);
/// Quarantine or archive bytes worth a mention.
const WORTH_BYTES: u64 = 1;
/// Preallocated space worth a mention: over this share of the used bytes
/// and over `WASTE_BYTES`.
const WASTE_SHARE: f64 = 0.25;
const WASTE_BYTES: u64 = 16 << 20;
/// How long the replay rate is measured.
const MEASURE_FOR: Duration = Duration::from_millis(300);

/// `lamplog doctor`: per stream, what replay from the latest checkpoint
/// would cost, the size of quarantine and archive, preallocated space,
/// stale derived files, unsynced bytes left by a writer, damage. Exit 1
/// only for damage.
pub fn doctor(dir: &Path, json: bool) -> Result<(), Failure> {
    crate::open::check_is_store(dir)?;
    let opts = Options::default()
        .read_only(true)
        .recovery(RecoveryMode::Repair);
    let store = Store::open(dir, opts)?;
    let names = store.streams();
    let rate = replay_rate(&store, &names)?;
    let mut findings = Vec::new();
    let mut damaged = 0;
    let bar = crate::progress::bar(names.len() as u64, "examining");
    for name in &names {
        let stream = store.stream(name)?;
        let mut found = |check, value: String, advice: String| {
            findings.push(Finding {
                stream: name.clone(),
                check,
                value,
                advice,
            })
        };
        for cut in store
            .recovery_report()
            .cuts
            .iter()
            .filter(|c| &c.stream == name)
        {
            match &cut.reason {
                CutReason::TornTail | CutReason::TornSegmentCreation => found(
                    "unsynced tail",
                    format!(
                        "{} bytes after the last record of {}",
                        cut.len,
                        cut.segment.display()
                    ),
                    "a writer died before syncing them (or is writing now): never acknowledged; \
                     the next writable open moves them to quarantine/"
                        .into(),
                ),
                _ => {}
            }
        }
        match stream.verify() {
            Ok(v) if v.lost_seqs > 0 => found(
                "lost in a repair",
                format!("{} seqs", v.lost_seqs),
                "information: their bytes are in quarantine/".into(),
            ),
            Ok(_) => {}
            Err(Error::Corruption {
                segment,
                offset,
                kind,
                ..
            }) => {
                damaged += 1;
                found(
                    "damage",
                    format!("{kind} at {}:{offset}", segment.display()),
                    format!("run `lamplog fsck {} --repair`", dir.display()),
                );
            }
            Err(e) => return Err(e.into()),
        }
        if damaged == 0 {
            replay_finding(&stream, rate, &mut found)?;
            for file in stream.stale_files()? {
                found(
                    "stale derived file",
                    format!("{}: {}", file.path.display(), file.problem),
                    format!(
                        "nothing is lost; `lamplog fsck {} --repair` rebuilds it",
                        dir.display()
                    ),
                );
            }
        }
        for (folder, advice) in [
            (
                QUARANTINE_DIR,
                "inspect what recovery cut, then delete what you do not need",
            ),
            (
                ARCHIVE_DIR,
                "purge it when retention allows (`lamplog purge DIR STREAM --archived`)",
            ),
        ] {
            let bytes = file_bytes(&stream.dir().join(folder), |_| true);
            if bytes >= WORTH_BYTES {
                found(
                    "folder size",
                    format!("{folder}/ holds {}", human(bytes)),
                    advice.into(),
                );
            }
        }
        let used = stream.usage().bytes;
        let files = file_bytes(stream.dir(), |name| name.ends_with(".seg"));
        let waste = files.saturating_sub(used);
        if waste > WASTE_BYTES && waste as f64 > used as f64 * WASTE_SHARE {
            found(
                "preallocated space",
                format!(
                    "{} of segment files beyond their records ({} used)",
                    human(waste),
                    human(used)
                ),
                "smaller segments (Options::segment_bytes_max) waste less".into(),
            );
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let columns = ["stream", "check", "value", "advice"];
    crate::table::print(&findings, &columns, json)?;
    if findings.is_empty() && !json {
        eprintln!("lamplog: no trouble found in {} streams", names.len());
    }
    if damaged > 0 {
        return Err(Failure {
            code: 1,
            message: format!("{damaged} of {} streams damaged", names.len()),
        });
    }
    Ok(())
}

/// The replay a restart from the latest checkpoint implies, when slow.
fn replay_finding(
    stream: &Stream,
    rate: f64,
    found: &mut impl FnMut(&'static str, String, String),
) -> Result<(), Failure> {
    let last = stream.last_seq();
    let from = stream
        .latest_checkpoint()?
        .map_or(stream.first_seq(), |c| c.record_seq + 1);
    let records = (last + 1).saturating_sub(stream.first_seq());
    let since = last.saturating_sub(from.saturating_sub(1));
    if records == 0 || since == 0 {
        return Ok(());
    }
    // Bytes since the checkpoint, in proportion to the records.
    let bytes = stream.usage().bytes as f64 * since as f64 / records as f64;
    let seconds = bytes / rate;
    if seconds >= REPLAY_SLOW.as_secs_f64() {
        found(
            "since checkpoint",
            format!(
                "{since} records, about {seconds:.1} s to replay at {}/s",
                human(rate as u64)
            ),
            format!(
                "checkpoint it: `lamplog checkpoint DIR {} SNAPSHOT_ID`",
                stream.name()
            ),
        );
    }
    Ok(())
}

/// Bytes per second this machine replays (every checksum verified),
/// measured on the store's largest stream for a moment.
fn replay_rate(store: &Store, names: &[String]) -> Result<f64, Failure> {
    let mut largest: Option<Stream> = None;
    for name in names {
        let stream = store.stream(name)?;
        if largest
            .as_ref()
            .is_none_or(|l| l.usage().bytes < stream.usage().bytes)
        {
            largest = Some(stream);
        }
    }
    let (mut bytes, started) = (0u64, Instant::now());
    if let Some(stream) = largest {
        for record in stream.iter() {
            let Ok(record) = record else { break };
            bytes += (record.payload().len() + lamplog::format::FRAME_HEADER_LEN) as u64;
            if started.elapsed() > MEASURE_FOR {
                break;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Too little to time: assume a conservative 500 MB/s.
    Ok(if bytes < 1 << 20 || elapsed <= 0.0 {
        500e6
    } else {
        bytes as f64 / elapsed
    })
}

/// Bytes of the files in `dir` whose names `wanted` picks.
fn file_bytes(dir: &Path, wanted: impl Fn(&str) -> bool) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| wanted(&e.file_name().to_string_lossy()))
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
