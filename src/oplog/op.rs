//! Typed operations: the seeds' `OpEntry`, content-addressed and stamped
//! with the stream's Lamport clock, over a [`Stream`].
//!
//! ```
//! use lamplog::op::{NewOp, OpLog};
//! # let dir = tempfile::tempdir().unwrap();
//! # let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
//! let log = OpLog::new(store.stream("session-1")?);
//! let op = log.append_op(NewOp::new("agent-7", "music", r#"{"insert_note":{"pitch":60}}"#)?, lamplog::Durability::Sync)?;
//! assert!(op.op_id.starts_with("sha256:"));
//! log.checkpoint("snap-1")?;
//! let delta = log.ops_since_checkpoint("music")?;
//! assert!(delta.ops.is_empty());
//! # Ok::<(), lamplog::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::frame::Kind;
use crate::oplog::checkpoint::Checkpoint;
use crate::options::Durability;
use crate::stream::Stream;

/// One operation, as stored (one JSON object per record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpEntry {
    /// `sha256:<hex>` of the canonical encoding of every other field.
    pub op_id: String,
    /// Agent or human identity.
    pub actor_id: String,
    /// The record's Lamport timestamp.
    pub lamport_ts: u64,
    /// Causal dependencies (empty for a root entry).
    pub parent_op_ids: Vec<String>,
    /// Domain tag ("music", "code", ...).
    pub domain: String,
    /// The domain's operation, any JSON, stored unchanged.
    pub domain_op: Box<RawValue>,
    /// Wall clock of the append, RFC 3339 (informational).
    pub created_at: String,
    /// Coordination intent linkage (empty if none).
    pub intent_id: String,
    /// Coordination reservation linkage (empty if none).
    pub reservation_id: String,
}

impl PartialEq for OpEntry {
    fn eq(&self, other: &OpEntry) -> bool {
        self.op_id == other.op_id && self.canonical() == other.canonical()
    }
}

impl OpEntry {
    /// The canonical encoding the op id hashes: a compact JSON array of the
    /// other fields in a fixed order, `domain_op` with its object keys
    /// sorted (so that formatting does not change the id).
    fn canonical(&self) -> Vec<u8> {
        let domain_op: serde_json::Value =
            serde_json::from_str(self.domain_op.get()).unwrap_or(serde_json::Value::Null);
        let fields = serde_json::json!([
            self.actor_id,
            self.lamport_ts,
            self.parent_op_ids,
            self.domain,
            domain_op,
            self.created_at,
            self.intent_id,
            self.reservation_id,
        ]);
        serde_json::to_vec(&fields).expect("JSON values serialise")
    }

    /// The content address of this op: `sha256:<hex>` of its canonical encoding.
    pub fn compute_id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.canonical()))
    }
}

/// The lowercase hex SHA-256 of `bytes` (op ids, redactions).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a caller provides for a new op; [`OpLog::append_op`] fills in the
/// Lamport timestamp, the wall clock and the id.
#[derive(Debug, Clone)]
pub struct NewOp {
    /// Agent or human identity.
    pub actor_id: String,
    /// Causal dependencies.
    pub parent_op_ids: Vec<String>,
    /// The highest Lamport timestamp among the ops this one depends on (0
    /// if none): the op is stamped after it.
    pub observed_lamport: u64,
    /// Domain tag.
    pub domain: String,
    /// The domain's operation.
    pub domain_op: Box<RawValue>,
    /// Coordination intent linkage (empty if none).
    pub intent_id: String,
    /// Coordination reservation linkage (empty if none).
    pub reservation_id: String,
}

impl NewOp {
    /// A root op by `actor_id` in `domain`; `domain_op` must be JSON.
    pub fn new(actor_id: &str, domain: &str, domain_op: &str) -> Result<NewOp> {
        let domain_op = RawValue::from_string(domain_op.to_string())
            .map_err(|e| Error::invalid_json(&e, ""))?;
        Ok(NewOp {
            actor_id: actor_id.to_string(),
            parent_op_ids: Vec::new(),
            observed_lamport: 0,
            domain: domain.to_string(),
            domain_op,
            intent_id: String::new(),
            reservation_id: String::new(),
        })
    }
}

/// What [`OpLog::insert_op`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inserted {
    /// Seq of the record holding the op.
    pub seq: u64,
    /// That record's Lamport timestamp.
    pub lamport: u64,
    /// Whether this call wrote it (false: it was already there).
    pub inserted: bool,
}

/// One domain's ops since the latest checkpoint: what a domain plugin
/// collapses into its own structured delta.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredDelta {
    /// The domain.
    pub domain: String,
    /// Its ops, in log order.
    pub ops: Vec<OpEntry>,
    /// Lamport timestamps of the first and last op, if any.
    pub lamport_range: Option<(u64, u64)>,
}

/// Typed ops over one stream (a session).
#[derive(Debug, Clone)]
pub struct OpLog {
    stream: Stream,
}

