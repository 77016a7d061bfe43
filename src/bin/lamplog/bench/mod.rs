//! `lamplog bench`: throughput and latency of durable and buffered appends
//! and of replay, each beside a raw baseline measured in the same run on the
//! same disk.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use indicatif::ProgressBar;
use lamplog::{Durability, IoBackend, Options, Store};

use crate::Failure;
use baseline::{baseline, bench_dir, sync_all};
use record::op;
use report::{print_header, print_replay, print_row, row};

mod baseline;
mod neighbour;
mod record;
mod report;

/// One configuration to measure.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub writers: usize,
    pub streams: usize,
    pub records: u64,
    pub durability: Durability,
    /// Records per call: 1 for `append`, more for `append_batch`.
    pub batch: usize,
    /// The sync scope, if not the run's (`--sync-scope`).
    pub sync_scope: Option<lamplog::SyncScope>,
    /// Durable appends kept in flight in total by the writers, with
    /// `append_pending`, instead of one blocking `append` each.
    pub inflight: Option<usize>,
    /// `Options::mapped_writes`.
    pub mapped_writes: bool,
    /// A neighbour writing this many MB/s into another file of the same
    /// filesystem (buffered, never synced) while the row runs.
    pub neighbour_mb_s: Option<u32>,
}

impl Config {
    /// `records` durable appends by `writers` threads over `streams`
    /// streams, with the defaults for everything else.
    pub fn durable(name: &str, writers: usize, streams: usize, records: u64) -> Config {
        Config {
            name: name.into(),
            writers,
            streams,
            records,
            durability: Durability::Sync,
            batch: 1,
            sync_scope: None,
            inflight: None,
            mapped_writes: true,
            neighbour_mb_s: None,
        }
    }
}

/// Settings shared by every configuration of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: Option<PathBuf>,
    pub backend: IoBackend,
    pub sync_scope: lamplog::SyncScope,
    pub record_bytes: usize,
    pub json: bool,
}

/// The default matrix: durable appends at 1, 16, 64 and 256 writers on one
/// stream, and with 64 to 1,024 in flight from 2 threads; 100 streams with
/// a writer each, alone and beside a writing neighbour; buffered ingest by
/// one thread (with and without mapped writes), and replay of what that
/// wrote.
pub fn default_matrix() -> Vec<Config> {
    let durable = Config::durable;
    // Two threads keeping this many durable appends in flight.
    let inflight = |depth: usize, records| Config {
        inflight: Some(depth),
        ..durable(&format!("inflight-{depth}"), 2, 1, records)
    };
    let syncfs = Some(lamplog::SyncScope::Filesystem);
    // A neighbour writing 1 GB/s into the page cache (docs/PERFORMANCE.md
    // also measures an unthrottled one, beside which syncfs stalls for
    // seconds).
    let neighbour = Some(1000);
    let buffered = |name: &str, records, batch| Config {
        durability: Durability::Buffered,
        batch,
        ..durable(name, 1, 1, records)
    };
    vec![
        durable("sync-1w", 1, 1, 3_000),
        durable("sync-16w", 16, 1, 40_000),
        durable("sync-64w", 64, 1, 100_000),
        durable("sync-256w", 256, 1, 200_000),
        inflight(64, 100_000),
        inflight(256, 300_000),
        inflight(1024, 500_000),
        durable("sync-100streams", 100, 100, 60_000),
        // The same with one syncfs per batch: faster, but it writes back the
        // whole filesystem (docs/PERFORMANCE.md, "Sync scope").
        Config {
            sync_scope: syncfs,
            ..durable("sync-100streams-syncfs", 100, 100, 60_000)
        },
        Config {
            neighbour_mb_s: neighbour,
            ..durable("sync-100streams-nbr", 100, 100, 10_000)
        },
        Config {
            sync_scope: syncfs,
            neighbour_mb_s: neighbour,
            ..durable("sync-100streams-syncfs-nbr", 100, 100, 10_000)
        },
        // Every write a pwrite, for comparison with the default below.
        Config {
            mapped_writes: false,
            ..buffered("buffered-1w-pwrite", 1_000_000, 1)
        },
        buffered("buffered-1w", 2_000_000, 1),
        buffered("buffered-1w-b1000", 4_000_000, 1000),
    ]
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Allocated bytes of every segment file under `dir`.
fn segment_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += segment_bytes(&path),
            Ok(m) if path.extension().is_some_and(|e| e == "seg") => total += m.blocks() * 512,
            _ => {}
        }
    }
    total
}

fn progress(total: u64, name: &str, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    crate::progress::bar(total, name)
}

