//! Checkpoints: a record that crystallises everything before it under a
//! snapshot id, and `checkpoint.json`, a derived view of the latest one
//! that is replaced atomically and rebuilt from the log when it is missing,
//! stale or damaged.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::frame::Kind;
use crate::io::backend::Backend;
use crate::log::reader::{Iter, Record};
use crate::stream::Stream;

/// Name of the derived file beside a stream's segments.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// Longest snapshot id accepted, in bytes.
pub const SNAPSHOT_ID_LEN_MAX: usize = 1024;

/// A checkpoint: the records up to `seq` (Lamport `lamport`) of `stream`
/// are crystallised into snapshot `snapshot_id`. The checkpoint record
/// itself has seq `record_seq` (= `seq + 1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The stream whose log holds the checkpoint record.
    pub stream: String,
    /// The caller's name for the snapshot.
    pub snapshot_id: String,
    /// Seq of the last record the checkpoint covers (0 if none).
    pub seq: u64,
    /// Lamport timestamp of that record.
    pub lamport: u64,
    /// Seq of the checkpoint record.
    pub record_seq: u64,
}

/// The checkpoint record's payload: what it covers, as JSON. The id is a
/// `Cow`: it borrows from the payload unless it holds a JSON escape, which
/// only an owned copy can hold unescaped (a `&str` field refuses it).
#[derive(Serialize, Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    snapshot_id: Cow<'a, str>,
    seq: u64,
    lamport: u64,
}

impl Checkpoint {
    /// The payload of the checkpoint record.
    pub(crate) fn payload(&self) -> Vec<u8> {
        let payload = Payload {
            snapshot_id: Cow::Borrowed(&self.snapshot_id),
            seq: self.seq,
            lamport: self.lamport,
        };
        serde_json::to_vec(&payload).expect("a struct of a string and integers serialises")
    }

    /// The checkpoint a record of `stream` holds, if it is a checkpoint record.
    pub fn from_record(stream: &str, record: &Record) -> Option<Checkpoint> {
        if record.kind() != Kind::Checkpoint {
            return None;
        }
        let p: Payload = serde_json::from_slice(record.payload()).ok()?;
        (p.seq + 1 == record.seq()).then(|| Checkpoint {
            stream: stream.to_string(),
            snapshot_id: p.snapshot_id.into_owned(),
            seq: p.seq,
            lamport: p.lamport,
            record_seq: record.seq(),
        })
    }
}

/// Read `checkpoint.json`; `None` if missing or not a checkpoint.
pub(crate) fn read_file(backend: &dyn Backend, dir: &Path) -> Option<Checkpoint> {
    let bytes = crate::io::backend::read_small_file(
        backend,
        &dir.join(CHECKPOINT_FILE),
        4 * SNAPSHOT_ID_LEN_MAX as u64,
    )?;
    serde_json::from_slice(&bytes).ok()
}

/// Replace `checkpoint.json` atomically: write a temporary file, sync it,
/// rename it over the old one, sync the folder.
fn write_file(backend: &dyn Backend, dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(checkpoint).expect("a checkpoint serialises");
    bytes.push(b'\n');
    crate::io::backend::replace_file(backend, dir, CHECKPOINT_FILE, &bytes)
}

/// A stream's derived files have one writer at a time: the holder of the
/// stream's `Derived` lock. Checkpoint calls, checkpoint lookups and
/// archiving all take it, so they never interleave their file writes, and
/// `checkpoint.json` only ever moves forward to a newer checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    /// The newest checkpoint this process knows of.
    latest: Option<Checkpoint>,
    /// What `checkpoint.json` holds, when known (it was read or written).
    file: Option<Checkpoint>,
}

impl Derived {
    /// Learn of `checkpoint`; keep it if it is the newest.
    fn remember(&mut self, checkpoint: &Checkpoint) {
        if self
            .latest
            .as_ref()
            .is_none_or(|c| c.record_seq < checkpoint.record_seq)
        {
            self.latest = Some(checkpoint.clone());
        }
    }

    /// Make `checkpoint.json` name the newest checkpoint known. Best
    /// effort: the file is a hint that lookups check against the log, so a
    /// failed replacement only means the next lookup writes it again.
    fn write_latest(&mut self, backend: &dyn Backend, dir: &Path) {
        let Some(latest) = &self.latest else { return };
        if self.file.as_ref() == Some(latest) {
            return;
        }
        self.file = match write_file(backend, dir, latest) {
            Ok(()) => Some(latest.clone()),
            Err(_) => None,
        };
    }
}

impl Stream {
    /// The owner of this stream's derived files (checkpoint.json,
    /// archive.json): whoever holds its lock.
    pub(crate) fn derived(&self) -> std::sync::Arc<parking_lot::Mutex<Derived>> {
        self.extension()
    }

