//! How the syncer issues a batch of fdatasyncs: one after another (the
//! portable pwrite backend), or all at once through io_uring, which lets
//! the kernel and the device work on many files' syncs together.

use std::io;
use std::sync::Arc;

use crate::backend::BackendFile;
use crate::options::IoBackend;

#[derive(Debug)]
pub(crate) enum SyncEngine {
    Sequential,
    #[cfg(feature = "io-uring")]
    Uring(Box<crate::sys::uring::Ring>),
}

impl SyncEngine {
    /// The engine for `choice`, and why it is not the one asked for, if so.
    pub fn new(choice: IoBackend) -> (SyncEngine, Option<String>) {
        match choice {
            IoBackend::Pwrite => (SyncEngine::Sequential, None),
            #[cfg(feature = "io-uring")]
            IoBackend::IoUring => match crate::sys::uring::Ring::new() {
                Ok(ring) => (SyncEngine::Uring(Box::new(ring)), None),
                Err(e) => (
                    SyncEngine::Sequential,
                    Some(format!("io_uring unavailable ({e}); using pwrite")),
                ),
            },
            #[cfg(not(feature = "io-uring"))]
            IoBackend::IoUring => (
                SyncEngine::Sequential,
                Some("built without the io-uring feature; using pwrite".into()),
            ),
        }
    }

    pub fn backend(&self) -> IoBackend {
        match self {
            SyncEngine::Sequential => IoBackend::Pwrite,
            #[cfg(feature = "io-uring")]
            SyncEngine::Uring(_) => IoBackend::IoUring,
        }
    }

    /// fdatasync every file; one result per file, in order.
    pub fn sync_all(&mut self, files: &[Arc<dyn BackendFile>]) -> Vec<io::Result<()>> {
        match self {
            #[cfg(feature = "io-uring")]
            SyncEngine::Uring(ring) if files.len() > 1 => {
                // A simulated file has no descriptor: sync those directly.
                let fds: Option<Vec<_>> = files.iter().map(|f| f.raw_fd()).collect();
                match fds {
                    Some(fds) => ring.sync_all(&fds),
                    None => files.iter().map(|f| f.sync_data()).collect(),
                }
            }
            _ => files.iter().map(|f| f.sync_data()).collect(),
        }
    }
}
