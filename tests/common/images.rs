//! Checking crash images: the disk a power cut at some operation left must
//! open (a crash is never corruption), hold a prefix of each stream with
//! every record acknowledged durable by then, byte for byte, and take
//! appends that survive a reopen.

use std::collections::BTreeSet;
use std::sync::Arc;

use lamplog::{Durability, Options, Store};

use lamplog::testing::SimDisk;

/// A record acknowledged durable, and the disk operation count right after
/// its acknowledgement: every crash image at or after `at` must hold it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub stream: String,
    pub seq: u64,
    pub payload: Vec<u8>,
    pub at: usize,
}

/// Check the image of a crash right after operation `at`.
pub fn check_image(
    image: &SimDisk,
    root: &str,
    opts: &Options,
    acked: &[Ack],
    at: usize,
    label: &str,
) {
    let open = || {
        Store::open_with(Arc::new(image.clone()), root, opts.clone())
            .unwrap_or_else(|e| panic!("{label}: open failed: {e}"))
    };
    let store = open();
    let names: BTreeSet<&str> = acked.iter().map(|a| a.stream.as_str()).collect();
    let mut appended = Vec::new();
    for name in names {
        let s = store
            .stream(name)
            .unwrap_or_else(|e| panic!("{label}: stream {name}: {e}"));
        let records: Vec<_> = s
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{label}: {name}: read failed: {e}"));
        let first = s.first_seq();
        assert!(
            records
                .iter()
                .enumerate()
                .all(|(n, r)| r.seq() == first + n as u64),
            "{label}: {name}: not a prefix"
        );
        let due = acked
            .iter()
            .filter(|a| a.stream == name && a.at <= at && a.seq >= first);
        for ack in due {
            let got = records
                .get((ack.seq - first) as usize)
                .unwrap_or_else(|| panic!("{label}: {name}: acknowledged seq {} lost", ack.seq));
            assert_eq!(
                got.payload(),
                ack.payload.as_slice(),
                "{label}: {name}: seq {} changed",
                ack.seq
            );
        }
        let next = s
            .append(br#"{"after":"crash"}"#, Durability::Sync)
            .unwrap_or_else(|e| panic!("{label}: {name}: append failed: {e}"));
        appended.push((name, next.seq));
    }
    store.close().unwrap();
    let store = open();
    for (name, seq) in appended {
        let record = store.stream(name).unwrap().get(seq).unwrap();
        assert_eq!(
            record.map(|r| r.payload().to_vec()).as_deref(),
            Some(&br#"{"after":"crash"}"#[..]),
            "{label}: {name}: the append after the crash was lost"
        );
    }
}
