//! Filtered iteration: by seq, Lamport and wall-clock ranges (the start
//! found through the sparse index) and by payload fields.

use std::ops::{Bound, RangeBounds};

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::log::reader::{Iter, Record};
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

/// The payload fields a query can match: `actor` and `actor_id`, `op` and
/// `kind`, `domain`, each when it is a JSON string (escapes decoded, in
/// keys too). A field of another JSON type, or a payload that is not an
/// object, matches no string; a repeated key counts once, the last time.
#[derive(Default)]
struct Fields<'a> {
    actor: Option<Cow<'a, str>>,
    actor_id: Option<Cow<'a, str>>,
    op: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    domain: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    /// Read the fields of a payload; `Err` only if it is not JSON.
    fn read(payload: &'a [u8]) -> serde_json::Result<Fields<'a>> {
        serde_json::from_slice(payload)
    }

    fn slot(&mut self, key: &str) -> Option<&mut Option<Cow<'a, str>>> {
        match key {
            "actor" => Some(&mut self.actor),
            "actor_id" => Some(&mut self.actor_id),
            "op" => Some(&mut self.op),
            "kind" => Some(&mut self.kind),
            "domain" => Some(&mut self.domain),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        // Keys are JSON strings, so always `Some` text here.
        while let Some(StringOrOther(key)) = map.next_key::<StringOrOther<'de>>()? {
            match key.as_deref().and_then(|k| fields.slot(k)) {
                Some(slot) => *slot = map.next_value::<StringOrOther<'de>>()?.0,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Fields<'de>, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Fields::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }

    fn visit_unit<E>(self) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
}

/// A key, or a field's value: its text if it is a JSON string (borrowed
/// from the payload when it holds no escape), `None` for any other type
/// (which is read through and ignored).
struct StringOrOther<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for StringOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringOrOtherVisitor)
    }
}

/// Reads a string, and reads through (with serde's `IgnoredAny`) any other value.
struct StringOrOtherVisitor;

impl<'de> Visitor<'de> for StringOrOtherVisitor {
    type Value = StringOrOther<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(StringOrOther(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StringOrOther(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| StringOrOther(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| StringOrOther(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(StringOrOther(None))
    }
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

    /// Records whose payload's `actor` or `actor_id` is the JSON string
    /// `actor` (compared after decoding escapes). A field of another JSON
    /// type, or a payload that is not an object, does not match.
    pub fn actor(mut self, actor: &str) -> Query {
        self.actor = Some(actor.to_string());
        self
    }

    /// Records whose payload's `op` or `kind` is the JSON string `op`
    /// (the same rules as [`actor`](Query::actor)).
    pub fn op(mut self, op: &str) -> Query {
        self.op = Some(op.to_string());
        self
    }

    /// Records whose payload's `domain` is the JSON string `domain` (the
    /// same rules as [`actor`](Query::actor)).
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

    /// Whether `r` matches; `Err` if a field filter must read a payload
    /// that is not JSON (never silently a non-match).
    fn matches(&self, r: &Record) -> Result<bool> {
        let in_range = |b: &(Bound<u64>, Bound<u64>), v: u64| {
            start(b).is_none_or(|s| v >= s) && !past_end(b, v)
        };
        if !in_range(&self.seq, r.seq())
            || !in_range(&self.lamport, r.lamport())
            || !in_range(&self.ts_us, r.ts_us())
        {
            return Ok(false);
        }
        if self.actor.is_none() && self.op.is_none() && self.domain.is_none() {
            return Ok(true);
        }
        let fields = Fields::read(r.payload()).map_err(|e| {
            Error::invalid_json(&e, &format!("record {} cannot be queried", r.seq()))
        })?;
        // A filter with two field names matches when either holds the value.
        let is = |want: &Option<String>, got: [&Option<Cow<'_, str>>; 2]| {
            want.as_deref()
                .is_none_or(|w| got.iter().any(|g| g.as_deref() == Some(w)))
        };
        Ok(is(&self.actor, [&fields.actor, &fields.actor_id])
            && is(&self.op, [&fields.op, &fields.kind])
            && is(&self.domain, [&fields.domain, &None]))
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
            } else {
                match self.query.matches(&record) {
                    Ok(true) => return Some(Ok(record)),
                    Ok(false) => {}
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::Fields;

    #[test]
    fn fields_decode_escapes_and_ignore_other_types() {
        let f = Fields::read(br#"{"d\u006fmain":"a\"b","op":[{"x":1}],"kind":"k"}"#).unwrap();
        assert_eq!(f.domain.as_deref(), Some("a\"b"));
        assert_eq!(f.op, None);
        assert_eq!(f.kind.as_deref(), Some("k"));
        // Unescaped text is borrowed from the payload, not copied.
        let f = Fields::read(br#"{"actor":"plain"}"#).unwrap();
        assert!(matches!(f.actor, Some(std::borrow::Cow::Borrowed("plain"))));
    }

    #[test]
    fn a_payload_that_is_not_json_is_an_error() {
        for bad in [&b"{\"actor\":"[..], b"{\"actor\":\"a\"} x", b"\xff"] {
            assert!(Fields::read(bad).is_err(), "{bad:?}");
        }
    }
}
