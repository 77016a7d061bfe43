//! A randomized stress run: threads drawing the calls a host makes at once
//! (appends of every kind, idempotent inserts, checkpoints, archiving,
//! reads, queries, subscriptions, merges, syncs, read-only reopens) over
//! several streams of one store, checked against a model during and after
//! the run; on the simulated disk, crash images of the run are checked too.
//!
//! A seed fixes each thread's sequence of operations (the interleavings are
//! the scheduler's); a failure prints the seed and every thread's recent
//! history.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lamplog::op::{OpEntry, OpLog};
use lamplog::{Checkpoint, Durability, Error, Kind, Options, Record, Store, Stream};

use super::images::{check_image, Ack};
use super::Rng;
use lamplog::testing::{Fate, SimDisk};

/// Streams that take every kind of call; the first two are also archived.
const GENERAL: [&str; 3] = ["a", "b", "c"];
const ARCHIVED: [&str; 2] = ["a", "b"];
/// Buffered appends only: made durable by the syncer's sweep alone.
const QUIET: &str = "quiet";
/// `Sync` appends in a loop by threads of their own, which keep the syncer
/// busy (as in issue 9's report of defect 1).
const BUSY: &str = "busy";
const BUSY_THREADS: usize = 2;
/// Idempotent inserts of a shared pool of ops.
const OPS: &str = "ops";
/// Small merge sources, and their target.
const SOURCES: [&str; 2] = ["m1", "m2"];
const MERGED: &str = "merged";
/// Merges copy their whole sources: they stop once these are this large.
const SOURCES_RECORDS_MAX: usize = 600;
/// Values of the fields queries filter on, some of them needing escapes.
const ACTORS: [&str; 4] = ["anan", "caf\u{e9}", "say \"hi\"", "back\\slash"];
const DOMAINS: [&str; 3] = ["code", "music", "tab\tbed"];
/// A run on the simulated disk keeps every write in memory and every crash
/// image copies the disk: such runs stop at this many seconds or records.
const SIM_RUN_MAX: Duration = Duration::from_secs(5);
const SIM_RECORDS_MAX: usize = 100_000;
/// How many of its last operations each thread keeps for a failure report.
const HISTORY_LEN: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub threads: usize,
    pub run: Duration,
    /// On the simulated disk (then crash images are checked after the run).
    pub sim: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub ops: u64,
    pub checks: u64,
    pub records: u64,
    pub read_only_opens: u64,
    pub crash_images: usize,
    /// How long Buffered records of the quiet stream took to become durable.
    pub quiet_waits: Vec<Duration>,
}

pub fn opts() -> Options {
    super::tiny_opts()
        .sync_interval_us(20_000)
        // Few maps kept, so that views are dropped and mapped again while
        // the writer rolls and archives and readers hold iterators.
        .open_segments_max(8)
}

/// How long a Buffered record may take to be observed durable before the
/// run fails: the bound is half of `sync_interval_us` plus two batches of
/// syncs; this allows for a loaded machine, and catches "never".
const QUIET_WAIT_MAX: Duration = Duration::from_secs(1);

fn payload_hash(bytes: &[u8]) -> u64 {
    // FNV-1a: the model keeps this, not the bytes.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    hash: u64,
    lamport: u64,
}

#[derive(Debug, Default)]
struct StreamModel {
    /// Every acknowledged record.
    records: BTreeMap<u64, Known>,
    checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Default)]
struct Model {
    streams: HashMap<String, StreamModel>,
    /// Every `insert_op` result: op id, seq, whether it wrote.
    inserts: Vec<(String, u64, bool)>,
}

enum Disk {
    Real(PathBuf),
    Sim(SimDisk),
}

struct Shared {
    store: Store,
    disk: Disk,
    model: Mutex<Model>,
    /// Records acknowledged durable, with the disk's operation count then.
    durable: Mutex<Vec<Ack>>,
    pool: Vec<OpEntry>,
    stop: AtomicBool,
    ops: AtomicU64,
    checks: AtomicU64,
    read_only_opens: AtomicU64,
    quiet_waits: Mutex<Vec<Duration>>,
}

