//! The bodies of the fuzz targets, shared with `tests/fuzz_corpus.rs`, which
//! runs every committed corpus file through them on stable Rust.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lamplog::testing::{Backend, OpenMode};
use lamplog::{Durability, Options, RecoveryMode, Store};

use lamplog::testing as sim;

/// Arbitrary bytes into the frame decoder: it returns a frame or nothing,
/// never panics, and a frame it returns re-encodes to the same bytes.
pub fn frame_decode(data: &[u8]) {
    let (salt, bytes) = match data {
        [a, b, c, d, rest @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]), rest),
        _ => (0, data),
    };
    if let Some((seq, payload)) = lamplog::internals::decode_frame(bytes, salt) {
        assert!(payload.len() < bytes.len());
        let mut out = Vec::new();
        let _ = lamplog::internals::encode_frame(&mut out, seq, 0, payload, salt);
        assert_eq!(out.len(), lamplog::format::FRAME_HEADER_LEN + payload.len());
    }
}

/// Arbitrary bytes as a stream's tail segment (and, after a 0xff 0x00
/// separator, its index file) on the simulated disk: open and read give a
/// prefix of whole, verified records (a repair may leave gaps where it
/// lost damaged ones) or a typed error; never a panic, hang or runaway
/// allocation.
pub fn segment_recover(data: &[u8]) {
    let (segment, index) = match data.windows(2).position(|w| w == [0xff, 0x00]) {
        Some(at) => (&data[..at], Some(&data[at + 2..])),
        None => (data, None),
    };
    let disk = sim::SimDisk::default();
    let stream_dir = Path::new("/db").join(lamplog::STREAMS_DIR).join("s");
    disk.create_dir_all(&stream_dir).unwrap();
    let put = |name: &str, bytes: &[u8]| {
        let file = disk
            .open(&stream_dir.join(name), OpenMode::CreateNew)
            .unwrap();
        file.write_all_at(bytes, 0).unwrap();
    };
    put("00000000000000000001.seg", segment);
    if let Some(index) = index {
        put("00000000000000000001.idx", index);
    }
    let small = Options::default()
        .segment_bytes_max(1 << 20)
        .record_bytes_max(1 << 16)
        .index_interval_bytes(256);
    for opts in [
        small.clone().read_only(true),
        small.clone(),
        small.clone().recovery(RecoveryMode::Repair),
    ] {
        let Ok(store) = Store::open_with(Arc::new(disk.clone()), "/db", opts.clone()) else {
            continue;
        };
        let Ok(stream) = store.stream("s") else {
            continue;
        };
        // Seqs ascend; only a repair may leave gaps (the records it lost).
        let mut last = 0;
        for record in stream.iter() {
            let record = match record {
                Ok(record) => record,
                Err(e) if opts.recovery == RecoveryMode::Repair => {
                    panic!("a repaired log reads clean, but: {e}")
                }
                Err(_) => break,
            };
            assert!(record.seq() > last, "seqs ascend");
            if opts.recovery != RecoveryMode::Repair {
                assert_eq!(record.seq(), last + 1);
            }
            last = record.seq();
            assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(record.payload()).is_ok(),
                "a record that was never valid JSON"
            );
        }
        if !opts.read_only {
            stream.append(b"{}", Durability::Sync).unwrap();
        }
        if opts.recovery == RecoveryMode::Repair {
            // What a repair leaves, a strict open and a full check accept.
            drop(stream);
            store.close().unwrap();
            let store = Store::open_with(Arc::new(disk.clone()), "/db", small.clone())
                .expect("a strict open accepts a repaired log");
            store.verify().expect("a repaired log verifies");
        }
    }
}

/// Arbitrary sequences of append, batch, checkpoint, sync and
/// crash-and-reopen against an in-memory model, on the simulated disk:
/// after every crash the stream is a prefix of what was written that holds
/// every acknowledged record.
pub fn log_ops(data: &[u8]) {
    /// Operations per input: enough for several rolls and crashes, few
    /// enough for thousands of executions a second (docs/RELIABILITY.md).
    const OPS_MAX: usize = 64;
    let opts = Options::default()
        .segment_bytes_max(2048)
        .record_bytes_max(512)
        .index_interval_bytes(128);
    let mut disk = sim::SimDisk::default();
    let mut store = Some(Store::open_with(Arc::new(disk.clone()), "/s", opts.clone()).unwrap());
    // Every record written (seq - 1 -> payload), and how many are acknowledged durable.
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut acked = 0usize;
    for (i, chunk) in data.chunks(2).enumerate().take(OPS_MAX) {
        let (op, arg) = (chunk[0], *chunk.get(1).unwrap_or(&0));
        let stream = store.as_ref().unwrap().stream("x").unwrap();
        let payload = |k: usize| {
            format!(
                r#"{{"i":{i},"k":{k},"pad":"{}"}}"#,
                "y".repeat(arg as usize % 200)
            )
            .into_bytes()
        };
        match op % 6 {
            0 | 1 => {
                let durability = if op % 6 == 0 {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let a = stream.append(payload(0), durability).unwrap();
                assert_eq!(a.seq as usize, written.len() + 1);
                written.push(payload(0));
                if durability == Durability::Sync {
                    acked = written.len();
                }
            }
            2 => {
                let batch: Vec<Vec<u8>> = (0..1 + arg as usize % 4).map(payload).collect();
                stream.append_batch(&batch, Durability::Sync).unwrap();
                written.extend(batch);
                acked = written.len();
            }
            3 => {
                let c = stream.checkpoint(&format!("c{i}")).unwrap();
                assert_eq!(c.record_seq as usize, written.len() + 1);
                // The checkpoint record takes a seq; only data records are compared.
                written.push(Vec::new());
                acked = written.len();
            }
            4 => {
                stream.sync().unwrap();
                acked = written.len();
            }
            _ => {
                drop(stream);
                store.take().unwrap().abandon();
                let fate = match arg % 4 {
                    0 => sim::Fate::Lost,
                    1 => sim::Fate::Kept,
                    2 => sim::Fate::Prefix(arg as usize / 4 % 3),
                    _ => sim::Fate::Torn(u64::from(arg) * 7919 + i as u64),
                };
                disk = disk.crash_image(disk.ops(), fate, arg & 0x40 != 0);
                let reopened = Store::open_with(Arc::new(disk.clone()), "/s", opts.clone())
                    .expect("a crash is never corruption");
                let stream = reopened.stream("x").unwrap();
                let records: Vec<_> = stream.iter().collect::<Result<Vec<_>, _>>().unwrap();
                assert!(
                    records.len() >= acked,
                    "acknowledged records lost: {} < {acked}",
                    records.len()
                );
                assert!(records.len() <= written.len());
                for (n, r) in records.iter().enumerate() {
                    if r.kind() == lamplog::Kind::Data {
                        assert_eq!(r.payload(), written[n].as_slice(), "seq {} changed", n + 1);
                    }
                }
                written.truncate(records.len());
                acked = written.len();
                drop(stream);
                store = Some(reopened);
            }
        }
    }
}
