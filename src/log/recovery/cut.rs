//! Cutting: a torn tail, a repair at damage, a whole segment, each kept
//! in quarantine first.

use super::*;

impl Recovery<'_> {
    /// Cut a segment at `at`: keep `keep_len` bytes from there in quarantine
    /// (durably, first), then truncate and sync. A read-only open only
    /// records what it would cut.
    pub(super) fn cut_tail(
        &mut self,
        path: &Path,
        file: &dyn BackendFile,
        bytes: Bytes,
        at: u64,
        keep_len: u64,
        reason: CutReason,
    ) -> Result<()> {
        let kept = &bytes[at as usize..(at + keep_len) as usize];
        let quarantine_file = match self.writable() {
            true => Some(quarantine::keep_bytes(
                self.backend,
                self.dir,
                path,
                at,
                kept,
            )?),
            false => None,
        };
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: path.into(),
            offset: at,
            len: keep_len,
            quarantine_file,
            reason,
            lost: None,
        });
        // The map must be gone before the file shrinks under it.
        drop(bytes);
        if self.writable() {
            file.set_len(at).map_err(io_err("truncate", path))?;
            file.sync_data().map_err(io_err("fdatasync", path))?;
        }
        Ok(())
    }

    /// What a read-only open in Repair mode reports at damage (it changes
    /// nothing): the records before the damage stay, the rest would be cut.
    /// A writable repair salvages instead (`salvage.rs`).
    pub(super) fn repair(&mut self, path: &Path, damage: Damage) -> Result<Option<Arc<Segment>>> {
        let reason = CutReason::Repair(damage.kind.clone());
        let Some(Good {
            header,
            file,
            bytes,
            found: (published, sparse),
        }) = damage.good
        else {
            self.cut_whole(path, reason)?;
            return Ok(None);
        };
        let keep_len = bytes.len() as u64 - damage.offset;
        self.cut_tail(path, &*file, bytes, damage.offset, keep_len, reason)?;
        Ok(Some(self.tail_segment(path, header, (published, sparse))))
    }

    /// Move a whole segment (and drop its index) out of the log.
    pub(super) fn cut_whole(&mut self, path: &Path, reason: CutReason) -> Result<()> {
        let len = match self
            .backend
            .open(path, OpenMode::Read)
            .and_then(|f| f.len())
        {
            // Something else under a segment's name (a directory) moves as it is.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => 0,
            other => other.map_err(io_err("stat", path))?,
        };
        let kept = if self.writable() {
            let moved = quarantine::keep_file(self.backend, self.dir, path)?;
            if let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_segment_file_name)
            {
                self.remove_derived(seq);
            }
            Some(moved)
        } else {
            None
        };
        self.cuts.push(Cut {
            stream: self.stream.into(),
            segment: PathBuf::from(path),
            offset: 0,
            len,
            quarantine_file: kept,
            reason,
            lost: None,
        });
        Ok(())
    }
}