/// The durability a drawn operation asks for.
fn durability(rng: &mut Rng) -> Durability {
    match rng.below(2) {
        0 => Durability::Sync,
        _ => Durability::Buffered,
    }
}

fn op_pool(seed: u64) -> Vec<OpEntry> {
    (0..40u64)
        .map(|i| {
            let mut op = OpEntry {
                op_id: String::new(),
                actor_id: ACTORS[i as usize % ACTORS.len()].to_string(),
                lamport_ts: 1 + i * 3,
                parent_op_ids: Vec::new(),
                domain: DOMAINS[i as usize % DOMAINS.len()].to_string(),
                domain_op: serde_json::value::RawValue::from_string(format!(
                    r#"{{"seed":{seed},"i":{i}}}"#
                ))
                .unwrap(),
                created_at: "2026-11-22T00:00:00Z".into(),
                intent_id: String::new(),
                reservation_id: String::new(),
            };
            op.op_id = op.compute_id();
            op
        })
        .collect()
}

/// A unique payload with the fields queries filter on.
fn payload(thread: usize, n: u64, rng: &mut Rng) -> Vec<u8> {
    let fields = serde_json::json!({
        "t": thread,
        "n": n,
        "actor": rng.pick(&ACTORS),
        "domain": rng.pick(&DOMAINS),
        "op": "write",
        "pad": "p".repeat(rng.below(300) as usize),
    });
    serde_json::to_vec(&fields).unwrap()
}

impl Shared {
    fn stream(&self, name: &str) -> Stream {
        self.store
            .stream(name)
            .expect("streams open while the run lasts")
    }

    fn check(&self) {
        self.checks.fetch_add(1, Ordering::Relaxed);
    }

    /// Note acknowledged records; `durable` when they were synced.
    fn acked(&self, name: &str, acked: &[(u64, u64, &[u8])], durable: bool) {
        let mut model = self.model.lock().unwrap();
        let stream = model.streams.entry(name.to_string()).or_default();
        let mut lamport_before = None;
        for &(seq, lamport, bytes) in acked {
            let known = Known {
                hash: payload_hash(bytes),
                lamport,
            };
            assert!(
                stream.records.insert(seq, known).is_none(),
                "{name}: seq {seq} acknowledged twice"
            );
            if let Some(before) = lamport_before {
                assert!(
                    lamport > before,
                    "{name}: a batch's Lamports do not increase"
                );
            }
            lamport_before = Some(lamport);
        }
        drop(model);
        if let (true, Disk::Sim(disk)) = (durable, &self.disk) {
            let at = disk.ops();
            let mut log = self.durable.lock().unwrap();
            log.extend(acked.iter().map(|&(seq, _, bytes)| Ack {
                stream: name.to_string(),
                seq,
                payload: bytes.to_vec(),
                at,
            }));
        }
    }

    /// A record read back agrees with the model, if the model has it yet.
    fn agrees(&self, name: &str, r: &Record) {
        let model = self.model.lock().unwrap();
        let known = model
            .streams
            .get(name)
            .and_then(|s| s.records.get(&r.seq()));
        if let Some(known) = known {
            assert_eq!(
                (payload_hash(r.payload()), r.lamport()),
                (known.hash, known.lamport),
                "{name}: seq {} reads back other bytes or Lamport",
                r.seq()
            );
        }
    }

    fn records(&self) -> usize {
        let model = self.model.lock().unwrap();
        model.streams.values().map(|s| s.records.len()).sum()
    }

