//! Opening the store a command names.

use std::path::Path;

use lamplog::{Options, Store};

use crate::failure::Failure;

/// Open the existing store in `dir` (read-only unless `opts` says
/// otherwise). A directory that does not exist, or holds no store, is a
/// usage error: a typo must not read as an empty, healthy store.
pub fn existing(dir: &Path, opts: Options) -> Result<Store, Failure> {
    check_is_store(dir)?;
    let store = Store::open(dir, opts)?;
    report_cuts(&store);
    Ok(store)
}

/// A directory that does not exist, or holds no store, is a usage error.
pub fn check_is_store(dir: &Path) -> Result<(), Failure> {
    if !dir.join(lamplog::STREAMS_DIR).is_dir() {
        let why = if dir.is_dir() {
            "holds no lamplog store"
        } else {
            "does not exist"
        };
        return Err(Failure {
            code: 2,
            message: format!("{} {why}", dir.display()),
        });
    }
    Ok(())
}

/// Tell the operator on stderr what recovery cut (or, read-only, skipped).
pub fn report_cuts(store: &Store) {
    for cut in &store.recovery_report().cuts {
        let kept = match &cut.quarantine_file {
            Some(path) => format!("kept in {}", path.display()),
            None => "not read (read-only; a writer's open moves them to quarantine)".to_string(),
        };
        eprintln!(
            "lamplog: recovery: {}: {} bytes of {} at offset {}, {kept}",
            cut.reason,
            cut.len,
            cut.segment.display(),
            cut.offset,
        );
    }
}
