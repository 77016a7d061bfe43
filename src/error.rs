//! The crate's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in lamplog.
///
/// Variants carry the details an operator or caller acts on: which stream,
/// which segment file, which byte offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed. `op` says what lamplog was doing.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What lamplog was doing ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Data that was durable on disk is damaged. lamplog refuses to guess:
    /// open fails unless [`RecoveryMode::Repair`](crate::RecoveryMode::Repair)
    /// is chosen, and readers stop at the damaged record.
    #[error("corruption in stream {stream:?}, segment {}, offset {offset}: {kind}", segment.display())]
    Corruption {
        /// The stream whose log is damaged.
        stream: String,
        /// The segment (or index) file holding the damage.
        segment: PathBuf,
        /// Byte offset of the damage within that file.
        offset: u64,
        /// What exactly is wrong.
        kind: CorruptionKind,
    },

    /// Another writer holds the store's lock file.
    #[error("store is locked by another writer: {}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A stream name outside `[A-Za-z0-9._-]{1,128}`, or starting with `.`.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A snapshot id outside 1 to 1024 bytes.
    #[error("invalid snapshot id {id:?}: {reason}")]
    InvalidSnapshotId {
        /// The rejected id (its first 64 characters).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A merge whose target is one of its sources.
    #[error("stream {name:?} cannot be both a source and the target of a merge")]
    MergeTargetIsSource {
        /// The stream named as both.
        name: String,
    },

    /// A payload that is not exactly one JSON value.
    #[error("invalid JSON payload: {message}")]
    InvalidJson {
        /// 1-based line of the error within the payload.
        line: usize,
        /// 1-based column of the error within the payload.
        column: usize,
        /// serde_json's description of the problem (with its line and column).
        message: String,
    },

    /// An atomic batch too large to fit in one segment.
    #[error("batch of {len} bytes does not fit in one segment (segment_bytes_max {max})")]
    BatchTooLarge {
        /// The batch's size on disk.
        len: u64,
        /// The configured segment size.
        max: u64,
    },

    /// The requested records were moved out of the live log by
    /// [`Stream::archive_before`](crate::Stream::archive_before).
    #[error("seq {seq} of stream {stream:?} was archived to {}", location.display())]
    Archived {
        /// The stream.
        stream: String,
        /// The first seq asked for.
        seq: u64,
        /// Where the archived segments are.
        location: PathBuf,
    },

    /// The requested records were deleted for good by
    /// [`Stream::purge_through`](crate::Stream::purge_through).
    #[error("seq {seq} of stream {stream:?} was purged (the log now starts at seq {purged_before} or later)")]
    Purged {
        /// The stream.
        stream: String,
        /// The first seq asked for.
        seq: u64,
        /// Seqs below this were purged.
        purged_before: u64,
    },

    /// The record was damaged on disk and a repair
    /// ([`RecoveryMode::Repair`](crate::RecoveryMode::Repair)) removed it;
    /// its bytes are in the stream's `quarantine/` folder.
    #[error("seq {seq} of stream {stream:?} was lost to damage and removed by a repair (its bytes are in quarantine/)")]
    Lost {
        /// The stream.
        stream: String,
        /// The seq asked for.
        seq: u64,
    },

    /// A redaction that cannot be made: no such record, a checkpoint record
    /// (it holds lamplog's own data), or a reason that is too long.
    #[error("cannot redact seq {seq} of stream {stream:?}: {why}")]
    CannotRedact {
        /// The stream.
        stream: String,
        /// The seq asked for.
        seq: u64,
        /// Why not.
        why: String,
    },

    /// An op whose `op_id` is not the content address of its fields.
    #[error("op {op_id} does not match its content (expected {expected})")]
    OpIdMismatch {
        /// The id the op carries.
        op_id: String,
        /// The id its fields hash to.
        expected: String,
    },

    /// A record would be stamped past the largest Lamport a record may hold
    /// ([`format::LAMPORT_MAX`](crate::format::LAMPORT_MAX)): the observed
    /// timestamp, or the stream's own clock, is at the end.
    #[error("observed Lamport timestamp {observed} is out of range (at most {max})")]
    LamportOutOfRange {
        /// The timestamp passed in.
        observed: u64,
        /// The largest accepted.
        max: u64,
    },

    /// A payload larger than `record_bytes_max`.
    #[error("record of {len} bytes exceeds record_bytes_max ({max} bytes)")]
    RecordTooLarge {
        /// The payload's length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },

    /// A file written by an unknown or newer format version.
    #[error("{} has format version {found}; this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        found: u32,
        /// The version this build understands.
        supported: u32,
    },

    /// Options that cannot work together.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A write was attempted through a read-only store.
    #[error("the store was opened read-only")]
    ReadOnly,

    /// A checkpoint passed to a stream whose log does not hold it: another
    /// stream's, one whose record was archived, or one made up.
    #[error(
        "stream {stream:?} holds no checkpoint {snapshot_id:?} at seq {record_seq} \
         (the checkpoint names stream {checkpoint_stream:?})"
    )]
    UnknownCheckpoint {
        /// The stream asked.
        stream: String,
        /// The stream the checkpoint names.
        checkpoint_stream: String,
        /// The checkpoint's snapshot id.
        snapshot_id: String,
        /// The seq of the checkpoint record it claims.
        record_seq: u64,
    },

    /// A read-only store has no stream of that name.
    #[error("no stream named {name:?}")]
    StreamNotFound {
        /// The requested name.
        name: String,
    },

    /// The store was closed ([`Store::close`](crate::Store::close)): every
    /// handle of it refuses writes; reads go on. Reopen the store to write.
    #[error("the store was closed; reopen it to write")]
    Closed,

    /// A stream (after a failed write) or the whole store (after a failed
    /// fdatasync, which may have dropped any file's pages) can no longer
    /// accept writes; reopen the store to recover from what is on disk.
    #[error(
        "{} is poisoned by an earlier I/O failure ({cause}); reopen the store to recover",
        match stream { Some(s) => format!("stream {s:?}"), None => "the store".into() }
    )]
    Poisoned {
        /// The stream poisoned; `None` when the whole store is.
        stream: Option<String>,
        /// The operating system's error behind the failure.
        #[source]
        source: std::sync::Arc<io::Error>,
        /// A description of the failure that poisoned the store.
        cause: String,
    },
}

