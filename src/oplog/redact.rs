//! Redaction: removing one record's content for good while the log stays
//! verifiable (docs/FORMAT.md, "Redaction").
//!
//! The record's frame is replaced by a *redacted* frame of the same length:
//! same seq, Lamport, wall clock and place in the chain, zeros for payload,
//! and the CRC it had before in its `durable_end` field, which the next
//! frame chains to. What reads return instead (the reason, the SHA-256 of
//! the original payload, an op's id) is in `redactions.json`, written
//! before the frame is replaced; a writable open finishes a redaction that
//! a crash cut short. The segment is replaced whole (written beside it,
//! renamed over it), so only sealed segments are redacted: a record in the
//! segment being written first seals it.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};
use crate::format::frame::{self, FrameMeta, Kind, FRAME_HEADER_LEN};
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::io::backend::{read_small_file, replace_file, Backend, OpenMode};
use crate::log::clock::now_us;
use crate::log::quarantine::QUARANTINE_DIR;
use crate::log::replace::{replace_segment, Patch};
use crate::log::segment::Segment;
use crate::oplog::op::sha256_hex;
use crate::oplog::op_ids::op_id_of;
use crate::stream::Stream;

/// The file, in a stream's folder, that says what reads of its redacted
/// records return.
pub const REDACTIONS_FILE: &str = "redactions.json";

/// The longest reason a redaction takes, in bytes.
pub const REASON_LEN_MAX: usize = 1024;

/// `redactions.json` is small; a larger file is not one lamplog wrote.
const REDACTIONS_LEN_MAX: u64 = 64 << 20;

/// One redaction, as `redactions.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    lamport: u64,
    reason: String,
    /// Lowercase hex SHA-256 of the original payload.
    sha256: String,
    /// The op's id, when the payload was an op (`lamplog::op`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    op_id: Option<String>,
    redacted_at_us: u64,
}

/// What [`Stream::redact`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redaction {
    /// The record's seq.
    pub seq: u64,
    /// The record's Lamport timestamp, which it keeps.
    pub lamport: u64,
    /// Lowercase hex SHA-256 of the payload that was removed.
    pub sha256: String,
    /// What reads of the record return from now on.
    pub stub: Bytes,
}

