//! The threads a store starts. One test in its own binary, so that no other
//! test's threads are counted.

use lamplog::{Durability, Options, Store};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The syncer thread starts only when something needs it: a store that is
/// only read, or written by one `Sync` appender at a time (which syncs in
/// its own thread), runs none; the first `Buffered` record (which a sweep
/// must make durable) starts it, and closing the store ends it.
#[test]
fn the_syncer_thread_starts_with_the_first_record_that_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let before = threads();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let stream = store.stream("s").unwrap();
    for i in 0..10 {
        stream.append(format!("[{i}]"), Durability::Sync).unwrap();
    }
    stream.sync().unwrap();
    assert_eq!(
        threads(),
        before,
        "a lone Sync appender needs no syncer thread"
    );
    drop(stream);
    store.close().unwrap();

    let read_only = Store::open(dir.path(), Options::default().read_only(true)).unwrap();
    assert_eq!(read_only.stream("s").unwrap().iter().count(), 10);
    assert_eq!(threads(), before, "a read-only store runs no thread");
    drop(read_only);

    let store = Store::open(dir.path(), Options::default()).unwrap();
    let stream = store.stream("s").unwrap();
    stream.append(b"{}", Durability::Buffered).unwrap();
    assert_eq!(threads(), before + 1, "a Buffered record starts the syncer");
    drop(stream);
    store.close().unwrap();
    assert_eq!(threads(), before, "closing the store ends its syncer");
}
