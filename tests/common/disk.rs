//! Where a test's store lives: a temporary directory on the real filesystem,
//! or the simulated disk. Tests written against `Disk` run on both (as
//! okaywal runs its tests on disk and in memory): the real one checks what
//! the kernel does, the simulated one what lamplog asks of the disk. Every
//! file access goes through the store's own backend, so both disks are
//! read and damaged the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lamplog::testing::{Backend, Fate, OpenMode, SimDisk, StdBackend};
use lamplog::{Options, Store};

/// A disk with a store's root on it.
pub enum Disk {
    Real(tempfile::TempDir),
    Sim(SimDisk),
}

/// The store's root on the simulated disk.
const SIM_ROOT: &str = "/db";

impl Disk {
    /// A fresh disk of each kind.
    pub fn both() -> [Disk; 2] {
        [
            Disk::Real(tempfile::tempdir().unwrap()),
            Disk::Sim(SimDisk::default()),
        ]
    }

    /// A fresh disk of the same kind.
    pub fn empty_like(&self) -> Disk {
        match self {
            Disk::Real(_) => Disk::Real(tempfile::tempdir().unwrap()),
            Disk::Sim(_) => Disk::Sim(SimDisk::default()),
        }
    }

    /// Which kind, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Disk::Real(_) => "real disk",
            Disk::Sim(_) => "simulated disk",
        }
    }

    pub fn root(&self) -> PathBuf {
        match self {
            Disk::Real(dir) => dir.path().to_path_buf(),
            Disk::Sim(_) => PathBuf::from(SIM_ROOT),
        }
    }

    fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Disk::Real(_) => Arc::new(StdBackend::default()),
            Disk::Sim(disk) => Arc::new(disk.clone()),
        }
    }

    /// Open the store (the real disk through `Store::open` itself).
    pub fn try_open(&self, opts: Options) -> lamplog::Result<Store> {
        match self {
            Disk::Real(dir) => Store::open(dir.path(), opts),
            Disk::Sim(disk) => Store::open_with(Arc::new(disk.clone()), SIM_ROOT, opts),
        }
    }

    pub fn open(&self, opts: Options) -> Store {
        self.try_open(opts)
            .unwrap_or_else(|e| panic!("open on the {}: {e}", self.name()))
    }

    /// Another disk of the same kind holding the same files now (for
    /// destructive experiments on one prepared store).
    pub fn copy(&self) -> Disk {
        match self {
            Disk::Real(dir) => {
                let copy = tempfile::tempdir().unwrap();
                super::copy_dir(dir.path(), copy.path());
                Disk::Real(copy)
            }
            Disk::Sim(disk) => Disk::Sim(disk.crash_image(disk.ops(), Fate::Kept, true)),
        }
    }

    pub fn read(&self, path: &Path) -> Vec<u8> {
        let file = self.backend().open(path, OpenMode::Read).unwrap();
        let mut bytes = vec![0; file.len().unwrap() as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    }

    /// Replace the file's content with `bytes`, creating it if need be.
    pub fn write(&self, path: &Path, bytes: &[u8]) {
        let backend = self.backend();
        let file = match backend.open(path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(_) => backend.open(path, OpenMode::CreateNew).unwrap(),
        };
        file.set_len(0).unwrap();
        file.write_all_at(bytes, 0).unwrap();
    }

    /// Overwrite bytes of a file at `offset`.
    pub fn patch(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let file = self.backend().open(path, OpenMode::ReadWrite).unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    pub fn truncate(&self, path: &Path, len: u64) {
        let file = self.backend().open(path, OpenMode::ReadWrite).unwrap();
        file.set_len(len).unwrap();
    }

    pub fn remove(&self, path: &Path) {
        self.backend().remove_file(path).unwrap();
    }

    /// The files in `dir` with one of the extensions `exts`, sorted (none
    /// if `dir` does not exist).
    pub fn files_with_ext(&self, dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
        let names = self.backend().list_dir(dir).unwrap_or_default();
        let mut files: Vec<PathBuf> = names
            .iter()
            .map(|name| dir.join(name))
            .filter(|p| p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)))
            .collect();
        files.sort();
        files
    }

    /// A stream's segment files, oldest first.
    pub fn segments(&self, stream: &str) -> Vec<PathBuf> {
        self.files_with_ext(&super::stream_dir(&self.root(), stream), &["seg"])
    }

    /// The files in a stream's quarantine folder.
    pub fn quarantined(&self, stream: &str) -> Vec<PathBuf> {
        let dir = super::stream_dir(&self.root(), stream).join(lamplog::QUARANTINE_DIR);
        let names = self.backend().list_dir(&dir).unwrap_or_default();
        names.iter().map(|name| dir.join(name)).collect()
    }

    /// `[start, end)` of every data frame in a segment file.
    pub fn frame_spans(&self, segment: &Path) -> Vec<(u64, u64)> {
        super::frame_spans_of(&self.read(segment))
    }
}
