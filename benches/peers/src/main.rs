//! `lamplog-peers`: lamplog against the logs a host would otherwise embed
//! (raft-engine, okaywal, fjall, SQLite, the seeds' JSONL file), on the same
//! disk in the same run, with the raw fdatasync loop and the lockstep
//! ceiling measured beside them. docs/BENCHMARKS.md explains the method and
//! the figures; this binary writes their tables and plots.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use report::{Sample, Summary, Workload};
use systems::System;

// The records and the raw baseline are lamplog bench's own files, so that
// both benchmarks append the same ops and time the same loop.
#[path = "../../../src/bin/lamplog/bench/baseline.rs"]
mod baseline;
#[path = "../../../src/bin/lamplog/bench/record.rs"]
mod record;
#[path = "../../../src/bin/lamplog/wake.rs"]
mod wake;

mod plot;
mod report;
mod systems;
mod workloads;

/// Buffered ingest makes its records durable once every this many.
const GROUP_RECORDS: usize = 1000;

#[derive(Debug, Parser)]
#[command(
    name = "lamplog-peers",
    about = "lamplog against raft-engine, okaywal, fjall, SQLite and a JSONL file, on this disk"
)]
struct Args {
    /// Where the logs go (a fresh directory under it, removed after).
    /// Default: the current directory, so that the disk under test is the
    /// one the command runs from.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where results.md and the plots are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks"))]
    out: PathBuf,
    /// Rounds: each workload runs once per round on every system, in a
    /// rotated order; tables give the median and range. Default: 3, or 1
    /// with --quick.
    #[arg(long, value_parser = at_least_one)]
    rounds: Option<usize>,
    /// Seconds of each durable-append run.
    #[arg(long, default_value_t = 1.5, value_parser = seconds)]
    seconds: f64,
    /// Writer counts of the durable-append runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256], value_parser = writers)]
    writers: Vec<usize>,
    /// Durable appends lamplog keeps in flight from 2 threads (0: none).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(..=WRITERS_MAX as i64))]
    inflight: u32,
    /// Records of the buffered ingest, which the replay then reads.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    ingest_records: u64,
    /// Megabytes of payload in the log each system reopens.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    reopen_mb: u64,
    /// Bytes per record (JSON ops of about this size).
    #[arg(long, default_value_t = 200, value_parser = record_bytes)]
    record_bytes: usize,
    /// The systems to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = System::ALL)]
    systems: Vec<System>,
    /// Small sizes everywhere (one round unless --rounds says otherwise): a
    /// check that every system runs, in seconds.
    #[arg(long)]
    quick: bool,
    /// JSON lines on stdout (every sample, then every summary) in place of
    /// the tables.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn rounds(&self) -> usize {
        self.rounds.unwrap_or(3)
    }

    fn apply_quick(&mut self) {
        if self.quick {
            self.rounds.get_or_insert(1);
            self.seconds = 0.2;
            self.writers = vec![1, 4];
            self.inflight = 16;
            self.ingest_records = 3 * GROUP_RECORDS as u64;
            self.reopen_mb = 1;
        }
    }
}

type Result<T> = systems::Result<T>;

/// Writer threads a run may start, and appends it may keep in flight (the
/// lockstep ceiling of that many is measured with as many threads).
const WRITERS_MAX: usize = 4096;

fn at_least_one(arg: &str) -> std::result::Result<usize, String> {
    match arg.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

fn writers(arg: &str) -> std::result::Result<usize, String> {
    match at_least_one(arg)? {
        n if n <= WRITERS_MAX => Ok(n),
        _ => Err(format!("at most {WRITERS_MAX} writers")),
    }
}

fn seconds(arg: &str) -> std::result::Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err("expected seconds above 0, at most 3600".into()),
    }
}

fn record_bytes(arg: &str) -> std::result::Result<usize, String> {
    match arg.parse::<usize>() {
        Ok(n) if n <= 1 << 20 => Ok(n),
        _ => Err("expected bytes, at most 1 MiB".into()),
    }
}

fn main() {
    let mut args = Args::parse();
    args.apply_quick();
    // A system named twice runs once.
    let mut seen = Vec::new();
    args.systems.retain(|s| {
        let first = !seen.contains(s);
        seen.push(*s);
        first
    });
    if let Err(e) = run(&args) {
        eprintln!("lamplog-peers: {e}");
        std::process::exit(1);
    }
}

