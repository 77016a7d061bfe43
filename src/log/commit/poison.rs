//! Poison: the failure after which a stream (a failed write) or the whole
//! store (a failed fdatasync) accepts no more writes and makes nothing more
//! durable, until it is reopened from what is on disk.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::sync::{AtomicBool, Mutex, Ordering};

/// The failure that poisoned a stream or store, if any.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    /// The stream it poisons; `None`: the whole store.
    stream: Option<String>,
    failed: AtomicBool,
    /// What failed, and the operating system's error.
    cause: Mutex<Option<(String, Arc<std::io::Error>)>>,
}

impl Poison {
    pub(crate) fn of_stream(name: &str) -> Poison {
        Poison {
            stream: Some(name.to_string()),
            ..Poison::default()
        }
    }

    /// Poison with `cause` (what failed) and `source` (the system's
    /// error); the first failure is the one every later error reports.
    pub(crate) fn set(&self, cause: String, source: std::io::Error) {
        let mut slot = self.cause.lock();
        if slot.is_none() {
            *slot = Some((cause, Arc::new(source)));
        }
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let (cause, source) = self
            .cause
            .lock()
            .clone()
            .expect("a poison's cause is set before its flag");
        Err(Error::Poisoned {
            stream: self.stream.clone(),
            cause,
            source,
        })
    }
}
