//! `lamplog query`: the records of one or more streams that match, in
//! causal order (Lamport, then stream, then seq).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use lamplog::{Options, QueryIter, Record};

use crate::failure::Failure;

/// The options of `lamplog query`.
#[derive(Args)]
pub struct QueryArgs {
    /// The store directory.
    pub dir: PathBuf,
    /// Only this stream (repeat for several; default: every stream).
    #[arg(long = "stream")]
    pub streams: Vec<String>,
    /// Records whose `actor` (or `actor_id`) is this string.
    #[arg(long)]
    pub actor: Option<String>,
    /// Records whose `op` (or `kind`) is this string.
    #[arg(long)]
    pub op: Option<String>,
    /// Records whose `domain` is this string.
    #[arg(long)]
    pub domain: Option<String>,
    /// Records appended at or after this time: a duration ago (30m, 2h,
    /// 7d) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Records appended before this time (the same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Records whose Lamport timestamp is in A..B (B excluded), A..=B, A.. or ..B.
    #[arg(long)]
    pub lamport: Option<String>,
    /// Records whose payload's top-level FIELD is VALUE (a string, or the
    /// JSON text of a number, boolean or null); repeat for several.
    #[arg(long = "where", value_name = "FIELD=VALUE")]
    pub wheres: Vec<String>,
    /// Print only how many records match.
    #[arg(long)]
    pub count: bool,
    /// Print (or count) at most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
}

pub fn query(filter: QueryArgs) -> Result<(), Failure> {
    let dir = &filter.dir;
    let ts_us = (
        bound(filter.since.as_deref(), Bound::Included)?,
        bound(filter.until.as_deref(), Bound::Excluded)?,
    );
    let lamport = filter
        .lamport
        .as_deref()
        .map(lamport_range)
        .transpose()?
        .unwrap_or((Bound::Unbounded, Bound::Unbounded));
    let wheres: Vec<(String, String)> = filter
        .wheres
        .iter()
        .map(|w| where_clause(w))
        .collect::<Result<_, _>>()?;
    let store = crate::open::existing(dir, Options::default().read_only(true))?;
    let mut heads = BinaryHeap::new();
    for source in sources(&store, &filter, lamport, ts_us)? {
        push_next(&mut heads, source, &wheres)?;
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let limit = filter.limit.unwrap_or(u64::MAX);
    let mut n = 0;
    let bar = crate::progress::counter("matching");
    while n < limit {
        let Some(Reverse(Head { record, source })) = heads.pop() else {
            break;
        };
        n += 1;
        bar.inc(1);
        if !filter.count {
            crate::read::write_record(&mut out, Some(&source.name), &record)?;
        }
        push_next(&mut heads, source, &wheres).inspect_err(|_| {
            let _ = out.flush();
        })?;
    }
    bar.finish_and_clear();
    if filter.count {
        writeln!(out, "{n}")?;
    }
    out.flush()?;
    Ok(())
}

type Heads = BinaryHeap<Reverse<Head>>;

/// Each stream's query (every stream, or those named).
fn sources(
    store: &lamplog::Store,
    filter: &QueryArgs,
    lamport: (Bound<u64>, Bound<u64>),
    ts_us: (Bound<u64>, Bound<u64>),
) -> Result<Vec<Source>, Failure> {
    let names = match filter.streams.is_empty() {
        true => store.streams(),
        false => filter.streams.clone(),
    };
    let mut sources = Vec::new();
    for name in names {
        let stream = store.stream(&name)?;
        let mut q = stream
            .query()
            .seq(stream.first_seq()..)
            .lamport(lamport)
            .ts_us(ts_us);
        if let Some(actor) = &filter.actor {
            q = q.actor(actor);
        }
        if let Some(op) = &filter.op {
            q = q.op(op);
        }
        if let Some(domain) = &filter.domain {
            q = q.domain(domain);
        }
        sources.push(Source {
            name,
            iter: q.iter(),
        });
    }
    Ok(sources)
}

/// Queue `source`'s next matching record, if it has one.
fn push_next(
    heads: &mut Heads,
    mut source: Source,
    wheres: &[(String, String)],
) -> Result<(), Failure> {
    if let Some(record) = source.next(wheres)? {
        heads.push(Reverse(Head { record, source }));
    }
    Ok(())
}

/// One stream's matching records.
struct Source {
    name: String,
    iter: QueryIter,
}

impl Source {
    /// The next record that also meets every `--where`.
    fn next(&mut self, wheres: &[(String, String)]) -> Result<Option<Record>, Failure> {
        for record in self.iter.by_ref() {
            let record = record?;
            if meets(&record, wheres) {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }
}

/// A stream's next record, ordered by (Lamport, stream, seq).
struct Head {
    record: Record,
    source: Source,
}

impl Head {
    fn key(&self) -> (u64, &str, u64) {
        (self.record.lamport(), &self.source.name, self.record.seq())
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Head) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

/// `30m`, `2h`, `7d` (that long ago) or an RFC 3339 time, as microseconds
/// since the epoch.
fn time_us(text: &str) -> Result<u64, Failure> {
    let at = match humantime::parse_duration(text) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            usage(format!(
                "bad time {text:?}: give a duration ago (30m, 2h, 7d) or an RFC 3339 time (2026-11-01T12:00:00Z)"
            ))
        })?,
    };
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
}

fn bound(text: Option<&str>, kind: fn(u64) -> Bound<u64>) -> Result<Bound<u64>, Failure> {
    Ok(match text {
        Some(text) => kind(time_us(text)?),
        None => Bound::Unbounded,
    })
}

/// `A..B` (B excluded), `A..=B`, `A..` or `..B`.
fn lamport_range(text: &str) -> Result<(Bound<u64>, Bound<u64>), Failure> {
    let bad = || {
        usage(format!(
            "bad Lamport range {text:?}: give A..B, A..=B, A.. or ..B"
        ))
    };
    let (start, end) = text.split_once("..").ok_or_else(bad)?;
    let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let start = match start {
        "" => Bound::Unbounded,
        s => Bound::Included(number(s)?),
    };
    let end = match end.strip_prefix('=') {
        Some(s) => Bound::Included(number(s)?),
        None if end.is_empty() => Bound::Unbounded,
        None => Bound::Excluded(number(end)?),
    };
    Ok((start, end))
}

/// `FIELD=VALUE`.
fn where_clause(text: &str) -> Result<(String, String), Failure> {
    match text.split_once('=') {
        Some((field, value)) if !field.is_empty() => Ok((field.into(), value.into())),
        _ => Err(usage(format!("bad --where {text:?}: give FIELD=VALUE"))),
    }
}

/// Whether the payload's top-level `field` is `value` for every clause: a
/// string field compared with the text, any other JSON value with the
/// text read as JSON (`n=3`, `ok=true`, `x=null`).
fn meets(record: &Record, wheres: &[(String, String)]) -> bool {
    if wheres.is_empty() {
        return true;
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(record.payload()) else {
        return false;
    };
    wheres.iter().all(|(field, value)| match fields.get(field) {
        Some(serde_json::Value::String(s)) => s == value,
        Some(other) => serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| v == *other),
        None => false,
    })
}