impl Stream {
    /// Remove the payload of record `seq` for good: its bytes are replaced
    /// by zeros on disk (synced), copies of them in the stream's
    /// `quarantine/` are zeroed too, and reads return the stub
    /// `{"redacted":true,"reason":..,"sha256":..}` (with `op_id` and
    /// `lamport_ts` for an op, which keeps both). Every other record stays
    /// byte for byte, and [`verify`](Stream::verify) still checks the whole
    /// chain. Redacting a redacted record again changes nothing.
    ///
    /// A record in the segment being written first seals that segment (the
    /// next append starts a new one). Reads that hold the record from
    /// before keep their copy until they drop it; copies made elsewhere (an
    /// export, a merge into another stream) are not touched. Note that the
    /// SHA-256 lets anyone who guesses a short payload confirm the guess.
    ///
    /// Errors: [`Error::CannotRedact`] for a seq the live log does not hold
    /// as a data record or a reason over [`REASON_LEN_MAX`] bytes;
    /// [`Error::Archived`], [`Error::Purged`], [`Error::Lost`] as for `get`.
    pub fn redact(&self, seq: u64, reason: &str) -> Result<Redaction> {
        self.check_writable()?;
        let refuse = |why: String| Error::CannotRedact {
            stream: self.name().to_string(),
            seq,
            why,
        };
        if reason.len() > REASON_LEN_MAX {
            return Err(refuse(format!(
                "the reason is {} bytes, at most {REASON_LEN_MAX}",
                reason.len()
            )));
        }
        // One derived-file writer at a time: archiving and purging too.
        let derived = self.derived();
        let _derived = derived.lock();
        let record = self
            .get(seq)?
            .ok_or_else(|| refuse(format!("the stream's last seq is {}", self.last_seq())))?;
        let mut entries = read_entries(&**self.backend(), self.dir())
            .ok_or_else(|| refuse(format!("{REDACTIONS_FILE} is damaged")))?;
        let found = entries.iter().position(|e| e.seq == seq);
        if record.is_redacted() {
            let entry = found.map(|i| entries[i].clone());
            return Ok(Redaction {
                seq,
                lamport: record.lamport(),
                sha256: entry.map(|e| e.sha256).unwrap_or_default(),
                stub: record.into_payload(),
            });
        }
        if record.kind() != Kind::Data {
            return Err(refuse(
                "a checkpoint record holds lamplog's own data".into(),
            ));
        }
        let sha256 = sha256_hex(record.payload());
        // A redaction a crash cut short is finished as it was recorded.
        let entry = match found {
            Some(i) if entries[i].sha256 == sha256 => entries[i].clone(),
            found => {
                let entry = Entry {
                    seq,
                    lamport: record.lamport(),
                    reason: reason.to_string(),
                    sha256: sha256.clone(),
                    op_id: op_id_of(record.payload()),
                    redacted_at_us: now_us(),
                };
                match found {
                    Some(i) => entries[i] = entry.clone(),
                    None => entries.push(entry.clone()),
                }
                write_entries(&**self.backend(), self.dir(), &entries)?;
                entry
            }
        };
        let stub = stub(&entry);
        self.segments().set_redaction_stub(seq, stub.clone());
        let segment = self
            .segments()
            .for_seq(seq)
            .ok_or_else(|| self.segments().archived(seq))?;
        if !segment.is_sealed() {
            self.log()?.seal_active()?;
        }
        // Quarantine first: a crash before the frame is replaced leaves a
        // redaction that the next open finishes, scrubbing again.
        scrub_quarantine(&**self.backend(), self.dir(), record.payload())?;
        redact_frame(&**self.backend(), &segment, seq)?;
        Ok(Redaction {
            seq,
            lamport: record.lamport(),
            sha256,
            stub,
        })
    }

    /// Load what reads of redacted records return, and (a writable store)
    /// finish the redactions a crash cut short.
    pub(crate) fn load_redactions(&self) -> Result<()> {
        // A damaged file: reads of redacted records say only that they were.
        let entries = read_entries(&**self.backend(), self.dir()).unwrap_or_default();
        for entry in &entries {
            self.segments().set_redaction_stub(entry.seq, stub(entry));
        }
        if !self.is_writable() {
            return Ok(());
        }
        for entry in &entries {
            match self.get(entry.seq) {
                Ok(Some(record)) if !record.is_redacted() => {
                    self.redact(entry.seq, &entry.reason)?;
                }
                // Redacted, or gone since (archived, purged, lost).
                _ => {}
            }
        }
        Ok(())
    }
}

/// The seqs whose redaction `redactions.json` records but the log does
/// not show yet (a crash cut it short; a writable open finishes it).
pub(crate) fn pending(stream: &Stream) -> Vec<u64> {
    let entries = read_entries(&**stream.backend(), stream.dir()).unwrap_or_default();
    let mut pending = Vec::new();
    for entry in entries {
        if matches!(stream.get(entry.seq), Ok(Some(r)) if !r.is_redacted()) {
            pending.push(entry.seq);
        }
    }
    pending
}

