//! The simulated disk, the one fake disk of lamplog's tests (crash, fault,
//! fuzz and loom): files in memory that record every write and sync, keep
//! what was made durable apart from what was only written, inject faults,
//! and build the disk images a power cut could leave.
//!
//! Under `cfg(loom)` its lock is loom's, so every file operation is a point
//! where the model may switch threads.

mod replay;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};

use crate::io::backend::{Backend, BackendFile, LockGuard, OpenMode};
use replay::{apply, Replay};

/// A mutating operation, in the order the store issued it. Files are
/// numbered in the order they were created.
#[derive(Debug, Clone)]
pub enum SimOp {
    /// A file was created at a path.
    Create(PathBuf, usize),
    /// Bytes were written to a file at an offset.
    Write(usize, u64, Vec<u8>),
    /// A file was truncated or extended to a length.
    SetLen(usize, u64),
    /// A file's data was made durable (fdatasync).
    SyncFile(usize),
    /// A directory's entries were made durable (fsync of the directory).
    SyncDir(PathBuf),
    /// A file was renamed, replacing the target.
    Rename(PathBuf, PathBuf),
    /// A file was deleted.
    Remove(PathBuf),
}

#[derive(Debug, Default)]
struct State {
    /// File ids by path, compared as bytes (lamplog builds every path the
    /// same way; a byte compare is much faster than `Path`'s).
    names: BTreeMap<OsString, usize>,
    files: Vec<Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
    log: Vec<SimOp>,
    /// The fault to inject, and the write or sync (counted from 1) it hits.
    fault: Option<(Fault, usize)>,
    /// Writes and syncs so far.
    io_count: usize,
    /// The durable state the log starts from (a crash image's contents).
    base_names: BTreeMap<OsString, usize>,
    base_files: Vec<Vec<u8>>,
    /// How long an fdatasync takes (none unless a test sets it).
    sync_time: std::time::Duration,
}

/// An I/O failure the disk can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// fdatasync (or a directory fsync) fails with EIO.
    SyncEio,
    /// A write lands half, then fails with ENOSPC.
    WriteEnospc,
    /// Every read (and map) of a segment fails with EIO.
    ReadEio,
}

impl State {
    fn reads_fail(&self) -> bool {
        matches!(self.fault, Some((Fault::ReadEio, _)))
    }

    /// Count a write or sync; whether the fault fires on this one.
    fn fires(&mut self, write: bool) -> bool {
        self.io_count += 1;
        match self.fault {
            Some((Fault::SyncEio, n)) => !write && self.io_count >= n,
            Some((Fault::WriteEnospc, n)) => write && self.io_count >= n,
            Some((Fault::ReadEio, _)) | None => false,
        }
    }
}

/// The disk. Clones share it: give one to a store
/// ([`Store::open_with`](crate::Store::open_with)) and keep one to inject
/// faults and take crash images.
#[derive(Debug, Clone)]
pub struct SimDisk(Arc<Mutex<State>>);

