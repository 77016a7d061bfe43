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
    let opts = Options::default().record_bytes_max(64);
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
        // Regression (issue 10): invalid UTF-8 inside a string was stored
        // (serde_json does not check the strings it skips).
        b"\"caf\xe9\"",
        b"{\"k\xc3\":1}",
        b"[\"\xed\xa0\x80\"]",
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
    let reader = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
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
    let store = Store::open(
        dir.path().join("nothing-here"),
        Options::default().read_only(true),
    )
    .unwrap();
    assert!(store.streams().is_empty());
    assert!(!dir.path().join("nothing-here").exists());
}

#[test]
fn impossible_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for opts in [
        Options::default().segment_bytes_max(1024),
        Options::default().record_bytes_max(0),
        Options::default().index_interval_bytes(0),
        Options::default().segment_bytes_max(1 << 40),
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

/// Regression (issue 10): options that passed validation and then hung the
/// first append (`batch_bytes_max: u64::MAX` overflowed the backpressure
/// arithmetic) or panicked in the writer (`record_bytes_max: usize::MAX`
/// overflowed the size check). Every option at its extremes is either
/// refused with `InvalidOptions` or works: appends of every durability, a
/// batch, a record too large for the options, a reopen.
#[test]
fn options_at_their_extremes_are_refused_or_work_and_never_hang_or_panic() {
    let extremes: Vec<(&str, Options)> = vec![
        ("batch_bytes_max max", tiny().batch_bytes_max(u64::MAX)),
        ("batch_bytes_max 1", tiny().batch_bytes_max(1)),
        (
            "record_bytes_max max (refused)",
            Options::default()
                .record_bytes_max(usize::MAX)
                .segment_bytes_max(1 << 20),
        ),
        (
            "record_bytes_max max, largest segment (refused)",
            Options::default()
                .record_bytes_max(usize::MAX)
                .segment_bytes_max(lamplog::format::SEGMENT_BYTES_MAX_LIMIT),
        ),
        ("record_bytes_max 1", tiny().record_bytes_max(1)),
        (
            "segment_bytes_max max (refused)",
            tiny().segment_bytes_max(u64::MAX),
        ),
        (
            "segment_bytes_max at the limit",
            tiny().segment_bytes_max(lamplog::format::SEGMENT_BYTES_MAX_LIMIT),
        ),
        ("segment_bytes_max 0 (refused)", tiny().segment_bytes_max(0)),
        (
            "index_interval_bytes max",
            tiny().index_interval_bytes(u64::MAX),
        ),
        ("index_interval_bytes 1", tiny().index_interval_bytes(1)),
        ("sync_interval_us max", tiny().sync_interval_us(u64::MAX)),
        ("sync_interval_us 1", tiny().sync_interval_us(1)),
        ("open_segments_max 0 (refused)", tiny().open_segments_max(0)),
        ("open_segments_max 1", tiny().open_segments_max(1)),
        (
            "open_segments_max max",
            tiny().open_segments_max(usize::MAX),
        ),
    ];
    for (what, opts) in extremes {
        let (done, finished) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let outcome = exercise(dir.path(), &opts);
            done.send(()).unwrap();
            outcome
        });
        if finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .is_err()
        {
            panic!("{what}: still running after 20 s (a hang)");
        }
        match worker.join() {
            Ok(Ok(())) if !what.ends_with("(refused)") => {}
            Ok(Err(Error::InvalidOptions(_))) if what.ends_with("(refused)") => {}
            Ok(Ok(())) => panic!("{what}: accepted"),
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: panicked"),
        }
    }

    fn tiny() -> Options {
        Options::default()
            .segment_bytes_max(64 << 10)
            .record_bytes_max(4 << 10)
    }

    fn exercise(dir: &std::path::Path, opts: &Options) -> lamplog::Result<()> {
        let store = Store::open(dir, opts.clone())?;
        let stream = store.stream("s")?;
        let mut seqs = Vec::new();
        for (i, d) in [Durability::Buffered, Durability::Sync, Durability::Buffered]
            .into_iter()
            .enumerate()
        {
            // One-byte records, so that record_bytes_max 1 works too.
            seqs.push(stream.append(i.to_string().as_bytes(), d)?.seq);
        }
        let big = format!(
            r#"{{"pad":"{}"}}"#,
            "x".repeat(opts.segment_bytes_max.min(1 << 21) as usize)
        );
        match stream.append(big.as_bytes(), Durability::Sync) {
            Err(Error::RecordTooLarge { .. }) => {}
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        stream.append_batch([b"7", b"8"], Durability::Sync)?;
        stream.sync()?;
        assert_eq!(seqs, [1, 2, 3]);
        let count = stream.iter().count();
        drop(stream);
        store.close()?;
        let store = Store::open(dir, opts.clone())?;
        assert_eq!(store.stream("s")?.iter().count(), count);
        Ok(())
    }
}
