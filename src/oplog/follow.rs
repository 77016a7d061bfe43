//! Following a stream that another process writes: a read-only handle
//! sees the log as it was when it was opened; `refreshed` opens this
//! stream's log again, and `durable_seq` says up to where it is known to be
//! on disk, from the bytes alone.

use crate::error::Result;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::log::recovery::recover_stream;
use crate::log::segment::Segment;
use crate::stream::Stream;

impl Stream {
    /// This stream as it is on disk now: for a handle of a read-only store,
    /// a new handle on the stream's log recovered again (read-only, as the
    /// store's open did), which sees what a writer in another process has
    /// appended since; for a writable handle, a clone (it sees every
    /// append already).
    pub fn refreshed(&self) -> Result<Stream> {
        if self.is_writable() {
            return Ok(self.clone());
        }
        let (cache, opts) = self.store_parts();
        let backend = cache.backend().clone();
        let dir = self.dir().to_path_buf();
        let start = || crate::oplog::archive::log_start(&*backend, &dir);
        let recovered = recover_stream(cache, &dir, self.name(), opts, &start)?;
        let stream = Stream::open(cache, self.name(), dir.clone(), opts, recovered, None)?;
        stream.load_redactions()?;
        Ok(stream)
    }

    /// Seq of the last record known to be on disk. A writable handle knows
    /// what its syncs covered. A read-only handle judges by the bytes: every
    /// record of a sealed segment, and in the tail every record that a later
    /// frame's `durable_end` (or a commit marker) proves was synced, so the
    /// last records of a writer that went quiet without closing may wait for
    /// its next write. [`Subscription`](crate::Subscription) follows a
    /// stream written in this process without that delay.
    pub fn durable_seq(&self) -> Result<u64> {
        if let Some(log) = self.opened_log() {
            return Ok(log.durable_seq());
        }
        match self.segments().last() {
            // A writable open synced what it recovered.
            Some(tail) if !self.is_writable() => proven_durable_seq(&tail),
            _ => Ok(self.last_seq()),
        }
    }
}

/// The last record of `tail` whose frame ends where a later frame says the
/// segment had been synced (or the last of a sealed segment).
fn proven_durable_seq(tail: &Segment) -> Result<u64> {
    let published = tail.published();
    if tail.is_sealed() {
        return Ok(published.last_seq);
    }
    let end = published.end;
    let bytes = tail.bytes(end)?;
    let entries = tail.index.read().entries().to_vec();
    // Walk frames from `at` (a frame start whose seq comes next) up to
    // `limit`: the last record ending by then, and the last frame's
    // durable bound.
    let walk = |mut at: u64, mut seq: u64, limit: u64| {
        let mut synced = 0;
        while at < limit {
            let Ok(f) = tail.decode_at(&bytes, at, end) else {
                break;
            };
            let frame_end = at + f.len_on_disk() as u64;
            if frame_end > limit {
                break;
            }
            // (A commit marker's durable_end is its own offset.)
            if f.proves_durable_end() {
                synced = u64::from(f.meta.durable_end);
            }
            if f.meta.kind.is_record() {
                seq = f.meta.seq;
            }
            at = frame_end;
        }
        (seq, synced)
    };
    let from = |limit: u64| {
        entries.iter().rev().find(|e| e.offset <= limit).map_or(
            (SEGMENT_HEADER_LEN as u64, tail.header.first_seq - 1),
            |e| (e.offset, e.seq - 1),
        )
    };
    let (at, seq) = from(end);
    let (_, synced) = walk(at, seq, end);
    let (at, seq) = from(synced);
    Ok(walk(at, seq, synced).0)
}