/// Replace the frame of record `seq` in the sealed `segment` by its
/// redacted form, durably.
fn redact_frame(backend: &dyn Backend, segment: &Segment, seq: u64) -> Result<()> {
    let end = segment.end();
    let bytes = segment.bytes(end)?;
    let salt = segment.header.salt;
    let mut offset = segment
        .index
        .read()
        .seek_seq(seq)
        .map_or(SEGMENT_HEADER_LEN as u64, |e| e.offset);
    let f = loop {
        let f = segment
            .decode_at(&bytes, offset, end)
            .map_err(|e| segment.corruption(offset, crate::log::segment::corruption_kind(e)))?;
        if f.meta.kind.is_record() && f.meta.seq == seq {
            break f;
        }
        offset += f.len_on_disk() as u64;
    };
    if f.meta.kind == Kind::Redacted {
        return Ok(());
    }
    let meta = FrameMeta {
        kind: Kind::Redacted,
        durable_end: f.crc,
        ..f.meta
    };
    let mut new = Vec::with_capacity(f.len_on_disk());
    frame::encode(&mut new, &meta, &vec![0; f.payload.len()], salt);
    let patch = Patch {
        at: offset,
        bytes: &new,
    };
    replace_segment(backend, &segment.path, &bytes, end, &[patch])?;
    drop(bytes);
    segment.forget_view();
    Ok(())
}

/// Zero every copy of `payload` as a frame's payload in the stream's
/// quarantine files (a torn tail cut before the record was written again, a
/// repair's copy). Only frame payloads: a short payload (`1`) is not
/// zeroed wherever its bytes happen to occur.
fn scrub_quarantine(backend: &dyn Backend, stream_dir: &Path, payload: &[u8]) -> Result<()> {
    let dir = stream_dir.join(QUARANTINE_DIR);
    let Ok(names) = backend.list_dir(&dir) else {
        return Ok(());
    };
    for name in names {
        let path = dir.join(&name);
        let Ok(file) = backend.open(&path, OpenMode::Read) else {
            continue;
        };
        let len = file.len().map_err(io_err("stat", &path))?;
        let bytes = file.map(len).map_err(io_err("mmap", &path))?;
        let zeros = vec![0; payload.len()];
        let patches: Vec<Patch<'_>> = frame_copies(&bytes, payload)
            .map(|at| Patch {
                at: at as u64,
                bytes: &zeros,
            })
            .collect();
        if !patches.is_empty() {
            replace_segment(backend, &path, &bytes, len, &patches)?;
        }
    }
    Ok(())
}

/// The offsets of every copy of `payload` in `bytes` that is a frame's
/// payload: right after a frame header whose length field is its length.
fn frame_copies<'a>(bytes: &'a [u8], payload: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let n = payload.len();
    let len_field = (n as u32).to_le_bytes();
    (FRAME_HEADER_LEN..bytes.len().saturating_sub(n.saturating_sub(1))).filter(move |&at| {
        bytes[at..at + n] == *payload && bytes[at - FRAME_HEADER_LEN..][..4] == len_field
    })
}

/// What reads of a redacted record return.
fn stub(entry: &Entry) -> Bytes {
    #[derive(Serialize)]
    struct Stub<'a> {
        redacted: bool,
        reason: &'a str,
        sha256: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        op_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        lamport_ts: Option<u64>,
    }
    let stub = Stub {
        redacted: true,
        reason: &entry.reason,
        sha256: &entry.sha256,
        op_id: entry.op_id.as_deref(),
        lamport_ts: entry.op_id.as_ref().map(|_| entry.lamport),
    };
    Bytes::from(serde_json::to_vec(&stub).expect("strings and integers serialise"))
}

/// The stream's redactions; `None` if the file is there but damaged.
fn read_entries(backend: &dyn Backend, stream_dir: &Path) -> Option<Vec<Entry>> {
    let path = stream_dir.join(REDACTIONS_FILE);
    if matches!(backend.open(&path, OpenMode::Read), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return Some(Vec::new());
    }
    let bytes = read_small_file(backend, &path, REDACTIONS_LEN_MAX)?;
    serde_json::from_slice(&bytes).ok()
}

fn write_entries(backend: &dyn Backend, stream_dir: &Path, entries: &[Entry]) -> Result<()> {
    let json = serde_json::to_vec_pretty(entries).map_err(std::io::Error::from);
    let json = json.map_err(io_err("encode", &stream_dir.join(REDACTIONS_FILE)))?;
    replace_file(backend, stream_dir, REDACTIONS_FILE, &json)
}
