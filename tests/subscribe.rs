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
    let opts = small_opts().sync_interval_us(60_000_000);
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
    let store = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
    assert!(matches!(
        store.stream("s").unwrap().subscribe_from(1),
        Err(Error::ReadOnly)
    ));
}

/// Collect a subscription on another thread; the receiver gets the seqs it
/// yielded once it ends.
fn drain_until_end(mut tail: lamplog::Subscription) -> std::sync::mpsc::Receiver<Vec<u64>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let seqs = tail.by_ref().map(|r| r.unwrap().seq()).collect();
        let _ = tx.send(seqs);
    });
    rx
}

/// What a subscription drained by `drain_until_end` yielded, once it ends.
fn yielded(ended: std::sync::mpsc::Receiver<Vec<u64>>, when: &str) -> Vec<u64> {
    ended
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("the subscription did not end when {when}"))
}

/// Regression (issue 9, defect 6): a thread blocked in `Subscription::next`
/// stayed blocked after `store.close()`, even after another writer had
/// reopened the store. A subscription ends when its store closes, after
/// yielding every durable record.
#[test]
fn a_subscription_ends_when_its_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..3, Durability::Sync);
    let ended = drain_until_end(s.subscribe_from(1).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    s.append(payload(3), Durability::Buffered).unwrap();
    drop(s);
    store.close().unwrap();
    assert_eq!(yielded(ended, "the store closed"), [1, 2, 3, 4]);
    // The store reopens for writing at once.
    let store = open(dir.path(), small_opts());
    assert_eq!(store.stream("s").unwrap().last_seq(), 4);
}

/// `close` closes the store for every handle: a stream handle still held
/// elsewhere refuses writes with `Error::Closed` (but still reads), its
/// subscriptions end, and the writer lock is free for the next open.
#[test]
fn close_closes_every_handle_and_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    let other = store.clone();
    fill(&s, 0..3, Durability::Sync);
    let ended = drain_until_end(s.subscribe_from(2).unwrap());
    store.close().unwrap();
    assert_eq!(yielded(ended, "the store closed"), [2, 3]);
    assert!(matches!(
        s.append(payload(9), Durability::Sync),
        Err(Error::Closed)
    ));
    assert!(matches!(other.stream("t"), Err(Error::Closed)));
    assert_eq!(read_all(&s).len(), 3, "reads go on");
    let reopened = open(dir.path(), small_opts());
    let s2 = reopened.stream("s").unwrap();
    assert_eq!(s2.append(payload(3), Durability::Sync).unwrap().seq, 4);
    // The old handles write nothing into the new writer's log, even on drop.
    drop(s);
    drop(other);
    drop(s2);
    reopened.close().unwrap();
    let store = open(dir.path(), small_opts());
    assert_eq!(read_all(&store.stream("s").unwrap()).len(), 4);
}

/// Dropping every handle without `close` ends subscriptions too.
#[test]
fn a_subscription_ends_when_the_last_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_opts());
    let s = store.stream("s").unwrap();
    fill(&s, 0..2, Durability::Sync);
    let ended = drain_until_end(s.subscribe_from(1).unwrap());
    drop(s);
    drop(store);
    assert_eq!(yielded(ended, "the store was dropped"), [1, 2]);
}