impl Error {
    /// A payload that is not the JSON expected, located where serde_json
    /// found the problem; `context` (if not empty) says which payload.
    pub(crate) fn invalid_json(e: &serde_json::Error, context: &str) -> Error {
        Error::InvalidJson {
            line: e.line(),
            column: e.column(),
            message: match context {
                "" => e.to_string(),
                context => format!("{context}: {e}"),
            },
        }
    }
}

/// What is wrong with damaged data, in [`Error::Corruption`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A segment or index header is damaged (bad magic, bad CRC, bad field).
    BadHeader(&'static str),
    /// A segment file belongs to another stream or starts at another seq than its name says.
    WrongSegment(&'static str),
    /// A record's checksum does not match its bytes.
    BadChecksum,
    /// A record's length field is impossible (zero, over the limit, or past the end).
    BadLength,
    /// A record has an unknown kind or non-zero reserved bits.
    BadRecordHeader,
    /// A record's checksum matches but its payload is not one JSON value,
    /// which lamplog never writes.
    BadPayload,
    /// A record's `prev_crc` does not match the record before it.
    BrokenChain,
    /// Sequence numbers are not contiguous (a lost, repeated or reordered record, or a missing segment).
    SequenceGap {
        /// The seq that should have come next.
        expected: u64,
        /// The seq found instead.
        found: u64,
    },
    /// Lamport timestamps do not strictly increase.
    LamportNotIncreasing,
    /// An atomic batch whose last record is missing.
    TornBatch,
    /// Bytes follow the last record of a segment that was sealed, or of a
    /// torn tail that a later record proves was durable.
    DataAfterEnd,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::BadHeader(what) => write!(f, "bad header ({what})"),
            CorruptionKind::WrongSegment(what) => write!(f, "misplaced segment ({what})"),
            CorruptionKind::BadChecksum => f.write_str("record checksum mismatch"),
            CorruptionKind::BadLength => f.write_str("impossible record length"),
            CorruptionKind::BadRecordHeader => {
                f.write_str("unknown record kind or reserved bits set")
            }
            CorruptionKind::BadPayload => f.write_str("record payload is not one JSON value"),
            CorruptionKind::BrokenChain => f.write_str("record does not chain to its predecessor"),
            CorruptionKind::SequenceGap { expected, found } => {
                write!(f, "sequence gap: expected seq {expected}, found {found}")
            }
            CorruptionKind::TornBatch => f.write_str("an atomic batch does not end"),
            CorruptionKind::LamportNotIncreasing => {
                f.write_str("Lamport timestamp does not increase")
            }
            CorruptionKind::DataAfterEnd => {
                f.write_str("records follow a damaged record that was durable")
            }
        }
    }
}

/// `Result` with lamplog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an operation and path to an `io::Error`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

impl Error {
    /// Whether this error means damaged data (as opposed to a caller's mistake or an I/O failure).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corruption { .. } | Error::UnsupportedVersion { .. }
        )
    }
}
