//! Criterion benches: append per durability and writer count, atomic
//! batches, the frame codec, replay through mmap, and index seeks at
//! different depths of a long log.
//!
//! `cargo bench --bench core`. Figures depend on the disk: on ext4, call
//! sync(2) first so other files' dirty pages do not slow each fdatasync.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use lamplog::{Durability, Options, Store};

/// A realistic ~200-byte op.
fn op(i: u64) -> Vec<u8> {
    format!(
        r#"{{"actor":"agent-{:03}","op":"write","path":"src/module_{}/file_{}.rs","blob":"{:064x}","ts":{}}}"#,
        i % 64,
        i % 97,
        i % 1009,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        1_717_592_400_000_000u64 + i
    )
    .into_bytes()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    for (name, durability) in [
        ("buffered", Durability::Buffered),
        ("sync", Durability::Sync),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let stream = store.stream("bench").unwrap();
        let payload = op(7);
        if durability == Durability::Sync {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(5));
        }
        group.bench_function(BenchmarkId::new("one_writer", name), |b| {
            b.iter(|| stream.append(&payload, durability).unwrap())
        });
    }
    group.finish();
}

/// Durable appends from `writers` threads on one stream: time per record.
fn append_writers(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_sync_writers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for writers in [4usize, 16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let stream = store.stream("bench").unwrap();
        group.throughput(Throughput::Elements(writers as u64));
        group.bench_function(BenchmarkId::from_parameter(writers), |b| {
            b.iter_custom(|rounds| {
                let start = Arc::new(Barrier::new(writers + 1));
                let threads: Vec<_> = (0..writers)
                    .map(|w| {
                        let (stream, start) = (stream.clone(), start.clone());
                        std::thread::spawn(move || {
                            let payload = op(w as u64);
                            start.wait();
                            for _ in 0..rounds {
                                stream.append(&payload, Durability::Sync).unwrap();
                            }
                        })
                    })
                    .collect();
                start.wait();
                let t = Instant::now();
                threads.into_iter().for_each(|t| t.join().unwrap());
                t.elapsed()
            })
        });
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_batch");
    let payloads: Vec<Vec<u8>> = (0..1000).map(op).collect();
    group.throughput(Throughput::Elements(payloads.len() as u64));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let stream = store.stream("bench").unwrap();
    group.bench_function("buffered_1000", |b| {
        b.iter(|| {
            stream
                .append_batch(&payloads, Durability::Buffered)
                .unwrap()
                .len()
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    use lamplog::internals::{decode_frame, encode_frame};
    let mut group = c.benchmark_group("frame");
    let payload = op(42);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    let mut out = Vec::with_capacity(1024);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(&mut out, 7, 7, &payload, 0x5eed)
        })
    });
    encode_frame(&mut out, 7, 7, &payload, 0x5eed);
    group.bench_function("decode_verify", |b| {
        b.iter(|| decode_frame(&out, 0x5eed).unwrap().0)
    });
    group.finish();
}

fn filled(n: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let stream = store.stream("bench").unwrap();
    for i in 0..n {
        stream.append(op(i), Durability::Buffered).unwrap();
    }
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
    (dir, store)
}

fn replay(c: &mut Criterion) {
    let n = 200_000;
    let (_dir, store) = filled(n);
    let stream = store.stream("bench").unwrap();
    let bytes: u64 = stream
        .iter()
        .map(|r| r.unwrap().payload().len() as u64)
        .sum();
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("crc_verified_mmap", |b| {
        b.iter(|| {
            stream
                .iter()
                .map(|r| r.unwrap().payload().len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn seek(c: &mut Criterion) {
    let n = 1_000_000;
    let (_dir, store) = filled(n);
    let stream = store.stream("bench").unwrap();
    let mut group = c.benchmark_group("seek");
    for percent in [1u64, 50, 99] {
        let seq = n * percent / 100;
        group.bench_with_input(
            BenchmarkId::new("get_seq_at_percent", percent),
            &seq,
            |b, &seq| b.iter(|| stream.get(seq).unwrap().unwrap().lamport()),
        );
        group.bench_with_input(
            BenchmarkId::new("from_lamport_at_percent", percent),
            &seq,
            |b, &seq| {
                b.iter_batched(
                    || (),
                    |()| stream.iter_from_lamport(seq).next().unwrap().unwrap().seq(),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

/// Replay after the latest checkpoint: as fast after a million records as
/// after none, because the start is found through checkpoint.json and the index.
fn replay_since_checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_since_checkpoint");
    for history in [0u64, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let stream = store.stream("bench").unwrap();
        for chunk in (0..history).collect::<Vec<_>>().chunks(1000) {
            stream
                .append_batch(chunk.iter().map(|&i| op(i)), Durability::Buffered)
                .unwrap();
        }
        stream.checkpoint("snap").unwrap();
        for i in 0..100 {
            stream.append(op(i), Durability::Buffered).unwrap();
        }
        group.bench_with_input(BenchmarkId::new("history", history), &history, |b, _| {
            b.iter(|| stream.replay_since_checkpoint().unwrap().count())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    append,
    append_writers,
    batch,
    codec,
    replay,
    seek,
    replay_since_checkpoint
);
criterion_main!(benches);
