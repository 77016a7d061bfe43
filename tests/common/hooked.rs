//! The real filesystem with hooks that change what some calls see or do,
//! to stage races and faults deterministically: a directory listing that
//! misses entries created meanwhile, a view of a file taken while it was
//! being written, a slow directory creation, a short write, a failed sync.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use lamplog::testing::{Backend, BackendFile, LockGuard, OpenMode, StdBackend};

type Hook<T> = Option<Box<dyn Fn(&Path, &mut T) + Send + Sync>>;
type Before = Option<Box<dyn Fn(&Path) + Send + Sync>>;
type Fail<T> = Option<Box<dyn Fn(&Path, &T) -> Option<io::Error> + Send + Sync>>;

/// `StdBackend`, with hooks. Its files have no descriptor to give io_uring,
/// so every fdatasync goes through `sync_data`, where the hooks see it.
#[derive(Default)]
pub struct Hooked {
    /// May edit the names a listing returns.
    pub list_dir: Hook<Vec<String>>,
    /// May edit a view of a file (the view becomes a copy).
    pub map: Hook<Vec<u8>>,
    /// Runs before a directory is created.
    pub create_dir_all: Before,
    /// Given a file and the bytes of a write: `Some(error)` makes the write
    /// land half of them, then fail with `error` (a short write).
    pub write: Fail<[u8]>,
    /// `Some(error)` makes an fdatasync fail with it, syncing nothing.
    pub sync_data: Fail<()>,
    /// `Some(error)` makes a syncfs fail with it, syncing nothing.
    pub sync_filesystem: Fail<()>,
    /// Every sync succeeds without syncing: for building large fixtures
    /// fast, where durability is not what a test checks.
    pub skip_syncs: bool,
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hooked")
    }
}

#[derive(Debug)]
struct HookedFile {
    path: std::path::PathBuf,
    inner: Arc<dyn BackendFile>,
    hooks: Arc<Hooked>,
}

/// A shared handle, so that files can reach the hooks.
#[derive(Debug, Clone)]
pub struct HookedBackend(pub Arc<Hooked>);

impl Backend for HookedBackend {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if let Some(hook) = &self.0.create_dir_all {
            hook(path);
        }
        StdBackend::default().create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = StdBackend::default().list_dir(path)?;
        if let Some(hook) = &self.0.list_dir {
            hook(path, &mut names);
        }
        Ok(names)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        Ok(Arc::new(HookedFile {
            path: path.to_path_buf(),
            inner: StdBackend::default().open(path, mode)?,
            hooks: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdBackend::default().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdBackend::default().remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        StdBackend::default().remove_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.0.skip_syncs {
            return Ok(());
        }
        StdBackend::default().sync_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        StdBackend::default().try_lock(path)
    }
}

impl BackendFile for HookedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(error) = self.hooks.write.as_ref().and_then(|h| h(&self.path, buf)) {
            self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(error);
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(error) = self
            .hooks
            .sync_data
            .as_ref()
            .and_then(|h| h(&self.path, &()))
        {
            return Err(error);
        }
        if self.hooks.skip_syncs {
            return Ok(());
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn filesystem_id(&self) -> Option<u64> {
        self.inner.filesystem_id()
    }
    fn sync_filesystem(&self) -> io::Result<()> {
        let hook = self.hooks.sync_filesystem.as_ref();
        if let Some(error) = hook.and_then(|h| h(&self.path, &())) {
            return Err(error);
        }
        self.inner.sync_filesystem()
    }
    fn map(&self, len: u64) -> io::Result<Bytes> {
        let map = self.inner.map(len)?;
        let Some(hook) = &self.hooks.map else {
            return Ok(map);
        };
        let mut bytes = map.to_vec();
        hook(&self.path, &mut bytes);
        Ok(Bytes::from(bytes))
    }
}
