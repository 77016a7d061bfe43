//! The workloads, each run on one system in a fresh directory and timed
//! from a start line after a sync(2) of the whole system.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::baseline::sync_all;
use crate::record::op;
use crate::systems::{Lamplog, Log, Replayed, Result, System};

/// Distinct payloads the writers of a durable run cycle through.
const POOL: usize = 1024;

/// Appends timed one by one (or group by group).
#[derive(Debug, Default)]
pub struct Timed {
    pub records: u64,
    /// Payload bytes appended, where counted (ingest).
    pub payload_bytes: u64,
    pub seconds: f64,
    /// Sorted.
    latencies_ns: Vec<u32>,
}

impl Timed {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    /// The `p`th quantile of the latencies, in microseconds.
    pub fn quantile_us(&self, p: f64) -> f64 {
        match self.latencies_ns.len() {
            0 => 0.0,
            n => f64::from(self.latencies_ns[((n - 1) as f64 * p).round() as usize]) / 1000.0,
        }
    }
}

fn elapsed_ns(since: Instant) -> u32 {
    since.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32
}

/// The payloads of a durable run, built before its clock starts.
pub fn payload_pool(record_bytes: usize) -> Vec<Vec<u8>> {
    (0..POOL as u64).map(|i| op(i, record_bytes)).collect()
}

/// A start line: threads wait at it until it opens.
#[derive(Default)]
struct StartLine {
    open: Mutex<bool>,
    opened: Condvar,
}

impl StartLine {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

/// Runs `writer` on `writers` threads from a start line for `seconds`;
/// each returns how many records it appended and their latencies. If a
/// thread cannot be started, the others are released and stopped at once
/// and the run fails.
fn run_writers<F>(writers: usize, seconds: f64, writer: F) -> Result<Timed>
where
    F: Fn(usize, &AtomicBool) -> Result<(u64, Vec<u32>)> + Sync,
{
    let stop = AtomicBool::new(false);
    let start_line = StartLine::default();
    let run = Duration::try_from_secs_f64(seconds).map_err(|e| format!("{seconds} s: {e}"))?;
    std::thread::scope(|scope| {
        let mut threads = Vec::with_capacity(writers);
        let mut spawn_error = None;
        for w in 0..writers {
            let (stop, start_line, writer) = (&stop, &start_line, &writer);
            let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                start_line.wait();
                let result = writer(w, stop);
                // A failed writer ends the run for all.
                stop.store(true, Ordering::Relaxed);
                result
            });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    spawn_error = Some(format!("starting writer {} of {writers}: {e}", w + 1));
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        sync_all();
        start_line.open();
        let start = Instant::now();
        let deadline = start + run;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
        }
        stop.store(true, Ordering::Relaxed);
        let mut timed = Timed::default();
        for thread in threads {
            let (records, latencies) = thread.join().map_err(|_| "a writer panicked")??;
            timed.records += records;
            timed.latencies_ns.extend(latencies);
        }
        if let Some(e) = spawn_error {
            return Err(e.into());
        }
        timed.seconds = start.elapsed().as_secs_f64();
        timed.latencies_ns.sort_unstable();
        Ok(timed)
    })
}

/// `writers` threads appending durably for `seconds`, each waiting for its
/// append to be durable before the next.
pub fn durable(
    system: System,
    dir: &Path,
    writers: usize,
    seconds: f64,
    pool: &[Vec<u8>],
) -> Result<Timed> {
    let log = system.open(dir)?;
    let timed = run_writers(writers, seconds, |w, stop| {
        let mut latencies = Vec::with_capacity(1 << 14);
        let mut index = 0;
        while !stop.load(Ordering::Relaxed) {
            index += 1;
            let payload = &pool[(index as usize * 7 + w) % pool.len()];
            let since = Instant::now();
            log.append_durable(w, index, payload)?;
            latencies.push(elapsed_ns(since));
        }
        Ok((index, latencies))
    })?;
    log.close()?;
    Ok(timed)
}