struct Measured {
    backend: &'static str,
    seconds: f64,
    /// Records appended.
    records: u64,
    /// Latencies of every record, or of a sample (buffered single appends).
    latencies_ns: Vec<u32>,
    fsyncs: u64,
    fsync_us: u64,
    disk_bytes: u64,
}

fn run_appends(config: &Config, settings: &Settings, root: &Path) -> Result<Measured, Failure> {
    let opts = Options::default()
        .io_backend(settings.backend)
        .mapped_writes(config.mapped_writes)
        .sync_scope(config.sync_scope.unwrap_or(settings.sync_scope));
    let store = Store::open(root, opts)?;
    if let Some(note) = &store.stats().io_fallback {
        eprintln!("lamplog bench: {note}");
    }
    let streams: Vec<_> = (0..config.streams)
        .map(|i| store.stream(&format!("bench-{i:03}")))
        .collect::<Result<_, _>>()?;
    let batch = config.batch.max(1) as u64;
    let per_writer = config.records / config.writers as u64 / batch * batch;
    let payloads: Arc<Vec<Vec<u8>>> =
        Arc::new((0..1024).map(|i| op(i, settings.record_bytes)).collect());
    let bar = progress(
        per_writer * config.writers as u64,
        &config.name,
        settings.json,
    );
    let start_line = Arc::new(Barrier::new(config.writers + 1));
    let stats_before = store.stats();
    let threads: Vec<_> = (0..config.writers)
        .map(|w| {
            let writer = Writer {
                stream: streams[w % config.streams].clone(),
                payloads: payloads.clone(),
                first_payload: w,
                records: per_writer,
                batch,
                durability: config.durability,
                inflight: config.inflight.map(|n| n.div_ceil(config.writers).max(1)),
                start_line: start_line.clone(),
                bar: bar.clone(),
            };
            std::thread::spawn(move || writer.run())
        })
        .collect();
    let neighbour = match config.neighbour_mb_s {
        Some(mb_s) => Some(neighbour::Neighbour::start(
            &root.with_extension("neighbour"),
            mb_s,
        )?),
        None => None,
    };
    sync_all();
    start_line.wait();
    let start = Instant::now();
    let mut latencies_ns = Vec::with_capacity(config.records as usize);
    for thread in threads {
        latencies_ns.extend(thread.join().map_err(|_| Failure {
            code: 1,
            message: "a bench writer panicked".into(),
        })??);
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(neighbour);
    bar.finish_and_clear();
    let stats = store.stats();
    let (fsyncs, fsync_us) = (
        stats.fsyncs - stats_before.fsyncs,
        stats.fsync_us - stats_before.fsync_us,
    );
    drop(streams);
    store.close()?;
    latencies_ns.sort_unstable();
    let backend = match stats.io_backend {
        IoBackend::IoUring => "io-uring",
        _ => "pwrite",
    };
    Ok(Measured {
        backend,
        seconds,
        records: per_writer * config.writers as u64,
        latencies_ns,
        fsyncs,
        fsync_us,
        disk_bytes: segment_bytes(root),
    })
}

/// One appending thread of a configuration.
struct Writer {
    stream: lamplog::Stream,
    payloads: Arc<Vec<Vec<u8>>>,
    first_payload: usize,
    records: u64,
    batch: u64,
    durability: Durability,
    /// Pending appends this writer keeps in flight, if it does not block.
    inflight: Option<usize>,
    start_line: Arc<Barrier>,
    bar: ProgressBar,
}

impl Writer {
    /// The payload of this writer's `i`th record: the writers go through
    /// the same payloads from different starting points.
    fn payload(&self, i: u64) -> &[u8] {
        &self.payloads[((i as usize) * 7 + self.first_payload) % self.payloads.len()]
    }

    /// Append `records` from the start line on; the latency of each.
    fn run(self) -> Result<Vec<u32>, lamplog::Error> {
        let mut latencies = Vec::with_capacity(self.records as usize);
        let pick = |i: u64| self.payload(i);
        self.start_line.wait();
        if let Some(depth) = self.inflight {
            return self.run_inflight(depth, latencies);
        }
        // A buffered append takes well under a microsecond: reading the
        // clock twice for each would be a tenth of it. Those are timed one
        // in SAMPLE, enough for the percentiles.
        const SAMPLE: u64 = 16;
        let sampled = self.batch == 1 && self.durability == Durability::Buffered;
        let mut i = 0;
        while i < self.records {
            let timed = !sampled || i % SAMPLE == 0;
            let t = timed.then(Instant::now);
            if self.batch == 1 {
                self.stream.append(pick(i), self.durability)?;
            } else {
                self.stream
                    .append_batch((i..i + self.batch).map(pick), self.durability)?;
            }
            if let Some(t) = t {
                // A batch's records all wait as long as its call.
                let ns = t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                latencies.extend(std::iter::repeat_n(ns, self.batch as usize));
            }
            i += self.batch;
            if i % 4096 < self.batch {
                self.bar.inc(4096.min(i));
            }
        }
        Ok(latencies)
    }

    /// Keep `depth` durable appends in flight: append without waiting,
    /// and wait for the oldest only when `depth` are pending. A record's
    /// latency runs from its call until the writer sees it durable; the
    /// writer looks after every append, so it sees it at most one append
    /// late.
    fn run_inflight(
        self,
        depth: usize,
        mut latencies: Vec<u32>,
    ) -> Result<Vec<u32>, lamplog::Error> {
        let mut queue: VecDeque<(lamplog::Pending, Instant)> = VecDeque::with_capacity(depth);
        let record = |latencies: &mut Vec<u32>, since: Instant| {
            latencies.push(since.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        };
        for i in 0..self.records {
            while queue.front().is_some_and(|(p, _)| p.is_done()) {
                let (pending, since) = queue.pop_front().expect("checked");
                pending.wait()?;
                record(&mut latencies, since);
            }
            if queue.len() >= depth {
                let (pending, since) = queue.pop_front().expect("depth >= 1");
                pending.wait()?;
                record(&mut latencies, since);
            }
            let since = Instant::now();
            let payload = self.payload(i);
            queue.push_back((self.stream.append_pending(payload)?, since));
            if (i + 1) % 4096 == 0 {
                self.bar.inc(4096);
            }
        }
        for (pending, since) in queue {
            pending.wait()?;
            record(&mut latencies, since);
        }
        Ok(latencies)
    }
}

/// Replay everything in the store at `root` through mmap, CRC-verified.
fn run_replay(root: &Path) -> Result<(u64, u64, f64), Failure> {
    let store = Store::open(root, Options::default().read_only(true))?;
    // Warm the page cache and the maps: the target is replay from memory.
    let count = |store: &Store| -> Result<(u64, u64), Failure> {
        let (mut records, mut bytes) = (0u64, 0u64);
        for name in store.streams() {
            for record in store.stream(&name)?.iter() {
                let record = record?;
                records += 1;
                bytes += (record.payload().len() + lamplog::format::FRAME_HEADER_LEN) as u64;
            }
        }
        Ok((records, bytes))
    };
    count(&store)?;
    let start = Instant::now();
    let (records, bytes) = count(&store)?;
    Ok((records, bytes, start.elapsed().as_secs_f64()))
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Sync => "sync",
        Durability::Buffered => "buffered",
    }
}

/// Run `configs` (and a replay of the last buffered one when `replay`),
/// printing a table or JSON lines.
pub fn run(configs: &[Config], settings: &Settings, replay: bool) -> Result<(), Failure> {
    let base = bench_dir(settings.dir.as_deref(), "lamplog-bench")?;
    if !settings.json {
        println!(
            "lamplog bench in {} ({} bytes per record)",
            base.path().display(),
            op(0, settings.record_bytes).len()
        );
    }
    let baseline_rate = baseline(base.path(), &op(0, settings.record_bytes))?;
    if !settings.json {
        print_header(baseline_rate);
    }
    let mut last_buffered = None;
    for (i, config) in configs.iter().enumerate() {
        let root = base.path().join(format!("{i:02}-{}", config.name));
        // A lone appender syncs in its own thread: it has no one to wake.
        // Several streams cost a sync each (or a syncfs), which the
        // ceiling does not model.
        let lockstep = config.durability == Durability::Sync && config.streams == 1;
        // In-flight rows compare with as many blocked threads as appends
        // they keep in flight.
        let blocked = config.inflight.unwrap_or(config.writers);
        let wake_round = (lockstep && blocked > 1).then(|| crate::wake::round(blocked));
        let m = run_appends(config, settings, &root)?;
        print_row(
            &row(config, settings, &m, baseline_rate, wake_round),
            settings.json,
        )?;
        if config.durability == Durability::Buffered {
            last_buffered = Some(root);
        }
    }
    if !settings.json {
        println!(
            "(x limit: against writers / t_fsync. x ceil: against writers / (t_fsync + the time to wake that many blocked threads, measured before the row), for one stream. An inflight-N row counts N in place of writers: it keeps N durable appends in flight from 2 threads, and no thread blocks per append.)"
        );
    }
    if let (true, Some(root)) = (replay, last_buffered) {
        print_replay(&root, settings.json)?;
    }
    Ok(())
}
