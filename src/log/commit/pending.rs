//! Appends that return at once: the record is framed and queued (written,
//! if no other thread is writing), and a [`Pending`] completes when a sync
//! covers it. A thread can keep thousands in flight, and an async host
//! awaits them (`Pending` is a `Future`), with no thread blocked per append
//! and no runtime in lamplog: the sync machinery wakes the tasks whose
//! records it made durable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::StreamLog;
use crate::error::Result;
use crate::log::sync::{Arc, Ordering};
use crate::log::writer::{Appended, Pos};

/// A durable append in flight, from
/// [`Stream::append_pending`](crate::Stream::append_pending): its seq and
/// Lamport are fixed, and it completes once the record is on disk.
///
/// Completion follows seq order (a sync covers every record before the
/// ones it makes durable). Dropping a `Pending` does not withdraw the
/// record; it only stops waiting for it. A failed sync completes every
/// pending append it would have covered with the error.
#[must_use = "a pending append completes when awaited or waited for"]
#[derive(Debug)]
pub struct Pending {
    log: Arc<StreamLog>,
    pos: Pos,
    appended: Appended,
}

impl Pending {
    pub(crate) fn new(log: Arc<StreamLog>, pos: Pos, appended: Appended) -> Pending {
        Pending { log, pos, appended }
    }

    /// The record's seq.
    pub fn seq(&self) -> u64 {
        self.appended.seq
    }

    /// The record's Lamport timestamp.
    pub fn lamport(&self) -> u64 {
        self.appended.lamport
    }

    /// Whether the record is on disk already (or the append failed:
    /// [`wait`](Pending::wait) then says how).
    pub fn is_done(&self) -> bool {
        self.outcome().is_some()
    }

    /// Block until the record is on disk.
    pub fn wait(&self) -> Result<Appended> {
        self.log
            .wait(self.pos, &self.log.durable, &self.log.durable_changed)?;
        Ok(self.appended)
    }

    fn outcome(&self) -> Option<Result<Appended>> {
        if self.log.durable.load(Ordering::Acquire) >= self.pos {
            return Some(Ok(self.appended));
        }
        self.log.check().err().map(Err)
    }
}

impl Future for Pending {
    type Output = Result<Appended>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(done) = self.outcome() {
            return Poll::Ready(done);
        }
        self.log.register_waker(self.pos, cx.waker());
        // Checked again after registering: a sync that ended in between
        // woke the wakers registered before it, not this one.
        match self.outcome() {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    }
}

/// Tasks waiting for positions of one stream to become durable.
#[derive(Debug, Default)]
pub(super) struct Wakers(crate::log::sync::Mutex<Vec<(Pos, Waker)>>);

impl StreamLog {
    fn register_waker(&self, pos: Pos, waker: &Waker) {
        let mut wakers = self.wakers.0.lock();
        if let Some(entry) = wakers
            .iter_mut()
            .find(|(p, w)| *p == pos && w.will_wake(waker))
        {
            entry.1 = waker.clone();
            return;
        }
        wakers.push((pos, waker.clone()));
    }

    /// Wake the tasks whose positions are durable now, or every one if the
    /// log failed (they learn the error when polled).
    pub(super) fn wake_durable(&self) {
        let durable = self.durable.load(Ordering::Acquire);
        let failed = self.check().is_err();
        let woken: Vec<Waker> = {
            let mut wakers = self.wakers.0.lock();
            if wakers.is_empty() {
                return;
            }
            let (done, waiting) = std::mem::take(&mut *wakers)
                .into_iter()
                .partition(|(pos, _)| failed || *pos <= durable);
            *wakers = waiting;
            done.into_iter().map(|(_, w)| w).collect::<Vec<_>>()
        };
        for waker in woken {
            waker.wake();
        }
    }
}
