//! The op ids of a stream, for idempotent inserts. In memory an id costs
//! 16 bytes: a 64-bit prefix of its hash and the seq of the record holding
//! it, in a vector sorted by prefix (plus up to `RECENT_MAX` newer pairs
//! not yet merged in). A prefix match is confirmed against the record, so
//! two ids that share a prefix are both kept and told apart there. Per sealed segment
//! the pairs are kept in `<first_seq>.ids` (derived data: rebuilt when
//! missing, damaged or stale), so a reopen reads them instead of parsing
//! every payload; only the tail segment is parsed. A file names the exact
//! segment contents it describes (salt, first and last seq, the last
//! frame's CRC), so one left behind by a repair that cut its segment, which
//! then filled and sealed again, is stale and rebuilt, never trusted.
//! Archiving moves a segment's `.ids` with it (writing it first if it is
//! missing), so ops that were archived stay known after a reopen. The
//! file's bytes are in `format::ids`.

use crate::error::{io_err, Result};
use crate::format::frame::Kind;
use crate::format::ids;
use crate::format::segment::ids_file_name;
use crate::log::segment::Segment;
use crate::stream::Stream;

/// Newer pairs kept unsorted before a merge into the sorted vector.
const RECENT_MAX: usize = 1024;

/// The 64-bit prefix an id is filed under.
fn prefix(op_id: &str) -> u64 {
    let hex = op_id.strip_prefix("sha256:").unwrap_or(op_id);
    hex.get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            op_id.hash(&mut h);
            h.finish()
        })
}

/// The id set of one stream.
#[derive(Debug, Default)]
pub(crate) struct OpIds {
    /// (prefix, seq), sorted.
    sorted: Vec<(u64, u64)>,
    /// Newer (prefix, seq) pairs, unsorted.
    recent: Vec<(u64, u64)>,
    /// Every record below this seq is accounted for.
    covered_to: u64,
    /// Sealed segments whose `.ids` file is known good.
    persisted: Vec<u64>,
}

impl Stream {
    /// The stream's op ids, loaded on the first idempotent insert; one
    /// insert at a time holds the lock.
    pub(crate) fn op_ids(&self) -> std::sync::Arc<parking_lot::Mutex<Option<OpIds>>> {
        self.extension()
    }
}

impl OpIds {
    /// Bring the set up to date with the stream: read `.ids` files of sealed
    /// segments not yet seen, parse the records after that.
    pub fn catch_up(&mut self, stream: &Stream) -> Result<()> {
        let first = stream.first_seq();
        if self.covered_to < first {
            // Segments left the live log (archived or purged) since the set
            // last looked, or it is new: their `.ids` went to archive/ first.
            let from = self.covered_to;
            for pair in read_archived_ids(stream)
                .into_iter()
                .filter(|p| p.1 >= from)
            {
                self.add(pair);
            }
            self.covered_to = first;
        }
        let segments = stream.segments().all();
        for (i, segment) in segments.iter().enumerate() {
            let next_first = segments.get(i + 1).map(|s| s.header.first_seq);
            let Some(next_first) = next_first.filter(|_| segment.is_sealed()) else {
                break;
            };
            if segment.header.first_seq < self.covered_to || next_first <= self.covered_to {
                continue;
            }
            // Files are read in order; the first segment without one is
            // parsed, with everything after it.
            let Some(pairs) = read_ids(stream, segment) else {
                break;
            };
            for pair in pairs {
                self.add(pair);
            }
            self.persisted.push(segment.header.first_seq);
            self.covered_to = next_first;
        }
        let last = stream.last_seq();
        if self.covered_to <= last {
            for record in stream.iter_from_seq(self.covered_to) {
                let record = record?;
                if record.kind() == Kind::Data {
                    if let Some(id) = op_id_of(record.payload()) {
                        self.add((prefix(&id), record.seq()));
                    }
                }
                self.covered_to = record.seq() + 1;
                if record.seq() >= last {
                    break;
                }
            }
        }
        self.persist_sealed(stream, &segments);
        Ok(())
    }

