//! Mapping segment files into memory for zero-copy reads.

use std::fs::File;
use std::io;

use bytes::Bytes;

/// Map the first `len` bytes of `file` read-only and hand them out as
/// [`Bytes`], so records can share the mapping without copying.
///
/// The caller guarantees `len <= file.metadata().len()`.
pub(crate) fn map(file: &File, len: u64) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "map larger than memory"))?;
    // SAFETY: a memory map is only sound while nobody truncates or rewrites
    // the mapped bytes under it. lamplog upholds that for its own files:
    // - `len` never exceeds the file's length (the caller checks), and a
    //   segment file never shrinks while it is mapped: files are truncated only
    //   by recovery, before any map of them exists, and the writer only grows
    //   a segment (preallocation) or writes past the end that readers were told.
    // - Bytes below a segment's published end are never written again (the
    //   log is append-only), and readers only look below that end, so no
    //   reader observes a byte while it changes.
    // - The store's lock file keeps other lamplog writers out. Another
    //   program that truncates a live segment breaks this contract, as it
    //   would for any mmap reader; we cannot prevent that.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}