    /// Crystallise everything appended so far under `snapshot_id`: append a
    /// checkpoint record (durably) and replace `checkpoint.json` beside the
    /// stream (write, fsync, rename, fsync the folder) with the newest
    /// checkpoint. Concurrent calls each get their own checkpoint.
    ///
    /// Once the record is durable the call succeeds: `checkpoint.json` is
    /// derived data, and if replacing it fails it is rewritten by the next
    /// [`latest_checkpoint`](Stream::latest_checkpoint).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
    /// let stream = store.stream("session")?;
    /// stream.append(br#"{"op":"insert_note"}"#, lamplog::Durability::Buffered)?;
    /// let ckpt = stream.checkpoint("snap-abc123")?;
    /// assert_eq!((ckpt.seq, ckpt.record_seq), (1, 2));
    /// stream.append(br#"{"op":"delete_note"}"#, lamplog::Durability::Sync)?;
    /// let since: Vec<_> = stream.replay_since_checkpoint()?.collect::<Result<_, _>>()?;
    /// assert_eq!(since.len(), 1);
    /// # Ok::<(), lamplog::Error>(())
    /// ```
    pub fn checkpoint(&self, snapshot_id: &str) -> Result<Checkpoint> {
        if snapshot_id.is_empty() || snapshot_id.len() > SNAPSHOT_ID_LEN_MAX {
            return Err(Error::InvalidSnapshotId {
                id: snapshot_id.chars().take(64).collect(),
                reason: "a snapshot id has 1 to 1024 bytes",
            });
        }
        // Built under the stream's lock, with the record's own stamp, so
        // that "everything up to now" is exact. It observes nothing, so its
        // Lamport is the last record's + 1.
        let stream = self.name();
        let (_, checkpoint) =
            self.log()?
                .append_built(Kind::Checkpoint, 0, true, |seq, lamport| {
                    let checkpoint = Checkpoint {
                        stream: stream.to_string(),
                        snapshot_id: snapshot_id.to_string(),
                        seq: seq - 1,
                        lamport: lamport - 1,
                        record_seq: seq,
                    };
                    Ok((checkpoint.payload(), checkpoint))
                })?;
        let derived = self.derived();
        let mut derived = derived.lock();
        derived.remember(&checkpoint);
        derived.write_latest(&**self.backend(), self.dir());
        Ok(checkpoint)
    }

    /// The latest checkpoint, if any. `checkpoint.json` is only a hint: it
    /// is checked against the log, and rebuilt (on a writable store) when it
    /// is missing, stale or damaged. The cost is that of the records after
    /// the checkpoint, not of the history before it.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let derived = self.derived();
        let mut derived = derived.lock();
        if derived.file.is_none() {
            derived.file = read_file(&**self.backend(), self.dir());
        }
        let hint = derived.latest.clone().or_else(|| derived.file.clone());
        let verified = match hint {
            Some(h) => self.holds(&h)?.then_some(h),
            None => None,
        };
        let base = match verified {
            Some(c) => Some(c),
            None => self.newest_checkpoint_in_log()?,
        };
        // A crash between the record and the file leaves newer records.
        let latest = match &base {
            Some(c) => last_checkpoint(self.name(), self.iter_from_seq(c.record_seq + 1))?.or(base),
            None => None,
        };
        if let Some(latest) = &latest {
            derived.remember(latest);
            if self.is_writable() {
                derived.write_latest(&**self.backend(), self.dir());
            }
        }
        Ok(latest)
    }

    /// Whether this stream's log holds `checkpoint`: the record at its
    /// `record_seq` is that very checkpoint. A checkpoint whose record was
    /// archived is not held (a stale `checkpoint.json` may name one).
    fn holds(&self, checkpoint: &Checkpoint) -> Result<bool> {
        if checkpoint.stream != self.name() {
            return Ok(false);
        }
        match self.get(checkpoint.record_seq) {
            Ok(record) => Ok(record
                .and_then(|r| Checkpoint::from_record(self.name(), &r))
                .is_some_and(|c| c == *checkpoint)),
            Err(Error::Archived { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `Ok` if this stream's log holds `checkpoint`; a caller's checkpoint
    /// is checked before anything is skipped or moved on its word.
    pub(crate) fn check_holds(&self, checkpoint: &Checkpoint) -> Result<()> {
        if self.holds(checkpoint)? {
            return Ok(());
        }
        Err(Error::UnknownCheckpoint {
            stream: self.name().to_string(),
            checkpoint_stream: checkpoint.stream.clone(),
            snapshot_id: checkpoint.snapshot_id.clone(),
            record_seq: checkpoint.record_seq,
        })
    }

    /// The newest checkpoint record, looking through segments newest first.
    fn newest_checkpoint_in_log(&self) -> Result<Option<Checkpoint>> {
        let firsts = self.segments().first_seqs();
        for (i, &first) in firsts.iter().enumerate().rev() {
            let end = firsts.get(i + 1).copied();
            let segment = self
                .iter_from_seq(first)
                .take_while(|r| r.as_ref().map_or(true, |r| end.is_none_or(|e| r.seq() < e)));
            if let Some(found) = last_checkpoint(self.name(), segment)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Every checkpoint of the stream, oldest first (reads the whole log).
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut all = Vec::new();
        for record in self.iter() {
            all.extend(Checkpoint::from_record(self.name(), &record?));
        }
        Ok(all)
    }

    /// The records after the latest checkpoint (all of them if there is
    /// none), found through the index.
    pub fn replay_since_checkpoint(&self) -> Result<Iter> {
        Ok(match self.latest_checkpoint()? {
            Some(checkpoint) => self.replay_since(&checkpoint),
            None => self.iter(),
        })
    }

    /// The records after `checkpoint`. A checkpoint this stream's log does
    /// not hold (another stream's, or one made up) yields
    /// [`Error::UnknownCheckpoint`] rather than skip records on its word.
    pub fn replay_since(&self, checkpoint: &Checkpoint) -> Iter {
        match self.check_holds(checkpoint) {
            Ok(()) => self.iter_from_seq(checkpoint.record_seq + 1),
            Err(e) => Iter::failed(self.segments().clone(), e),
        }
    }
}

/// The last checkpoint among `records`.
fn last_checkpoint(
    stream: &str,
    records: impl Iterator<Item = Result<Record>>,
) -> Result<Option<Checkpoint>> {
    let mut last = None;
    for record in records {
        if let Some(c) = Checkpoint::from_record(stream, &record?) {
            last = Some(c);
        }
    }
    Ok(last)
}
