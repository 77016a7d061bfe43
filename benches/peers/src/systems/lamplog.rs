//! lamplog itself, with its default options: one stream that every writer
//! appends to with `Durability::Sync`; a batch is one `append_batch`.

use std::path::Path;

use lamplog::{Durability, Options, Store, Stream};

use super::{Log, Replayed, Result};

const STREAM: &str = "bench";

pub struct Lamplog {
    store: Store,
    stream: Stream,
}

impl Lamplog {
    pub fn open(dir: &Path) -> Result<Lamplog> {
        let store = Store::open(dir, Options::default())?;
        let stream = store.stream(STREAM)?;
        Ok(Lamplog { store, stream })
    }

    /// The stream, for the in-flight workload that only lamplog offers.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }
}

impl Log for Lamplog {
    fn append_durable(&self, _writer: usize, _index: u64, payload: &[u8]) -> Result<()> {
        self.stream.append(payload, Durability::Sync)?;
        Ok(())
    }

    fn append_each(&self, records: &[Vec<u8>]) -> Result<()> {
        for record in records {
            self.stream.append(record, Durability::Buffered)?;
        }
        self.stream.sync()?;
        Ok(())
    }

    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()> {
        self.stream.append_batch(records, Durability::Sync)?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        let Lamplog { store, stream } = *self;
        drop(stream);
        store.close()?;
        Ok(())
    }
}

pub fn replay(dir: &Path) -> Result<Replayed> {
    let store = Store::open(dir, Options::default().read_only(true))?;
    let mut replayed = Replayed {
        records: 0,
        payload_bytes: 0,
    };
    for record in store.stream(STREAM)?.iter() {
        let record = record?;
        replayed.records += 1;
        replayed.payload_bytes += record.payload().len() as u64;
    }
    Ok(replayed)
}
