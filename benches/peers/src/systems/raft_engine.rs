//! raft-engine (TiKV's raft log store) with its default configuration. Its
//! log is a set of raft groups, each an indexed run of protobuf entries
//! that one thread appends; so each writer appends to a raft group of its
//! own, with a `LogBatch` written with `sync = true`, and the engine
//! commits concurrent writers' batches together. An entry is a protobuf
//! `BytesValue` holding the entry's index (8 bytes) and the payload, as a
//! raft `Entry` holds its index beside its data. Ingest record by record
//! writes each as a batch of its own with `sync = false` and then syncs the
//! engine; a batch is one `LogBatch` of all the entries.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt};

use super::{Log, Replayed, Result};

/// The raft group of buffered ingest; writer `w` appends durably to group
/// `w + 1`.
const INGEST_GROUP: u64 = 0;
/// Entries fetched per call in a replay.
const FETCH_ENTRIES: u64 = 4096;

#[derive(Clone)]
struct Entries;

impl MessageExt for Entries {
    type Entry = BytesValue;

    fn index(e: &BytesValue) -> u64 {
        let head: [u8; 8] = e.value[..8]
            .try_into()
            .expect("every entry starts with its index");
        u64::from_le_bytes(head)
    }
}

fn entry(index: u64, payload: &[u8]) -> BytesValue {
    let mut value = Vec::with_capacity(8 + payload.len());
    value.extend_from_slice(&index.to_le_bytes());
    value.extend_from_slice(payload);
    let mut entry = BytesValue::new();
    entry.value = value;
    entry
}

pub struct RaftEngine {
    engine: Engine,
    /// The last index of the ingest group.
    ingested: AtomicU64,
}

impl RaftEngine {
    pub fn open(dir: &Path) -> Result<RaftEngine> {
        let engine = open_engine(dir)?;
        let ingested = AtomicU64::new(engine.last_index(INGEST_GROUP).unwrap_or(0));
        Ok(RaftEngine { engine, ingested })
    }
}

fn open_engine(dir: &Path) -> Result<Engine> {
    let config = Config {
        dir: dir
            .to_str()
            .ok_or("raft-engine needs a UTF-8 path")?
            .to_owned(),
        ..Config::default()
    };
    Ok(Engine::open(config)?)
}

impl Log for RaftEngine {
    fn append_durable(&self, writer: usize, index: u64, payload: &[u8]) -> Result<()> {
        let mut batch = LogBatch::default();
        batch.add_entries::<Entries>(writer as u64 + 1, &[entry(index, payload)])?;
        self.engine.write(&mut batch, true)?;
        Ok(())
    }

    fn append_each(&self, records: &[Vec<u8>]) -> Result<()> {
        let mut batch = LogBatch::default();
        for payload in records {
            let index = self.ingested.fetch_add(1, Ordering::Relaxed) + 1;
            batch.add_entries::<Entries>(INGEST_GROUP, &[entry(index, payload)])?;
            self.engine.write(&mut batch, false)?;
        }
        self.engine.sync()?;
        Ok(())
    }

    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()> {
        let first = self
            .ingested
            .fetch_add(records.len() as u64, Ordering::Relaxed)
            + 1;
        let entries: Vec<_> = (first..)
            .zip(records)
            .map(|(index, payload)| entry(index, payload))
            .collect();
        let mut batch = LogBatch::default();
        batch.add_entries::<Entries>(INGEST_GROUP, &entries)?;
        self.engine.write(&mut batch, true)?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.engine.sync()?;
        Ok(())
    }
}

pub fn replay(dir: &Path) -> Result<Replayed> {
    let engine = open_engine(dir)?;
    let mut replayed = Replayed {
        records: 0,
        payload_bytes: 0,
    };
    let mut groups = engine.raft_groups();
    groups.sort_unstable();
    let mut entries = Vec::new();
    for group in groups {
        let (Some(first), Some(last)) = (engine.first_index(group), engine.last_index(group))
        else {
            continue;
        };
        let mut next = first;
        while next <= last {
            let end = (next + FETCH_ENTRIES).min(last + 1);
            entries.clear();
            engine.fetch_entries_to::<Entries>(group, next, end, None, &mut entries)?;
            for e in &entries {
                replayed.records += 1;
                replayed.payload_bytes += e.value.len() as u64 - 8;
            }
            next = end;
        }
    }
    Ok(replayed)
}
