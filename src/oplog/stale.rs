//! Checking a stream's derived files against its log, as `fsck` does:
//! the sparse indexes, the op id files, `checkpoint.json`, `archive.json`
//! and `redactions.json`. lamplog never trusts them over the log (each is
//! checked or rebuilt when used), so a stale one loses nothing: this says
//! which ones a writable open or a repair will rewrite, and why.

use std::path::PathBuf;

use crate::error::Result;
use crate::format::index::INDEX_ENTRY_LEN;
use crate::format::segment::{index_file_name, parse_segment_file_name, ARCHIVE_DIR};
use crate::log::segment::Segment;
use crate::oplog::checkpoint::CHECKPOINT_FILE;
use crate::stream::Stream;

/// A derived file that does not match the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StaleFile {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl Stream {
    /// Check this stream's derived files against its live log (reading
    /// each segment's op ids when it has an `.ids` file, and the log for
    /// the latest checkpoint): every file that is missing where one is
    /// expected, damaged, or says something the log does not. Damage in
    /// the log itself is [`verify`](Stream::verify)'s to find.
    pub fn stale_files(&self) -> Result<Vec<StaleFile>> {
        let mut stale = Vec::new();
        let mut found = |path: PathBuf, problem: String| stale.push(StaleFile { path, problem });
        for segment in self.segments().all() {
            if let Some(problem) = self.index_problem(&segment) {
                found(
                    self.dir().join(index_file_name(segment.header.first_seq)),
                    problem.into(),
                );
            }
            if segment.is_sealed() {
                if let Some(problem) = crate::oplog::op_ids::ids_file_problem(self, &segment)? {
                    let name = crate::format::segment::ids_file_name(segment.header.first_seq);
                    found(self.dir().join(name), problem.into());
                }
            }
        }
        if let Some(named) = crate::oplog::checkpoint::read_file(&**self.backend(), self.dir()) {
            let latest = self.latest_checkpoint()?;
            if latest.as_ref() != Some(&named) {
                let latest = latest.map_or("none".into(), |c| format!("record {}", c.record_seq));
                found(
                    self.dir().join(CHECKPOINT_FILE),
                    format!(
                        "names the checkpoint at record {}; the latest is {latest}",
                        named.record_seq
                    ),
                );
            }
        }
        let start = crate::oplog::archive::log_start(&**self.backend(), self.dir());
        let marker = self.dir().join(crate::oplog::archive::MARKER_FILE);
        if self.segments().first().is_some() && self.first_seq() < start.live_from {
            found(
                marker.clone(),
                format!(
                    "says the live log starts at seq {}, but it starts at {} (an archive was cut short)",
                    start.live_from,
                    self.first_seq()
                ),
            );
        }
        let archived = self.backend().list_dir(&self.dir().join(ARCHIVE_DIR));
        for first in archived
            .unwrap_or_default()
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
        {
            if first < start.purged_before || first >= start.live_from {
                found(
                    marker.clone(),
                    format!(
                        "archived segment {first} lies outside seqs {}..{} it names",
                        start.purged_before, start.live_from
                    ),
                );
            }
        }
        for seq in crate::oplog::redact::pending(self) {
            found(
                self.dir().join(crate::oplog::redact::REDACTIONS_FILE),
                format!("the redaction of seq {seq} is not finished (a writable open finishes it)"),
            );
        }
        Ok(stale)
    }

    /// What is wrong with `segment`'s sparse index file, if anything: each
    /// index point must be a record with that seq and Lamport, and a sealed
    /// segment's seal must give its end, last seq and last Lamport.
    fn index_problem(&self, segment: &Segment) -> Option<&'static str> {
        let h = &segment.header;
        let path = self.dir().join(index_file_name(h.first_seq));
        let end = segment.end();
        let len_max = (end + 2) * INDEX_ENTRY_LEN as u64 + 64;
        let parsed =
            crate::log::index::read_file(&**self.backend(), &path, h.salt, h.first_seq, len_max);
        let Some(parsed) = parsed else {
            return Some("missing, damaged, or of another segment");
        };
        let bytes = segment.bytes(end).ok()?;
        let points_ok = parsed.entries.iter().filter(|e| e.offset < end).all(|e| {
            segment.decode_at(&bytes, e.offset, end).is_ok_and(|f| {
                f.meta.kind.is_record() && f.meta.seq == e.seq && f.meta.lamport == e.lamport
            })
        });
        if !points_ok {
            return Some("an index point is not the record it names");
        }
        if !segment.is_sealed() {
            return None;
        }
        let p = segment.published();
        match parsed.seal {
            Some(s)
                if (s.end, s.last_seq, s.last_lamport) == (p.end, p.last_seq, p.last_lamport) =>
            {
                None
            }
            Some(_) => Some("its seal disagrees with the segment's end"),
            None => Some("a sealed segment's index has no seal"),
        }
    }
}
