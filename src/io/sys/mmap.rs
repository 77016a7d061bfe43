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
    // SAFETY: a memory map is sound while no byte inside it is truncated
    // away or written. lamplog maps its files so that this holds:
    // - `len` never exceeds the file's length (callers pass a length they
    //   just read, or a published end, which lies inside the file), and a
    //   segment file never shrinks while it is mapped: recovery truncates
    //   only at open, after dropping its own map and before any reader
    //   exists; nothing truncates later.
    // - A segment's readers map exactly its published end
    //   (`Segment::bytes`). Everything below that end is whole records,
    //   never written again (the log is append-only); the writer writes
    //   only past it (new frames, preallocation zeros), outside the map.
    // - Recovery of a writable open maps whole files, with the store's
    //   lock held: no writer exists. A read-only open takes no lock, and its
    //   recovery maps the whole tail of a stream whose writer (in this or
    //   another process) may be appending past the writer's end meanwhile.
    //   Recovery reads those bytes as untrusted input (every frame
    //   CRC-checked, a damage verdict re-read through a new map), hands out
    //   nothing from them, and drops that map before the store is returned;
    //   docs/UNSAFE.md says what this means and what it costs to avoid.
    // - The lock file keeps other lamplog writers out; another program
    //   that writes or truncates a store's files breaks the contract, as
    //   for any mmap reader.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}