    fn known_seqs(&self, name: &str) -> Vec<u64> {
        let model = self.model.lock().unwrap();
        model
            .streams
            .get(name)
            .map(|s| s.records.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// Read `iter` for at most `limit` records: contiguous seqs from `from`,
/// increasing Lamports, bytes as acknowledged; an `Archived` error only for
/// the next seq due. Returns the records read.
fn read_checked(
    shared: &Shared,
    name: &str,
    iter: impl Iterator<Item = lamplog::Result<Record>>,
    from: u64,
    limit: usize,
) -> Vec<Record> {
    let mut read: Vec<Record> = Vec::new();
    for item in iter.take(limit) {
        let next = read.last().map_or(from, |r| r.seq() + 1);
        match item {
            Ok(r) => {
                assert_eq!(r.seq(), next, "{name}: a seq was skipped or repeated");
                if let Some(before) = read.last() {
                    assert!(
                        r.lamport() > before.lamport(),
                        "{name}: Lamport not increasing"
                    );
                }
                shared.agrees(name, &r);
                read.push(r);
            }
            Err(Error::Archived { seq, .. }) => {
                assert_eq!(seq, next, "{name}: Archived names another seq");
                break;
            }
            Err(e) => panic!("{name}: read from {from} failed: {e}"),
        }
    }
    shared.check();
    read
}

/// A reader a thread holds across its other operations, as a host holds a
/// cursor: an iterator, or a subscription (which waits for more).
struct Held {
    name: &'static str,
    records: Box<dyn Iterator<Item = lamplog::Result<Record>> + Send>,
    next: u64,
    lamport: u64,
    /// A subscription: `None` means nothing durable yet, not the end.
    waits: bool,
}

impl Held {
    fn iter(name: &'static str, s: &Stream, from: u64) -> Held {
        Held {
            name,
            records: Box::new(s.iter_from_seq(from)),
            next: from,
            lamport: 0,
            waits: false,
        }
    }

    fn subscription(name: &'static str, s: &Stream, from: u64) -> Held {
        let mut tail = s.subscribe_from(from).unwrap();
        Held {
            name,
            records: Box::new(std::iter::from_fn(move || {
                tail.next_timeout(Duration::ZERO)
            })),
            next: from,
            lamport: 0,
            waits: true,
        }
    }

    /// Read up to `k` more records, checked like `read_checked`; `false`
    /// once the reader ended.
    fn advance(&mut self, shared: &Shared, k: usize) -> bool {
        let name = self.name;
        for _ in 0..k {
            match self.records.next() {
                None => return self.waits,
                Some(Ok(r)) => {
                    assert_eq!(r.seq(), self.next, "{name}: a held reader skipped a seq");
                    assert!(r.lamport() > self.lamport, "{name}: Lamport not increasing");
                    shared.agrees(name, &r);
                    (self.next, self.lamport) = (r.seq() + 1, r.lamport());
                }
                Some(Err(Error::Archived { seq, .. })) => {
                    assert_eq!(seq, self.next, "{name}: Archived names another seq");
                    return false;
                }
                Some(Err(e)) => panic!("{name}: a held reader at {} failed: {e}", self.next),
            }
        }
        shared.check();
        true
    }
}

/// One thread's operations until the run stops.
fn work(shared: &Shared, thread: usize, seed: u64, history: &Mutex<Vec<String>>) {
    let mut rng = Rng::new(seed ^ (thread as u64 + 1) << 40);
    let mut n = 0u64;
    let note = |line: String| {
        let mut h = history.lock().unwrap();
        if h.len() == HISTORY_LEN {
            h.remove(0);
        }
        h.push(line);
    };
    let mut held: Vec<Held> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        shared.ops.fetch_add(1, Ordering::Relaxed);
        held.retain_mut(|h| h.advance(shared, 3));
        let roll = rng.below(100);
        let name = *rng.pick(&GENERAL);
        match roll {
            0..=27 => {
                let d = durability(&mut rng);
                let p = payload(thread, n, &mut rng);
                note(format!("#{n} append {name} {d:?}"));
                let a = shared.stream(name).append(&p, d).unwrap();
                shared.acked(name, &[(a.seq, a.lamport, &p)], d == Durability::Sync);
            }
            28..=34 => {
                let d = durability(&mut rng);
                let batch: Vec<Vec<u8>> = (0..1 + rng.below(4))
                    .map(|k| payload(thread, n * 10 + k, &mut rng))
                    .collect();
                note(format!("#{n} append_batch {name} x{} {d:?}", batch.len()));
                let done = shared.stream(name).append_batch(&batch, d).unwrap();
                let acked: Vec<_> = done
                    .iter()
                    .zip(&batch)
                    .map(|(a, p)| (a.seq, a.lamport, p.as_slice()))
                    .collect();
                shared.acked(name, &acked, d == Durability::Sync);
            }
            35..=39 => {
                let other = *rng.pick(&GENERAL);
                let observed = shared.stream(other).last_lamport() + rng.below(50);
                let p = payload(thread, n, &mut rng);
                note(format!(
                    "#{n} append_observed {name} after {other}@{observed}"
                ));
                let a = shared
                    .stream(name)
                    .append_observed(&p, observed, Durability::Buffered)
                    .unwrap();
                assert!(
                    a.lamport > observed,
                    "{name}: stamped before what it observed"
                );
                shared.acked(name, &[(a.seq, a.lamport, &p)], false);
            }
            40..=45 => insert_op(shared, &mut rng, n, &note),
            46..=50 => {
                note(format!("#{n} checkpoint {name}"));
                let s = shared.stream(name);
                let c = s.checkpoint(&format!("t{thread}-{n}")).unwrap();
                assert_eq!(c.record_seq, c.seq + 1);
                let record = s.get(c.record_seq).unwrap().expect("the checkpoint record");
                assert_eq!(
                    Checkpoint::from_record(&c.stream, &record).as_ref(),
                    Some(&c)
                );
                shared.acked(
                    name,
                    &[(c.record_seq, record.lamport(), record.payload())],
                    true,
                );
                let mut model = shared.model.lock().unwrap();
                model.streams.get_mut(name).unwrap().checkpoints.push(c);
            }
            51..=53 => archive(shared, &mut rng, n, &note),
            54..=61 => {
                let seqs = shared.known_seqs(name);
                if let Some(&seq) = seqs.get(rng.below(seqs.len() as u64) as usize) {
                    note(format!("#{n} get {name} {seq}"));
                    let s = shared.stream(name);
                    match s.get(seq) {
                        Ok(Some(r)) => shared.agrees(name, &r),
                        Err(Error::Archived { .. }) => assert!(s.first_seq() > seq),
                        other => panic!("{name}: get({seq}) of an acknowledged seq: {other:?}"),
                    }
                    shared.check();
                }
            }
            62..=67 => {
                let s = shared.stream(name);
                let from = 1 + rng.below(s.last_seq().max(1));
                if held.len() < 2 && rng.below(2) == 0 {
                    let follows = rng.below(2) == 0;
                    note(format!(
                        "#{n} hold {name} from {from}, subscription: {follows}"
                    ));
                    held.push(match follows {
                        true => Held::subscription(name, &s, from),
                        false => Held::iter(name, &s, from),
                    });
                } else {
                    note(format!("#{n} iter {name} from {from}"));
                    read_checked(shared, name, s.iter_from_seq(from), from, 300);
                }
            }
            68..=71 => query(shared, &mut rng, name, n, &note),
            72..=75 => follow(shared, &mut rng, name, n, &note),
            76..=80 => quiet_probe(shared, thread, n, &mut rng, &note),
            81..=84 => {
                note(format!("#{n} sync"));
                match rng.below(2) {
                    0 => shared.stream(name).sync().unwrap(),
                    _ => shared.store.sync().unwrap(),
                }
            }
            85..=88 => merge(shared, thread, n, &mut rng, &note),
            89..=90 => {
                note(format!("#{n} read-only reopen"));
                read_only_reopen(shared);
            }
            _ => {
                let p = payload(thread, n, &mut rng);
                note(format!("#{n} append {name} Buffered"));
                let a = shared
                    .stream(name)
                    .append(&p, Durability::Buffered)
                    .unwrap();
                shared.acked(name, &[(a.seq, a.lamport, &p)], false);
            }
        }
    }
}

/// `Sync` appends in a loop, keeping the syncer's queue full. A sync of the
/// simulated disk takes no time, so there each append also waits about as
/// long as an fdatasync would here: the busy threads keep the syncer busy
/// without crowding out the others.
fn keep_busy(shared: &Shared, thread: usize) {
    let s = shared.stream(BUSY);
    let mut rng = Rng::new(thread as u64);
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let p = payload(thread, n, &mut rng);
        let a = s.append(&p, Durability::Sync).unwrap();
        shared.acked(BUSY, &[(a.seq, a.lamport, &p)], true);
        if matches!(shared.disk, Disk::Sim(_)) {
            std::thread::sleep(Duration::from_micros(250));
        }
    }
}

fn insert_op(shared: &Shared, rng: &mut Rng, n: u64, note: &dyn Fn(String)) {
    let op = rng.pick(&shared.pool);
    let d = durability(rng);
    note(format!("#{n} insert_op {} {d:?}", &op.op_id[..15]));
    let log = OpLog::new(shared.stream(OPS));
    let done = log.insert_op(op, d).unwrap();
    let record = log
        .stream()
        .get(done.seq)
        .unwrap()
        .expect("the op's record");
    let stored: OpEntry = serde_json::from_slice(record.payload()).unwrap();
    assert_eq!(
        stored.op_id, op.op_id,
        "insert_op named another op's record"
    );
    if done.inserted {
        shared.acked(
            OPS,
            &[(done.seq, done.lamport, record.payload())],
            d == Durability::Sync,
        );
    }
    let mut model = shared.model.lock().unwrap();
    model
        .inserts
        .push((op.op_id.clone(), done.seq, done.inserted));
    shared.check();
}

fn archive(shared: &Shared, rng: &mut Rng, n: u64, note: &dyn Fn(String)) {
    let name = *rng.pick(&ARCHIVED);
    let older = {
        let model = shared.model.lock().unwrap();
        let checkpoints = &model.streams.get(name).map(|s| s.checkpoints.clone());
        match checkpoints.as_deref() {
            Some(c) if c.len() > 2 => c[c.len() - 3].clone(),
            _ => return,
        }
    };
    note(format!("#{n} archive_before {name} {}", older.record_seq));
    let s = shared.stream(name);
    let done = s.archive_before(&older).unwrap();
    // Another thread may have archived further already; then nothing moves.
    if done.segments > 0 {
        assert!(
            done.live_from_seq <= older.seq + 1,
            "{name}: archived past the checkpoint"
        );
    }
    assert!(
        s.first_seq() >= done.live_from_seq,
        "{name}: the live log grew backwards"
    );
    shared.check();
}

/// A query over a seq range matches a full scan of it with the same filter.
fn query(shared: &Shared, rng: &mut Rng, name: &str, n: u64, note: &dyn Fn(String)) {
    let s = shared.stream(name);
    let last = s.last_seq();
    let from = 1 + rng.below(last.max(1));
    let range = from..(from + 300).min(last + 1);
    let (actor, domain) = (*rng.pick(&ACTORS), *rng.pick(&DOMAINS));
    note(format!("#{n} query {name} {range:?} {actor:?} {domain:?}"));
    let by_query: lamplog::Result<Vec<u64>> = s
        .query()
        .seq(range.clone())
        .actor(actor)
        .domain(domain)
        .iter()
        .map(|r| r.map(|r| r.seq()))
        .collect();
    let by_scan = scan_matching(&s, range, actor, domain);
    match (by_query, by_scan) {
        (Ok(q), Ok(scan)) => assert_eq!(q, scan, "{name}: query and scan disagree"),
        (Err(Error::Archived { .. }), _) | (_, Err(Error::Archived { .. })) => {}
        (q, scan) => panic!("{name}: query {q:?}, scan {scan:?}"),
    }
    shared.check();
}

fn scan_matching(
    s: &Stream,
    range: Range<u64>,
    actor: &str,
    domain: &str,
) -> lamplog::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for r in s
        .iter_from_seq(range.start)
        .take(range.end.saturating_sub(range.start) as usize)
    {
        let r = r?;
        let v: serde_json::Value = serde_json::from_slice(r.payload()).unwrap();
        let is = |k: &str, want: &str| v.get(k).and_then(|x| x.as_str()) == Some(want);
        if (is("actor", actor) || is("actor_id", actor)) && is("domain", domain) {
            seqs.push(r.seq());
        }
    }
    Ok(seqs)
}

