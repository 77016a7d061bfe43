//! Filtered iteration: by seq, Lamport and wall-clock ranges (the start
//! found through the sparse index) and by payload fields.

use std::ops::{Bound, RangeBounds};

use serde::Deserialize;

use crate::error::Result;
use crate::reader::{Iter, Record};
use crate::stream::Stream;

/// A query over one stream; build it with [`Stream::query`], run it with
/// [`Query::iter`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
/// let stream = store.stream("repo")?;
/// stream.append(br#"{"actor":"anan","op":"review_sign"}"#, lamplog::Durability::Buffered)?;
/// stream.append(br#"{"actor":"claude","op":"capture"}"#, lamplog::Durability::Sync)?;
/// let signed: Vec<_> = stream.query().actor("anan").op("review_sign").iter().collect::<Result<_, _>>()?;
/// assert_eq!(signed.len(), 1);
/// # Ok::<(), lamplog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    stream: Stream,
    seq: (Bound<u64>, Bound<u64>),
    lamport: (Bound<u64>, Bound<u64>),
    ts_us: (Bound<u64>, Bound<u64>),
    actor: Option<String>,
    op: Option<String>,
    domain: Option<String>,
}

/// The payload fields a query can match: `actor` (or `actor_id`), `op`
/// (or `kind`) and `domain`, each a JSON string.
#[derive(Deserialize, Default)]
struct Fields<'a> {
    #[serde(borrow, default)]
    actor: Option<&'a str>,
    #[serde(borrow, default)]
    actor_id: Option<&'a str>,
    #[serde(borrow, default)]
    op: Option<&'a str>,
    #[serde(borrow, default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    domain: Option<&'a str>,
}

fn bounds(range: impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

fn start(b: &(Bound<u64>, Bound<u64>)) -> Option<u64> {
    match b.0 {
        Bound::Included(v) => Some(v),
        Bound::Excluded(v) => Some(v.saturating_add(1)),
        Bound::Unbounded => None,
    }
}

fn past_end(b: &(Bound<u64>, Bound<u64>), v: u64) -> bool {
    match b.1 {
        Bound::Included(end) => v > end,
        Bound::Excluded(end) => v >= end,
        Bound::Unbounded => false,
    }
}

impl Query {
    pub(crate) fn new(stream: Stream) -> Query {
        let all = (Bound::Unbounded, Bound::Unbounded);
        Query {
            stream,
            seq: all,
            lamport: all,
            ts_us: all,
            actor: None,
            op: None,
            domain: None,
        }
    }

    /// Records whose seq is in `range`.
    pub fn seq(mut self, range: impl RangeBounds<u64>) -> Query {
        self.seq = bounds(range);
        self
    }

    /// Records whose Lamport timestamp is in `range`.
    pub fn lamport(mut self, range: impl RangeBounds<u64>) -> Query {
        self.lamport = bounds(range);
        self
    }

    /// Records appended at a wall-clock time (microseconds since the epoch) in `range`.
    pub fn ts_us(mut self, range: impl RangeBounds<u64>) -> Query {
        self.ts_us = bounds(range);
        self
    }

    /// Records whose payload's `actor` (or `actor_id`) is `actor`.
    pub fn actor(mut self, actor: &str) -> Query {
        self.actor = Some(actor.to_string());
        self
    }

    /// Records whose payload's `op` (or `kind`) is `op`.
    pub fn op(mut self, op: &str) -> Query {
        self.op = Some(op.to_string());
        self
    }

    /// Records whose payload's `domain` is `domain`.
    pub fn domain(mut self, domain: &str) -> Query {
        self.domain = Some(domain.to_string());
        self
    }

    /// The matching records, oldest first. The start is the latest of the
    /// seq, Lamport and wall-clock starts, each found through the index;
    /// the iteration stops at the end of the seq or Lamport range.
    ///
    /// A range that starts in archived records yields
    /// [`Error::Archived`](crate::Error::Archived), as a seek there does.
    pub fn iter(self) -> QueryIter {
        let mut first = start(&self.seq).unwrap_or(1);
        let mut failure = None;
        if let Some(l) = start(&self.lamport) {
            // Lamport grows with seq: records before the first at or after l cannot match.
            match self.stream.iter_from_lamport(l).next() {
                Some(Ok(r)) => first = first.max(r.seq()),
                Some(Err(e)) => failure = Some(e),
                None => first = u64::MAX,
            }
        }
        if let Some(t) = start(&self.ts_us) {
            first = first.max(self.stream.seq_before_ts(t));
        }
        let iter = match failure {
            Some(e) => Iter::failed(self.stream.segments().clone(), e),
            None => self.stream.iter_from_seq(first),
        };
        QueryIter {
            iter,
            query: self,
            done: false,
        }
    }

    fn matches(&self, r: &Record) -> bool {
        let in_range = |b: &(Bound<u64>, Bound<u64>), v: u64| {
            start(b).is_none_or(|s| v >= s) && !past_end(b, v)
        };
        if !in_range(&self.seq, r.seq())
            || !in_range(&self.lamport, r.lamport())
            || !in_range(&self.ts_us, r.ts_us())
        {
            return false;
        }
        if self.actor.is_none() && self.op.is_none() && self.domain.is_none() {
            return true;
        }
        let fields: Fields = serde_json::from_slice(r.payload()).unwrap_or_default();
        let is = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| got == Some(w))
        };
        is(&self.actor, fields.actor.or(fields.actor_id))
            && is(&self.op, fields.op.or(fields.kind))
            && is(&self.domain, fields.domain)
    }
}

/// The records a [`Query`] matches.
#[derive(Debug)]
pub struct QueryIter {
    iter: Iter,
    query: Query,
    done: bool,
}

impl Iterator for QueryIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        while !self.done {
            let record = match self.iter.next()? {
                Ok(record) => record,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if past_end(&self.query.seq, record.seq())
                || past_end(&self.query.lamport, record.lamport())
            {
                self.done = true;
            } else if self.query.matches(&record) {
                return Some(Ok(record));
            }
        }
        None
    }
}

impl Stream {
    /// A query over this stream's records.
    pub fn query(&self) -> Query {
        Query::new(self.clone())
    }

    /// A seq at or before the first record appended at or after wall-clock
    /// time `t`, from the index's running maximum of wall-clock times:
    /// segments and index points whose maximum is below `t` are skipped.
    fn seq_before_ts(&self, t: u64) -> u64 {
        for segment in self.segments().all() {
            let index = segment.index.read();
            if index.ts_us_max() < t && segment.is_sealed() {
                continue;
            }
            return index
                .last_with_ts_max_below(t)
                .map_or(segment.header.first_seq, |e| e.seq);
        }
        self.last_seq() + 1
    }
}
