//! Keeping what recovery cuts: bytes removed from a log are first copied
//! (or whole files moved) into the stream's `quarantine/` folder, durably,
//! so an operator can inspect them and nothing is lost for good.

use std::path::{Path, PathBuf};

use crate::error::{io_err, CorruptionKind, Result};
use crate::io::backend::Backend;
use crate::log::clock::now_us;

/// Name of the per-stream folder that holds cut bytes.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Why recovery cut bytes from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CutReason {
    /// The tail of the last segment held a partial or garbled write that no
    /// later record proves durable: the usual result of a crash.
    TornTail,
    /// The last segment's header was never completely written (a crash
    /// while creating it); nothing in it was acknowledged.
    TornSegmentCreation,
    /// [`RecoveryMode::Repair`](crate::RecoveryMode::Repair) cut the log at damaged durable data.
    Repair(CorruptionKind),
}

impl std::fmt::Display for CutReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutReason::TornTail => f.write_str("torn tail"),
            CutReason::TornSegmentCreation => f.write_str("interrupted segment creation"),
            CutReason::Repair(kind) => write!(f, "repair of {kind}"),
        }
    }
}

/// One cut that recovery made (or, for a read-only open, would make).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// The stream.
    pub stream: String,
    /// The segment file the bytes came from.
    pub segment: PathBuf,
    /// Where the cut starts in that file.
    pub offset: u64,
    /// How many bytes were cut.
    pub len: u64,
    /// Where the bytes were kept; `None` for a read-only open, which
    /// changes nothing on disk.
    pub quarantine_file: Option<PathBuf>,
    /// Why.
    pub reason: CutReason,
    /// The seqs whose records a repair removed with these bytes, when it
    /// knows them (a repair that salvaged the records after the damage).
    /// `None` for a torn tail (its records were never acknowledged) and
    /// for a cut that kept nothing after it.
    pub lost: Option<std::ops::RangeInclusive<u64>>,
}

fn quarantine_dir(backend: &dyn Backend, stream_dir: &Path) -> Result<PathBuf> {
    let dir = stream_dir.join(QUARANTINE_DIR);
    backend
        .create_dir_all(&dir)
        .map_err(io_err("create", &dir))?;
    backend
        .sync_dir(stream_dir)
        .map_err(io_err("fsync directory", stream_dir))?;
    Ok(dir)
}

fn target_name(segment: &Path, offset: u64) -> String {
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}.{offset}.{}.cut", now_us())
}

/// Durably copy `bytes`, cut from `segment` at `offset`, into quarantine.
pub(crate) fn keep_bytes(
    backend: &dyn Backend,
    stream_dir: &Path,
    segment: &Path,
    offset: u64,
    bytes: &[u8],
) -> Result<PathBuf> {
    let dir = quarantine_dir(backend, stream_dir)?;
    let path = dir.join(target_name(segment, offset));
    crate::io::backend::write_new_file(backend, &path, bytes)?;
    backend
        .sync_dir(&dir)
        .map_err(io_err("fsync directory", &dir))?;
    Ok(path)
}

/// Durably move a whole file into quarantine.
pub(crate) fn keep_file(backend: &dyn Backend, stream_dir: &Path, file: &Path) -> Result<PathBuf> {
    let dir = quarantine_dir(backend, stream_dir)?;
    let path = dir.join(target_name(file, 0));
    backend
        .rename(file, &path)
        .map_err(io_err("rename", file))?;
    backend
        .sync_dir(&dir)
        .map_err(io_err("fsync directory", &dir))?;
    backend
        .sync_dir(stream_dir)
        .map_err(io_err("fsync directory", stream_dir))?;
    Ok(path)
}
