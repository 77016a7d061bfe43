//! Tailing a stream: a blocking iterator over records as they become
//! durable, woken by the writer (no sleep-polling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::log::commit::{StreamLog, Waited};
use crate::log::reader::{From, Iter, Record};
use crate::stream::Stream;

/// Records of a stream from a given seq on, each yielded once it is on
/// disk, in order, waiting for the next when there is none yet.
///
/// `next()` blocks; [`next_timeout`](Subscription::next_timeout) gives up
/// after a while. A failure of the store ends the subscription with its
/// error. When the store closes (or its last handle is dropped), the
/// subscription yields the records that became durable and then ends
/// ([`is_ended`](Subscription::is_ended)).
#[derive(Debug)]
pub struct Subscription {
    log: Arc<StreamLog>,
    iter: Iter,
    ended: bool,
}

impl Subscription {
    pub(crate) fn new(log: Arc<StreamLog>, iter: Iter) -> Subscription {
        Subscription {
            log,
            iter,
            ended: false,
        }
    }

    /// The next durable record, waiting at most `timeout` for one; `None`
    /// if none came in time, or if the subscription ended.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Record>> {
        self.next_until(Some(Instant::now() + timeout))
    }

    /// Whether the subscription has ended: after an error, or once its
    /// store closed and every record durable by then was yielded. An ended
    /// subscription yields nothing more.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<Record>> {
        if self.ended {
            return None;
        }
        loop {
            if !self.iter.at_limit() {
                if let Some(record) = self.iter.next() {
                    self.ended = record.is_err();
                    return Some(record);
                }
            }
            let want = self.log.durable_seq().max(self.iter_next_seq());
            match self.log.wait_durable_seq(want, deadline) {
                Ok(Waited::Reached) => self.iter.extend_to(self.log.durable_seq()),
                Ok(Waited::TimedOut) => return None,
                Ok(Waited::Closed) => {
                    // Nothing more becomes durable: yield what did, then end.
                    self.iter.extend_to(self.log.durable_seq());
                    let next = self.iter.next();
                    self.ended = next.as_ref().is_none_or(Result::is_err);
                    return next;
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }

    fn iter_next_seq(&self) -> u64 {
        self.iter.next_seq()
    }
}

impl Iterator for Subscription {
    type Item = Result<Record>;

    /// The next durable record, waiting as long as it takes.
    fn next(&mut self) -> Option<Result<Record>> {
        self.next_until(None)
    }
}

impl Stream {
    /// Records from `seq` on, each yielded once it is durable, waiting for
    /// new ones (woken by the writer) when there are none. A read-only store
    /// has no writer to wait for: [`Error::ReadOnly`](crate::Error::ReadOnly). Like an iterator, it
    /// yields every seq in order or ends with [`Error::Archived`](crate::Error::Archived) for the
    /// first one archived before it could read it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lamplog::Store::open(dir.path(), lamplog::Options::default())?;
    /// let stream = store.stream("s")?;
    /// let mut tail = stream.subscribe_from(1)?;
    /// let writer = stream.clone();
    /// std::thread::spawn(move || writer.append(b"{}", lamplog::Durability::Sync));
    /// assert_eq!(tail.next().unwrap()?.seq(), 1);
    /// assert!(tail.next_timeout(std::time::Duration::from_millis(10)).is_none());
    /// # Ok::<(), lamplog::Error>(())
    /// ```
    pub fn subscribe_from(&self, seq: u64) -> Result<Subscription> {
        let log = self.log()?.clone();
        let durable = log.durable_seq();
        let iter = Iter::new(self.segments().clone(), durable, From::Seq(seq.max(1)));
        Ok(Subscription::new(log, iter))
    }
}
