//! What both benchmarks need of the disk under test (the peers benchmark in
//! benches/peers includes this file by path): a fresh directory on it, and
//! the raw baseline they measure beside their rows, one writer doing
//! `pwrite` + `fdatasync` per record into a plain file, as the seeds' agent
//! log does, after a sync(2) of the whole system.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A fresh directory for a run's logs, removed when dropped: under `dir`, or
/// hidden in the current directory, so that the disk under test is the one
/// the user runs from. `name` prefixes it.
pub fn bench_dir(dir: Option<&Path>, name: &str) -> std::io::Result<tempfile::TempDir> {
    match dir {
        Some(dir) => {
            fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix(&format!("{name}-"))
                .tempdir_in(dir)
        }
        None => tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .tempdir_in("."),
    }
}

/// Flushes every dirty page of the system: other files' dirty pages slow
/// every fdatasync on ext4, so each measurement starts from none.
pub fn sync_all() {
    rustix::fs::sync();
}

/// Records per second of one writer appending `record` and a newline with
/// `pwrite` + `fdatasync`, for 1.5 s and at least 500 records, in a file
/// of `dir` that it removes after.
pub fn baseline(dir: &Path, record: &[u8]) -> std::io::Result<f64> {
    let path = dir.join("baseline.jsonl");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let mut line = record.to_vec();
    line.push(b'\n');
    sync_all();
    let (start, mut n, mut offset) = (Instant::now(), 0u64, 0u64);
    while n < 500 || start.elapsed() < Duration::from_millis(1500) {
        file.write_all_at(&line, offset)?;
        file.sync_data()?;
        offset += line.len() as u64;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    fs::remove_file(path)?;
    Ok(rate)
}
