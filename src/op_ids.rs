//! The op ids of a stream, for idempotent inserts. In memory an id costs
//! 16 bytes: a 64-bit prefix of its hash, and the seq of the record holding
//! it (a prefix match is confirmed against the record). Per sealed segment
//! the pairs are kept in `<first_seq>.ids` (derived data: rebuilt when
//! missing or damaged), so a reopen reads them instead of parsing every
//! payload; only the tail segment is parsed.
//!
//! ```text
//! .ids file: magic b"LAMPIDS\n" | version u32 = 1 | salt u32 | first_seq u64 | count u64
//!            | count x (prefix u64, seq u64) | crc u32 (CRC-32 of everything before it)
//! ```

use std::collections::HashMap;

use crate::backend::OpenMode;
use crate::error::Result;
use crate::frame::Kind;
use crate::segment::Segment;
use crate::stream::Stream;

const IDS_MAGIC: [u8; 8] = *b"LAMPIDS\n";
const IDS_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8;
const PAIR_LEN: usize = 16;

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

fn ids_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.ids")
}

/// The id set of one stream.
#[derive(Debug, Default)]
pub(crate) struct OpIds {
    by_prefix: HashMap<u64, u64>,
    /// Ids whose prefix another id took first (confirmed collisions).
    collisions: Vec<(String, u64)>,
    /// Every record below this seq is accounted for.
    covered_to: u64,
    /// Sealed segments whose `.ids` file is known good.
    persisted: Vec<u64>,
}

impl OpIds {
    /// Bring the set up to date with the stream: read `.ids` files of sealed
    /// segments not yet seen, parse the records after that.
    pub fn catch_up(&mut self, stream: &Stream) -> Result<()> {
        if self.covered_to == 0 {
            self.covered_to = stream.first_seq();
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
            for (p, seq) in pairs {
                self.by_prefix.entry(p).or_insert(seq);
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
                        self.file(stream, &id, record.seq())?;
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

    fn file(&mut self, stream: &Stream, op_id: &str, seq: u64) -> Result<()> {
        let p = prefix(op_id);
        match self.by_prefix.get(&p) {
            None => {
                self.by_prefix.insert(p, seq);
            }
            Some(&held) => {
                if self.id_at(stream, held)?.as_deref() != Some(op_id)
                    && !self.collisions.iter().any(|(id, _)| id == op_id)
                {
                    self.collisions.push((op_id.to_string(), seq));
                }
            }
        }
        Ok(())
    }

    fn id_at(&self, stream: &Stream, seq: u64) -> Result<Option<String>> {
        Ok(stream.get(seq)?.and_then(|r| op_id_of(r.payload())))
    }

    /// The seq of the record holding `op_id`, if the stream has it.
    pub fn lookup(&self, stream: &Stream, op_id: &str) -> Result<Option<u64>> {
        if let Some(&seq) = self.by_prefix.get(&prefix(op_id)) {
            if self.id_at(stream, seq)?.as_deref() == Some(op_id) {
                return Ok(Some(seq));
            }
        }
        Ok(self
            .collisions
            .iter()
            .find(|(id, _)| id == op_id)
            .map(|&(_, seq)| seq))
    }

    /// Write `.ids` for sealed segments that have none (best effort: it is
    /// derived data, rebuilt by parsing when missing).
    fn persist_sealed(&mut self, stream: &Stream, segments: &[std::sync::Arc<Segment>]) {
        if stream.log().is_err() {
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
                .by_prefix
                .iter()
                .filter(|&(_, &s)| s >= first && s < next)
                .map(|(&p, &s)| (p, s))
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

fn read_ids(stream: &Stream, segment: &Segment) -> Option<Vec<(u64, u64)>> {
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    let file = stream.backend().open(&path, OpenMode::Read).ok()?;
    let len = usize::try_from(file.len().ok()?).ok()?;
    if len < HEADER_LEN + 4 || (len - HEADER_LEN - 4) % PAIR_LEN != 0 {
        return None;
    }
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let (body, crc) = bytes.split_at(len - 4);
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let header_ok = body[..8] == IDS_MAGIC
        && u32_at(body, 8) == IDS_VERSION
        && u32_at(body, 12) == segment.header.salt
        && u64_at(body, 16) == segment.header.first_seq
        && u64_at(body, 24) as usize == (len - HEADER_LEN - 4) / PAIR_LEN
        && crc32fast::hash(body) == u32_at(crc, 0);
    if !header_ok {
        return None;
    }
    let last = segment.published().last_seq;
    let pairs: Vec<(u64, u64)> = body[HEADER_LEN..]
        .chunks_exact(PAIR_LEN)
        .map(|c| (u64_at(c, 0), u64_at(c, 8)))
        .collect();
    pairs
        .iter()
        .all(|&(_, s)| s >= segment.header.first_seq && s <= last)
        .then_some(pairs)
}

fn write_ids(stream: &Stream, segment: &Segment, pairs: &[(u64, u64)]) -> Option<()> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + pairs.len() * PAIR_LEN + 4);
    bytes.extend_from_slice(&IDS_MAGIC);
    bytes.extend_from_slice(&IDS_VERSION.to_le_bytes());
    bytes.extend_from_slice(&segment.header.salt.to_le_bytes());
    bytes.extend_from_slice(&segment.header.first_seq.to_le_bytes());
    bytes.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for &(p, s) in pairs {
        bytes.extend_from_slice(&p.to_le_bytes());
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let path = stream.dir().join(ids_file_name(segment.header.first_seq));
    crate::index::write_file(&**stream.backend(), &path, &bytes).map(drop)
}
