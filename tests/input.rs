//! Bad input from callers: typed errors, nothing written, the store keeps working.

mod common;

use common::*;
use lamplog::{Durability, Error, Options, Store};

#[test]
fn invalid_stream_names_never_touch_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    let long = "n".repeat(129);
    for name in [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/abs",
        ".hidden",
        "nul\0",
        "new\nline",
        "sp ace",
        "ü",
        &long,
    ] {
        match store.stream(name) {
            Err(Error::InvalidName { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }
    assert!(store.streams().is_empty());
    let entries: Vec<_> = std::fs::read_dir(dir.path().join(lamplog::STREAMS_DIR))
        .unwrap()
        .collect();
    assert!(entries.is_empty(), "nothing created for rejected names");
    assert!(!dir.path().parent().unwrap().join("escape").exists());
    store.stream(&"n".repeat(128)).unwrap();
}

#[test]
fn invalid_json_and_oversize_records_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        record_bytes_max: 64,
        ..Options::default()
    };
    let store = open(dir.path(), opts.clone());
    let stream = store.stream("s").unwrap();
    stream.append(br#"{"ok":1}"#, Durability::Sync).unwrap();
    for bad in [
        &b""[..],
        b"   ",
        b"{",
        b"{\"a\":}",
        b"[1,2",
        b"nul",
        b"{} {}",
        b"\"unterminated",
        b"{\"a\":1}\n{\"b\":2}",
        b"\xff\xfe",
    ] {
        match stream.append(bad, Durability::Sync) {
            Err(Error::InvalidJson {
                line,
                column,
                message,
            }) => {
                assert!(
                    line >= 1 && !message.is_empty(),
                    "{bad:?}: {line}:{column} {message}"
                );
            }
            other => panic!("{bad:?}: expected InvalidJson, got {other:?}"),
        }
    }
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(100));
    match stream.append(big.as_bytes(), Durability::Sync) {
        Err(Error::RecordTooLarge { len, max: 64 }) => assert_eq!(len, big.len()),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // Only the valid records are there, with no gap in seq.
    assert_eq!(
        stream
            .append(br#"[true, null, 1.5e3, "\u00e9"]"#, Durability::Sync)
            .unwrap()
            .seq,
        2
    );
    drop(stream);
    drop(store);
    let store = open(dir.path(), opts);
    let payloads: Vec<Vec<u8>> = read_all(&store.stream("s").unwrap())
        .iter()
        .map(|r| r.payload().to_vec())
        .collect();
    assert_eq!(
        payloads,
        vec![
            br#"{"ok":1}"#.to_vec(),
            br#"[true, null, 1.5e3, "\u00e9"]"#.to_vec()
        ]
    );
}

#[test]
fn a_second_writer_in_this_process_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    let stream = store.stream("s").unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path().join(lamplog::LOCK_FILE)),
        other => panic!("expected Locked, got {other:?}"),
    }
    // The first writer is unaffected, and the lock lives as long as any handle.
    stream.append(b"1", Durability::Sync).unwrap();
    drop(store);
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    stream.append(b"2", Durability::Sync).unwrap();
    drop(stream);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.stream("s").unwrap().last_seq(), 2);
}

#[test]
fn a_second_writer_in_another_process_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    store
        .stream("s")
        .unwrap()
        .append(b"{}", Durability::Sync)
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lamplog"))
        .args(["append", dir.path().to_str().unwrap(), "s"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(store.stream("s").unwrap().last_seq(), 1);
}

#[test]
fn read_only_opens_coexist_with_the_writer_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    fill(&stream, 0..500, Durability::Sync);
    let reader = Store::open(dir.path(), Options::read_only()).unwrap();
    let view = reader.stream("s").unwrap();
    assert_holds(&view, 500);
    assert!(matches!(
        view.append(b"{}", Durability::Sync),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        reader.stream("absent"),
        Err(Error::StreamNotFound { .. })
    ));
    // The writer goes on while the reader is open.
    fill(&stream, 500..600, Durability::Sync);
    assert_holds(&stream, 600);
    assert_eq!(
        view.last_seq(),
        500,
        "a read-only handle sees the log as of its open"
    );
}

#[test]
fn read_only_open_of_a_missing_store_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("nothing-here"), Options::read_only()).unwrap();
    assert!(store.streams().is_empty());
    assert!(!dir.path().join("nothing-here").exists());
}

#[test]
fn impossible_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for opts in [
        Options {
            segment_bytes_max: 1024,
            ..Options::default()
        },
        Options {
            record_bytes_max: 0,
            ..Options::default()
        },
        Options {
            index_interval_bytes: 0,
            ..Options::default()
        },
        Options {
            segment_bytes_max: 1 << 40,
            ..Options::default()
        },
    ] {
        assert!(matches!(
            Store::open(dir.path(), opts),
            Err(Error::InvalidOptions(_))
        ));
    }
}

/// Regression: a child forked by another thread shares the lock file's open
/// description until it execs, so dropping the store must unlock explicitly
/// or an immediate reopen can find the store still locked.
#[test]
fn the_lock_is_released_on_drop_while_other_threads_spawn_processes() {
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::process::Command::new("true").status().unwrap();
            }
        })
    };
    for _ in 0..300 {
        let store = open(dir.path(), Options::default());
        drop(store);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spawner.join().unwrap();
}
