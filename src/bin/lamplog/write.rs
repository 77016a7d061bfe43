//! Commands that write: `append`, `import`, `merge`, `archive`, `purge`.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;

use lamplog::{Durability, Options, Store};

use crate::failure::Failure;
use crate::open::report_cuts;
use crate::DurabilityArg;

pub fn append(dir: &Path, stream_name: &str, durability: DurabilityArg) -> Result<(), Failure> {
    let store = Store::open(dir, Options::default())?;
    report_cuts(&store);
    let stream = store.stream(stream_name)?;
    let mut acks = Acks {
        stream: &stream,
        sync: matches!(durability, DurabilityArg::Sync),
        unsynced: Vec::new(),
        out: Some(BufWriter::new(io::stdout().lock())),
        stored: 0,
    };
    let mut stdin = io::BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut line = Vec::new();
    let mut line_no = 0u64;
    // Every line is read and stored, whatever happens to stdout: a reader
    // that stops early (`| head -1`) loses its acknowledgements, not input.
    // On a bad line, everything stored before it is acknowledged first, so
    // that a retry from the bad line duplicates nothing.
    let failure = loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => line_no += 1,
            Err(e) => break Some((1, format!("stdin line {}: {e}", line_no + 1))),
        }
        let record = line.strip_suffix(b"\n").unwrap_or(&line);
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match stream.append(record, Durability::Buffered) {
            Ok(a) => acks.unsynced.push(a),
            Err(e) => {
                let f = Failure::from(e);
                break Some((f.code, format!("stdin line {line_no}: {}", f.message)));
            }
        }
        if stdin.buffer().is_empty() || acks.unsynced.len() >= 4096 {
            acks.flush()?;
        }
    };
    acks.flush()?;
    let stored = acks.stored;
    let acknowledged = acks.out.is_some();
    drop(acks);
    store.close()?;
    if !acknowledged {
        eprintln!(
            "lamplog: stdout was closed; all {stored} records were stored, \
             acknowledgements stopped early"
        );
    }
    match failure {
        None => Ok(()),
        Some((code, message)) => Err(Failure {
            code,
            message: format!("{message} ({stored} records before it stored and acknowledged)"),
        }),
    }
}

/// The acknowledgements of `append`: records are synced (for `--durability
/// sync`) and acknowledged in bursts. Once stdout is closed, records are
/// still synced and counted, no longer printed.
struct Acks<'a, W: Write> {
    stream: &'a lamplog::Stream,
    sync: bool,
    unsynced: Vec<lamplog::Appended>,
    out: Option<W>,
    stored: u64,
}

impl<W: Write> Acks<'_, W> {
    fn flush(&mut self) -> Result<(), Failure> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        if self.sync {
            self.stream.sync()?;
        }
        self.stored += self.unsynced.len() as u64;
        let Some(out) = &mut self.out else {
            self.unsynced.clear();
            return Ok(());
        };
        let printed = self
            .unsynced
            .drain(..)
            .try_for_each(|a| writeln!(out, r#"{{"seq":{},"lamport":{}}}"#, a.seq, a.lamport));
        match printed.and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.out = None;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `lamplog import`: append every line of `file` (`-`: stdin) to the
/// stream, all or nothing: every line is checked before the first is
/// written, and the first bad one is a usage error (exit 2) naming it.
pub fn import(
    dir: &Path,
    stream_name: &str,
    file: &Path,
    from_export: bool,
) -> Result<(), Failure> {
    let input = read_input(file)?;
    let opts = Options::default();
    let records = checked_lines(&input, from_export, opts.record_bytes_max)?;
    let store = Store::open(dir, opts.clone())?;
    crate::open::report_cuts(&store);
    let stream = store.stream(stream_name)?;
    // One atomic batch when the input fits a segment (a crash keeps all of
    // it or none); larger inputs go in batches of half a segment each.
    let mut first_seq = None;
    let mut last_seq = stream.last_seq();
    let mut batch_bytes = 0;
    let mut start = 0;
    let bar = crate::progress::bar(records.len() as u64, "importing");
    for end in 1..=records.len() {
        batch_bytes += records[end - 1].len() + lamplog::format::FRAME_HEADER_LEN;
        let full = records
            .get(end)
            .is_none_or(|next| batch_bytes + next.len() > opts.segment_bytes_max as usize / 2);
        if full {
            let done = stream.append_batch(&records[start..end], Durability::Buffered)?;
            first_seq = first_seq.or(done.first().map(|a| a.seq));
            last_seq = done.last().map_or(last_seq, |a| a.seq);
            bar.inc((end - start) as u64);
            (start, batch_bytes) = (end, 0);
        }
    }
    bar.finish_and_clear();
    stream.sync()?;
    store.close()?;
    println!(
        r#"{{"records":{},"first_seq":{},"last_seq":{last_seq}}}"#,
        records.len(),
        first_seq.map_or("null".into(), |s| s.to_string()),
    );
    Ok(())
}

/// The whole of `file` (`-`: stdin).
fn read_input(file: &Path) -> Result<Vec<u8>, Failure> {
    if file.to_str() == Some("-") {
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut bytes)?;
        return Ok(bytes);
    }
    std::fs::read(file).map_err(|e| Failure {
        code: 2,
        message: format!("{}: {e}", file.display()),
    })
}

/// The records `input` holds, one per non-blank line (with `from_export`,
/// each line's payload); the first bad line is a usage error naming it.
fn checked_lines(
    input: &[u8],
    from_export: bool,
    record_bytes_max: usize,
) -> Result<Vec<&[u8]>, Failure> {
    let mut records = Vec::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: String| Failure {
            code: 2,
            message: format!("line {}: {why} (nothing imported)", i + 1),
        };
        let record: &[u8] = match from_export {
            false => match serde_json::from_slice::<&serde_json::value::RawValue>(line) {
                Ok(_) => line,
                Err(e) => return Err(bad(format!("not one JSON value: {e}"))),
            },
            true => match exported_payload(line) {
                Some(payload) => payload,
                None => return Err(bad("not a line of `lamplog export`".into())),
            },
        };
        if record.len() > record_bytes_max {
            let len = record.len();
            return Err(bad(format!("{len} bytes, more than a record may hold")));
        }
        records.push(record);
    }
    Ok(records)
}

