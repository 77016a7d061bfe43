//! The `lamplog` command line contract: output lines, exit codes, messages.

#[path = "../common/mod.rs"]
mod common;
mod operators;

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// `lamplog args`, with every stream piped.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lamplog"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `lamplog args` given `stdin`, run to its end.
fn lamplog(args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
    let mut child = spawn(args);
    // A command that fails before reading its input closes the pipe.
    match child.stdin.take().unwrap().write_all(stdin.as_ref()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn append_acknowledges_each_record_and_read_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(
        &["append", d, "sess"],
        "{\"op\":\"write\",\"n\":1}\n[1, 2]\n\n\"text\"\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"seq\":1,\"lamport\":1}\n{\"seq\":2,\"lamport\":2}\n{\"seq\":3,\"lamport\":3}\n"
    );
    let out = lamplog(
        &["append", d, "sess", "--durability", "buffered"],
        "{\"op\":\"delete\"}\n",
    );
    assert_eq!(stdout(&out), "{\"seq\":4,\"lamport\":4}\n");

    let out = lamplog(&["read", d, "sess"], "");
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["payload"], serde_json::json!({"op":"write","n":1}));
    assert_eq!(lines[1]["payload"], serde_json::json!([1, 2]));
    assert_eq!(lines[2]["payload"], "text");
    assert_eq!(lines[3]["seq"], 4);
    assert!(lines[0]["ts_us"].as_u64().unwrap() > 1_600_000_000_000_000);
    // The payload is printed byte for byte as stored.
    assert!(stdout(&out).starts_with("{\"seq\":1,\"lamport\":1,\"ts_us\":"));
    assert!(stdout(&out)
        .lines()
        .next()
        .unwrap()
        .ends_with(",\"payload\":{\"op\":\"write\",\"n\":1}}"));

    let out = lamplog(&["read", d, "sess", "--from-seq", "2", "--limit", "2"], "");
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![2, 3]);
}

#[test]
fn a_bad_line_stops_append_with_exit_2_keeping_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(
        &["append", d, "s"],
        "{\"a\":1}\n{\"b\":2}\n{oops\n{\"c\":3}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out).lines().count(), 2);
    let err = stderr(&out);
    assert!(
        err.contains("line 3") && err.contains("key must be a string"),
        "{err}"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
    let out = lamplog(&["read", d, "s"], "");
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn usage_errors_exit_2_and_data_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        lamplog(&["append", d, "../evil"], "{}\n").status.code(),
        Some(2)
    );
    assert_eq!(lamplog(&["read", d, "missing"], "").status.code(), Some(2));
    assert_eq!(lamplog(&["frobnicate"], "").status.code(), Some(2));
    assert_eq!(
        lamplog(&["append", d, "s", "--durability", "maybe"], "")
            .status
            .code(),
        Some(2)
    );

    // Damage a durable record: read reports segment and offset and exits 1.
    lamplog(&["append", d, "s"], "{\"k\":\"some value\"}\n".repeat(20));
    let seg = common::segments(dir.path(), "s").pop().unwrap();
    let spans = common::frame_spans(&seg);
    common::patch(&seg, spans[5].0 + 50, b"X");
    let out = lamplog(&["read", d, "s"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&seg.display().to_string()) && err.contains(&format!("offset {}", spans[5].0)),
        "{err}"
    );
    // Only whole, verified records reached stdout.
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["payload"]["k"], "some value");
    }
}

#[test]
fn read_prints_multi_line_payloads_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = lamplog::Store::open(dir.path(), lamplog::Options::default()).unwrap();
    let pretty = "{\n  \"text\": \"a b\\n\\\"c\\\"\",\n  \"n\": 1.50\n}";
    store
        .stream("s")
        .unwrap()
        .append(pretty, lamplog::Durability::Sync)
        .unwrap();
    let out = lamplog(&["read", dir.path().to_str().unwrap(), "s"], "");
    assert_eq!(stdout(&out), format!("{{\"seq\":1,\"lamport\":1,\"ts_us\":{},\"payload\":{{\"text\":\"a b\\n\\\"c\\\"\",\"n\":1.50}}}}\n", {
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        v["ts_us"].as_u64().unwrap()
    }));
}

