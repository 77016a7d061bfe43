//! Tailing: a subscriber sees every record once, in order, as it becomes
//! durable, while writers run.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lamplog::{Durability, Error, Options, Store};

#[test]
fn a_subscriber_sees_every_record_once_in_order_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let stream = store.stream("s").unwrap();
    fill(&stream, 0..50, Durability::Sync);
    let mut tail = stream.subscribe_from(20).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let stream = stream.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let d = if (i + t) % 3 == 0 {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    stream.append(format!(r#"{{"t":{t},"i":{i}}}"#), d).unwrap();
                }
            })
        })
        .collect();
    let total = 50 + 4 * 300;
    let mut next = 20;
    while next <= total {
        let record = tail
            .next_timeout(Duration::from_secs(10))
            .expect("records keep coming")
            .unwrap();
        assert_eq!(record.seq(), next, "each record once, in order");
        next += 1;
    }
    writers.into_iter().for_each(|w| w.join().unwrap());
    // Nothing more: the subscription waits, and a timeout says so.
    let started = Instant::now();
    assert!(tail.next_timeout(Duration::from_millis(50)).is_none());
    assert!(started.elapsed() >= Duration::from_millis(45));
}

#[test]
fn records_are_yielded_only_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    // A long sync interval: buffered records stay unsynced until a sync.
    let opts = Options {
        sync_interval_us: 60_000_000,
        ..small_opts()
    };
    let store = open(dir.path(), opts);
    let stream = store.stream("s").unwrap();
    let mut tail = stream.subscribe_from(1).unwrap();
    stream.append(payload(0), Durability::Buffered).unwrap();
    assert!(
        tail.next_timeout(Duration::from_millis(50)).is_none(),
        "written but not durable"
    );
    stream.sync().unwrap();
    assert_eq!(
        tail.next_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .seq(),
        1
    );
    // A blocking wait is woken by the writer.
    let writer = {
        let stream = stream.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            stream.append(payload(1), Durability::Sync).unwrap();
        })
    };
    assert_eq!(
        tail.next().unwrap().unwrap().payload(),
        payload(1).as_slice()
    );
    writer.join().unwrap();
}

#[test]
fn a_read_only_store_has_nothing_to_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), Options::default()).stream("s").unwrap();
    let store = Store::open(dir.path(), Options::read_only()).unwrap();
    assert!(matches!(
        store.stream("s").unwrap().subscribe_from(1),
        Err(Error::ReadOnly)
    ));
}