/// The run's workloads, in table order.
fn workloads(args: &Args) -> Vec<Workload> {
    let mut all: Vec<Workload> = args
        .writers
        .iter()
        .map(|&w| Workload {
            key: format!("durable-{w}w"),
            title: format!("Durable appends, {w} writer{}", if w == 1 { "" } else { "s" }),
            unit: "records/s",
            higher_is_better: true,
            note: format!(
                "{w} thread{} appending {}-byte JSON ops for {} s, each waiting for its append to be durable before the next. The fdatasync loop is one writer's raw `pwrite` + `fdatasync`; the lockstep ceiling is writers / (t_fsync + the time to wake that many blocked threads), the most a group commit of blocking appends can give.",
                if w == 1 { "" } else { "s" },
                args.record_bytes,
                args.seconds
            ),
            writers: Some(w),
        })
        .collect();
    if args.inflight > 0 {
        all.push(Workload {
            key: format!("inflight-{}", args.inflight),
            title: format!("Durable appends, {} in flight from 2 threads", args.inflight),
            unit: "records/s",
            higher_is_better: true,
            note: format!("lamplog's `append_pending`: 2 threads keep {} durable appends in flight, each completing once a sync covers it. No peer has an equivalent (raft-engine, okaywal, fjall and SQLite block the caller until its write is synced), so the row compares with the lockstep ceiling of {} blocked writers.", args.inflight, args.inflight),
            writers: None,
        });
    }
    all.extend([
        Workload {
            key: "ingest".into(),
            title: format!("Buffered ingest of {} records, one call each", args.ingest_records),
            unit: "records/s",
            higher_is_better: true,
            note: format!("One thread appends records with one call each and makes them durable every {GROUP_RECORDS} (lamplog: `Buffered` appends and `sync`; raft-engine: a `LogBatch` each, written with `sync = false`, and `sync`; okaywal: an entry of {GROUP_RECORDS} chunks, its only way; fjall: inserts and `persist`; SQLite: the inserts of a transaction; JSONL: a `write` each and `fdatasync`). Latencies are those of whole groups."),
            writers: None,
        },
        Workload {
            key: "ingest-batch".into(),
            title: format!("Ingest of {} records in durable batches of {GROUP_RECORDS}", args.ingest_records),
            unit: "records/s",
            higher_is_better: true,
            note: format!("One thread appends batches of {GROUP_RECORDS} records with each engine's own batch, durable when the call returns (lamplog: `append_batch` with `Sync`; raft-engine: one `LogBatch`; okaywal: an entry of {GROUP_RECORDS} chunks; fjall: a `WriteBatch` with `SyncData`; SQLite: a transaction; JSONL: one `write` of the lines and `fdatasync`). Latencies are those of whole batches."),
            writers: None,
        },
        Workload {
            key: "replay".into(),
            title: format!("Replay of the {} ingested records", args.ingest_records),
            unit: "records/s",
            higher_is_better: true,
            note: "Open the log and read every record in order, checked as far as the engine checks what it reads, from the page cache.".into(),
            writers: None,
        },
        Workload {
            key: "reopen".into(),
            title: format!("Reopen of a {} MB log, page cache warm", args.reopen_mb),
            unit: "ms",
            higher_is_better: false,
            note: "Milliseconds from opening a cleanly closed log to being ready to append, right after another open. okaywal hands every record to its host as it opens, and checkpoints them away after, so its figure is a replay and its log is rebuilt before each reopen; the JSONL file only checks its last line.".into(),
            writers: None,
        },
        Workload {
            key: "reopen-cold".into(),
            title: format!("Reopen of a {} MB log, page cache empty", args.reopen_mb),
            unit: "ms",
            higher_is_better: false,
            note: "The same after a sync(2) and `echo 3 > /proc/sys/vm/drop_caches`, as after a reboot (measured only where the benchmark may drop the caches: root).".into(),
            writers: None,
        },
        Workload {
            key: "disk".into(),
            title: "Disk bytes per payload byte".into(),
            unit: "bytes",
            higher_is_better: false,
            note: "Allocated bytes of the files of the log built for the reopen (in batches) over its payload bytes, after a clean close.".into(),
            writers: None,
        },
    ]);
    all
}

/// Records a sample, printing it as it comes.
struct Samples {
    all: Vec<Sample>,
    json: bool,
}

impl Samples {
    fn push(&mut self, sample: Sample) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(&sample)?);
        }
        eprintln!(
            "  round {} {:<14} {:<18} {:>14.2}{}",
            sample.round + 1,
            sample.workload,
            sample.system,
            sample.value,
            sample
                .p99_us
                .map_or(String::new(), |p| format!("  p99 {p:.0} us"))
        );
        self.all.push(sample);
        Ok(())
    }

    fn timed(
        &mut self,
        workload: &str,
        system: &str,
        round: usize,
        timed: &workloads::Timed,
    ) -> Result<()> {
        self.push(Sample {
            workload: workload.into(),
            system: system.into(),
            round,
            value: timed.records_per_s(),
            p50_us: Some(timed.quantile_us(0.5)),
            p99_us: Some(timed.quantile_us(0.99)),
            mb_s: None,
        })
    }

    fn value(&mut self, workload: &str, system: &str, round: usize, value: f64) -> Result<()> {
        self.push(Sample {
            workload: workload.into(),
            system: system.into(),
            round,
            value,
            p50_us: None,
            p99_us: None,
            mb_s: None,
        })
    }
}

fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let base = baseline::bench_dir(args.dir.as_deref(), "lamplog-peers")?;
    let machine = machine(base.path());
    let pool = workloads::payload_pool(args.record_bytes);
    let mut samples = Samples {
        all: Vec::new(),
        json: args.json,
    };
    let drop_caches = workloads::can_drop_caches();
    if !drop_caches {
        eprintln!("lamplog-peers: cannot drop the page cache (not root): no cold reopens");
    }
    for round in 0..args.rounds() {
        eprintln!("round {} of {}", round + 1, args.rounds());
        // Each round starts from a rotated order, so that no system always
        // runs right after the same one.
        let mut order = args.systems.clone();
        let turn = round % order.len().max(1);
        order.rotate_left(turn);
        let r = Round {
            args,
            base: base.path(),
            pool: &pool,
            round,
            order,
            fsyncs_per_s: baseline::baseline(base.path(), &pool[0])?,
        };
        r.durable(&mut samples)?;
        r.ingest_and_replay(&mut samples)?;
        r.reopen(&mut samples, drop_caches)?;
    }
    drop(base);
    write_results(
        args,
        &machine,
        &samples.all,
        started.elapsed().as_secs_f64(),
    )
}

/// One round of every workload on every system.
struct Round<'a> {
    args: &'a Args,
    /// Where the logs go.
    base: &'a Path,
    pool: &'a [Vec<u8>],
    round: usize,
    /// The systems, in this round's order.
    order: Vec<System>,
    /// The raw fdatasync loop's rate, measured at the start of the round.
    fsyncs_per_s: f64,
}

