//! The `lamplog` command line.
//!
//! Exit codes: 0 ok, 1 a data problem (corruption, a locked store, an I/O
//! failure), 2 a usage or input error.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lamplog::{Durability, Error, Options, Store};

#[derive(Parser)]
#[command(
    name = "lamplog",
    version,
    about = "An append-only operation log: append, read, and a quickstart demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append one JSON value per stdin line; print {"seq":N,"lamport":L} per record once durable.
    Append {
        /// The store directory (created if missing).
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// When a record counts as stored: on disk (sync) or handed to the OS (buffered).
        #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
        durability: DurabilityArg,
    },
    /// Print a stream's records, one JSON object per line.
    Read {
        /// The store directory.
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// Start at this seq.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Check every byte of every stream (read-only): exit 0 if healthy, 1 naming the damage.
    Fsck {
        /// The store directory.
        dir: PathBuf,
    },
    /// Measure appends and replay against a raw pwrite+fdatasync baseline on the same disk.
    ///
    /// With no options it runs the default matrix: durable appends with 1, 16, 64 and 256
    /// writers on one stream, 100 streams with a writer each, buffered ingest by one
    /// thread, and replay.
    Bench(BenchArgs),
    /// Append, replay, seek and recover a demo stream in a temporary store, and say what happened.
    Quickstart {
        /// Records to append.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Use this directory instead of a temporary one (it is kept).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The options of `lamplog bench`.
#[derive(Args)]
struct BenchArgs {
    /// Where to create the temporary store (default: the current directory, so the
    /// disk under test is the one you run from).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Appending threads.
    #[arg(long)]
    writers: Option<usize>,
    /// Streams the writers spread over.
    #[arg(long)]
    streams: Option<usize>,
    /// Records to append in total.
    #[arg(long)]
    records: Option<u64>,
    /// Approximate payload size in bytes.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Durability of each append.
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// Records per call (1: `append`; more: `append_batch`).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The I/O backend.
    #[arg(long, value_enum, default_value_t = BackendArg::IoUring)]
    backend: BackendArg,
    /// What a sync of many files writes back: each file (fdatasync), or
    /// the whole filesystem (one syncfs for 4 or more files).
    #[arg(long, value_enum, default_value_t = ScopeArg::Files)]
    sync_scope: ScopeArg,
    /// Print one JSON object per configuration instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Sync,
    Buffered,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Durability {
        match d {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Buffered => Durability::Buffered,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScopeArg {
    Files,
    Filesystem,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Pwrite,
    IoUring,
}

mod bench;
mod wake;

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match e {
            Error::InvalidJson { .. }
            | Error::InvalidName { .. }
            | Error::InvalidSnapshotId { .. }
            | Error::MergeTargetIsSource { .. }
            | Error::RecordTooLarge { .. }
            | Error::InvalidOptions(_)
            | Error::StreamNotFound { .. }
            | Error::ReadOnly => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// The code of a failure to write to a stdout whose reader went away.
const PIPE_CLOSED: u8 = 141;

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        let code = match e.kind() {
            io::ErrorKind::BrokenPipe => PIPE_CLOSED,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Append {
            dir,
            stream,
            durability,
        } => append(&dir, &stream, durability),
        Command::Read {
            dir,
            stream,
            from_seq,
            limit,
        } => read(&dir, &stream, from_seq, limit),
        Command::Quickstart { records, dir } => quickstart(records, dir),
        Command::Fsck { dir } => fsck(&dir),
        Command::Bench(args) => bench_command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader of `lamplog read` that stops early (`| head`) is not an error.
        Err(f) if f.code == PIPE_CLOSED => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("lamplog: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// `lamplog bench`: the default matrix, or the one configuration the
/// options describe.
fn bench_command(args: BenchArgs) -> Result<(), Failure> {
    let settings = bench::Settings {
        dir: args.dir,
        backend: match args.backend {
            BackendArg::Pwrite => lamplog::IoBackend::Pwrite,
            BackendArg::IoUring => lamplog::IoBackend::IoUring,
        },
        sync_scope: match args.sync_scope {
            ScopeArg::Files => lamplog::SyncScope::Files,
            ScopeArg::Filesystem => lamplog::SyncScope::Filesystem,
        },
        record_bytes: args.record_bytes,
        json: args.json,
    };
    let custom = args.writers.is_some()
        || args.streams.is_some()
        || args.records.is_some()
        || args.durability.is_some();
    if !custom {
        return bench::run(&bench::default_matrix(), &settings, true);
    }
    let writers = args.writers.unwrap_or(1).max(1);
    let durability: Durability = args.durability.unwrap_or(DurabilityArg::Sync).into();
    let config = bench::Config {
        name: "custom".into(),
        writers,
        streams: args.streams.unwrap_or(1).clamp(1, writers),
        records: args.records.unwrap_or(20_000),
        durability,
        batch: args.batch.max(1),
        sync_scope: None,
    };
    bench::run(&[config], &settings, durability == Durability::Buffered)
}

/// Tell the operator on stderr what recovery cut (or, read-only, skipped).
fn report_cuts(store: &Store) {
    for cut in &store.recovery_report().cuts {
        let kept = match &cut.quarantine_file {
            Some(path) => format!("kept in {}", path.display()),
            None => "not read (read-only; a writer's open moves them to quarantine)".to_string(),
        };
        eprintln!(
            "lamplog: recovery: {}: {} bytes of {} at offset {}, {kept}",
            cut.reason,
            cut.len,
            cut.segment.display(),
            cut.offset,
        );
    }
}

fn append(dir: &Path, stream_name: &str, durability: DurabilityArg) -> Result<(), Failure> {
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

fn fsck(dir: &Path) -> Result<(), Failure> {
    let store = Store::open(dir, Options::default().read_only(true))?;
    report_cuts(&store);
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

fn read(
    dir: &Path,
    stream_name: &str,
    from_seq: Option<u64>,
    limit: Option<u64>,
) -> Result<(), Failure> {
    let store = Store::open(dir, Options::default().read_only(true))?;
    report_cuts(&store);
    let stream = store.stream(stream_name)?;
    let mut out = BufWriter::new(io::stdout().lock());
    let records = stream.iter_from_seq(from_seq.unwrap_or(1));
    for record in
        records.take(limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)))
    {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                out.flush()?;
                return Err(e.into());
            }
        };
        write!(
            out,
            r#"{{"seq":{},"lamport":{},"ts_us":{},"payload":"#,
            record.seq(),
            record.lamport(),
            record.ts_us()
        )?;
        write_compact_json(&mut out, record.payload())?;
        out.write_all(b"}\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Write a valid JSON value on one line: whitespace outside strings is
/// dropped (JSON strings cannot hold a raw newline), everything else is
/// copied byte for byte, so numbers and key order are exactly as stored.
fn write_compact_json(out: &mut impl Write, json: &[u8]) -> io::Result<()> {
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

fn quickstart(records: u64, dir: Option<PathBuf>) -> Result<(), Failure> {
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