/// Follow a subscription: each durable record once, in order.
fn follow(shared: &Shared, rng: &mut Rng, name: &str, n: u64, note: &dyn Fn(String)) {
    let s = shared.stream(name);
    let from = 1 + rng.below(s.last_seq() + 1);
    note(format!("#{n} subscribe {name} from {from}"));
    let mut tail = s.subscribe_from(from).unwrap();
    let records = std::iter::from_fn(|| tail.next_timeout(Duration::from_millis(200)));
    read_checked(shared, name, records, from, 50);
}

/// A Buffered record of the quiet stream, which no one syncs: observed
/// durable through a subscription within the sweep's bound.
fn quiet_probe(shared: &Shared, thread: usize, n: u64, rng: &mut Rng, note: &dyn Fn(String)) {
    let s = shared.stream(QUIET);
    let p = payload(thread, n, rng);
    note(format!("#{n} quiet probe"));
    let a = s.append(&p, Durability::Buffered).unwrap();
    let written = Instant::now();
    shared.acked(QUIET, &[(a.seq, a.lamport, &p)], false);
    let mut tail = s.subscribe_from(a.seq).unwrap();
    match tail.next_timeout(QUIET_WAIT_MAX) {
        Some(Ok(r)) => assert_eq!(r.seq(), a.seq),
        other => panic!(
            "quiet: seq {} not durable in {QUIET_WAIT_MAX:?}: {other:?}",
            a.seq
        ),
    }
    shared.quiet_waits.lock().unwrap().push(written.elapsed());
    shared.check();
}

