//! Poison: the failure after which a stream (a failed write) or the whole
//! store (a failed fdatasync) accepts no more writes and makes nothing more
//! durable, until it is reopened from what is on disk.

use crate::error::{Error, Result};
use crate::log::sync::{AtomicBool, Mutex, Ordering};

/// The failure that poisoned a stream or store, if any.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    /// The stream it poisons; `None`: the whole store.
    stream: Option<String>,
    failed: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Poison {
    pub(crate) fn of_stream(name: &str) -> Poison {
        Poison {
            stream: Some(name.to_string()),
            ..Poison::default()
        }
    }

    pub(crate) fn set(&self, cause: String) {
        let mut slot = self.cause.lock();
        if slot.is_none() {
            *slot = Some(cause);
        }
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let cause = self.cause.lock().clone().unwrap_or_default();
        Err(Error::Poisoned {
            stream: self.stream.clone(),
            cause,
        })
    }
}