    fn add(&mut self, pair: (u64, u64)) {
        self.recent.push(pair);
        if self.recent.len() >= RECENT_MAX {
            // Merge into a vector of exactly the size needed: no spare capacity.
            self.recent.sort_unstable();
            let mut merged = Vec::with_capacity(self.sorted.len() + self.recent.len());
            let (mut a, mut b) = (self.sorted.iter().peekable(), self.recent.iter().peekable());
            while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
                merged.push(
                    if x <= y {
                        a.next().copied()
                    } else {
                        b.next().copied()
                    }
                    .expect("peeked"),
                );
            }
            merged.extend(a.copied());
            merged.extend(b.copied());
            self.sorted = merged;
            self.recent = Vec::with_capacity(RECENT_MAX);
        }
    }

    /// Seqs of the records whose op id may be `op_id` (same prefix).
    fn candidates(&self, p: u64) -> impl Iterator<Item = u64> + '_ {
        let start = self.sorted.partition_point(|&(q, _)| q < p);
        let sorted = self.sorted[start..]
            .iter()
            .take_while(move |&&(q, _)| q == p);
        sorted
            .chain(self.recent.iter().filter(move |&&(q, _)| q == p))
            .map(|&(_, seq)| seq)
    }

    fn id_at(&self, stream: &Stream, seq: u64) -> Result<Option<String>> {
        Ok(stream.get(seq)?.and_then(|r| op_id_of(r.payload())))
    }

    /// The seq of the record holding `op_id`, if the stream has it.
    pub fn lookup(&self, stream: &Stream, op_id: &str) -> Result<Option<u64>> {
        for seq in self.candidates(prefix(op_id)) {
            if self.id_at(stream, seq)?.as_deref() == Some(op_id) {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Write `.ids` for sealed segments that have none (best effort: it is
    /// derived data, rebuilt by parsing when missing).
    fn persist_sealed(&mut self, stream: &Stream, segments: &[std::sync::Arc<Segment>]) {
        if !stream.is_writable() {
            return;
        }
        for (i, segment) in segments.iter().enumerate() {
            let first = segment.header.first_seq;
            let Some(next) = segments.get(i + 1).map(|s| s.header.first_seq) else {
                break;
            };
            if !segment.is_sealed() || self.persisted.contains(&first) || next > self.covered_to {
                continue;
            }
            let mut pairs: Vec<(u64, u64)> = self
                .sorted
                .iter()
                .chain(&self.recent)
                .filter(|&&(_, s)| s >= first && s < next)
                .copied()
                .collect();
            pairs.sort_unstable_by_key(|&(_, s)| s);
            if write_ids(stream, segment, &pairs).is_some() {
                self.persisted.push(first);
            }
        }
    }
}

/// The op id in a payload, without parsing the rest of it.
pub(crate) fn op_id_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        op_id: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Id>(payload)
        .ok()?
        .op_id
        .map(|c| c.into_owned())
}

/// The pairs of `segment`'s `.ids` file, if it describes exactly this
/// segment's contents.
fn read_ids(stream: &Stream, segment: &Segment) -> Option<Vec<(u64, u64)>> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    let len_max = ids::len_max(segment.end());
    let bytes = crate::io::backend::read_small_file(&**stream.backend(), &path, len_max)?;
    let (describes, pairs) = ids::decode(&bytes)?;
    (describes == described(segment)).then_some(pairs)
}

/// The pairs of every `.ids` file in `archive/` (moved there with their
/// segments, which are sealed for good), for ops before the live log.
fn read_archived_ids(stream: &Stream) -> Vec<(u64, u64)> {
    let dir = stream.dir().join(crate::format::segment::ARCHIVE_DIR);
    let live_from = stream.first_seq();
    let backend = stream.backend();
    let names = backend.list_dir(&dir).unwrap_or_default();
    let mut pairs = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".ids")) {
        // No segment is longer than the format allows: neither is its file.
        let len_max = ids::len_max(crate::format::segment::SEGMENT_BYTES_MAX_LIMIT);
        let bytes = crate::io::backend::read_small_file(&**backend, &dir.join(name), len_max);
        if let Some((_, found)) = bytes.as_deref().and_then(ids::decode) {
            pairs.extend(found.into_iter().filter(|&(_, s)| s < live_from));
        }
    }
    pairs
}