/// The payload of a line of `lamplog export` (an object with a
/// `payload` field), exactly as exported.
fn exported_payload(line: &[u8]) -> Option<&[u8]> {
    type Fields<'a> = std::collections::HashMap<String, &'a serde_json::value::RawValue>;
    let fields: Fields = serde_json::from_slice(line).ok()?;
    fields.get("payload").map(|p| p.get().as_bytes())
}

/// `lamplog merge`: every record of `sources` appended to `target` in
/// causal order.
pub fn merge(dir: &Path, sources: &[String], target: &str) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default())?;
    for source in sources {
        crate::inspect::existing_stream(&store, source)?;
    }
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    let records = store.merge_into(&sources, target)?;
    store.close()?;
    println!(r#"{{"records":{records},"into":"{target}"}}"#);
    Ok(())
}

/// `lamplog archive`: move the segments wholly covered by a checkpoint
/// (the latest, or the one named) into the stream's `archive/` folder.
pub fn archive(dir: &Path, stream_name: &str, snapshot_id: Option<&str>) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default())?;
    let stream = crate::inspect::existing_stream(&store, stream_name)?;
    // The latest is found through checkpoint.json; a named one by reading
    // the log.
    let checkpoint = match snapshot_id {
        None => stream.latest_checkpoint()?,
        Some(id) => stream
            .checkpoints()?
            .into_iter()
            .rev()
            .find(|c| c.snapshot_id == id),
    };
    let Some(checkpoint) = checkpoint else {
        return Err(Failure {
            code: 2,
            message: match snapshot_id {
                None => format!("stream {stream_name:?} has no checkpoint to archive before"),
                Some(id) => format!("stream {stream_name:?} has no checkpoint {id:?}"),
            },
        });
    };
    let archived = stream.archive_before(&checkpoint)?;
    drop(stream);
    store.close()?;
    println!(
        r#"{{"segments":{},"live_from_seq":{},"checkpoint_seq":{}}}"#,
        archived.segments, archived.live_from_seq, checkpoint.seq
    );
    Ok(())
}

/// `lamplog purge`: delete for good the whole segments (archived or live)
/// whose records all lie at or below a seq: `--through SEQ`, or with
/// `--archived` everything archived.
pub fn purge(
    dir: &Path,
    stream_name: &str,
    through: Option<u64>,
    archived: bool,
) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default())?;
    let stream = crate::inspect::existing_stream(&store, stream_name)?;
    let seq = match (through, archived) {
        (Some(seq), false) => seq,
        (None, true) => stream.first_seq() - 1,
        _ => {
            return Err(Failure {
                code: 2,
                message: "give one of --through SEQ or --archived".into(),
            })
        }
    };
    let purged = stream.purge_through(seq)?;
    drop(stream);
    store.close()?;
    println!(
        r#"{{"segments":{},"purged_before_seq":{}}}"#,
        purged.segments, purged.purged_before_seq
    );
    Ok(())
}

/// `lamplog redact`: remove one record's payload for good (docs/FORMAT.md,
/// "Redaction").
pub fn redact(dir: &Path, stream_name: &str, seq: u64, reason: &str) -> Result<(), Failure> {
    let store = crate::open::existing(dir, Options::default())?;
    let stream = crate::inspect::existing_stream(&store, stream_name)?;
    let done = stream.redact(seq, reason)?;
    drop(stream);
    store.close()?;
    #[derive(serde::Serialize)]
    struct Line<'a> {
        stream: &'a str,
        seq: u64,
        lamport: u64,
        sha256: &'a str,
    }
    let line = Line {
        stream: stream_name,
        seq: done.seq,
        lamport: done.lamport,
        sha256: &done.sha256,
    };
    println!("{}", serde_json::to_string(&line).map_err(io::Error::from)?);
    Ok(())
}
