//! The peers benchmark end to end at small sizes: every system runs every
//! workload, reads back exactly what it wrote (the binary fails otherwise),
//! and the tables, plots and JSON come out.

use std::process::Command;

const SYSTEMS: [&str; 6] = [
    "lamplog",
    "raft-engine",
    "okaywal",
    "fjall",
    "sqlite",
    "jsonl",
];

#[test]
fn a_quick_run_measures_every_system_in_every_workload() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_lamplog-peers"))
        .args(["--quick", "--rounds", "2", "--json", "--dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("the benchmark runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "lamplog-peers failed:\n{stderr}");

    let lines: Vec<serde_json::Value> = String::from_utf8(run.stdout)
        .expect("JSON is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let summaries: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["summary"] == true).collect();
    let summary = |workload: &str, system: &str| {
        summaries
            .iter()
            .find(|s| s["workload"] == workload && s["system"] == system)
            .unwrap_or_else(|| panic!("no summary of {system} in {workload}"))
    };
    for workload in [
        "durable-1w",
        "durable-4w",
        "ingest",
        "ingest-batch",
        "replay",
        "reopen",
        "disk",
    ] {
        for system in SYSTEMS {
            let s = summary(workload, system);
            assert!(
                s["median"].as_f64().is_some_and(|m| m > 0.0),
                "{system} in {workload}: {s}"
            );
            if system != "lamplog" {
                assert!(s["lamplog_ahead_by"].as_f64().is_some(), "{s}");
            }
        }
    }
    // Both rounds ran, and the references sit beside the durable rows.
    assert_eq!(summary("durable-4w", "okaywal")["rounds"], 2);
    assert!(summary("durable-4w", "lockstep-ceiling")["median"].as_f64() > Some(0.0));
    assert!(summary("durable-1w", "fdatasync-loop")["median"].as_f64() > Some(0.0));
    assert_eq!(summary("inflight-16", "lamplog")["rounds"], 2);
    // Disk use is counted once per built log: okaywal's is rebuilt each
    // round, since opening it checkpoints its records away.
    assert_eq!(summary("disk", "okaywal")["rounds"], 2);
    assert_eq!(summary("disk", "fjall")["rounds"], 1);

    // Cold reopens need the right to drop the page cache (root).
    let cold = summaries.iter().any(|s| s["workload"] == "reopen-cold");
    if cold {
        for system in SYSTEMS {
            summary("reopen-cold", system);
        }
    }

    let md = std::fs::read_to_string(out.join("results.md")).expect("results.md");
    let tables = md.matches("\n### ").count();
    assert_eq!(tables, 8 + usize::from(cold), "a table per workload:\n{md}");
    for system in SYSTEMS {
        assert!(md.contains(&format!("| {system} |")) || md.contains("| **lamplog** |"));
    }
    for plot in ["durable-throughput.svg", "durable-p99.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).expect("a plot");
        for system in SYSTEMS {
            assert!(svg.contains(system), "{plot} has no line for {system}");
        }
    }
}

/// Found attacking the options: `--seconds=-1` panicked in the timing
/// thread while the writers waited at their start line, and the run hung.
#[test]
fn negative_seconds_and_other_bad_options_exit_2_without_hanging() {
    let bad: [&[&str]; 6] = [
        &["--seconds=-1"],
        &["--seconds", "nan"],
        &["--rounds", "0"],
        &["--writers", "1,0"],
        &["--ingest-records", "0"],
        &["--inflight", "100000"],
    ];
    let out = tempfile::tempdir().expect("a temporary directory");
    for args in bad {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lamplog-peers"))
            .args(args)
            .arg("--out")
            .arg(out.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the benchmark starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("a status") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("lamplog-peers {args:?} hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
            .expect("stderr");
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
    }
    assert!(
        std::fs::read_dir(out.path())
            .expect("the out dir")
            .next()
            .is_none(),
        "a refused run writes nothing"
    );
}