fn merge(shared: &Shared, thread: usize, n: u64, rng: &mut Rng, note: &dyn Fn(String)) {
    let source = *rng.pick(&SOURCES);
    let p = payload(thread, n, rng);
    let a = shared
        .stream(source)
        .append(&p, Durability::Buffered)
        .unwrap();
    shared.acked(source, &[(a.seq, a.lamport, &p)], false);
    let before: usize = SOURCES.iter().map(|s| shared.known_seqs(s).len()).sum();
    if before > SOURCES_RECORDS_MAX || rng.below(4) != 0 {
        return;
    }
    note(format!("#{n} merge_into {MERGED}"));
    let written = shared.store.merge_into(&SOURCES, MERGED).unwrap();
    assert!(
        written as usize >= before,
        "the merge left out acknowledged records"
    );
    shared.check();
}

fn read_only_reopen(shared: &Shared) {
    let opts = opts().read_only(true);
    let store = match &shared.disk {
        Disk::Real(dir) => Store::open(dir, opts),
        Disk::Sim(disk) => Store::open_with(Arc::new(disk.clone()), ROOT, opts),
    }
    .unwrap_or_else(|e| panic!("read-only open failed: {e}"));
    for name in GENERAL.iter().chain([&QUIET, &OPS]) {
        let s = store.stream(name).unwrap();
        let first = s.first_seq();
        let read = read_checked(shared, name, s.iter(), first, usize::MAX);
        assert_eq!(
            read.last().map_or(first - 1, |r| r.seq()),
            s.last_seq(),
            "{name}"
        );
        s.verify()
            .unwrap_or_else(|e| panic!("{name}: read-only verify: {e}"));
    }
    shared.read_only_opens.fetch_add(1, Ordering::Relaxed);
}

