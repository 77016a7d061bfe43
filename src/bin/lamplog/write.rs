//! Commands that write: `append`.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;

use lamplog::{Durability, Options, Store};

use crate::failure::Failure;
use crate::open::report_cuts;
use crate::DurabilityArg;

pub fn append(dir: &Path, stream_name: &str, durability: DurabilityArg) -> Result<(), Failure> {
    let store = Store::open(dir, Options::default())?;
    report_cuts(&store);
    let stream = store.stream(stream_name)?;
    let mut acks = Acks {
        stream: &stream,
        sync: matches!(durability, DurabilityArg::Sync),
        unsynced: Vec::new(),
        out: Some(BufWriter::new(io::stdout().lock())),
        stored: 0,
    };
    let mut stdin = io::BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut line = Vec::new();
    let mut line_no = 0u64;
    // Every line is read and stored, whatever happens to stdout: a reader
    // that stops early (`| head -1`) loses its acknowledgements, not input.
    // On a bad line, everything stored before it is acknowledged first, so
    // that a retry from the bad line duplicates nothing.
    let failure = loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => line_no += 1,
            Err(e) => break Some((1, format!("stdin line {}: {e}", line_no + 1))),
        }
        let record = line.strip_suffix(b"\n").unwrap_or(&line);
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match stream.append(record, Durability::Buffered) {
            Ok(a) => acks.unsynced.push(a),
            Err(e) => {
                let f = Failure::from(e);
                break Some((f.code, format!("stdin line {line_no}: {}", f.message)));
            }
        }
        if stdin.buffer().is_empty() || acks.unsynced.len() >= 4096 {
            acks.flush()?;
        }
    };
    acks.flush()?;
    let stored = acks.stored;
    let acknowledged = acks.out.is_some();
    drop(acks);
    store.close()?;
    if !acknowledged {
        eprintln!(
            "lamplog: stdout was closed; all {stored} records were stored, \
             acknowledgements stopped early"
        );
    }
    match failure {
        None => Ok(()),
        Some((code, message)) => Err(Failure {
            code,
            message: format!("{message} ({stored} records before it stored and acknowledged)"),
        }),
    }
}

/// The acknowledgements of `append`: records are synced (for `--durability
/// sync`) and acknowledged in bursts. Once stdout is closed, records are
/// still synced and counted, no longer printed.
struct Acks<'a, W: Write> {
    stream: &'a lamplog::Stream,
    sync: bool,
    unsynced: Vec<lamplog::Appended>,
    out: Option<W>,
    stored: u64,
}

impl<W: Write> Acks<'_, W> {
    fn flush(&mut self) -> Result<(), Failure> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        if self.sync {
            self.stream.sync()?;
        }
        self.stored += self.unsynced.len() as u64;
        let Some(out) = &mut self.out else {
            self.unsynced.clear();
            return Ok(());
        };
        let printed = self
            .unsynced
            .drain(..)
            .try_for_each(|a| writeln!(out, r#"{{"seq":{},"lamport":{}}}"#, a.seq, a.lamport));
        match printed.and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.out = None;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
