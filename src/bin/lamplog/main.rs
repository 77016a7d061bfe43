//! The `lamplog` command line.
//!
//! Exit codes: 0 ok, 1 a data problem (corruption, a locked store, an I/O
//! failure), 2 a usage or input error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lamplog::Durability;

#[derive(Parser)]
#[command(
    name = "lamplog",
    version,
    about = "An append-only operation log: append, read, query, checkpoint, check and maintain a store (docs/CLI.md)"
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
    Read(read::ReadArgs),
    /// Check every byte of every stream: a line per stream, exit 1 if any is
    /// damaged, naming segment, offset and kind. Read-only unless --repair.
    Fsck {
        /// The store directory.
        dir: PathBuf,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Salvage every damaged stream first: only the records whose bytes
        /// are damaged are lost (their bytes go to quarantine/), every other
        /// record is kept; rewrites every index that disagrees with its
        /// segment. Takes the writer lock.
        #[arg(long)]
        repair: bool,
        /// One JSON object per stream and line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the records that match, across all streams (or those named) in
    /// causal order (Lamport, stream, seq): one line per record,
    /// {"stream","seq","lamport","ts_us","payload"}.
    ///
    /// Example: every record by one actor in the last 30 days:
    /// `lamplog query DIR --actor anan --since 30d`.
    Query(query::QueryArgs),
    /// Print a stream's records in the `read` format, from a seq on: what
    /// `import` takes back (each line's payload).
    Export {
        /// The store directory.
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// Start at this seq.
        #[arg(long)]
        from_seq: Option<u64>,
    },
    /// Append every line of FILE (`-`: stdin), one JSON value each, all or
    /// nothing: a bad line is exit 2 naming it, and nothing is written.
    Import {
        /// The store directory.
        dir: PathBuf,
        /// The stream name (created if missing).
        stream: String,
        /// The file of JSON lines, or `-` for stdin.
        file: PathBuf,
        /// Each line is a line of `export` (or `read`): import its payload.
        #[arg(long)]
        from_export: bool,
    },
    /// Append every record of the source streams to TARGET, in causal order.
    Merge {
        /// The store directory.
        dir: PathBuf,
        /// The streams to merge.
        #[arg(required = true)]
        sources: Vec<String>,
        /// The stream that receives them (created if missing; not a source).
        #[arg(long)]
        into: String,
    },
    /// Move the segments a checkpoint wholly covers into the stream's archive/ folder.
    Archive {
        /// The store directory.
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// Archive before this checkpoint (default: the latest).
        #[arg(long, value_name = "SNAPSHOT_ID")]
        before_checkpoint: Option<String>,
    },
    /// Delete for good the whole segments (archived or live; never the one being
    /// written) whose records all lie at or below a seq. Reads of them then say
    /// they were purged.
    Purge {
        /// The store directory.
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// Purge the segments whose records are all at or below this seq.
        #[arg(long, conflicts_with = "archived")]
        through: Option<u64>,
        /// Purge every archived segment.
        #[arg(long)]
        archived: bool,
    },
    /// Remove one record's payload for good: its bytes are zeroed on disk (and
    /// in quarantine/), reads return {"redacted":true,"reason","sha256"}, and
    /// fsck still verifies the chain. Prints {"stream","seq","lamport","sha256"}.
    Redact {
        /// The store directory.
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// The record's seq.
        seq: u64,
        /// Why (kept in the stub that reads return; at most 1,024 bytes).
        #[arg(long)]
        reason: String,
    },
    /// Look for slow-growing trouble, with advice: long replays since the last
    /// checkpoint, quarantine and archive sizes, preallocated space, stale
    /// derived files, unsynced bytes a writer left, damage (exit 1). Read-only.
    Doctor {
        /// The store directory.
        dir: PathBuf,
        /// One JSON object per finding and line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the streams: records, segments, bytes, seqs, last write, checkpoints.
    Streams {
        /// The store directory.
        dir: PathBuf,
        /// One JSON object per stream and line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint a stream: everything appended so far is crystallised into
    /// SNAPSHOT_ID. Prints {"seq","lamport","snapshot_id","record_seq"}.
    Checkpoint {
        /// The store directory.
        dir: PathBuf,
        /// The stream name (it must exist).
        stream: String,
        /// The caller's name for the snapshot.
        snapshot_id: String,
    },
    /// List a stream's checkpoints, oldest first.
    Checkpoints {
        /// The store directory.
        dir: PathBuf,
        /// The stream name.
        stream: String,
        /// One JSON object per checkpoint and line instead of a table.
        #[arg(long)]
        json: bool,
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
    /// Appending threads (default 1; 2 with --inflight).
    #[arg(long, visible_alias = "threads")]
    writers: Option<usize>,
    /// Keep this many durable appends in flight in total across the
    /// writers (`append_pending`), instead of one blocking append each.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    inflight: Option<u64>,
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
    /// Write every frame with pwrite, not through a map of the segment
    /// (`Options::mapped_writes(false)`).
    #[arg(long)]
    no_mapped_writes: bool,
    /// Run a neighbour writing this many MB/s into a file beside the store
    /// (buffered writes, never synced), as a busy process on the same
    /// filesystem would.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    neighbour_mb_s: Option<u32>,
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
mod doctor;
mod failure;
mod inspect;
mod open;
mod progress;
mod query;
mod quickstart;
mod read;
mod table;
mod wake;
mod write;

use failure::{Failure, PIPE_CLOSED};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Append {
            dir,
            stream,
            durability,
        } => write::append(&dir, &stream, durability),
        Command::Read(args) => read::read(args),
        Command::Quickstart { records, dir } => quickstart::quickstart(records, dir),
        Command::Fsck {
            dir,
            stream,
            repair,
            json,
        } => inspect::fsck(&dir, stream.as_deref(), repair, json),
        Command::Streams { dir, json } => inspect::streams(&dir, json),
        Command::Doctor { dir, json } => doctor::doctor(&dir, json),
        Command::Redact {
            dir,
            stream,
            seq,
            reason,
        } => write::redact(&dir, &stream, seq, &reason),
        Command::Purge {
            dir,
            stream,
            through,
            archived,
        } => write::purge(&dir, &stream, through, archived),
        Command::Export {
            dir,
            stream,
            from_seq,
        } => read::export(&dir, &stream, from_seq),
        Command::Import {
            dir,
            stream,
            file,
            from_export,
        } => write::import(&dir, &stream, &file, from_export),
        Command::Merge { dir, sources, into } => write::merge(&dir, &sources, &into),
        Command::Archive {
            dir,
            stream,
            before_checkpoint,
        } => write::archive(&dir, &stream, before_checkpoint.as_deref()),
        Command::Query(args) => query::query(args),
        Command::Checkpoint {
            dir,
            stream,
            snapshot_id,
        } => inspect::checkpoint(&dir, &stream, &snapshot_id),
        Command::Checkpoints { dir, stream, json } => inspect::checkpoints(&dir, &stream, json),
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
        || args.durability.is_some()
        || args.inflight.is_some()
        || args.no_mapped_writes
        || args.neighbour_mb_s.is_some();
    if !custom {
        return bench::run(&bench::default_matrix(), &settings, true);
    }
    let inflight = args.inflight.map(|n| n as usize);
    let writers = args
        .writers
        .unwrap_or(if inflight.is_some() { 2 } else { 1 })
        .max(1);
    let durability: Durability = args.durability.unwrap_or(DurabilityArg::Sync).into();
    if inflight.is_some() && (durability == Durability::Buffered || args.batch > 1) {
        return Err(Failure {
            code: 2,
            message: "--inflight keeps durable single appends in flight: it takes neither --durability buffered nor --batch".into(),
        });
    }
    let config = bench::Config {
        streams: args.streams.unwrap_or(1).clamp(1, writers),
        durability,
        batch: args.batch.max(1),
        inflight,
        mapped_writes: !args.no_mapped_writes,
        neighbour_mb_s: args.neighbour_mb_s,
        ..bench::Config::durable("custom", writers, 1, args.records.unwrap_or(20_000))
    };
    bench::run(&[config], &settings, durability == Durability::Buffered)
}
