//! An async host: many tasks on a small tokio runtime append ops and await
//! their durability, with no thread blocked per append.
//!
//! Each task appends with `Stream::append_pending`, which returns at once
//! with the record's seq; awaiting the `Pending` completes once a sync
//! covers the record. The sync machinery wakes the task; lamplog runs no
//! runtime of its own, so any executor works.
//!
//! `cargo run --release --example async_appends [TASKS] [OPS_PER_TASK]`
//! (default 1,000 tasks of 100 ops, on 2 worker threads).

use std::time::Instant;

use lamplog::{Options, Store};

/// What one run did.
#[derive(Debug)]
struct Outcome {
    records: u64,
    seconds: f64,
    fsyncs: u64,
    last_seq: u64,
}

/// `tasks` tasks on a 2-worker runtime, each appending `ops` ops one after
/// another and awaiting each before the next (as a request handler that
/// answers once its op is durable would), into a store under `dir`.
fn run(dir: &std::path::Path, tasks: u64, ops: u64) -> Result<Outcome, Box<dyn std::error::Error>> {
    let store = Store::open(dir, Options::default())?;
    let session = store.stream("session")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let fsyncs_before = store.stats().fsyncs;
    let start = Instant::now();
    let last_seq = runtime.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let session = session.clone();
                tokio::spawn(async move {
                    let mut last = 0;
                    for i in 0..ops {
                        let op = format!(r#"{{"actor":"agent-{task}","op":"edit","n":{i}}}"#);
                        // Returns at once; the await ends when it is on disk.
                        last = session.append_pending(op)?.await?.seq;
                    }
                    Ok::<u64, lamplog::Error>(last)
                })
            })
            .collect();
        let mut last_seq = 0;
        for handle in handles {
            last_seq = last_seq.max(handle.await.expect("task panicked")?);
        }
        Ok::<u64, lamplog::Error>(last_seq)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let fsyncs = store.stats().fsyncs - fsyncs_before;
    drop(session);
    store.close()?;
    Ok(Outcome {
        records: tasks * ops,
        seconds,
        fsyncs,
        last_seq,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let tasks = args.next().and_then(Result::ok).unwrap_or(1_000).max(1);
    let ops = args.next().and_then(Result::ok).unwrap_or(100).max(1);
    let dir = tempfile::Builder::new()
        .prefix(".lamplog-async-")
        .tempdir_in(".")?;
    let out = run(dir.path(), tasks, ops)?;
    println!(
        "{tasks} tasks on 2 workers: {} durable appends in {:.2} s, {:.0}/s, {} fsyncs ({:.0} records per fsync), last seq {}",
        out.records,
        out.seconds,
        out.records as f64 / out.seconds,
        out.fsyncs,
        out.records as f64 / out.fsyncs.max(1) as f64,
        out.last_seq,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_awaited_append_is_in_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(dir.path(), 1_000, 3).unwrap();
        assert_eq!(out.last_seq, 3_000);
        // A thousand tasks share syncs.
        assert!(out.fsyncs < 3_000, "{out:?}");
        let store = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
        let session = store.stream("session").unwrap();
        let mut per_task = std::collections::HashMap::<String, Vec<u64>>::new();
        for record in session.iter() {
            let op: serde_json::Value = serde_json::from_slice(record.unwrap().payload()).unwrap();
            per_task
                .entry(op["actor"].as_str().unwrap().to_string())
                .or_default()
                .push(op["n"].as_u64().unwrap());
        }
        assert_eq!(per_task.len(), 1_000);
        // Each task's ops are in its order: it awaited each before the next.
        assert!(per_task.values().all(|ns| ns == &[0, 1, 2]));
    }
}
