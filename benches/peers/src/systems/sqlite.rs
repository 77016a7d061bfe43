//! SQLite (bundled, through rusqlite) in WAL mode with `synchronous=FULL`,
//! so that a committed transaction survives a power cut. The log is one
//! table keyed by rowid. SQLite allows one writer at a time, so writers
//! share one connection behind a mutex (separate connections would meet
//! in SQLite's busy handler, which sleeps). A durable append is one
//! autocommit `INSERT`; records one by one, or a batch, are the `INSERT`s
//! of one transaction.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use super::{Log, Replayed, Result};

const INSERT: &str = "INSERT INTO log (payload) VALUES (?1)";

pub struct Sqlite {
    connection: Mutex<Connection>,
}

fn connect(dir: &Path) -> Result<Connection> {
    let connection = Connection::open(dir.join("log.sqlite"))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.execute(
        "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)",
        (),
    )?;
    Ok(connection)
}

impl Sqlite {
    pub fn open(dir: &Path) -> Result<Sqlite> {
        std::fs::create_dir_all(dir)?;
        let connection = connect(dir)?;
        // The next seq, as a host would read it before appending; this
        // also makes SQLite read the WAL, if one was left.
        let _last: Option<i64> =
            connection.query_row("SELECT max(seq) FROM log", (), |row| row.get(0))?;
        Ok(Sqlite {
            connection: Mutex::new(connection),
        })
    }
}

impl Log for Sqlite {
    fn append_durable(&self, _writer: usize, _index: u64, payload: &[u8]) -> Result<()> {
        let connection = self.connection.lock().map_err(|_| "a writer panicked")?;
        connection.prepare_cached(INSERT)?.execute([payload])?;
        Ok(())
    }

    fn append_each(&self, records: &[Vec<u8>]) -> Result<()> {
        let mut connection = self.connection.lock().map_err(|_| "a writer panicked")?;
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(INSERT)?;
            for record in records {
                insert.execute([record])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn append_batch(&self, records: &[Vec<u8>]) -> Result<()> {
        self.append_each(records)
    }

    fn close(self: Box<Self>) -> Result<()> {
        let connection = self
            .connection
            .into_inner()
            .map_err(|_| "a writer panicked")?;
        connection.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

pub fn replay(dir: &Path) -> Result<Replayed> {
    let connection = connect(dir)?;
    let mut replayed = Replayed {
        records: 0,
        payload_bytes: 0,
    };
    let mut select = connection.prepare("SELECT payload FROM log ORDER BY seq")?;
    let mut rows = select.query(())?;
    while let Some(row) = rows.next()? {
        let payload = row.get_ref(0)?.as_blob()?;
        replayed.records += 1;
        replayed.payload_bytes += payload.len() as u64;
    }
    Ok(replayed)
}