impl OpLog {
    /// Typed ops over `stream`.
    pub fn new(stream: Stream) -> OpLog {
        OpLog { stream }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Append an op: stamp it with the stream's next Lamport timestamp
    /// (after `observed_lamport`), the wall clock, and its content id.
    pub fn append_op(&self, op: NewOp, durability: Durability) -> Result<OpEntry> {
        let record_bytes_max = self.stream.record_bytes_max();
        let created_at = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let log = self.stream.log()?;
        let observed = op.observed_lamport;
        let (_, entry) = log.append_built(
            Kind::Data,
            observed,
            durability == Durability::Sync,
            |_, lamport| {
                let mut entry = OpEntry {
                    op_id: String::new(),
                    actor_id: op.actor_id,
                    lamport_ts: lamport,
                    parent_op_ids: op.parent_op_ids,
                    domain: op.domain,
                    domain_op: op.domain_op,
                    created_at,
                    intent_id: op.intent_id,
                    reservation_id: op.reservation_id,
                };
                entry.op_id = entry.compute_id();
                let payload = serde_json::to_vec(&entry).expect("an op serialises");
                if payload.len() > record_bytes_max {
                    return Err(Error::RecordTooLarge {
                        len: payload.len(),
                        max: record_bytes_max,
                    });
                }
                Ok((payload, entry))
            },
        )?;
        Ok(entry)
    }

    /// Insert an op that already has its id (re-saved, or taken in from
    /// another actor) unless the stream has it: idempotent. A new op is
    /// appended unchanged, stamped after its own `lamport_ts`; an op already
    /// present is not written again, and its existing seq and Lamport are
    /// returned. An op that was archived is [`Error::Archived`]: it is in
    /// the stream's history, and is never written a second time. The id
    /// set costs about 16 bytes per op in memory and is kept per segment on
    /// disk (archived segments' too), so a reopen does not parse every
    /// payload.
    pub fn insert_op(&self, op: &OpEntry, durability: Durability) -> Result<Inserted> {
        let expected = op.compute_id();
        if op.op_id != expected {
            return Err(Error::OpIdMismatch {
                op_id: op.op_id.clone(),
                expected,
            });
        }
        self.stream.log()?;
        // One insert at a time per stream: the check and the append must not interleave.
        let ids = self.stream.op_ids();
        let mut guard = ids.lock();
        let ids = guard.get_or_insert_with(Default::default);
        ids.catch_up(&self.stream)?;
        if let Some(seq) = ids.lookup(&self.stream, &op.op_id)? {
            let record = self
                .stream
                .get(seq)?
                .expect("lookup read this record a moment ago");
            if durability == Durability::Sync {
                self.stream.sync()?;
            }
            return Ok(Inserted {
                seq,
                lamport: record.lamport(),
                inserted: false,
            });
        }
        let payload = serde_json::to_vec(op).expect("an op serialises");
        let appended = self
            .stream
            .append_observed(payload, op.lamport_ts, durability)?;
        ids.catch_up(&self.stream)?;
        Ok(Inserted {
            seq: appended.seq,
            lamport: appended.lamport,
            inserted: true,
        })
    }

    /// Every op, in log order (checkpoint records are skipped; a data record
    /// that is not an op is an error naming its seq).
    pub fn ops(&self) -> impl Iterator<Item = Result<OpEntry>> + '_ {
        parse_ops(self.stream.iter())
    }

    /// Crystallise every op so far under `snapshot_id`.
    pub fn checkpoint(&self, snapshot_id: &str) -> Result<Checkpoint> {
        self.stream.checkpoint(snapshot_id)
    }

    /// The ops of `domain` since the latest checkpoint, found through the
    /// index: the cost does not depend on the history before it.
    pub fn ops_since_checkpoint(&self, domain: &str) -> Result<StructuredDelta> {
        let mut ops = Vec::new();
        for op in parse_ops(self.stream.replay_since_checkpoint()?) {
            let op = op?;
            if op.domain == domain {
                ops.push(op);
            }
        }
        let lamport_range = ops
            .first()
            .zip(ops.last())
            .map(|(a, b)| (a.lamport_ts, b.lamport_ts));
        Ok(StructuredDelta {
            domain: domain.to_string(),
            ops,
            lamport_range,
        })
    }
}

fn parse_ops(
    records: impl Iterator<Item = Result<crate::log::reader::Record>>,
) -> impl Iterator<Item = Result<OpEntry>> {
    records.filter_map(|record| match record {
        Err(e) => Some(Err(e)),
        // A redacted op's content is gone: replay skips it (its id stays known).
        Ok(r) if r.kind() != Kind::Data || r.is_redacted() => None,
        Ok(r) => Some(
            serde_json::from_slice::<OpEntry>(r.payload())
                .map_err(|e| Error::invalid_json(&e, &format!("record {} is not an op", r.seq()))),
        ),
    })
}
