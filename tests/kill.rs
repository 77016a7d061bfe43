//! Real processes killed with SIGKILL at random moments (mid-batch,
//! mid-roll, mid-checkpoint, with pending appends in flight): every
//! acknowledged record survives, byte for byte, buffered ones included
//! (a kill is not a power cut), and appends go on. `LAMPLOG_KILLS=5000 cargo test --release --test
//! kill` runs a longer campaign; CI runs the default 200.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use lamplog::{Durability, Options, RecoveryMode, Store};

const CHILD_ENV: &str = "LAMPLOG_KILL_CHILD_DIR";
/// The segment size the child and the parent use (default 8 KiB).
const SEGMENT_ENV: &str = "LAMPLOG_KILL_SEGMENT_BYTES";

fn opts(segment_bytes: u64) -> Options {
    Options::default()
        .segment_bytes_max(segment_bytes)
        .record_bytes_max(2 << 10)
        .index_interval_bytes(512)
}

/// The payload of record `i`: up to 50 bytes of padding, or up to 1,050
/// for one in seven (so that bulk writes fill large segments quickly).
fn body(i: u64) -> String {
    let pad = (i % 50) as usize + if i % 7 == 0 { 1000 } else { 0 };
    format!(r#"{{"i":{i},"pad":"{}"}}"#, "p".repeat(pad))
}

/// The child: appends for ever, printing `<seq> <i>` for each record once it
/// is acknowledged: durable for `Sync` and pending appends, written for
/// `Buffered` ones, which a process kill must keep as well. Runs only when
/// the parent sets `CHILD_ENV`.
#[test]
#[ignore = "run by kill_campaign in a child process"]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let segment_bytes = std::env::var(SEGMENT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("the parent sets the segment size");
    let bulk = segment_bytes >= 1 << 20;
    let store = Store::open(&dir, opts(segment_bytes)).unwrap();
    let stream = store.stream("s").unwrap();
    let mut i = stream.last_seq() * 1000 + 1_000_000 * std::process::id() as u64;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    loop {
        i += 1;
        match i % 11 {
            // An atomic batch, acknowledged as a whole.
            0 => {
                let acks = stream
                    .append_batch((0..5).map(|k| body(i * 10 + k)), Durability::Sync)
                    .unwrap();
                for (k, a) in acks.iter().enumerate() {
                    writeln!(out, "{} {}", a.seq, i * 10 + k as u64).unwrap();
                }
            }
            // A checkpoint (its record is not a payload we check).
            5 => {
                stream.checkpoint(&format!("snap-{i}")).unwrap();
            }
            // Buffered: written once `append` returns (through the
            // segment's write map on ext4 and tmpfs), so a process kill
            // keeps it, though a power cut might not.
            3 | 7 if !bulk => {
                let a = stream.append(body(i), Durability::Buffered).unwrap();
                writeln!(out, "{} {i}", a.seq).unwrap();
            }
            // With large segments, buffered batches of 100: the segment
            // grows by steps a helper thread writes ahead of the records.
            3 | 7 => {
                let acks = stream
                    .append_batch((0..100).map(|k| body(i * 1000 + k)), Durability::Buffered)
                    .unwrap();
                for (k, a) in acks.iter().enumerate() {
                    writeln!(out, "{} {}", a.seq, i * 1000 + k as u64).unwrap();
                }
            }
            // Pending appends, acknowledged once each is durable.
            9 => {
                let pending: Vec<_> = (0..4)
                    .map(|k| (stream.append_pending(body(i * 10 + k)).unwrap(), k))
                    .collect();
                for (p, k) in pending {
                    let a = p.wait().unwrap();
                    writeln!(out, "{} {}", a.seq, i * 10 + k).unwrap();
                }
            }
            _ => {
                let a = stream.append(body(i), Durability::Sync).unwrap();
                writeln!(out, "{} {i}", a.seq).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

fn run_child_and_kill(dir: &Path, after: Duration, segment_bytes: u64) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, dir)
        .env(SEGMENT_ENV, segment_bytes.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                let mut parts = l.split(' ');
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
            })
            .collect::<Vec<(u64, u64)>>()
    });
    std::thread::sleep(after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn kill_campaign() {
    campaign(8 << 10, 3, 2);
}

/// Segments large enough that the writer grows them ahead in a helper
/// thread (steps of 256 KiB and more): kills land while a helper writes
/// zeros past the records and while the writer copies into the write map.
#[test]
fn kill_campaign_with_segments_grown_ahead() {
    campaign(2 << 20, 1, 10);
}

/// Kill a child appending to 8 KiB or larger segments at a random moment
/// `life_min_ms` to 30 ms later, `LAMPLOG_KILLS` times (200 by default);
/// check every acknowledged record after each, and that the log spans more
/// than `segments_min` segments. (A child must live long enough to open
/// the store and append: a debug build takes longer to recover a large
/// tail.)
fn campaign(segment_bytes: u64, segments_min: usize, life_min_ms: u64) {
    let kills: u64 = std::env::var("LAMPLOG_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let (mut torn, mut max_seq) = (0, 0);
    for k in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = Duration::from_micros(life_min_ms * 1000 + rng % 30_000);
        for (seq, i) in run_child_and_kill(dir.path(), after, segment_bytes) {
            assert!(
                acked.insert(seq, i).is_none_or(|old| old == i),
                "seq {seq} acknowledged twice with different records"
            );
        }
        // Strict recovery: a crash is never corruption.
        let store = Store::open(
            dir.path(),
            opts(segment_bytes).recovery(RecoveryMode::Strict),
        )
        .unwrap_or_else(|e| panic!("kill {k} (after {after:?}): reopen failed: {e}"));
        torn += store.recovery_report().cuts.len();
        let stream = store.stream("s").unwrap();
        let records = read_all(&stream);
        // A contiguous prefix holding every acknowledged record, byte for byte.
        assert!(records
            .iter()
            .enumerate()
            .all(|(n, r)| r.seq() == n as u64 + 1));
        let last = stream.last_seq();
        for (&seq, &i) in &acked {
            assert!(
                seq <= last,
                "kill {k}: acknowledged seq {seq} lost (log ends at {last})"
            );
            assert_eq!(
                records[seq as usize - 1].payload(),
                body(i).as_bytes(),
                "kill {k}: seq {seq}"
            );
        }
        max_seq = max_seq.max(last);
    }
    assert!(
        acked.len() as u64 > kills,
        "the children made progress: {} acks",
        acked.len()
    );
    assert!(
        segments(dir.path(), "s").len() > segments_min,
        "the campaign crossed segment rolls"
    );
    eprintln!("{kills} kills, {} acknowledged records checked, {torn} torn tails cut, log of {max_seq} records", acked.len());
}
