//! The durable half of a stream's log: asking the syncer for a sync (or
//! syncing in the appender's own thread), moving the durable position when
//! a sync ends, and waiting for it. The written half is in `mod.rs`.

use super::syncer::{SyncTarget, Syncable};
use super::{StreamLog, Waited};
use crate::error::Result;
use crate::log::sync::{Arc, Ordering};
use crate::log::writer::Pos;

impl StreamLog {
    /// Ask the syncer for a sync of this stream, unless one is asked already
    /// and not yet begun (it will cover everything written before it begins).
    pub(super) fn request_sync(self: &Arc<Self>) {
        if !self.sync_requested.swap(true, Ordering::AcqRel) {
            if !self.syncer.request(self.clone()) {
                // The syncer is stopping (its store is closing): every
                // waiter must still be answered, so sync here.
                self.sync_requested.store(false, Ordering::Release);
                self.sync_inline();
            }
        } else {
            // Already queued: this append may complete the gathered batch.
            self.syncer.nudge();
        }
    }

    /// Seq of the last record known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Wait until record `seq` is on disk, `deadline` passes, the log is
    /// closed, or the store fails (`Err`).
    pub fn wait_durable_seq(
        &self,
        seq: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<Waited> {
        let reached = || self.durable_seq.load(Ordering::Acquire) >= seq;
        let closed = || self.closed.load(Ordering::Acquire);
        let done = || reached() || closed() || self.check().is_err();
        match deadline {
            None => self.durable_changed.wait_until(done),
            Some(deadline) => {
                self.durable_changed.wait_until_deadline(done, deadline);
            }
        }
        if reached() {
            return Ok(Waited::Reached);
        }
        self.check()?;
        Ok(if closed() {
            Waited::Closed
        } else {
            Waited::TimedOut
        })
    }

    pub(super) fn set_durable(&self, pos: Pos, seq: u64) {
        assert!(
            pos <= self.written.load(Ordering::Acquire),
            "durable never passes written: a sync covers only what was written before it began"
        );
        assert!(
            seq <= self.last_seq(),
            "a sync acknowledges only records that were stamped"
        );
        self.encoder.lock().encoder.note_durable(pos);
        self.durable.fetch_max(pos, Ordering::AcqRel);
        self.durable_seq.fetch_max(seq, Ordering::AcqRel);
        self.durable_changed.notify_all();
        self.wake_durable();
    }

    /// What a sync begun now covers: the active file, up to what is written.
    pub(super) fn sync_target(&self) -> SyncTarget {
        let io = self.io.lock();
        SyncTarget {
            file: io.file().clone(),
            path: io.active().path.clone(),
            pos: io.written_pos(),
            seq: io.written().last_seq,
        }
    }

    /// Sync in this thread, sparing a lone appender the two thread hops to
    /// the syncer and back. Only when the syncer has nothing else to do:
    /// under load, the syncer's batches are cheaper.
    pub(super) fn sync_inline(&self) {
        let target = self.sync_target();
        let started = std::time::Instant::now();
        let result = target.file.sync_data();
        let counters = &self.syncer.counters;
        counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        counters
            .fsync_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.unwait();
        self.end_sync(&target, result);
    }

    /// Take back this thread's count in the syncer's waiting appends: its
    /// sync is done (or was not needed) without the syncer.
    pub(super) fn unwait(&self) {
        // The syncer may have reset the count meanwhile: never wrap below zero.
        let _ = self
            .syncer
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| w.checked_sub(1));
    }
}

/// The syncer's side of a stream's log.
impl Syncable for StreamLog {
    /// Start a sync (the syncer calls this): the file to fdatasync and the
    /// position that makes durable. The io lock is not held during the sync,
    /// so the flusher keeps writing the next batch meanwhile.
    fn begin_sync(&self) -> SyncTarget {
        self.sync_requested.store(false, Ordering::Release);
        self.sync_target()
    }

    fn end_sync(&self, target: &SyncTarget, result: std::io::Result<()>) {
        match result {
            // After a poison nothing more becomes durable, not even through
            // a sync that seems to succeed (see below).
            Ok(()) if self.check().is_err() => {}
            Ok(()) => self.set_durable(target.pos, target.seq),
            // After a failed fsync the kernel may have dropped the dirty
            // pages, so a retry could falsely succeed: nothing more is
            // acknowledged by this store, and its durable point stays put.
            Err(e) => self.fail(
                &self.store_poison,
                format!("fdatasync {}: {e}", target.path.display()),
                e,
            ),
        }
    }

    /// Whether the syncer's sweep should sync this stream: it has unsynced
    /// records and is not poisoned (a retry after a failed fdatasync could
    /// falsely succeed).
    fn needs_sync(&self) -> bool {
        self.durable.load(Ordering::Acquire) < self.written.load(Ordering::Acquire)
            && self.check().is_ok()
    }
}
