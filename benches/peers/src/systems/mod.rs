//! The logs under comparison, each behind one small trait, used the way its
//! own documentation says a durable append is made.

use std::path::Path;

mod fjall;
mod jsonl;
mod lamplog;
mod okaywal;
mod raft_engine;
mod sqlite;

pub use self::lamplog::Lamplog;

/// Errors of any engine: the benchmark only reports them.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// An open log.
pub trait Log: Send + Sync {
    /// Appends one record for writer `writer` (its `index`th, from 1) and
    /// returns once the record is durable. Writers run on threads of their
    /// own; engines that key records by writer (raft-engine's raft groups)
    /// use the two numbers, the others ignore them.
    fn append_durable(&self, writer: usize, index: u64, payload: &[u8]) -> Result<()>;

    /// Appends `records` with one call each, without waiting for the disk,
    /// then makes them durable with one sync.
    fn append_each(&self, records: &[Vec<u8>]) -> Result<()>;

    /// Appends `records` as the engine's own batch (one call, or one
    /// transaction) and returns once they are durable.
    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()>;

    /// Closes the log cleanly, as a host would at shutdown.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Records and payload bytes read back by a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub records: u64,
    pub payload_bytes: u64,
}

/// One of the systems under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    Lamplog,
    RaftEngine,
    Okaywal,
    Fjall,
    Sqlite,
    /// The seeds' agent log: one O_APPEND JSONL file, write + fdatasync.
    Jsonl,
}

impl System {
    pub const ALL: [System; 6] = [
        System::Lamplog,
        System::RaftEngine,
        System::Okaywal,
        System::Fjall,
        System::Sqlite,
        System::Jsonl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Lamplog => "lamplog",
            System::RaftEngine => "raft-engine",
            System::Okaywal => "okaywal",
            System::Fjall => "fjall",
            System::Sqlite => "sqlite",
            System::Jsonl => "jsonl",
        }
    }

    /// Opens (creating, or recovering) the log in `dir`, ready to append.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Log>> {
        Ok(match self {
            System::Lamplog => Box::new(lamplog::Lamplog::open(dir)?),
            System::RaftEngine => Box::new(raft_engine::RaftEngine::open(dir)?),
            System::Okaywal => Box::new(okaywal::Okaywal::open(dir)?.0),
            System::Fjall => Box::new(fjall::Fjall::open(dir)?),
            System::Sqlite => Box::new(sqlite::Sqlite::open(dir)?),
            System::Jsonl => Box::new(jsonl::Jsonl::open(dir)?),
        })
    }

    /// Whether opening the log takes its records out of it: okaywal
    /// checkpoints what it recovers, so its log can be reopened once.
    pub fn open_consumes_log(self) -> bool {
        self == System::Okaywal
    }

    /// Opens the log in `dir` and reads every record back in order, checked
    /// as far as the engine checks what it reads (a CRC for lamplog,
    /// raft-engine and okaywal, fjall's block checksums, SQLite's page
    /// structure, a JSON parse of each line for the JSONL file).
    pub fn replay(self, dir: &Path) -> Result<Replayed> {
        match self {
            System::Lamplog => lamplog::replay(dir),
            System::RaftEngine => raft_engine::replay(dir),
            System::Okaywal => Ok(okaywal::Okaywal::open(dir)?.1),
            System::Fjall => fjall::replay(dir),
            System::Sqlite => sqlite::replay(dir),
            System::Jsonl => jsonl::replay(dir),
        }
    }
}