/// Before `segment` (sealed) is archived: make sure its `.ids` file exists,
/// describes it and is durable, parsing the segment if need be, so that the
/// ids of its ops stay known once it leaves the live log.
pub(crate) fn persist_before_archive(stream: &Stream, segment: &Segment) -> Result<()> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    if read_ids(stream, segment).is_none() {
        let pairs = pairs_of(stream, segment)?;
        let _ = stream.backend().remove_file(&path);
        return crate::io::backend::write_new_file(
            &**stream.backend(),
            &path,
            &encode_ids(segment, &pairs),
        );
    }
    let file = stream
        .backend()
        .open(&path, crate::io::backend::OpenMode::Read)
        .map_err(io_err("open", &path))?;
    file.sync_data().map_err(io_err("fdatasync", &path))
}

/// The (prefix, seq) pairs of the ops in the sealed `segment`, parsed from
/// its records.
fn pairs_of(stream: &Stream, segment: &Segment) -> Result<Vec<(u64, u64)>> {
    let last = segment.published().last_seq;
    let mut pairs = Vec::new();
    for record in stream.iter_from_seq(segment.header.first_seq) {
        let record = record?;
        if record.seq() > last {
            break;
        }
        if record.kind() == Kind::Data {
            pairs.extend(op_id_of(record.payload()).map(|id| (prefix(&id), record.seq())));
        }
    }
    Ok(pairs)
}

/// What is wrong with the sealed `segment`'s `.ids` file, if it has one:
/// it describes other contents (or is damaged), or lists other ops.
pub(crate) fn ids_file_problem(stream: &Stream, segment: &Segment) -> Result<Option<&'static str>> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    if matches!(stream.backend().open(&path, crate::io::backend::OpenMode::Read),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(None);
    }
    let Some(mut listed) = read_ids(stream, segment) else {
        return Ok(Some("damaged, or describes other segment contents"));
    };
    let mut parsed = pairs_of(stream, segment)?;
    listed.sort_unstable();
    parsed.sort_unstable();
    Ok((listed != parsed).then_some("lists other ops than its segment holds"))
}

fn write_ids(stream: &Stream, segment: &Segment, pairs: &[(u64, u64)]) -> Option<()> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    crate::log::index::write_file(&**stream.backend(), &path, &encode_ids(segment, pairs)).map(drop)
}

fn encode_ids(segment: &Segment, pairs: &[(u64, u64)]) -> Vec<u8> {
    ids::encode(&described(segment), pairs)
}

/// What a `.ids` file of `segment` must say it describes.
fn described(segment: &Segment) -> ids::Describes {
    let tip = segment.published();
    ids::Describes {
        salt: segment.header.salt,
        first_seq: segment.header.first_seq,
        last_seq: tip.last_seq,
        last_crc: tip.last_crc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_merge_sorted_without_spare_room_and_shared_prefixes_keep_every_seq() {
        let mut ids = OpIds::default();
        for seq in 0..3000u64 {
            ids.add((seq % 700, seq));
        }
        assert!(ids.sorted.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            ids.sorted.capacity(),
            ids.sorted.len(),
            "16 bytes per id, no slack"
        );
        assert_eq!(ids.sorted.len() + ids.recent.len(), 3000);
        let mut found: Vec<u64> = ids.candidates(5).collect();
        found.sort_unstable();
        assert_eq!(found, vec![5, 705, 1405, 2105, 2805]);
        assert_eq!(prefix("sha256:00000000000000ff0000"), 0xff);
    }
}