/// The root of a store on the simulated disk.
pub const ROOT: &str = "/stress";

/// Run `config`; panics with the seed and every thread's history on failure.
pub fn run(config: &Config) -> Report {
    let (store, disk, _dir) = if config.sim {
        let disk = SimDisk::default();
        let store = Store::open_with(Arc::new(disk.clone()), ROOT, opts()).unwrap();
        (store, Disk::Sim(disk), None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), opts()).unwrap();
        (store, Disk::Real(dir.path().to_path_buf()), Some(dir))
    };
    for name in GENERAL
        .iter()
        .chain([&QUIET, &OPS, &MERGED, &BUSY])
        .chain(&SOURCES)
    {
        store.stream(name).unwrap();
    }
    let shared = Arc::new(Shared {
        store,
        disk,
        model: Mutex::new(Model::default()),
        durable: Mutex::new(Vec::new()),
        pool: op_pool(config.seed),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        checks: AtomicU64::new(0),
        read_only_opens: AtomicU64::new(0),
        quiet_waits: Mutex::new(Vec::new()),
    });
    let histories: Vec<Arc<Mutex<Vec<String>>>> = (0..config.threads + BUSY_THREADS)
        .map(|_| Arc::default())
        .collect();
    let threads: Vec<_> = (0..config.threads + BUSY_THREADS)
        .map(|t| {
            let (shared, history, seed) = (shared.clone(), histories[t].clone(), config.seed);
            let busy = t >= config.threads;
            std::thread::spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if busy {
                        keep_busy(&shared, t)
                    } else {
                        work(&shared, t, seed, &history)
                    }
                }));
                if outcome.is_err() {
                    // Stop the others: one failure is the report.
                    shared.stop.store(true, Ordering::Relaxed);
                }
                outcome.err().map(|e| panic_message(&*e))
            })
        })
        .collect();
    let started = Instant::now();
    let run = match config.sim {
        true => config.run.min(SIM_RUN_MAX),
        false => config.run,
    };
    let too_big = || config.sim && shared.records() > SIM_RECORDS_MAX;
    while started.elapsed() < run && !shared.stop.load(Ordering::Relaxed) && !too_big() {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let failures: Vec<(usize, String)> = threads
        .into_iter()
        .enumerate()
        .filter_map(|(t, h)| h.join().unwrap().map(|m| (t, m)))
        .collect();
    let report_failure = |what: String| -> ! {
        for (t, history) in histories.iter().enumerate() {
            eprintln!("thread {t}, last operations:");
            for line in history.lock().unwrap().iter() {
                eprintln!("  {line}");
            }
        }
        panic!("stress seed {} (sim: {}): {what}", config.seed, config.sim);
    };
    if let Some((t, message)) = failures.first() {
        report_failure(format!("thread {t} failed: {message}"));
    }
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(&shared)));
    let mut report = match finished {
        Ok(report) => report,
        Err(e) => report_failure(format!("after the run: {}", panic_message(&*e))),
    };
    if let Disk::Sim(disk) = &shared.disk {
        report.crash_images = crash_images(disk, &shared.durable.lock().unwrap(), config.seed);
    }
    report
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// The checks after the run, then a close and a strict reopen that must
/// hold the same content.
fn finish(shared: &Shared) -> Report {
    // A copy: reading back checks records against the model, under its lock.
    let model = std::mem::take(&mut *shared.model.lock().unwrap());
    *shared.model.lock().unwrap() = Model {
        streams: model
            .streams
            .iter()
            .map(|(name, s)| {
                let copy = StreamModel {
                    records: s.records.clone(),
                    checkpoints: s.checkpoints.clone(),
                };
                (name.clone(), copy)
            })
            .collect(),
        inserts: model.inserts.clone(),
    };
    let mut contents = BTreeMap::new();
    for (name, known) in &model.streams {
        let s = shared.stream(name);
        let first = s.first_seq();
        let all = read_checked(shared, name, s.iter(), first, usize::MAX);
        assert_eq!(
            all.last().map_or(first - 1, |r| r.seq()),
            s.last_seq(),
            "{name}"
        );
        for (&seq, k) in &known.records {
            if seq < first {
                assert!(
                    matches!(s.get(seq), Err(Error::Archived { .. })),
                    "{name}: {seq}"
                );
                continue;
            }
            let r = &all[(seq - first) as usize];
            assert_eq!(
                (payload_hash(r.payload()), r.lamport()),
                (k.hash, k.lamport)
            );
        }
        let mut live: Vec<Checkpoint> = known
            .checkpoints
            .iter()
            .filter(|c| c.record_seq >= first)
            .cloned()
            .collect();
        live.sort_by_key(|c| c.record_seq);
        assert_eq!(s.checkpoints().unwrap(), live, "{name}: checkpoints listed");
        if let Some(newest) = live.last() {
            assert_eq!(
                s.latest_checkpoint().unwrap().as_ref(),
                Some(newest),
                "{name}"
            );
        }
        contents.insert(name.clone(), digest(&all));
    }
    check_inserts(shared, &model.inserts);
    let merged = shared.stream(MERGED);
    read_checked(shared, MERGED, merged.iter(), 1, usize::MAX);
    let records = model.streams.values().map(|s| s.records.len() as u64).sum();
    // A subscriber blocked in `next()` ends when the store closes, after
    // every durable record.
    let c = shared.stream("c");
    let last = c.last_seq();
    let mut tail = c.subscribe_from(1).unwrap();
    let (ended_tx, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let seen = tail.by_ref().filter(Result::is_ok).count() as u64;
        let _ = ended_tx.send((seen, tail.is_ended()));
    });
    shared.store.clone().close().unwrap();
    let (seen, ended) = ended
        .recv_timeout(Duration::from_secs(10))
        .expect("a subscription ended when its store closed");
    assert!(
        ended && seen == last,
        "the subscription saw {seen} of {last} records"
    );
    let reopened = match &shared.disk {
        Disk::Real(dir) => Store::open(dir, opts()),
        Disk::Sim(disk) => Store::open_with(Arc::new(disk.clone()), ROOT, opts()),
    }
    .unwrap_or_else(|e| panic!("strict reopen after the run: {e}"));
    for (name, digest_before) in &contents {
        let s = reopened.stream(name).unwrap();
        let all: Vec<Record> = s.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            &digest(&all),
            digest_before,
            "{name}: changed across close and reopen"
        );
    }
    reopened.verify().unwrap();
    reopened.close().unwrap();
    Report {
        ops: shared.ops.load(Ordering::Relaxed),
        checks: shared.checks.load(Ordering::Relaxed),
        records,
        read_only_opens: shared.read_only_opens.load(Ordering::Relaxed),
        crash_images: 0,
        quiet_waits: shared.quiet_waits.lock().unwrap().clone(),
    }
}