impl Default for SimDisk {
    fn default() -> SimDisk {
        SimDisk::from_state(State::default())
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    id: usize,
}

#[derive(Debug)]
struct NoLock;
impl LockGuard for NoLock {}

/// What happens to writes that were not synced when the power went.
#[derive(Debug, Clone, Copy)]
pub enum Fate {
    /// None of them reach the disk.
    Lost,
    /// All of them do.
    Kept,
    /// The first `n` do.
    Prefix(usize),
    /// Each 512-byte sector of each write independently arrives, stays old,
    /// is zeroed, or holds garbage (seeded).
    Torn(u64),
}

impl SimDisk {
    fn from_state(state: State) -> SimDisk {
        SimDisk(Arc::new(Mutex::new(state)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked mid-operation leaves a state worth reading.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From the `n`th write or sync on (counted from now), fail as `fault` says.
    pub fn inject(&self, fault: Fault, n: usize) {
        let mut state = self.lock();
        let at = state.io_count + n;
        state.fault = Some((fault, at));
    }

    /// Make every file fdatasync take `t` of wall time, as a real one does
    /// (about 0.25 ms here): a thread acknowledged by a write, not a sync,
    /// then records its acknowledgement before the sync lands, so crash
    /// images catch it whatever the machine's load.
    pub fn set_sync_time(&self, t: std::time::Duration) {
        self.lock().sync_time = t;
    }

    /// Stop injecting faults ("space was freed").
    pub fn heal(&self) {
        self.lock().fault = None;
    }

    /// Number of operations so far (a crash point).
    pub fn ops(&self) -> usize {
        self.lock().log.len()
    }

    /// Indexes of the sync operations, the crash points worth checking.
    pub fn sync_points(&self) -> Vec<usize> {
        let state = self.lock();
        state
            .log
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, SimOp::SyncFile(_) | SimOp::SyncDir(_)))
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// The disk after a power cut right after operation `at`: durable data
    /// and directory entries, plus the unsynced writes as `fate` says.
    /// With `entries_kept`, unsynced directory changes were persisted too
    /// (ext4 often does); without, a file whose entry was never synced is gone.
    pub fn crash_image(&self, at: usize, fate: Fate, entries_kept: bool) -> SimDisk {
        let mut image = None;
        self.crash_images(&[at], &[(fate, entries_kept)], |_, _, _, disk| {
            image = Some(disk)
        });
        image.expect("one image")
    }

    /// `visit(at, fate, entries_kept, image)` for every point of `points`
    /// (ascending) and every `(fate, entries_kept)` of `fates`, replaying the
    /// operation log once for all of them. `visit` must not use this disk
    /// (it is locked meanwhile), only the image.
    pub fn crash_images(
        &self,
        points: &[usize],
        fates: &[(Fate, bool)],
        mut visit: impl FnMut(usize, Fate, bool, SimDisk),
    ) {
        assert!(points.windows(2).all(|w| w[0] <= w[1]), "points ascend");
        let state = self.lock();
        let mut replay = Replay::new(&state);
        let mut done = 0;
        for &at in points {
            for op in &state.log[done..at] {
                replay.step(op);
            }
            done = at;
            for &(fate, entries_kept) in fates {
                visit(
                    at,
                    fate,
                    entries_kept,
                    replay.image(&state.dirs, fate, entries_kept),
                );
            }
        }
    }

    /// What `path` would hold after a power cut now that lost every
    /// unsynced write (its unsynced directory entry kept); `None` if the
    /// file does not exist.
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.crash_image(self.ops(), Fate::Lost, true)
            .file_bytes(path)
    }

    /// What `path` holds now, synced or not; `None` if it does not exist.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = *state.names.get(path.as_os_str())?;
        state.files.get(id).cloned()
    }
}

impl Backend for SimDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for dir in path.ancestors() {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let files = state.names.keys().map(Path::new);
        let children = files
            .chain(state.dirs.iter().map(PathBuf::as_path))
            .filter(|p| p.parent() == Some(path));
        let mut names: Vec<String> = children
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        let mut state = self.lock();
        let id = match (state.names.get(path.as_os_str()).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => return Err(io::ErrorKind::AlreadyExists.into()),
            (Some(id), _) => id,
            (None, OpenMode::CreateNew) => {
                let id = state.files.len();
                state.files.push(Vec::new());
                state.names.insert(path.as_os_str().to_owned(), id);
                state.log.push(SimOp::Create(path.to_path_buf(), id));
                id
            }
            (None, _) => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            id,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let id = state
            .names
            .remove(from.as_os_str())
            .ok_or(io::ErrorKind::NotFound)?;
        state.names.insert(to.as_os_str().to_owned(), id);
        state
            .log
            .push(SimOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state
            .names
            .remove(path.as_os_str())
            .ok_or(io::ErrorKind::NotFound)?;
        state.log.push(SimOp::Remove(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.lock().log.push(SimOp::SyncDir(path.to_path_buf()));
        Ok(())
    }

    fn try_lock(&self, _: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        Ok(Some(Box::new(NoLock)))
    }
}

impl BackendFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk.lock().files[self.id].len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.disk.lock();
        if state.reads_fail() {
            return Err(io::Error::from_raw_os_error(5));
        }
        let data = &state.files[self.id];
        let src = data
            .get(offset as usize..offset as usize + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        if state.fires(true) {
            let op = SimOp::Write(self.id, offset, buf[..buf.len() / 2].to_vec());
            apply(&mut state.files[self.id], &op);
            state.log.push(op);
            return Err(io::Error::from_raw_os_error(28));
        }
        let op = SimOp::Write(self.id, offset, buf.to_vec());
        apply(&mut state.files[self.id], &op);
        state.log.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let sync_time = self.disk.lock().sync_time;
        #[cfg(not(loom))]
        if !sync_time.is_zero() {
            std::thread::sleep(sync_time);
        }
        #[cfg(loom)]
        let _ = sync_time;
        let mut state = self.disk.lock();
        if state.fires(false) {
            // The kernel may have dropped the dirty pages: what the sync
            // covered is not durable, and a retry must not say it is.
            return Err(io::Error::from_raw_os_error(5));
        }
        state.log.push(SimOp::SyncFile(self.id));
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        let op = SimOp::SetLen(self.id, len);
        apply(&mut state.files[self.id], &op);
        state.log.push(op);
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if len > self.len()? {
            self.set_len(len)?;
        }
        Ok(())
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        let state = self.disk.lock();
        if state.reads_fail() {
            return Err(io::Error::from_raw_os_error(5));
        }
        let data = state.files[self.id]
            .get(..len as usize)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        Ok(Bytes::copy_from_slice(data))
    }
}
