//! The file backend: every byte lamplog reads or writes goes through these
//! two traits, so tests can swap the real filesystem for one that injects
//! faults or simulates a power cut. Public only through the `testing`
//! feature (`lamplog::testing`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read-only.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// A new file, for reading and writing; fails if it exists.
    CreateNew,
}

/// A directory tree of files: the real filesystem or a simulated disk.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Create a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names in a directory (names that are not UTF-8 are skipped).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Open a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>>;
    /// Rename a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Delete a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Delete an empty directory. Backends that cannot may leave it: an
    /// empty stream folder is never taken for a stream.
    fn remove_dir(&self, _path: &Path) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Make a directory's entries durable (creations, renames, removals).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Take an exclusive lock on `path`, creating it; `Ok(None)` if another
    /// holder has it. The lock lasts as long as the returned guard.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// A store's writer lock, shared by every handle that can write and
/// released when the last of them is dropped or the store is closed.
pub(crate) type SharedLock = parking_lot::Mutex<Option<Box<dyn LockGuard>>>;

/// One open file.
// `len` is fallible I/O here; an `is_empty` twin would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait BackendFile: Send + Sync + fmt::Debug {
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fill `buf` from `offset`; reading past the end is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// [`write_all_at`](BackendFile::write_all_at) for bytes that a sync
    /// is waiting for: a hint that lets a backend skip its write map, whose
    /// pages every sync write-protects, so that each write into them right
    /// after a sync takes a fault (measured here: 4% of a lone writer's
    /// durable appends). Same promise as `write_all_at`.
    fn write_all_at_before_sync(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }
    /// fdatasync: make written bytes (and the length) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncate or extend (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Extend to at least `len` with zeros that are written, not only
    /// reserved, so that once the next sync has made them durable, later
    /// writes below `len` change no metadata: neither the file's size nor
    /// (on ext4) an unwritten extent.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Start writing `[offset, offset + len)` back to the disk without
    /// waiting: a hint that makes a later `sync_data` shorter, with no
    /// durability promise of its own (a backend may ignore it).
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    /// A read-only view of `[0, len)` (a memory map, or a copy); `len` must
    /// not exceed the file's length. Writes to the file past `len` are not
    /// part of the view; bytes inside it must not be written while it lives
    /// (docs/UNSAFE.md).
    fn map(&self, len: u64) -> io::Result<Bytes>;
    /// The operating system's descriptor, for batched syncs through
    /// io_uring; `None` for files that are not real.
    #[cfg(feature = "io-uring")]
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// The filesystem the file is on, for syncing many files at once with
    /// [`sync_filesystem`](BackendFile::sync_filesystem); `None` if unknown.
    fn filesystem_id(&self) -> Option<u64> {
        None
    }
    /// Make every written byte of every file on this file's filesystem
    /// durable (`syncfs`), reporting any writeback error since the file was
    /// opened. Unsupported unless `filesystem_id` is known.
    fn sync_filesystem(&self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The whole of a small derived file (an index, a marker), or `None` if it
/// is missing, unreadable, or longer than `len_max` (so a garbage file can
/// never cause a large allocation).
pub(crate) fn read_small_file(backend: &dyn Backend, path: &Path, len_max: u64) -> Option<Vec<u8>> {
    let file = backend.open(path, OpenMode::Read).ok()?;
    let len = file.len().ok().filter(|&len| len <= len_max)?;
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    file.read_exact_at(&mut bytes, 0).ok()?;
    Some(bytes)
}

/// `result`, with a file that was not there counted as done: for moves and
/// deletions that a crash may already have made.
pub(crate) fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Create the file `path` with `bytes` and fdatasync it (its directory
/// entry is the caller's to sync).
pub(crate) fn write_new_file(
    backend: &dyn Backend,
    path: &Path,
    bytes: &[u8],
) -> crate::error::Result<()> {
    use crate::error::io_err;
    let file = backend
        .open(path, OpenMode::CreateNew)
        .map_err(io_err("create", path))?;
    file.write_all_at(bytes, 0).map_err(io_err("write", path))?;
    file.sync_data().map_err(io_err("fdatasync", path))
}

/// Replace `dir/name` with `bytes` atomically and durably: write
/// `dir/name.tmp`, fdatasync it, rename it over `name`, fsync `dir`. After a
/// crash the file holds either the old or the new bytes, never a mix.
pub(crate) fn replace_file(
    backend: &dyn Backend,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> crate::error::Result<()> {
    use crate::error::io_err;
    let temp = dir.join(format!("{name}.tmp"));
    let _ = backend.remove_file(&temp);
    write_new_file(backend, &temp, bytes)?;
    backend
        .rename(&temp, &dir.join(name))
        .map_err(io_err("rename", &temp))?;
    backend
        .sync_dir(dir)
        .map_err(io_err("fsync directory", dir))
}

/// The real filesystem through `std::fs`, `rustix` and `memmap2`.
///
/// `StdBackend::default()` writes a segment's frames through a shared
/// writable map of its preallocated space where the filesystem allows it
/// (see [`mapped_writes`](StdBackend::mapped_writes)).
#[derive(Debug, Clone, Copy)]
pub struct StdBackend {
    mapped_writes: bool,
}

impl Default for StdBackend {
    fn default() -> Self {
        StdBackend {
            mapped_writes: true,
        }
    }
}

impl StdBackend {
    /// Whether writes into a file's preallocated space (what
    /// [`BackendFile::allocate`] extended it by) are copies into a shared
    /// writable map of it instead of a `pwrite` each: on ext4 and tmpfs
    /// only, where storing into an allocated block never needs new space
    /// (a copy-on-write filesystem could only refuse one with SIGBUS).
    /// The bytes are the file's once the copy ends, as after a `pwrite`.
    pub fn mapped_writes(self, on: bool) -> StdBackend {
        StdBackend { mapped_writes: on }
    }
}

/// Filesystems on which a store into a written or `fallocate`d block of a
/// file never allocates: ext2/3/4 and tmpfs. (XFS would qualify but for
/// reflinked extents, which copy on write.)
fn overwrites_in_place(file: &File) -> bool {
    const EXT4_SUPER_MAGIC: u64 = 0xEF53;
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    rustix::fs::fstatfs(file)
        .is_ok_and(|fs| matches!(fs.f_type as u64, EXT4_SUPER_MAGIC | TMPFS_MAGIC))
}

/// Writes this large go through `pwrite` even into a write map: a copy into
/// the map takes a page fault per 4 KiB page the writeback cleaned, and
/// past a few pages one system call costs less than the faults.
const MAPPED_WRITE_MAX: usize = 16 << 10;

#[derive(Debug)]
struct StdFile {
    file: File,
    /// Whether `allocate` maps what it allocated, for `write_all_at`.
    mapped_writes: bool,
    /// A shared writable map of `[0, allocated)`, once `allocate` made one.
    write_map: parking_lot::Mutex<Option<crate::io::sys::mmap::WriteMap>>,
}

#[derive(Debug)]
struct FlockGuard(File);

impl LockGuard for FlockGuard {}

impl Drop for FlockGuard {
    fn drop(&mut self) {
        // Unlock explicitly: a child process forked by another thread shares
        // the open file description until it execs, and closing our
        // descriptor alone would leave the lock held through its copy.
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

impl Backend for StdBackend {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        // A directory (or a device) under a file's name is not one of ours:
        // say so here, not with a puzzling failure to map it later.
        let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        let file = options.open(path).map_err(|e| match e.kind() {
            io::ErrorKind::IsADirectory => not_regular(),
            _ => e,
        })?;
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        let mapped_writes =
            self.mapped_writes && mode != OpenMode::Read && overwrites_in_place(&file);
        Ok(Arc::new(StdFile {
            file,
            mapped_writes,
            write_map: parking_lot::Mutex::new(None),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // flock locks belong to the open file description, so a second open
        // in the same process conflicts just like one in another process.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Box::new(FlockGuard(file)))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl BackendFile for StdFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if buf.len() < MAPPED_WRITE_MAX {
            if let Some(map) = &*self.write_map.lock() {
                if map.write(buf, offset) {
                    return Ok(());
                }
            }
        }
        self.file.write_all_at(buf, offset)
    }

    fn write_all_at_before_sync(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = crate::io::sys::writeback::start(&self.file, offset, len);
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // No map may outlive the bytes it covers.
        *self.write_map.lock() = None;
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        /// Zeros are written in pieces this small on purpose: the kernel
        /// sizes page-cache folios by the write, and every later small
        /// append into a large folio walks all of its blocks (measured
        /// here: buffered appends at 290k/s after 1 MiB writes of zeros,
        /// 500k/s after 16 KiB writes).
        static ZEROS: [u8; 16 << 10] = [0; 16 << 10];
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        // Reserve the space first (an early ENOSPC, contiguous blocks);
        // filesystems without fallocate get the space from the writes. A
        // file to be mapped for writing gets all of `[0, len)` reserved:
        // one copied sparsely may have holes below `current`, and a store
        // into a hole of a full disk could only fail with SIGBUS.
        let from = if self.mapped_writes { 0 } else { current };
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            from,
            len - from,
        ) {
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
        // fallocate leaves ext4 extents "unwritten": the first write into
        // each block converts it, and the fdatasync after that write must
        // then commit the conversion. Writing the zeros now moves that cost
        // into one sync per step instead of every append's sync (measured
        // here: an fdatasync of 3.2 KB takes 190 us into fallocated space,
        // 140 us into written zeros).
        let mut at = current;
        while at < len {
            let n = (len - at).min(ZEROS.len() as u64);
            self.file.write_all_at(&ZEROS[..n as usize], at)?;
            at += n;
        }
        if self.mapped_writes {
            // The whole file is allocated now: map it for the writes to
            // come. A map that fails (address space, `vm.max_map_count`)
            // only means writes go through `pwrite`.
            let map = crate::io::sys::mmap::WriteMap::new(&self.file, len).ok();
            *self.write_map.lock() = map;
        }
        Ok(())
    }

    #[cfg(feature = "io-uring")]
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.file.as_raw_fd())
    }

    fn filesystem_id(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().ok().map(|m| m.dev())
    }

    fn sync_filesystem(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.file)?)
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        crate::io::sys::mmap::map(&self.file, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_extends_with_zeros_and_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = StdBackend::default()
            .open(&path, OpenMode::CreateNew)
            .unwrap();
        file.write_all_at(b"head", 0).unwrap();
        // More than one pass of the zero buffer, not a multiple of it.
        let len = (3 << 20) + 5;
        file.allocate(len).unwrap();
        assert_eq!(file.len().unwrap(), len);
        let mut bytes = vec![1u8; len as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        assert_eq!(&bytes[..4], b"head");
        assert!(bytes[4..].iter().all(|&b| b == 0));
        // Never shrinks.
        file.allocate(10).unwrap();
        assert_eq!(file.len().unwrap(), len);
    }

    /// Writes through the map (inside what `allocate` extended the file
    /// to), by `pwrite` (past it), after a shrink, and past the cap on
    /// write maps all land in the file, as another descriptor sees it.
    #[test]
    fn mapped_writes_are_the_files_bytes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for mapped in [true, false] {
            let _ = fs::remove_file(&path);
            let backend = StdBackend::default().mapped_writes(mapped);
            let file = backend.open(&path, OpenMode::CreateNew).unwrap();
            file.allocate(64 << 10).unwrap();
            file.write_all_at(b"inside", 100).unwrap();
            // Straddling the end of the map: the map refuses it whole.
            file.write_all_at(b"straddle", (64 << 10) - 4).unwrap();
            file.write_all_at(b"past", 70 << 10).unwrap();
            // On ext4 and tmpfs the file is mapped while it is written.
            let maps = fs::read_to_string("/proc/self/maps").unwrap();
            let in_place = overwrites_in_place(&File::open(&path).unwrap());
            assert_eq!(
                maps.contains(path.to_str().unwrap()),
                mapped && in_place,
                "mapped {mapped}, in place {in_place}"
            );
            let other = fs::read(&path).unwrap();
            assert_eq!(&other[100..106], b"inside", "mapped {mapped}");
            assert_eq!(&other[(64 << 10) - 4..(64 << 10) + 4], b"straddle");
            assert_eq!(&other[70 << 10..(70 << 10) + 4], b"past");
            // A shrink drops the map; writes go on, then map again.
            file.set_len(200).unwrap();
            file.write_all_at(b"after", 150).unwrap();
            file.allocate(32 << 10).unwrap();
            file.write_all_at(b"again", 300).unwrap();
            let other = fs::read(&path).unwrap();
            assert_eq!(other.len(), 32 << 10);
            assert_eq!(&other[150..155], b"after");
            assert_eq!(&other[300..305], b"again");
            assert!(other[200..300].iter().all(|&b| b == 0));
            // Dropping the file drops its map.
            drop(file);
            let maps = fs::read_to_string("/proc/self/maps").unwrap();
            assert!(!maps.contains(path.to_str().unwrap()));
        }
        // Past the process's cap on write maps, writes are pwritten.
        use crate::io::sys::mmap::{WriteMap, WRITE_MAPS_MAX};
        let _ = fs::remove_file(&path);
        WriteMap::pretend_live(WRITE_MAPS_MAX as isize);
        let file = StdBackend::default()
            .open(&path, OpenMode::CreateNew)
            .unwrap();
        file.allocate(64 << 10).unwrap();
        file.write_all_at(b"capped", 100).unwrap();
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        WriteMap::pretend_live(-(WRITE_MAPS_MAX as isize));
        assert!(!maps.contains(path.to_str().unwrap()));
        assert_eq!(&fs::read(&path).unwrap()[100..106], b"capped");
    }
}