fn digest(records: &[Record]) -> Vec<(u64, u64, u64)> {
    records
        .iter()
        .map(|r| (r.seq(), r.lamport(), payload_hash(r.payload())))
        .collect()
}

/// Each op of the pool is written once: one `inserted` result at most, and
/// one record holding it.
fn check_inserts(shared: &Shared, inserts: &[(String, u64, bool)]) {
    let mut writes: HashMap<&str, u64> = HashMap::new();
    for (id, _, inserted) in inserts {
        *writes.entry(id).or_default() += u64::from(*inserted);
    }
    assert!(
        writes.values().all(|&w| w <= 1),
        "an op was inserted twice: {writes:?}"
    );
    let mut stored: HashMap<String, u64> = HashMap::new();
    for r in shared.stream(OPS).iter() {
        let r = r.unwrap();
        if r.kind() == Kind::Data {
            let op: OpEntry = serde_json::from_slice(r.payload()).unwrap();
            *stored.entry(op.op_id).or_default() += 1;
        }
    }
    assert!(stored.values().all(|&c| c == 1), "an op is stored twice");
    for (id, seq, _) in inserts {
        assert!(stored.contains_key(id), "op {id} (seq {seq}) is not stored");
    }
    shared.check();
}

/// Crash images at random points of the run and right at acknowledgements,
/// each with unsynced writes lost, kept, and torn.
fn crash_images(disk: &SimDisk, durable: &[Ack], seed: u64) -> usize {
    let mut rng = Rng::new(seed ^ 0xc4a5);
    let ops = disk.ops();
    let mut points: Vec<usize> = (0..8).map(|_| 1 + rng.below(ops as u64) as usize).collect();
    points.extend((0..8).filter_map(|_| {
        durable
            .get(rng.below(durable.len() as u64) as usize)
            .map(|a| a.at)
    }));
    points.sort_unstable();
    let fates = [
        (Fate::Lost, false),
        (Fate::Kept, true),
        (Fate::Torn(rng.next()), false),
    ];
    let mut images = 0;
    disk.crash_images(&points, &fates, |at, fate, entries_kept, image| {
        let label = format!(
            "stress seed {seed}: crash after op {at} of {ops}, {fate:?}, entries kept: {entries_kept}"
        );
        check_image(&image, ROOT, &opts(), durable, at, &label);
        images += 1;
    });
    images
}
