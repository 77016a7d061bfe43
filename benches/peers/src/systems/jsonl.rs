//! The seeds' agent log (../shared/seeds/004): one JSONL file opened with
//! O_APPEND, each record a line written with one `write` and made durable
//! with `fdatasync`; records one by one are lines and one `fdatasync`, a
//! batch is one `write` of all the lines and one `fdatasync`. Concurrent
//! writers share the file without a lock, as the design says. Opening
//! cuts a torn last line; a replay parses every line as JSON, the only
//! check the format allows.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Log, Replayed, Result};

fn log_path(dir: &Path) -> PathBuf {
    dir.join("agent.jsonl")
}

pub struct Jsonl {
    file: File,
}

impl Jsonl {
    pub fn open(dir: &Path) -> Result<Jsonl> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(log_path(dir))?;
        cut_torn_line(&file)?;
        Ok(Jsonl { file })
    }
}

/// Drops a last line without its newline: a write cut by a crash.
fn cut_torn_line(file: &File) -> Result<()> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(newline) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + newline as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        file.set_len(end)?;
    }
    Ok(())
}

fn line(payload: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(payload.len() + 1);
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

impl Log for Jsonl {
    fn append_durable(&self, _writer: usize, _index: u64, payload: &[u8]) -> Result<()> {
        (&self.file).write_all(&line(payload))?;
        self.file.sync_data()?;
        Ok(())
    }

    fn append_each(&self, records: &[Vec<u8>]) -> Result<()> {
        for record in records {
            (&self.file).write_all(&line(record))?;
        }
        self.file.sync_data()?;
        Ok(())
    }

    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()> {
        let lines: Vec<u8> = records.iter().flat_map(|r| line(r)).collect();
        (&self.file).write_all(&lines)?;
        self.file.sync_data()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }
}

pub fn replay(dir: &Path) -> Result<Replayed> {
    let text = fs::read(log_path(dir))?;
    let mut replayed = Replayed {
        records: 0,
        payload_bytes: 0,
    };
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<serde::de::IgnoredAny>(line)?;
        replayed.records += 1;
        replayed.payload_bytes += line.len() as u64;
    }
    Ok(replayed)
}
