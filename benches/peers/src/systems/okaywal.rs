//! okaywal (the write-ahead log of BonsaiDb) with its default buffers and
//! segments preallocated as large as lamplog's (64 MiB). A durable append
//! is an entry of one chunk: `begin_entry`, `write_chunk`, `commit`, which
//! returns once synced, concurrent writers' commits sharing a sync. okaywal
//! has no unsynced commit, so records appended one by one, or as a batch,
//! are one entry of a chunk each. As a WAL it expects its host to checkpoint entries away;
//! here nothing is checkpointed (`checkpoint_after_bytes` is unbounded),
//! so that every record stays in the log to replay, as in the other logs.
//!
//! okaywal reads its log only when it opens: its `LogManager` is handed
//! each entry, and once open, okaywal checkpoints what it recovered, which
//! takes it out of the log. So a host must read every record as it opens
//! (this adapter does, checking each chunk's CRC), and an open is a replay.

use std::path::Path;
use std::sync::{Arc, Mutex};

use okaywal::{Configuration, Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};

use super::{Log, Replayed, Result};

const PREALLOCATE_BYTES: u32 = 64 << 20;

/// Reads recovered entries into a count.
#[derive(Debug)]
struct Recovery {
    replayed: Arc<Mutex<Replayed>>,
}

impl LogManager for Recovery {
    fn recover(&mut self, entry: &mut Entry<'_>) -> std::io::Result<()> {
        // None: an entry cut by a crash, which okaywal's readers skip.
        if let Some(chunks) = entry.read_all_chunks()? {
            let mut replayed = self.replayed.lock().expect("no panic holds the count");
            for chunk in chunks {
                replayed.records += 1;
                replayed.payload_bytes += chunk.len() as u64;
            }
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Okaywal {
    wal: WriteAheadLog,
}

impl Okaywal {
    /// Opens the log in `dir`, reading every record.
    pub fn open(dir: &Path) -> Result<(Okaywal, Replayed)> {
        let replayed = Arc::new(Mutex::new(Replayed {
            records: 0,
            payload_bytes: 0,
        }));
        let manager = Recovery {
            replayed: replayed.clone(),
        };
        let wal = Configuration::default_for(dir)
            .preallocate_bytes(PREALLOCATE_BYTES)
            .checkpoint_after_bytes(u64::MAX)
            .open(manager)?;
        let replayed = *replayed.lock().expect("no panic holds the count");
        Ok((Okaywal { wal }, replayed))
    }
}

impl Log for Okaywal {
    fn append_durable(&self, _writer: usize, _index: u64, payload: &[u8]) -> Result<()> {
        let mut entry = self.wal.begin_entry()?;
        entry.write_chunk(payload)?;
        entry.commit()?;
        Ok(())
    }

    fn append_each(&self, records: &[Vec<u8>]) -> Result<()> {
        let mut entry = self.wal.begin_entry()?;
        for record in records {
            entry.write_chunk(record)?;
        }
        entry.commit()?;
        Ok(())
    }

    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()> {
        self.append_each(records)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.wal.shutdown()?;
        Ok(())
    }
}
