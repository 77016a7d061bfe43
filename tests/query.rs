//! Filtered iteration: every query returns exactly what a full scan with the
//! same filter returns, starting from the index.

mod common;

use std::time::Duration;

use common::*;
use lamplog::{Durability, Record, Stream};

fn filled(dir: &std::path::Path) -> (lamplog::Store, Stream, u64) {
    let store = open(dir, small_opts());
    let s = store.stream("s").unwrap();
    let actors = ["anan", "claude", "noa"];
    let ops = ["write", "capture", "review_sign"];
    let mut mid_ts = 0;
    for i in 0..3000u64 {
        if i == 1500 {
            std::thread::sleep(Duration::from_millis(5));
            mid_ts = s.get(1500).unwrap().unwrap().ts_us() + 2_000;
            std::thread::sleep(Duration::from_millis(5));
        }
        let payload = match i % 4 {
            0 => format!(
                r#"{{"actor":"{}","op":"{}","domain":"code","i":{i}}}"#,
                actors[(i % 3) as usize],
                ops[(i % 5 % 3) as usize]
            ),
            1 => format!(
                r#"{{"actor_id":"{}","kind":"{}","domain":"music","i":{i}}}"#,
                actors[(i % 3) as usize],
                ops[(i % 7 % 3) as usize]
            ),
            2 => format!(r#"[{i}]"#),
            _ => format!(r#"{{"actor":7,"op":null,"i":{i}}}"#),
        };
        let observed = if i % 100 == 0 {
            s.last_lamport() + 5
        } else {
            0
        };
        s.append_observed(payload, observed, Durability::Buffered)
            .unwrap();
    }
    s.sync().unwrap();
    (store, s, mid_ts)
}

fn field<'a>(v: &'a serde_json::Value, a: &str, b: &str) -> Option<&'a str> {
    v.get(a)
        .and_then(|x| x.as_str())
        .or_else(|| v.get(b).and_then(|x| x.as_str()))
}

#[test]
fn queries_match_a_full_scan_with_the_same_filter() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, s, mid_ts) = filled(dir.path());
    let all: Vec<Record> = read_all(&s);
    let seqs = |records: Vec<Record>| records.iter().map(|r| r.seq()).collect::<Vec<_>>();
    let run = |q: lamplog::Query| seqs(q.iter().collect::<Result<Vec<_>, _>>().unwrap());
    let brute = |f: &dyn Fn(&Record, &serde_json::Value) -> bool| {
        seqs(
            all.iter()
                .filter(|r| f(r, &serde_json::from_slice(r.payload()).unwrap()))
                .cloned()
                .collect(),
        )
    };
    assert_eq!(run(s.query().seq(100..200)), (100..200).collect::<Vec<_>>());
    assert_eq!(
        run(s.query().seq(2990..)),
        (2990..=3000).collect::<Vec<_>>()
    );
    let (l0, l1) = (all[700].lamport(), all[1800].lamport());
    assert_eq!(
        run(s.query().lamport(l0..=l1)),
        brute(&|r, _| r.lamport() >= l0 && r.lamport() <= l1)
    );
    assert_eq!(
        run(s.query().lamport(l0..).seq(..1000)),
        brute(&|r, _| r.lamport() >= l0 && r.seq() < 1000)
    );
    assert_eq!(
        run(s.query().ts_us(mid_ts..)),
        brute(&|r, _| r.ts_us() >= mid_ts)
    );
    assert_eq!(
        run(s.query().ts_us(..mid_ts)),
        brute(&|r, _| r.ts_us() < mid_ts)
    );
    assert!(
        !run(s.query().ts_us(mid_ts..)).is_empty() && !run(s.query().ts_us(..mid_ts)).is_empty()
    );
    assert_eq!(
        run(s.query().actor("anan").op("review_sign")),
        brute(&|_, v| field(v, "actor", "actor_id") == Some("anan")
            && field(v, "op", "kind") == Some("review_sign"))
    );
    assert_eq!(
        run(s.query().domain("music").seq(500..900)),
        brute(
            &|r, v| v.get("domain").and_then(|d| d.as_str()) == Some("music")
                && (500..900).contains(&r.seq())
        )
    );
    assert!(run(s.query().actor("nobody")).is_empty());
}

/// Regression (issue 9, defect 2): fields holding JSON escapes were read as
/// borrowed strings, which cannot hold the unescaped text, so the whole
/// record was treated as having no fields and every filter skipped it.
#[test]
fn query_matches_fields_that_hold_json_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let escaped = br#"{"actor_id":"caf\u00e9","op":"say \"hi\"","domain":"x"}"#;
    let escaped_key = br#"{"\u0061ctor":"zo\u00eb","d\u006fmain":"y\/z"}"#;
    let plain = r#"{"actor":"café","op":"say \"hi\"","domain":"x"}"#.as_bytes();
    for p in [&escaped[..], escaped_key, plain] {
        s.append(p, Durability::Buffered).unwrap();
    }
    s.sync().unwrap();
    let seqs = |q: lamplog::Query| q.iter().map(|r| r.unwrap().seq()).collect::<Vec<_>>();
    assert_eq!(seqs(s.query().actor("café")), [1, 3]);
    assert_eq!(seqs(s.query().op(r#"say "hi""#)), [1, 3]);
    assert_eq!(seqs(s.query().domain("x")), [1, 3]);
    assert_eq!(
        seqs(s.query().actor("café").op(r#"say "hi""#).domain("x")),
        [1, 3]
    );
    assert_eq!(seqs(s.query().actor("zoë")), [2]);
    assert_eq!(seqs(s.query().domain("y/z")), [2]);
}

/// A field of another JSON type is a non-match for that field only: the
/// record's other fields still match.
#[test]
fn a_field_of_another_type_does_not_hide_the_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    for p in [
        &br#"{"actor":5,"op":["a"],"domain":"x"}"#[..],
        br#"{"actor":{"name":"a"},"actor_id":"a","kind":null,"op":"w","domain":"x"}"#,
        br#"["actor","a"]"#,
        br#""a""#,
        br#"{"actor":"a","actor":"b","domain":"x"}"#,
    ] {
        s.append(p, Durability::Buffered).unwrap();
    }
    s.sync().unwrap();
    let seqs = |q: lamplog::Query| q.iter().map(|r| r.unwrap().seq()).collect::<Vec<_>>();
    assert_eq!(seqs(s.query().domain("x")), [1, 2, 5]);
    assert_eq!(seqs(s.query().actor("5")), Vec::<u64>::new());
    assert_eq!(seqs(s.query().actor("a")), [2]);
    assert_eq!(seqs(s.query().op("w")), [2]);
    // A repeated key: the last one counts, as in serde_json's own values.
    assert_eq!(seqs(s.query().actor("b")), [5]);
}
