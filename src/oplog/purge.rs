//! Purging: deleting, for good, the whole segments whose records all lie at
//! or below a seq, live or archived (never the segment being written).
//!
//! The archive marker (`archive.json`, see `archive.rs`) records where the
//! log now starts before any file goes, and it is replaced atomically: a
//! crash part way leaves segments below that point, which are never part of
//! the log again (recovery skips them) and which the next writable open
//! deletes. Reads of a purged seq say [`Error::Purged`](crate::Error::Purged).
//! Each purged segment's `.ids` file (its ops' ids, no payload) moves to
//! `archive/`, so an op once written is still never inserted again.

use std::path::Path;

use crate::error::{io_err, Result};
use crate::format::segment::{
    ids_file_name, index_file_name, parse_segment_file_name, segment_file_name, ARCHIVE_DIR,
};
use crate::io::backend::{ignore_missing, Backend};
use crate::log::recovery::LogStart;
use crate::oplog::archive::{log_start, write_marker};
use crate::stream::Stream;

/// What [`Stream::purge_through`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purged {
    /// Segments deleted, archived and live.
    pub segments: usize,
    /// Seqs below this are purged: the log now starts here.
    pub purged_before_seq: u64,
}

impl Stream {
    /// Delete, for good, every whole segment (archived or live) whose
    /// records all have seqs at or below `seq`; the segment being written
    /// stays. Reads of a purged seq then return
    /// [`Error::Purged`](crate::Error::Purged); recovery and `verify` know
    /// that the log starts after them. Purging a seq already purged, or
    /// one inside the segment being written, deletes nothing more.
    pub fn purge_through(&self, seq: u64) -> Result<Purged> {
        self.check_writable()?;
        // One derived-file writer at a time: archiving and checkpoints too.
        let derived = self.derived();
        let _derived = derived.lock();
        let backend = self.backend();
        let segments = self.segments();
        let old = LogStart {
            purged_before: segments.purged_before(),
            live_from: segments.first_seq(),
        };
        // A segment's records end where the next one starts.
        let mut firsts = archived_firsts(&**backend, self.dir(), old.purged_before)?;
        let archived = firsts.len();
        firsts.extend(segments.first_seqs());
        let whole = firsts.windows(2).take_while(|w| w[1] - 1 <= seq).count();
        if whole == 0 {
            return Ok(Purged {
                segments: 0,
                purged_before_seq: old.purged_before,
            });
        }
        let new = LogStart {
            purged_before: firsts[whole],
            live_from: old.live_from.max(firsts[whole]),
        };
        // The ids of the live segments' ops go to archive/ with the others.
        for segment in segments.all().iter().take(whole.saturating_sub(archived)) {
            crate::oplog::op_ids::persist_before_archive(self, segment)?;
        }
        // The op id set catches up after the `.ids` files moved, not between.
        let op_ids = self.op_ids();
        let _op_ids = op_ids.lock();
        write_marker(&**backend, self.dir(), new)?;
        segments.set_purged_before(new.purged_before);
        segments.drop_before(new.live_from);
        finish_interrupted(&**backend, self.dir())?;
        Ok(Purged {
            segments: whole,
            purged_before_seq: new.purged_before,
        })
    }
}

/// The first seqs of the segments in `archive/` from `from` on, oldest first.
fn archived_firsts(backend: &dyn Backend, dir: &Path, from: u64) -> Result<Vec<u64>> {
    let archive = dir.join(ARCHIVE_DIR);
    let names = match backend.list_dir(&archive) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err("list", &archive)(e)),
    };
    let mut firsts: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .filter(|&first| first >= from)
        .collect();
    firsts.sort_unstable();
    Ok(firsts)
}

/// Delete what the archive marker says is purged but is still on disk (all
/// of it during a purge; after a crash, what the purge had not reached):
/// segments and indexes below the purge point, live or archived, with the
/// live segments' `.ids` moved to `archive/` first.
pub(crate) fn finish_interrupted(backend: &dyn Backend, dir: &Path) -> Result<()> {
    let purged_before = log_start(backend, dir).purged_before;
    if purged_before <= 1 {
        return Ok(());
    }
    let archive = dir.join(ARCHIVE_DIR);
    for (folder, is_live) in [(dir, true), (archive.as_path(), false)] {
        let names = match backend.list_dir(folder) {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", folder)(e)),
        };
        let doomed: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .filter(|&first| first < purged_before)
            .collect();
        if doomed.is_empty() {
            continue;
        }
        if is_live {
            backend
                .create_dir_all(&archive)
                .map_err(io_err("create", &archive))?;
        }
        for first in doomed {
            if is_live {
                let ids = ids_file_name(first);
                ignore_missing(backend.rename(&folder.join(&ids), &archive.join(&ids)))
                    .map_err(io_err("rename", folder.join(&ids)))?;
            }
            // The segment goes last: its index is never left without it.
            for name in [index_file_name(first), segment_file_name(first)] {
                ignore_missing(backend.remove_file(&folder.join(&name)))
                    .map_err(io_err("delete", folder.join(&name)))?;
            }
        }
        if is_live {
            backend
                .sync_dir(&archive)
                .map_err(io_err("fsync directory", &archive))?;
        }
        backend
            .sync_dir(folder)
            .map_err(io_err("fsync directory", folder))?;
    }
    Ok(())
}
