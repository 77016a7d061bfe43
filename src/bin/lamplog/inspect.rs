//! Commands that inspect a store: `fsck`.

use std::path::Path;

use lamplog::{Options, Store};

use crate::failure::Failure;
use crate::write::report_cuts;

pub fn fsck(dir: &Path) -> Result<(), Failure> {
    let store = Store::open(dir, Options::default().read_only(true))?;
    report_cuts(&store);
    let v = store.verify()?;
    println!(
        "ok: {} streams, {} segments, {} records, {} bytes of frames verified",
        store.streams().len(),
        v.segments,
        v.records,
        v.bytes
    );
    Ok(())
}
