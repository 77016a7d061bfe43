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
//! missing), so ops that were archived stay known after a reopen.
//!
//! ```text
//! .ids file: magic b"LAMPIDS\n" | version u32 = 2 | salt u32 | first_seq u64 | last_seq u64
//!            | last_crc u32 | reserved u32 = 0 | count u64
//!            | count x (prefix u64, seq u64) | crc u32 (CRC-32 of everything before it)
//! ```

use crate::error::{io_err, Result};
use crate::format::frame::Kind;
use crate::log::segment::Segment;
use crate::stream::Stream;

const IDS_MAGIC: [u8; 8] = *b"LAMPIDS\n";
const IDS_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4 + 8;
const PAIR_LEN: usize = 16;
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

pub(crate) fn ids_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.ids")
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
        if self.covered_to == 0 {
            self.covered_to = stream.first_seq();
            for pair in read_archived_ids(stream) {
                self.add(pair);
            }
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
fn op_id_of(payload: &[u8]) -> Option<String> {
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

/// What a `.ids` file says it describes, and its pairs.
struct IdsFile {
    salt: u32,
    first_seq: u64,
    last_seq: u64,
    last_crc: u32,
    pairs: Vec<(u64, u64)>,
}

/// Decode a `.ids` file, checking its framing and checksum (not yet that
/// it describes any particular segment).
fn decode_ids(bytes: &[u8]) -> Option<IdsFile> {
    let len = bytes.len();
    if len < HEADER_LEN + 4 || (len - HEADER_LEN - 4) % PAIR_LEN != 0 {
        return None;
    }
    let (body, crc) = bytes.split_at(len - 4);
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let framing_ok = body[..8] == IDS_MAGIC
        && u32_at(body, 8) == IDS_VERSION
        && u32_at(body, 36) == 0
        && u64_at(body, 40) as usize == (len - HEADER_LEN - 4) / PAIR_LEN
        && crc32fast::hash(body) == u32_at(crc, 0);
    if !framing_ok {
        return None;
    }
    let file = IdsFile {
        salt: u32_at(body, 12),
        first_seq: u64_at(body, 16),
        last_seq: u64_at(body, 24),
        last_crc: u32_at(body, 32),
        pairs: body[HEADER_LEN..]
            .chunks_exact(PAIR_LEN)
            .map(|c| (u64_at(c, 0), u64_at(c, 8)))
            .collect(),
    };
    let in_range = |&(_, s): &(u64, u64)| s >= file.first_seq && s <= file.last_seq;
    file.pairs.iter().all(in_range).then_some(file)
}

/// The pairs of `segment`'s `.ids` file, if it describes exactly this
/// segment's contents.
fn read_ids(stream: &Stream, segment: &Segment) -> Option<Vec<(u64, u64)>> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    // A segment holds at most one record per smallest frame.
    let records_max = segment.end() / crate::format::frame::frame_len(1) as u64 + 1;
    let len_max = (HEADER_LEN + 4) as u64 + records_max * PAIR_LEN as u64;
    let bytes = crate::io::backend::read_small_file(&**stream.backend(), &path, len_max)?;
    let file = decode_ids(&bytes)?;
    let tip = segment.published();
    let describes = file.salt == segment.header.salt
        && file.first_seq == segment.header.first_seq
        && file.last_seq == tip.last_seq
        && file.last_crc == tip.last_crc;
    describes.then_some(file.pairs)
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
        let bytes = crate::io::backend::read_small_file(&**backend, &dir.join(name), 1 << 32);
        if let Some(file) = bytes.as_deref().and_then(decode_ids) {
            pairs.extend(file.pairs.into_iter().filter(|&(_, s)| s < live_from));
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

fn write_ids(stream: &Stream, segment: &Segment, pairs: &[(u64, u64)]) -> Option<()> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    crate::log::index::write_file(&**stream.backend(), &path, &encode_ids(segment, pairs)).map(drop)
}

fn encode_ids(segment: &Segment, pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + pairs.len() * PAIR_LEN + 4);
    bytes.extend_from_slice(&IDS_MAGIC);
    bytes.extend_from_slice(&IDS_VERSION.to_le_bytes());
    bytes.extend_from_slice(&segment.header.salt.to_le_bytes());
    bytes.extend_from_slice(&segment.header.first_seq.to_le_bytes());
    let tip = segment.published();
    bytes.extend_from_slice(&tip.last_seq.to_le_bytes());
    bytes.extend_from_slice(&tip.last_crc.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    debug_assert_eq!(bytes.len(), HEADER_LEN);
    for &(p, s) in pairs {
        bytes.extend_from_slice(&p.to_le_bytes());
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
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
