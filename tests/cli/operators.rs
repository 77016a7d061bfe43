//! The operator's commands: streams, checkpoints, query, and the refusal
//! of a directory that holds no store.

use super::{lamplog, stderr, stdout};

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A store with streams "s1" (two ops, a checkpoint, one more op) and "s2".
fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let ops = "{\"actor\":\"anan\",\"op\":\"edit\",\"domain\":\"code\"}\n\
               {\"actor\":\"claude\",\"op\":\"capture\",\"domain\":\"music\"}\n";
    assert_eq!(lamplog(&["append", d, "s1"], ops).status.code(), Some(0));
    let out = lamplog(&["checkpoint", d, "s1", "snap \"1\""], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        json_lines(&out),
        vec![
            serde_json::json!({"seq": 2, "lamport": 2, "snapshot_id": "snap \"1\"", "record_seq": 3})
        ]
    );
    let more = "{\"actor\":\"anan\",\"op\":\"review_sign\",\"domain\":\"code\"}\n";
    assert_eq!(lamplog(&["append", d, "s1"], more).status.code(), Some(0));
    assert_eq!(
        lamplog(&["append", d, "s2"], "[1]\n").status.code(),
        Some(0)
    );
    dir
}

#[test]
fn streams_lists_every_stream_with_its_seqs_and_checkpoints() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(&["streams", d, "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    let s1 = &rows[0];
    let fields: Vec<&str> = s1.as_object().unwrap().keys().map(String::as_str).collect();
    for name in [
        "stream",
        "records",
        "segments",
        "bytes",
        "first_seq",
        "last_seq",
        "last_lamport",
        "checkpoints",
        "since_checkpoint",
    ] {
        assert!(fields.contains(&name), "no field {name} in {s1}");
    }
    assert_eq!(s1["stream"], "s1");
    assert_eq!(
        (
            &s1["records"],
            &s1["first_seq"],
            &s1["last_seq"],
            &s1["last_lamport"]
        ),
        (&4.into(), &1.into(), &4.into(), &4.into())
    );
    assert_eq!(
        (&s1["checkpoints"], &s1["since_checkpoint"]),
        (&1.into(), &1.into())
    );
    assert_eq!(s1["segments"], 1);
    assert!(s1["bytes"].as_u64().unwrap() > 4 * 44);
    assert_eq!(
        (&rows[1]["stream"], &rows[1]["checkpoints"]),
        (&"s2".into(), &0.into())
    );
    // The table has a header and a line per stream.
    let table = stdout(&lamplog(&["streams", d], ""));
    assert!(table.starts_with("stream "), "{table}");
    assert_eq!(table.lines().count(), 3);
}

#[test]
fn checkpoints_lists_them_and_checkpoint_refuses_an_unknown_stream() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(&["checkpoints", d, "s1", "--json"], "");
    assert_eq!(
        json_lines(&out),
        vec![
            serde_json::json!({"seq": 2, "lamport": 2, "snapshot_id": "snap \"1\"", "record_seq": 3})
        ]
    );
    assert_eq!(
        stdout(&lamplog(&["checkpoints", d, "s2", "--json"], "")),
        ""
    );
    // A typo creates nothing.
    let out = lamplog(&["checkpoint", d, "s3", "x"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no stream named \"s3\""),
        "{}",
        stderr(&out)
    );
    let rows = json_lines(&lamplog(&["streams", d, "--json"], ""));
    assert_eq!(rows.len(), 2, "the typo made no stream");
    let out = lamplog(&["checkpoints", d, "s3"], "");
    assert_eq!(out.status.code(), Some(2));
    // A bad snapshot id is a usage error.
    let out = lamplog(&["checkpoint", d, "s1", ""], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Regression (issue 12): `lamplog fsck /path/with/a/typo` printed `ok: 0
/// streams` and exited 0, a false all-clear.
#[test]
fn a_directory_that_holds_no_store_is_an_error_for_every_reading_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let empty = dir.path();
    for path in [missing.as_path(), empty] {
        let p = path.to_str().unwrap();
        for args in [
            vec!["fsck", p],
            vec!["streams", p],
            vec!["read", p, "s"],
            vec!["checkpoints", p, "s"],
            vec!["checkpoint", p, "s", "x"],
        ] {
            let out = lamplog(&args, "");
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("does not exist")
                    || stderr(&out).contains("holds no lamplog store"),
                "{args:?}: {}",
                stderr(&out)
            );
            assert_eq!(stdout(&out), "", "{args:?}");
        }
    }
    assert!(!missing.exists(), "no command created the directory");
}