#[test]
fn quickstart_runs() {
    let out = lamplog(&["quickstart", "--records", "5000"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("replayed 5200 records"), "{text}");
    assert!(text.contains("recovery cut"), "{text}");
    assert!(text.contains("appends continue at seq 5201"), "{text}");
}

#[test]
fn bench_prints_one_json_object_per_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = lamplog(
        &[
            "bench",
            "--dir",
            dir.path().to_str().unwrap(),
            "--writers",
            "4",
            "--records",
            "400",
            "--json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    for field in [
        "records_per_s",
        "mb_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "fsyncs",
        "records_per_fsync",
        "baseline_records_per_s",
    ] {
        assert!(row[field].as_f64().is_some(), "{field} missing in {row}");
    }
    assert_eq!(row["records"], 400);
    assert!(row["fsyncs"].as_u64().unwrap() >= 1);
    assert!(row["p50_us"].as_f64().unwrap() <= row["p999_us"].as_f64().unwrap());
    // The lockstep ceiling counts the time to wake the 4 writers: it is
    // below the group-commit limit, which counts only the fsync.
    let wake_us = row["wake_round_us"].as_f64().unwrap();
    assert!(wake_us > 0.0, "{row}");
    let ceiling = row["lockstep_ceiling_per_s"].as_f64().unwrap();
    assert!(
        ceiling < row["group_commit_limit_per_s"].as_f64().unwrap(),
        "{row}"
    );
    // The temporary store is gone afterwards.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bench_inflight_keeps_appends_in_flight_from_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(
        &[
            "bench",
            "--dir",
            d,
            "--inflight",
            "64",
            "--records",
            "2000",
            "--json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let row: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(row["records"], 2000, "{row}");
    assert_eq!(row["writers"], 2, "{row}");
    assert_eq!(row["inflight"], 64, "{row}");
    // 64 records in flight share syncs: fewer syncs than records.
    assert!(row["records_per_fsync"].as_f64().unwrap() > 1.0, "{row}");
    // The ceiling it is compared with is that of 64 blocked writers.
    assert!(row["wake_round_us"].as_f64().unwrap() > 0.0, "{row}");

    // In flight means durable: buffered or batched appends are refused.
    for extra in [["--durability", "buffered"], ["--batch", "10"]] {
        let mut args = vec!["bench", "--dir", d, "--inflight", "8"];
        args.extend(extra);
        let out = lamplog(&args, "");
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--inflight"), "{}", stderr(&out));
    }
    let out = lamplog(&["bench", "--dir", d, "--inflight", "0"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn fsck_reports_damage_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    lamplog(&["append", d, "s"], "{\"k\":\"v\"}\n".repeat(30));
    let out = lamplog(&["fsck", d, "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let row: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (&row["stream"], &row["status"], &row["records"]),
        (&"s".into(), &"ok".into(), &30.into())
    );
    let seg = common::segments(dir.path(), "s").pop().unwrap();
    let spans = common::frame_spans(&seg);
    common::patch(&seg, spans[2].0 + 46, b"#");
    let out = lamplog(&["fsck", d, "--json"], "");
    assert_eq!(out.status.code(), Some(1));
    let row: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(row["status"], "damaged");
    assert_eq!(row["segment"], seg.to_str().unwrap());
    assert_eq!(row["offset"], spans[2].0);
    assert_eq!(row["problem"], "record checksum mismatch");
    assert!(
        stderr(&out).contains("1 of 1 streams damaged"),
        "{}",
        stderr(&out)
    );
    // The table says the same.
    let out = lamplog(&["fsck", d], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("damaged  "), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&spans[2].0.to_string()),
        "{}",
        stdout(&out)
    );
}

/// Regression (issue 10): `lamplog append ... | head -1` exited 0 after
/// storing 4,096 of 200,000 lines: the broken stdout pipe stopped the
/// ingest and was taken for success. Every line is stored whatever happens
/// to stdout; only the acknowledgements stop.
#[test]
fn append_into_a_reader_that_stops_early_still_stores_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let lines = 200_000;
    let input: String = (0..lines).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    let mut child = spawn(&["append", d, "s"]);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // Like `head -1`: read one acknowledgement, then close the pipe.
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first.trim(), r#"{"seq":1,"lamport":1}"#);
    writer.join().unwrap().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("all {lines} records were stored")));
    let store =
        lamplog::Store::open(dir.path(), lamplog::Options::default().read_only(true)).unwrap();
    assert_eq!(store.stream("s").unwrap().last_seq(), lines);
}

/// Regression (issue 10): invalid UTF-8 on stdin line 2 exited 1 (input
/// errors are 2) without a line number, and line 1 was stored but never
/// acknowledged, so a retry duplicated it.
#[test]
fn invalid_utf8_is_an_input_error_naming_its_line_after_every_earlier_ack() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(&["append", d, "s"], b"{\"a\":1}\n\"caf\xe9\"\n{\"b\":2}\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"seq\":1,\"lamport\":1}\n");
    let err = stderr(&out);
    assert!(err.contains("stdin line 2"), "{err}");
    assert!(err.contains("1 records before it stored"), "{err}");
    let out = lamplog(&["read", d, "s"], "");
    assert_eq!(stdout(&out).lines().count(), 1);
}
