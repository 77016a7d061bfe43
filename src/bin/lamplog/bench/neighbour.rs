//! A neighbour for a bench row: another writer on the same filesystem, as a
//! busy process beside the host would be. It overwrites a 1 GiB file in
//! 1 MiB buffered writes at a set rate and never syncs, so what it costs a
//! row is the writeback a sync of the row's files (or of the whole
//! filesystem) must wait for.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FILE_BYTES: u64 = 1 << 30;
const WRITE_BYTES: usize = 1 << 20;

/// A running neighbour; it stops, and its file goes, when dropped.
pub struct Neighbour {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Neighbour {
    /// Start writing `mb_s` MB/s into `path`.
    pub fn start(path: &Path, mb_s: u32) -> std::io::Result<Neighbour> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        let path = path.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let chunk = vec![0x5au8; WRITE_BYTES];
            let per_write = Duration::from_secs_f64(WRITE_BYTES as f64 / (f64::from(mb_s) * 1e6));
            let (start, mut writes, mut offset) = (Instant::now(), 0u32, 0u64);
            while !stopped.load(Ordering::Relaxed) {
                if file.write_all_at(&chunk, offset).is_err() {
                    break;
                }
                offset = (offset + WRITE_BYTES as u64) % FILE_BYTES;
                writes += 1;
                if let Some(ahead) = (per_write * writes).checked_sub(start.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
            drop(file);
            let _ = std::fs::remove_file(path);
        });
        Ok(Neighbour {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