impl Round<'_> {
    /// Durable appends at each writer count, beside the references, then
    /// lamplog's appends in flight.
    fn durable(&self, samples: &mut Samples) -> Result<()> {
        let (args, round) = (self.args, self.round);
        for &writers in &args.writers {
            let key = format!("durable-{writers}w");
            samples.value(&key, "fdatasync-loop", round, self.fsyncs_per_s)?;
            let ceiling = workloads::lockstep_ceiling(writers, self.fsyncs_per_s);
            samples.value(&key, "lockstep-ceiling", round, ceiling)?;
            for &system in &self.order {
                let dir = self.base.join(format!("{key}-{}", system.name()));
                let timed = workloads::durable(system, &dir, writers, args.seconds, self.pool)
                    .map_err(|e| format!("{key} on {}: {e}", system.name()))?;
                samples.timed(&key, system.name(), round, &timed)?;
                fs::remove_dir_all(&dir)?;
            }
        }
        if args.inflight > 0 && args.systems.contains(&System::Lamplog) {
            let key = format!("inflight-{}", args.inflight);
            let depth = args.inflight as usize;
            let ceiling = workloads::lockstep_ceiling(depth, self.fsyncs_per_s);
            samples.value(&key, "lockstep-ceiling", round, ceiling)?;
            let dir = self.base.join(&key);
            let timed = workloads::inflight(&dir, depth, 2, args.seconds, self.pool)?;
            samples.timed(&key, "lamplog", round, &timed)?;
            fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Ingest one call per record, a replay of it (which must read back
    /// exactly what was written), and ingest in batches.
    fn ingest_and_replay(&self, samples: &mut Samples) -> Result<()> {
        let (args, round, records) = (self.args, self.round, self.args.ingest_records);
        for &system in &self.order {
            let name = system.name();
            let dir = self.base.join(format!("ingest-{name}"));
            let ingest = |batched| {
                workloads::ingest(
                    system,
                    &dir,
                    records,
                    GROUP_RECORDS,
                    args.record_bytes,
                    batched,
                )
            };
            let timed = ingest(false).map_err(|e| format!("ingest on {name}: {e}"))?;
            samples.timed("ingest", name, round, &timed)?;
            let (seconds, replayed) =
                workloads::replay(system, &dir).map_err(|e| format!("replay on {name}: {e}"))?;
            if (replayed.records, replayed.payload_bytes) != (records, timed.payload_bytes) {
                return Err(format!(
                    "{name} replayed {} records ({} bytes) of the {records} ({} bytes) it ingested",
                    replayed.records, replayed.payload_bytes, timed.payload_bytes
                )
                .into());
            }
            samples.push(Sample {
                workload: "replay".into(),
                system: name.into(),
                round,
                value: replayed.records as f64 / seconds,
                p50_us: None,
                p99_us: None,
                mb_s: Some(replayed.payload_bytes as f64 / seconds / 1e6),
            })?;
            fs::remove_dir_all(&dir)?;
            let timed = ingest(true).map_err(|e| format!("batch ingest on {name}: {e}"))?;
            samples.timed("ingest-batch", name, round, &timed)?;
            fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Reopens of each system's large log, warm and (where the page cache
    /// can be dropped) cold; the log is built in the first round, and its
    /// disk use counted then.
    fn reopen(&self, samples: &mut Samples, drop_caches: bool) -> Result<()> {
        for &system in &self.order {
            let name = system.name();
            let dir = self.base.join(format!("reopen-{name}"));
            if self.round == 0 || system.open_consumes_log() {
                let disk = build_log(system, &dir, self.args)?;
                samples.value("disk", name, self.round, disk)?;
            }
            let warm = workloads::reopen(system, &dir, workloads::Cache::Warm)
                .map_err(|e| format!("reopen on {name}: {e}"))?;
            samples.value("reopen", name, self.round, warm * 1e3)?;
            if drop_caches {
                // okaywal's log is gone once reopened: it is built again.
                if system.open_consumes_log() {
                    build_log(system, &dir, self.args)?;
                }
                let cold = workloads::reopen(system, &dir, workloads::Cache::Cold)
                    .map_err(|e| format!("cold reopen on {name}: {e}"))?;
                samples.value("reopen-cold", name, self.round, cold * 1e3)?;
            }
        }
        Ok(())
    }
}

/// Ingests records into `dir` (emptied first), in batches, until their
/// payload reaches `--reopen-mb`; returns the disk bytes it takes per
/// payload byte.
fn build_log(system: System, dir: &Path, args: &Args) -> Result<f64> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    let payload = record::op(0, args.record_bytes).len() as u64;
    let records = (args.reopen_mb << 20).div_ceil(payload);
    let timed = workloads::ingest(system, dir, records, GROUP_RECORDS, args.record_bytes, true)
        .map_err(|e| format!("building the reopen log of {}: {e}", system.name()))?;
    eprintln!(
        "  built {} MB for {} at {:.0} records/s",
        timed.payload_bytes >> 20,
        system.name(),
        timed.records_per_s()
    );
    Ok(workloads::disk_bytes(dir) as f64 / timed.payload_bytes as f64)
}

fn write_results(args: &Args, machine: &str, samples: &[Sample], seconds: f64) -> Result<()> {
    let workloads = workloads(args);
    let summaries: Vec<(Workload, Vec<Summary>)> = workloads
        .into_iter()
        .map(|w| {
            let s = report::summarize(&w, samples);
            (w, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if args.json {
        for summary in summaries.iter().flat_map(|(_, s)| s) {
            let mut value = serde_json::to_value(summary)?;
            value["summary"] = true.into();
            println!("{value}");
        }
    }
    let mut md = format!(
        "# lamplog-peers results\n\nWritten by `lamplog-peers` ({}) on {}: {} round{}, {:.0} s in all. Medians over the rounds; the range is the lowest and highest round. \"lamplog ahead by\" is how many times better lamplog's median is (below 1: the peer is ahead). docs/BENCHMARKS.md says how to read them.\n\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        machine,
        args.rounds(),
        if args.rounds() == 1 { "" } else { "s" },
        seconds
    );
    for (workload, s) in &summaries {
        md.push_str(&report::table(workload, s));
        md.push('\n');
    }
    fs::create_dir_all(&args.out)?;
    fs::write(args.out.join("results.md"), &md)?;
    let durable: Vec<(usize, Summary)> = summaries
        .iter()
        .filter_map(|(w, s)| w.writers.map(|n| (n, s)))
        .flat_map(|(n, s)| s.iter().map(move |s| (n, s.clone())))
        .collect();
    let throughput = plot::lines(&durable, |s| Some(s.median));
    plot::draw(
        &args.out.join("durable-throughput.svg"),
        "Durable appends per second (median)",
        "records/s",
        &throughput,
    )?;
    let p99 = plot::lines(&durable, |s| s.p99_us.map(|us| us / 1000.0));
    plot::draw(
        &args.out.join("durable-p99.svg"),
        "p99 latency of a durable append (median of rounds)",
        "milliseconds",
        &p99,
    )?;
    if !args.json {
        print!("{md}");
    }
    eprintln!("wrote results.md and two plots to {}", args.out.display());
    Ok(())
}

/// The machine, in a line: kernel, cores, and the filesystem under test.
fn machine(dir: &Path) -> String {
    let uname = rustix::system::uname();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs = rustix::fs::statfs(dir).map_or("unknown filesystem".into(), |s| match s.f_type {
        0xEF53 => "ext4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683E => "btrfs".to_owned(),
        0x0102_1994 => "tmpfs".to_owned(),
        other => format!("filesystem 0x{other:x}"),
    });
    format!(
        "Linux {} {}, {cores} cores, {fs}",
        uname.release().to_string_lossy(),
        uname.machine().to_string_lossy(),
    )
}