/// lamplog's pipelined appends: `threads` threads keep `depth` durable
/// appends in flight in total with `append_pending`, waiting for the oldest
/// only when their share is pending. A record's latency runs from its call
/// until its writer sees it durable (at most one append late).
pub fn inflight(
    dir: &Path,
    depth: usize,
    threads: usize,
    seconds: f64,
    pool: &[Vec<u8>],
) -> Result<Timed> {
    let log = Lamplog::open(dir)?;
    let share = depth.div_ceil(threads).max(1);
    let timed = run_writers(threads, seconds, |w, stop| {
        let stream = log.stream();
        let mut latencies = Vec::with_capacity(1 << 16);
        let mut queue: VecDeque<(lamplog::Pending, Instant)> = VecDeque::with_capacity(share);
        let mut appended = 0u64;
        while !stop.load(Ordering::Relaxed) {
            while queue.front().is_some_and(|(p, _)| p.is_done()) || queue.len() >= share {
                let (pending, since) = queue.pop_front().expect("checked");
                pending.wait()?;
                latencies.push(elapsed_ns(since));
            }
            appended += 1;
            let payload = &pool[(appended as usize * 7 + w) % pool.len()];
            let since = Instant::now();
            queue.push_back((stream.append_pending(payload)?, since));
        }
        for (pending, since) in queue {
            pending.wait()?;
            latencies.push(elapsed_ns(since));
        }
        Ok((appended, latencies))
    })?;
    Log::close(Box::new(log))?;
    Ok(timed)
}

/// Ingest from one thread: groups of `group` records, each appended record
/// by record and made durable once, or appended as one batch if `batched`,
/// until `records` are in. Only the appends are timed (each record is a
/// distinct op, built beforehand); the latencies are those of whole groups.
pub fn ingest(
    system: System,
    dir: &Path,
    records: u64,
    group: usize,
    record_bytes: usize,
    batched: bool,
) -> Result<Timed> {
    let log = system.open(dir)?;
    let mut timed = Timed::default();
    let mut batch = Vec::with_capacity(group);
    sync_all();
    while timed.records < records {
        batch.clear();
        let n = (records - timed.records).min(group as u64);
        batch.extend((timed.records..timed.records + n).map(|i| op(i, record_bytes)));
        timed.payload_bytes += batch.iter().map(|r| r.len() as u64).sum::<u64>();
        let since = Instant::now();
        if batched {
            log.append_batch(&batch)?;
        } else {
            log.append_each(&batch)?;
        }
        let ns = elapsed_ns(since);
        timed.seconds += f64::from(ns) / 1e9;
        timed.latencies_ns.push(ns);
        timed.records += n;
    }
    log.close()?;
    timed.latencies_ns.sort_unstable();
    Ok(timed)
}

/// Opens the log in `dir` and reads every record back: the seconds it
/// took, and what it read.
pub fn replay(system: System, dir: &Path) -> Result<(f64, Replayed)> {
    sync_all();
    let since = Instant::now();
    let replayed = system.replay(dir)?;
    Ok((since.elapsed().as_secs_f64(), replayed))
}

/// How a reopen finds the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// As an open a moment earlier left it (one is made first, untimed,
    /// unless opening consumes the log).
    Warm,
    /// Emptied (`/proc/sys/vm/drop_caches`), as after a reboot.
    Cold,
}

/// Whether this process may empty the page cache (root, outside most
/// containers).
pub fn can_drop_caches() -> bool {
    fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
}

/// Seconds from opening the log in `dir` until it is ready to append.
pub fn reopen(system: System, dir: &Path, cache: Cache) -> Result<f64> {
    match cache {
        Cache::Warm if !system.open_consumes_log() => system.open(dir)?.close()?,
        Cache::Warm => {}
        Cache::Cold => {
            sync_all();
            fs::write("/proc/sys/vm/drop_caches", "3")?;
        }
    }
    sync_all();
    let since = Instant::now();
    let log = system.open(dir)?;
    let seconds = since.elapsed().as_secs_f64();
    log.close()?;
    Ok(seconds)
}

/// Allocated bytes of every file under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += disk_bytes(&entry.path()),
            Ok(m) => total += m.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}

/// The lockstep ceiling of `writers` blocked writers: each fsync is
/// followed by a round in which all of them are woken and append again,
/// so no group commit of blocking appends passes
/// `writers / (t_fsync + round)`.
pub fn lockstep_ceiling(writers: usize, fsyncs_per_s: f64) -> f64 {
    if writers <= 1 {
        return fsyncs_per_s;
    }
    let round = crate::wake::round(writers).as_secs_f64();
    writers as f64 / (1.0 / fsyncs_per_s + round)
}
