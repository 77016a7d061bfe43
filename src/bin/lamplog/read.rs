//! `lamplog read`: a stream's records, one JSON object per line.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;

use lamplog::{Options, Record};

use crate::failure::Failure;

/// The options of `lamplog read`.
#[derive(Args)]
pub struct ReadArgs {
    /// The store directory.
    dir: PathBuf,
    /// The stream name.
    stream: String,
    /// Start at this seq (default: the first record of the live log).
    #[arg(long, conflicts_with_all = ["from_lamport", "since_checkpoint"])]
    from_seq: Option<u64>,
    /// Start at the first record whose Lamport timestamp is at least this.
    #[arg(long, conflicts_with = "since_checkpoint")]
    from_lamport: Option<u64>,
    /// Start right after the latest checkpoint record (everything, if there
    /// is none): what a replay from the latest snapshot needs.
    #[arg(long)]
    since_checkpoint: bool,
    /// Print at most this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Keep printing new records as they become durable, also while another
    /// process writes the stream (until interrupted).
    #[arg(long)]
    follow: bool,
}

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How far apart a write and a refresh must be for the refresh to have
/// seen the write, judged by modification times (coarse clocks, a writer
/// in another process).
const MTIME_SLACK: Duration = Duration::from_secs(1);

/// `lamplog export`: `read` from a seq on.
pub fn export(dir: &Path, stream: &str, from_seq: Option<u64>) -> Result<(), Failure> {
    read(ReadArgs {
        dir: dir.to_path_buf(),
        stream: stream.to_string(),
        from_seq,
        from_lamport: None,
        since_checkpoint: false,
        limit: None,
        follow: false,
    })
}

pub fn read(args: ReadArgs) -> Result<(), Failure> {
    let store = crate::open::existing(&args.dir, Options::default().read_only(true))?;
    let mut stream = store.stream(&args.stream)?;
    // Where reading starts, until a record is printed (then after it).
    let start = |stream: &lamplog::Stream| -> lamplog::Result<lamplog::Iter> {
        Ok(
            match (args.from_seq, args.from_lamport, args.since_checkpoint) {
                (_, _, true) => stream.replay_since_checkpoint()?,
                (_, Some(lamport), _) => stream.iter_from_lamport(lamport),
                (seq, None, false) => stream.iter_from_seq(seq.unwrap_or(stream.first_seq())),
            },
        )
    };
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut out = BufWriter::new(io::stdout().lock());
    // Without --follow, everything there is; with it, what is durable.
    let through = match args.follow {
        true => stream.durable_seq()?,
        false => u64::MAX,
    };
    let mut next = print(&mut out, start(&stream)?, through, &mut left)?;
    let (mut seen, mut refreshed_at) = (written_stamp(stream.dir()), SystemTime::now());
    while args.follow && left > 0 {
        out.flush()?;
        std::thread::sleep(FOLLOW_POLL);
        // Recover the stream again only when a writer may have touched it
        // since: its files changed, or the last change is too recent for the
        // last refresh to be sure it saw it (modification times are coarse).
        let now = written_stamp(stream.dir());
        let settled = now
            .as_ref()
            .is_some_and(|(_, modified)| *modified + MTIME_SLACK < refreshed_at);
        if now == seen && settled {
            continue;
        }
        (seen, refreshed_at) = (now, SystemTime::now());
        stream = stream.refreshed()?;
        let through = stream.durable_seq()?;
        if next.is_some_and(|seq| seq > through) {
            continue;
        }
        let records = match next {
            Some(seq) => stream.iter_from_seq(seq),
            None => start(&stream)?,
        };
        next = print(&mut out, records, through, &mut left)?.or(next);
    }
    out.flush()?;
    Ok(())
}

/// What changes when a writer writes the stream in `dir`: its segment
/// files and the newest one's modification time (a write updates it even
/// inside preallocated space, where the length stays).
fn written_stamp(dir: &Path) -> Option<(Vec<String>, SystemTime)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort_unstable();
    let modified = std::fs::metadata(dir.join(names.last()?))
        .ok()?
        .modified()
        .ok()?;
    Some((names, modified))
}

/// Print `records` up to seq `through`, at most `left` of them; returns
/// the seq after the last one printed.
fn print(
    out: &mut impl Write,
    records: lamplog::Iter,
    through: u64,
    left: &mut u64,
) -> Result<Option<u64>, Failure> {
    let mut next = None;
    let bar = crate::progress::counter("reading");
    for record in records {
        if *left == 0 {
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                out.flush()?;
                return Err(e.into());
            }
        };
        if record.seq() > through {
            break;
        }
        write_record(out, None, &record)?;
        next = Some(record.seq() + 1);
        *left -= 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(next)
}

/// One record as one line of JSON: `{"stream","seq","lamport","ts_us","payload"}`
/// (`stream` only when given), the payload exactly as stored but on one line.
pub fn write_record(out: &mut impl Write, stream: Option<&str>, record: &Record) -> io::Result<()> {
    out.write_all(b"{")?;
    if let Some(stream) = stream {
        // Stream names are [A-Za-z0-9._-]: nothing to escape.
        write!(out, r#""stream":"{stream}","#)?;
    }
    write!(
        out,
        r#""seq":{},"lamport":{},"ts_us":{},"payload":"#,
        record.seq(),
        record.lamport(),
        record.ts_us()
    )?;
    write_compact_json(out, record.payload())?;
    out.write_all(b"}\n")
}

/// Write a valid JSON value on one line: whitespace outside strings is
/// dropped (JSON strings cannot hold a raw newline), everything else is
/// copied byte for byte, so numbers and key order are exactly as stored.
pub fn write_compact_json(out: &mut impl Write, json: &[u8]) -> io::Result<()> {
    if !json.iter().any(|&b| b == b'\n' || b == b'\r') {
        return out.write_all(json.trim_ascii());
    }
    let (mut in_string, mut escaped) = (false, false);
    let compact: Vec<u8> = json
        .iter()
        .copied()
        .filter(|&b| {
            let keep = in_string || !b.is_ascii_whitespace();
            if in_string {
                (in_string, escaped) = match (escaped, b) {
                    (true, _) => (true, false),
                    (false, b'\\') => (true, true),
                    (false, b'"') => (false, false),
                    _ => (true, false),
                };
            } else if b == b'"' {
                in_string = true;
            }
            keep
        })
        .collect();
    out.write_all(&compact)
}
