//! The committed fuzz corpora, run through the fuzz targets' bodies on
//! stable Rust, so every CI run exercises them without nightly.

use std::path::Path;

#[path = "fuzz/bodies.rs"]
mod bodies;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn segment_recover_corpus() {
    let inputs = corpus("segment_recover");
    assert!(inputs.len() > 100);
    inputs.iter().for_each(|i| bodies::segment_recover(i));
}

#[test]
fn frame_decode_corpus() {
    let inputs = corpus("frame_decode");
    assert!(!inputs.is_empty());
    inputs.iter().for_each(|i| bodies::frame_decode(i));
}

#[test]
fn log_ops_corpus() {
    let inputs = corpus("log_ops");
    assert!(!inputs.is_empty());
    inputs.iter().for_each(|i| bodies::log_ops(i));
}