#[test]
fn query_answers_the_seeds_questions_in_one_command_each() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    // Every record by this actor in the last 30 days.
    let out = lamplog(&["query", d, "--actor", "anan", "--since", "30d"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_lines(&out);
    let ops: Vec<&str> = rows
        .iter()
        .map(|r| r["payload"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["edit", "review_sign"]);
    assert_eq!(
        (&rows[0]["stream"], &rows[0]["seq"]),
        (&"s1".into(), &1.into())
    );
    // Every op of kind K in domain D since Lamport L.
    let out = lamplog(
        &[
            "query",
            d,
            "--op",
            "review_sign",
            "--domain",
            "code",
            "--lamport",
            "2..",
        ],
        "",
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (&rows[0]["seq"], &rows[0]["lamport"]),
        (&4.into(), &4.into())
    );
    // Nothing in the future; everything before it.
    let count =
        |args: &[&str]| stdout(&lamplog(&[&["query", d, "--count"][..], args].concat(), ""));
    assert_eq!(count(&["--since", "2999-01-01T00:00:00Z"]), "0\n");
    assert_eq!(count(&["--until", "2999-01-01T00:00:00Z"]), "5\n");
    assert_eq!(count(&["--where", "domain=code"]), "2\n");
    assert_eq!(
        count(&["--where", "domain=code", "--where", "actor=anan"]),
        "2\n"
    );
    assert_eq!(
        count(&["--where", "seq=2"]),
        "1\n",
        "the checkpoint record's number field"
    );
    assert_eq!(count(&["--lamport", "..=1"]), "2\n");
    assert_eq!(count(&["--stream", "s2"]), "1\n");
    assert_eq!(count(&["--limit", "3"]), "3\n");
}

#[test]
fn query_prints_every_stream_in_causal_order() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let rows = json_lines(&lamplog(&["query", d], ""));
    let keys: Vec<(u64, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["lamport"].as_u64().unwrap(),
                r["stream"].as_str().unwrap().to_string(),
                r["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        keys.len(),
        5,
        "four records of s1 (a checkpoint among them) and one of s2"
    );
    assert_eq!(keys[1], (1, "s2".to_string(), 1));
}

#[test]
fn query_refuses_bad_times_ranges_and_clauses_with_exit_2() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    for args in [
        vec!["--since", "yesterday"],
        vec!["--until", "12:00"],
        vec!["--lamport", "5"],
        vec!["--lamport", "a..b"],
        vec!["--where", "nofield"],
        vec!["--where", "=x"],
        vec!["--stream", "nope"],
        vec!["--limit", "-1"],
    ] {
        let out = lamplog(&[&["query", d][..], &args].concat(), "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
}

#[test]
fn read_starts_after_the_latest_checkpoint_or_at_a_lamport() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let seqs = |args: &[&str]| -> Vec<u64> {
        let out = lamplog(&[&["read", d, "s1"][..], args].concat(), "");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        json_lines(&out)
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&["--since-checkpoint"]), [4]);
    assert_eq!(seqs(&["--from-lamport", "2"]), [2, 3, 4]);
    assert_eq!(seqs(&["--from-lamport", "2", "--limit", "1"]), [2]);
    assert_eq!(seqs(&["--from-seq", "3"]), [3, 4]);
    // A stream without checkpoints replays from its start.
    let out = lamplog(&["read", d, "s2", "--since-checkpoint"], "");
    assert_eq!(json_lines(&out).len(), 1);
    // Two starting points at once is a usage error.
    let out = lamplog(
        &["read", d, "s1", "--from-seq", "1", "--from-lamport", "2"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn export_then_import_round_trips_and_a_bad_line_imports_nothing() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let exported = stdout(&lamplog(&["export", d, "s1"], ""));
    assert_eq!(exported, stdout(&lamplog(&["read", d, "s1"], "")));
    let out = lamplog(&["import", d, "copy", "-", "--from-export"], &exported);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        json_lines(&out),
        vec![serde_json::json!({"records": 4, "first_seq": 1, "last_seq": 4})]
    );
    let payloads = |stream: &str| -> Vec<serde_json::Value> {
        json_lines(&lamplog(&["read", d, stream], ""))
            .into_iter()
            .map(|r| r["payload"].clone())
            .collect()
    };
    assert_eq!(payloads("copy"), payloads("s1"));
    assert_eq!(
        stdout(&lamplog(&["export", d, "s1", "--from-seq", "4"], ""))
            .lines()
            .count(),
        1
    );

    // A bad line anywhere: exit 2 naming it, nothing written.
    let file = dir.path().join("lines.jsonl");
    std::fs::write(&file, "{\"ok\":1}\n\n[2]\n{\"broken\":\n\"fine\"\n").unwrap();
    let out = lamplog(&["import", d, "copy", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing imported"),
        "{}",
        stderr(&out)
    );
    assert_eq!(payloads("copy").len(), 4, "nothing was written");
    let out = lamplog(&["import", d, "copy", "-", "--from-export"], "[1]\n");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a plain line is not an export line"
    );
    let out = lamplog(
        &[
            "import",
            d,
            "copy",
            dir.path().join("missing").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    // Plain JSON lines.
    let out = lamplog(&["import", d, "copy", "-"], "{\"n\":5}\n \n[6]\n");
    assert_eq!(
        json_lines(&out),
        vec![serde_json::json!({"records": 2, "first_seq": 5, "last_seq": 6})]
    );
}

#[test]
fn merge_and_archive_from_the_command_line() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let out = lamplog(&["merge", d, "s1", "s2", "--into", "all"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Four records of s1 (the checkpoint record among them, copied as data)
    // and one of s2.
    assert_eq!(
        json_lines(&out),
        vec![serde_json::json!({"records": 5, "into": "all"})]
    );
    assert_eq!(stdout(&lamplog(&["read", d, "all"], "")).lines().count(), 5);
    let out = lamplog(&["merge", d, "s1", "nope", "--into", "x"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = lamplog(&["merge", d, "s1", "--into", "s1"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Nothing to archive yet: the checkpoint lies in the only segment.
    let out = lamplog(&["archive", d, "s1"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["segments"], 0);
    let out = lamplog(&["archive", d, "s1", "--before-checkpoint", "other"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no checkpoint \"other\""),
        "{}",
        stderr(&out)
    );
    let out = lamplog(&["archive", d, "s2"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no checkpoint"), "{}", stderr(&out));
}

/// fsck reports every stream, damaged or not: damage in one stream (found at
/// open, in its tail, or by the full check, in a sealed segment) does not
/// hide the others.
#[test]
fn fsck_reports_each_stream_and_checks_one_with_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(200));
    for stream in ["a", "b", "c"] {
        // --durability sync: every record durable, so damage is never a torn tail.
        let out = lamplog(&["append", d, stream], line.repeat(40));
        assert_eq!(out.status.code(), Some(0));
    }
    let damage = |stream: &str, frame: usize| {
        let seg = crate::common::segments(dir.path(), stream).pop().unwrap();
        let spans = crate::common::frame_spans(&seg);
        crate::common::patch(&seg, spans[frame].0 + 50, b"#");
        (seg, spans[frame].0)
    };
    let (seg_a, at_a) = damage("a", 5);
    let (_, at_c) = damage("c", 20);
    let out = lamplog(&["fsck", d, "--json"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = json_lines(&out);
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["stream"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("a", "damaged"), ("b", "ok"), ("c", "damaged")]);
    assert_eq!(
        (&rows[0]["segment"], &rows[0]["offset"]),
        (&seg_a.to_str().unwrap().into(), &at_a.into())
    );
    assert_eq!(rows[2]["offset"], at_c);
    assert_eq!(rows[1]["records"], 40);
    assert!(
        stderr(&out).contains("2 of 3 streams damaged"),
        "{}",
        stderr(&out)
    );
    let out = lamplog(&["fsck", d, "--stream", "b"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = lamplog(&["fsck", d, "--stream", "a", "--json"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out).len(), 1);
    let out = lamplog(&["fsck", d, "--stream", "nope"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn purge_deletes_old_segments_and_reads_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    {
        let store = crate::common::open(dir.path(), crate::common::small_opts());
        let s = store.stream("s").unwrap();
        crate::common::fill(&s, 0..2000, lamplog::Durability::Sync);
    }
    let before = crate::common::segments(dir.path(), "s").len();
    let out = lamplog(&["purge", d, "s", "--through", "1000"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let row = &json_lines(&out)[0];
    let start = row["purged_before_seq"].as_u64().unwrap();
    let purged = row["segments"].as_u64().unwrap() as usize;
    assert!(purged > 0 && start > 1 && start <= 1001, "{row}");
    assert_eq!(
        crate::common::segments(dir.path(), "s").len(),
        before - purged
    );
    // `read` starts where the log now starts; asking for a purged seq says so.
    let first = json_lines(&lamplog(&["read", d, "s", "--limit", "1"], ""));
    assert_eq!(first[0]["seq"], start);
    let out = lamplog(&["read", d, "s", "--from-seq", "1"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("was purged"), "{}", stderr(&out));
    assert_eq!(lamplog(&["fsck", d], "").status.code(), Some(0));
    let rows = json_lines(&lamplog(&["streams", d, "--json"], ""));
    assert_eq!(rows[0]["first_seq"], start);
    assert_eq!(rows[0]["records"], 2000 - start + 1);
    // Usage errors.
    for args in [
        vec!["purge", d, "s"],
        vec!["purge", d, "s", "--through", "5", "--archived"],
        vec!["purge", d, "nope", "--through", "5"],
    ] {
        assert_eq!(lamplog(&args, "").status.code(), Some(2), "{args:?}");
    }
    let out = lamplog(&["purge", d, "s", "--archived"], "");
    assert_eq!(
        json_lines(&out)[0]["segments"],
        0,
        "nothing archived, nothing purged"
    );
}

/// `fsck --repair` loses only the damaged records: it prints what it moved
/// to quarantine and which seqs were lost, exits 0 once the store is
/// healthy, and a second `fsck` exits 0 and reports the gap as information.
/// Every other record is byte-identical.
#[test]
fn fsck_repair_loses_only_the_damaged_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let lines: String = (0..300)
        .map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 50)))
        .collect();
    let out = lamplog(&["append", d, "s", "--durability", "buffered"], &lines);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = stdout(&lamplog(&["export", d, "s"], ""));
    // Damage one record in the middle of the (only, tail) segment.
    let seg = crate::common::segments(dir.path(), "s").pop().unwrap();
    let spans = crate::common::frame_spans(&seg);
    crate::common::patch(&seg, spans[150].0 + 50, b"#");

    assert_eq!(lamplog(&["fsck", d], "").status.code(), Some(1));
    let out = lamplog(&["fsck", d, "--repair", "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_lines(&out);
    let repaired: Vec<_> = rows.iter().filter(|r| r.get("reason").is_some()).collect();
    assert_eq!(repaired.len(), 1, "{rows:?}");
    assert_eq!(repaired[0]["lost_first"], 151);
    assert_eq!(repaired[0]["lost_last"], 151);
    let kept = repaired[0]["quarantine_file"].as_str().unwrap();
    assert!(std::path::Path::new(kept).exists());
    let status = rows.iter().find(|r| r.get("status").is_some()).unwrap();
    assert_eq!(status["status"], "ok");
    assert_eq!(status["lost_seqs"], 1);
    assert_eq!(status["records"], 299);

    let out = lamplog(&["fsck", d], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        lamplog(&["fsck", d, "--repair"], "").status.code() == Some(0),
        "a second repair is a no-op"
    );
    let after = stdout(&lamplog(&["export", d, "s"], ""));
    let expected: Vec<&str> = before
        .lines()
        .filter(|l| !l.starts_with("{\"seq\":151,"))
        .collect();
    assert_eq!(after.lines().collect::<Vec<_>>(), expected);
    let listed = json_lines(&lamplog(&["streams", d, "--json"], ""));
    assert_eq!(
        (&listed[0]["records"], &listed[0]["last_seq"]),
        (&299.into(), &300.into()),
        "the lost seq is not a record"
    );
    // A read of the lost seq says what happened to it.
    let out = lamplog(&["read", d, "s", "--from-seq", "151", "--limit", "1"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("{\"seq\":152,"),
        "{}",
        stdout(&out)
    );
}

/// `lamplog redact`: the secret is in no file under the store afterwards,
/// fsck exits 0, every other record is unchanged; a seq that is not there
/// is exit 2.
#[test]
fn redact_removes_a_secret_from_every_file_and_fsck_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let secret = "ghp_S3cr3tT0k3nV4lu3";
    let mut lines: String = (0..100).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    lines.push_str(&format!("{{\"paste\":\"{secret}\"}}\n"));
    lines.push_str("{\"i\":\"after\"}\n");
    assert_eq!(lamplog(&["append", d, "s"], &lines).status.code(), Some(0));
    let before = stdout(&lamplog(&["export", d, "s"], ""));
    let out = lamplog(&["redact", d, "s", "101", "--reason", "leaked token"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("{\"stream\":\"s\",\"seq\":101,\"lamport\":101,"),
        "{}",
        stdout(&out)
    );
    let done = json_lines(&out);
    assert_eq!(done[0]["seq"], 101);
    assert_eq!(done[0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        crate::common::files_holding(dir.path(), secret.as_bytes()),
        Vec::<std::path::PathBuf>::new(),
        "the secret is in no file under the store"
    );
    assert_eq!(lamplog(&["fsck", d], "").status.code(), Some(0));
    let after = stdout(&lamplog(&["export", d, "s"], ""));
    for (b, a) in before.lines().zip(after.lines()) {
        if b.starts_with("{\"seq\":101,") {
            assert!(
                a.contains("{\"redacted\":true,\"reason\":\"leaked token\",\"sha256\":"),
                "{a}"
            );
        } else {
            assert_eq!(a, b);
        }
    }
    for (args, code) in [
        (vec!["redact", d, "s", "999", "--reason", "x"], 2),
        (vec!["redact", d, "nope", "1", "--reason", "x"], 2),
        (vec!["redact", d, "s", "1"], 2),
    ] {
        let out = lamplog(&args, "");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    }
}

/// `read --follow` prints records as another process makes them durable:
/// here a writer in the test's process appends with `Sync` while the
/// command runs, and stops after `--limit`.
#[test]
fn read_follow_prints_new_durable_records_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let first: String = (0..10).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    assert_eq!(lamplog(&["append", d, "s"], &first).status.code(), Some(0));
    let mut child = super::spawn(&[
        "read",
        d,
        "s",
        "--follow",
        "--from-seq",
        "5",
        "--limit",
        "40",
    ]);
    let store = lamplog::Store::open(dir.path(), lamplog::Options::default()).unwrap();
    let s = store.stream("s").unwrap();
    for i in 10..50 {
        s.append(format!("{{\"i\":{i}}}"), lamplog::Durability::Sync)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The last record is proven durable by the commit marker of the close.
    drop(s);
    store.close().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "--follow did not reach its limit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seqs: Vec<u64> = json_lines(&out)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (5..45).collect::<Vec<_>>());
}

/// fsck checks the derived files against the log: a missing index, a
/// damaged op id file and a `checkpoint.json` naming an old checkpoint are
/// each said (exit 0: nothing is lost), and `--repair` rebuilds them.
#[test]
fn fsck_reports_stale_derived_files_and_repair_rebuilds_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let checkpoint_json = crate::common::stream_dir(dir.path(), "s").join("checkpoint.json");
    let stale_checkpoint = {
        // Small segments, so that some are sealed.
        let store = crate::common::open(dir.path(), crate::common::small_opts());
        let s = store.stream("s").unwrap();
        crate::common::fill(&s, 0..200, lamplog::Durability::Buffered);
        s.checkpoint("old").unwrap();
        let old = std::fs::read(&checkpoint_json).unwrap();
        crate::common::fill(&s, 200..400, lamplog::Durability::Buffered);
        s.checkpoint("new").unwrap();
        drop(s);
        store.close().unwrap();
        old
    };
    let segs = crate::common::segments(dir.path(), "s");
    assert!(segs.len() > 2, "{} segments", segs.len());
    std::fs::remove_file(segs[0].with_extension("idx")).unwrap();
    std::fs::write(segs[1].with_extension("ids"), b"not an ids file").unwrap();
    std::fs::write(&checkpoint_json, stale_checkpoint).unwrap();

    let out = lamplog(&["fsck", d, "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["stale"], 3, "{}", stderr(&out));
    for name in ["idx", "ids", "checkpoint.json"] {
        assert!(stderr(&out).contains(name), "{name}: {}", stderr(&out));
    }
    let out = lamplog(&["fsck", d, "--repair"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = lamplog(&["fsck", d, "--json"], "");
    assert_eq!(json_lines(&out)[0]["stale"], 0, "{}", stderr(&out));
}

/// `lamplog doctor` names slow-growing trouble with advice, exit 0, and
/// exit 1 once a stream is damaged; a healthy store has nothing to say.
#[test]
fn doctor_finds_quarantine_archive_stale_files_unsynced_tails_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    {
        let store = crate::common::open(dir.path(), crate::common::small_opts());
        for name in ["a", "b", "c"] {
            crate::common::fill(
                &store.stream(name).unwrap(),
                0..300,
                lamplog::Durability::Buffered,
            );
        }
        store.close().unwrap();
    }
    let out = lamplog(&["doctor", d, "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(json_lines(&out).is_empty(), "{}", stdout(&out));

    // a: archived segments and a stale index; b: a torn tail, once left
    // (unsynced) and once cut into quarantine by a writable open.
    let a = lamplog(&["checkpoint", d, "a", "snap"], "");
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(lamplog(&["archive", d, "a"], "").status.code(), Some(0));
    let segs = crate::common::segments(dir.path(), "a");
    std::fs::remove_file(segs[0].with_extension("idx")).unwrap();
    let tail = crate::common::segments(dir.path(), "b").pop().unwrap();
    let end = *crate::common::frame_spans(&tail).last().unwrap();
    crate::common::patch(&tail, end.1 + 100, b"torn");
    let out = lamplog(&["doctor", d, "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let checks: Vec<(String, String)> = json_lines(&out)
        .iter()
        .map(|f| {
            (
                f["stream"].as_str().unwrap().into(),
                f["check"].as_str().unwrap().into(),
            )
        })
        .collect();
    for expected in [
        ("a", "folder size"),
        ("a", "stale derived file"),
        ("b", "unsynced tail"),
    ] {
        assert!(
            checks.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {checks:?}"
        );
    }
    assert!(json_lines(&out)
        .iter()
        .all(|f| !f["advice"].as_str().unwrap().is_empty()));

    // A writer's open moves b's torn tail to quarantine; c gets damaged.
    drop(crate::common::open(dir.path(), crate::common::small_opts()));
    let seg = crate::common::segments(dir.path(), "c")[1].clone();
    let span = crate::common::frame_spans(&seg)[2];
    crate::common::patch(&seg, span.0 + 50, b"#");
    let out = lamplog(&["doctor", d], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("quarantine/ holds"), "{text}");
    assert!(
        text.contains("damage") && text.contains("--repair"),
        "{text}"
    );
}

/// Every command that writes refuses a store another writer holds (exit 1,
/// saying so); the reading commands go on beside it.
#[test]
fn writing_commands_refuse_a_locked_store_and_reading_ones_go_on() {
    let dir = store();
    let d = dir.path().to_str().unwrap();
    let export = dir.path().join("s1.jsonl");
    std::fs::write(&export, "{\"a\":1}\n").unwrap();
    let e = export.to_str().unwrap();
    let holder = lamplog::Store::open(dir.path(), lamplog::Options::default()).unwrap();
    for args in [
        vec!["append", d, "s1"],
        vec!["import", d, "s1", e],
        vec!["checkpoint", d, "s1", "x"],
        vec!["merge", d, "s1", "s2", "--into", "m"],
        vec!["archive", d, "s1"],
        vec!["purge", d, "s1", "--through", "1"],
        vec!["redact", d, "s1", "1", "--reason", "x"],
        vec!["fsck", d, "--repair"],
    ] {
        let out = lamplog(&args, "{\"a\":1}\n");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("locked"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    for args in [
        vec!["read", d, "s1"],
        vec!["fsck", d],
        vec!["streams", d],
        vec!["checkpoints", d, "s1"],
        vec!["query", d, "--count"],
        vec!["doctor", d],
    ] {
        let out = lamplog(&args, "");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    drop(holder);
}

/// A store without streams: every reading command has nothing to say and
/// exits 0 (it is a store, unlike a directory that holds none).
#[test]
fn an_empty_store_is_healthy_and_empty_for_every_reading_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    lamplog::Store::open(dir.path(), lamplog::Options::default())
        .unwrap()
        .close()
        .unwrap();
    for args in [
        vec!["streams", d, "--json"],
        vec!["fsck", d, "--json"],
        vec!["fsck", d, "--repair", "--json"],
        vec!["doctor", d, "--json"],
        vec!["query", d],
    ] {
        let out = lamplog(&args, "");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let out = lamplog(&["query", d, "--count"], "");
    assert_eq!(stdout(&out).trim(), "0");
    let out = lamplog(&["read", d, "nope"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
