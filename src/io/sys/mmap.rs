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

/// A shared writable map of a file's first `len` bytes: the writer's way to
/// put frames into the page cache with a copy instead of a `pwrite` each.
/// The bytes are the file's the moment the copy ends (a process kill
/// keeps them; `fdatasync` writes them back like any dirty page).
///
/// At most [`WRITE_MAPS_MAX`] live at once in a process: every map counts
/// against `vm.max_map_count` (65,530 by default), and a host writing tens
/// of thousands of streams must leave room for its readers' maps. Writers
/// beyond it use `pwrite`.
#[derive(Debug)]
pub(crate) struct WriteMap(memmap2::MmapRaw);

/// The most write maps a process holds at once.
pub(crate) const WRITE_MAPS_MAX: usize = 8192;

static WRITE_MAPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl WriteMap {
    /// Map `[0, len)` of `file`, which must be open for writing and hold
    /// `len` bytes whose blocks are allocated (written, or reserved by
    /// `fallocate`): a store into a page then never needs the filesystem
    /// to find space, which it could only refuse with SIGBUS. An error if
    /// the process holds [`WRITE_MAPS_MAX`] already.
    pub(crate) fn new(file: &File, len: u64) -> io::Result<WriteMap> {
        use std::sync::atomic::Ordering;
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "map larger than memory"))?;
        if WRITE_MAPS.fetch_add(1, Ordering::Relaxed) >= WRITE_MAPS_MAX {
            WRITE_MAPS.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::other("too many write maps"));
        }
        match memmap2::MmapOptions::new().len(len).map_raw(file) {
            Ok(map) => Ok(WriteMap(map)),
            Err(e) => {
                WRITE_MAPS.fetch_sub(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Pretend `n` more write maps are alive (`n` may be negative), for a
    /// test of the cap. Harmless to other tests: a writer refused a map
    /// writes with `pwrite`.
    #[cfg(test)]
    pub(crate) fn pretend_live(n: isize) {
        use std::sync::atomic::Ordering;
        match n {
            n if n >= 0 => WRITE_MAPS.fetch_add(n as usize, Ordering::Relaxed),
            n => WRITE_MAPS.fetch_sub(n.unsigned_abs(), Ordering::Relaxed),
        };
    }

    /// Copy `buf` to `offset`, if the map covers all of it; `false` (and
    /// nothing written) if it does not.
    pub(crate) fn write(&self, buf: &[u8], offset: u64) -> bool {
        let Some(end) = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(buf.len()))
        else {
            return false;
        };
        if buf.is_empty() || end > self.0.len() {
            return false;
        }
        // SAFETY: `[offset, end)` lies inside the map (checked above), which
        // lives as long as `self`, and `buf` cannot overlap it: `buf` is a
        // Rust slice, and lamplog never hands out a reference into a write
        // map. The map's pages are backed by allocated blocks of a file at
        // least `len` long (`new`'s contract; the file only shrinks through
        // `StdFile::set_len`, which drops the map first), so the stores do
        // not fault with SIGBUS. Readers' maps (`map` above) never cover
        // these bytes: the writer writes only past a segment's published
        // end, which is all a reader maps.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.as_ptr(),
                self.0.as_mut_ptr().add(end - buf.len()),
                buf.len(),
            );
        }
        true
    }
}

impl Drop for WriteMap {
    fn drop(&mut self) {
        WRITE_MAPS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
