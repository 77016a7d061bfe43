//! fjall (an LSM-tree key-value store) with its default configuration: one
//! keyspace whose keys are big-endian sequence numbers, so that iteration
//! is log order. A durable append is an `insert` followed by
//! `persist(PersistMode::SyncData)` of the journal; records one by one are
//! inserts and one persist; a batch is a `WriteBatch` committed with
//! `SyncData` durability.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Log, Replayed, Result};

const KEYSPACE: &str = "log";

pub struct Fjall {
    db: Database,
    log: Keyspace,
    /// The last sequence number given out.
    last_seq: AtomicU64,
}

fn open_keyspace(dir: &Path) -> Result<(Database, Keyspace)> {
    let db = Database::builder(dir).open()?;
    let log = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
    Ok((db, log))
}

impl Fjall {
    pub fn open(dir: &Path) -> Result<Fjall> {
        let (db, log) = open_keyspace(dir)?;
        let last_seq = match log.last_key_value() {
            Some(last) => {
                let key = last.key()?;
                u64::from_be_bytes(key[..].try_into().map_err(|_| "a key of 8 bytes")?)
            }
            None => 0,
        };
        Ok(Fjall {
            db,
            log,
            last_seq: AtomicU64::new(last_seq),
        })
    }

    fn insert(&self, payload: &[u8]) -> Result<()> {
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.log.insert(seq.to_be_bytes(), payload)?;
        Ok(())
    }
}

impl Log for Fjall {
    fn append_durable(&self, _writer: usize, _index: u64, payload: &[u8]) -> Result<()> {
        self.insert(payload)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn append_each(&self, records: &[Vec<u8>]) -> Result<()> {
        for record in records {
            self.insert(record)?;
        }
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()> {
        let first = self
            .last_seq
            .fetch_add(records.len() as u64, Ordering::Relaxed)
            + 1;
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for (seq, record) in (first..).zip(records) {
            batch.insert(&self.log, seq.to_be_bytes(), record.as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        // Dropping the database persists the journal with SyncAll.
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }
}

pub fn replay(dir: &Path) -> Result<Replayed> {
    let (_db, log) = open_keyspace(dir)?;
    let mut replayed = Replayed {
        records: 0,
        payload_bytes: 0,
    };
    for guard in log.iter() {
        let value = guard.value()?;
        replayed.records += 1;
        replayed.payload_bytes += value.len() as u64;
    }
    Ok(replayed)
}
