//! Helpers shared by the scenario tests.
#![allow(dead_code)]

pub mod disk;
pub mod hooked;
pub mod images;
pub mod stress;

use std::fs;
use std::path::{Path, PathBuf};

use lamplog::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use lamplog::{Durability, Options, Record, Store, Stream};

/// Small segments, so a few thousand records span many of them.
pub fn small_opts() -> Options {
    Options::default()
        .segment_bytes_max(16 << 10)
        .record_bytes_max(4 << 10)
        .index_interval_bytes(512)
}

/// Segments of 4 KiB: a few hundred records roll through many of them.
pub fn tiny_opts() -> Options {
    Options::default()
        .segment_bytes_max(4096)
        .record_bytes_max(1024)
        .index_interval_bytes(256)
}

/// xorshift64*: small and seedable, for drawing test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A realistic op of varying length, unique per `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let pad = "x".repeat((i % 37) as usize);
    format!(r#"{{"seq_hint":{i},"actor":"agent-{}","op":"write","path":"src/{pad}.rs","blob":"{:016x}"}}"#, i % 7, i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .into_bytes()
}

pub fn stream_dir(root: &Path, stream: &str) -> PathBuf {
    root.join(lamplog::STREAMS_DIR).join(stream)
}

/// The files in `dir` with one of the extensions `exts`, sorted.
pub fn files_with_ext(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)))
        .collect();
    files.sort();
    files
}

/// Segment files of a stream, oldest first.
pub fn segments(root: &Path, stream: &str) -> Vec<PathBuf> {
    files_with_ext(&stream_dir(root, stream), &["seg"])
}

/// The first seq a segment file is named by.
pub fn first_seq_of(segment: &Path) -> u64 {
    segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Files in a stream's quarantine folder.
pub fn quarantined(root: &Path, stream: &str) -> Vec<PathBuf> {
    let dir = stream_dir(root, stream).join(lamplog::QUARANTINE_DIR);
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Offset of the kind byte in a frame header (docs/FORMAT.md).
const KIND_OFFSET: usize = 40;
const KIND_DATA: u8 = 1;
const KIND_COMMIT: u8 = 2;

/// `[start, end)` of every data frame in a segment file, by walking the
/// length fields (commit markers are skipped).
pub fn frame_spans(segment: &Path) -> Vec<(u64, u64)> {
    frame_spans_of(&fs::read(segment).unwrap())
}

/// `[start, end)` of every data frame in a segment's bytes.
pub fn frame_spans_of(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at + FRAME_HEADER_LEN + len;
        match bytes[at + KIND_OFFSET] {
            KIND_DATA if len > 0 && end <= bytes.len() => spans.push((at as u64, end as u64)),
            KIND_COMMIT if len == 0 => {}
            _ => break,
        }
        at = end;
    }
    spans
}

/// Append payloads `range` to `stream`.
pub fn fill(stream: &Stream, range: std::ops::Range<u64>, durability: Durability) {
    for i in range {
        stream.append(payload(i), durability).unwrap();
    }
}

pub fn read_all(stream: &Stream) -> Vec<Record> {
    stream.iter().collect::<Result<Vec<_>, _>>().unwrap()
}

/// Check that `stream` holds exactly payloads `0..n` with seq 1..=n.
pub fn assert_holds(stream: &Stream, n: u64) {
    let records = read_all(stream);
    assert_eq!(records.len() as u64, n, "record count");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq(), i as u64 + 1);
        assert_eq!(
            r.payload(),
            payload(i as u64).as_slice(),
            "payload of seq {}",
            r.seq()
        );
    }
    assert_eq!(stream.last_seq(), n);
}

/// Copy a store directory (for destructive experiments on one prepared store).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Open a store with `opts`, panicking with the error on failure.
pub fn open(root: &Path, opts: Options) -> Store {
    Store::open(root, opts).unwrap_or_else(|e| panic!("open {}: {e}", root.display()))
}

/// Overwrite bytes of a file at `offset`.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Every file under `root`, recursively.
pub fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `root` whose bytes contain `needle` (a redacted secret
/// must be in none).
pub fn files_holding(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    all_files(root)
        .into_iter()
        .filter(|p| {
            fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}
