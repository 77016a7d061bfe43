//! Preallocation ahead of the writer. Growing a segment writes zeros into
//! the page cache (docs/FORMAT.md, "preallocation"), which costs as much as
//! the records that later overwrite them; in a helper thread it overlaps
//! the writer's own work on another core instead of stopping it. A helper
//! grows the file by the next step as soon as less than a step is left
//! (only for steps of 256 KiB and more, so small segments never pay for a
//! thread), and the writer only waits for it if it catches up.

use std::io;
use std::sync::Arc;

use crate::io::backend::BackendFile;

/// The smallest step worth a helper thread: a thread costs about as much
/// as writing 10 KiB of zeros.
pub(super) const AHEAD_STEP_MIN: u64 = 256 << 10;

/// A growth in progress: the file is being extended to `target`.
#[derive(Debug)]
pub(super) struct Growth {
    target: u64,
    /// `None` if no thread could be started.
    #[cfg(not(loom))]
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    #[cfg(loom)]
    result: io::Result<()>,
}

impl Growth {
    /// Extend `file` to `target` (`BackendFile::allocate`) in a helper
    /// thread. The writer writes only below the length it was last told,
    /// and `allocate` only above the file's length, so the two never touch
    /// the same bytes.
    pub fn start(file: Arc<dyn BackendFile>, target: u64) -> Growth {
        #[cfg(not(loom))]
        {
            // No thread to be had: the writer grows the file itself when it
            // needs the space.
            let thread = std::thread::Builder::new()
                .name("lamplog-grow".into())
                .spawn(move || file.allocate(target))
                .ok();
            Growth { target, thread }
        }
        // The loom models run no threads of their own outside loom's.
        #[cfg(loom)]
        Growth {
            target,
            result: file.allocate(target),
        }
    }

    pub fn is_finished(&self) -> bool {
        #[cfg(not(loom))]
        return self.thread.as_ref().is_none_or(|t| t.is_finished());
        #[cfg(loom)]
        true
    }

    /// Wait for the growth: the length the file now has, if it worked. A
    /// failure is not reported here: the writer grows the file itself when
    /// it needs the space, and gets the error then.
    pub fn finish(self) -> Option<u64> {
        #[cfg(not(loom))]
        let result = match self.thread {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the preallocation thread panicked"))),
            None => Err(io::Error::other("no preallocation thread")),
        };
        #[cfg(loom)]
        let result = self.result;
        result.ok().map(|()| self.target)
    }
}
