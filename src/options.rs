//! Tuning knobs and the choices a caller makes per call.

use crate::error::{Error, Result};
use crate::format::frame::{FRAME_HEADER_LEN, PAYLOAD_LEN_LIMIT};
use crate::format::segment::SEGMENT_BYTES_MAX_LIMIT;
use crate::format::segment::SEGMENT_HEADER_LEN;

/// How durable an append must be before [`Stream::append`](crate::Stream::append) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Return only once the record (and every earlier record of its stream)
    /// is on disk: it survives a process kill and a power cut.
    #[default]
    Sync,
    /// Return once the record is written to the operating system. It survives
    /// a process kill but not a power cut until the next sync
    /// ([`Stream::sync`](crate::Stream::sync) or a later `Sync` append).
    Buffered,
}

/// How the syncer issues fdatasyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// One `fdatasync` after another: portable, and as fast as anything
    /// for one stream. The default without the `io-uring` feature.
    #[cfg_attr(not(feature = "io-uring"), default)]
    Pwrite,
    /// All the syncs of a batch at once through io_uring (Linux, cargo
    /// feature `io-uring`, the default with it): much faster when many
    /// streams sync together (3.4x for 100 streams here), the same for one.
    /// Falls back to `Pwrite` where the kernel refuses io_uring, and says so
    /// in [`Stats::io_fallback`](crate::Stats::io_fallback).
    #[cfg_attr(feature = "io-uring", default)]
    IoUring,
}

/// What the syncer makes durable when a batch covers several files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncScope {
    /// One `fdatasync` per file (all at once with
    /// [`IoBackend::IoUring`]): only this store's data is written back. The
    /// choice for a host that shares its filesystem with other busy writers.
    #[default]
    Files,
    /// One `syncfs` for a batch of 4 or more files on one filesystem
    /// (Linux 5.8 and later, which report writeback errors through it;
    /// earlier kernels get `Files`): one device cache flush instead of one
    /// per file, much faster with many streams, but it writes back every
    /// dirty page of the filesystem, other programs' files included, and
    /// waits for them. docs/PERFORMANCE.md measures both.
    Filesystem,
}

/// What open does when it finds damaged data that was durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open: return [`Error::Corruption`] naming stream, segment and
    /// offset. A torn tail left by a crash is still cut (and quarantined),
    /// because it never held an acknowledged record.
    #[default]
    Strict,
    /// Salvage (a writable open): check every frame of every segment, as
    /// [`Stream::verify`](crate::Stream::verify) does, and lose only the
    /// records whose bytes are damaged. Their bytes move to the stream's
    /// `quarantine/` folder and a gap takes their place, so every other
    /// record keeps its seq, Lamport and payload, the lost seqs read as
    /// [`Error::Lost`](crate::Error::Lost), and a strict open accepts the
    /// result ([`Cut::lost`](crate::Cut::lost) names them). A damaged segment
    /// header is rebuilt from the frames after it; a segment whose header
    /// cannot be (its salt is damaged too) is lost whole; a torn tail is cut
    /// as always.
    /// Idempotent and crash-safe (docs/FORMAT.md, "Repair"). For repair by an
    /// operator: it reads the whole log, and loses records that may have been
    /// acknowledged. A read-only open in this mode changes nothing and
    /// reports the first cut a repair would make.
    Repair,
}

/// Options for [`Store::open`](crate::Store::open): start from
/// `Options::default()` and change what you need, with a setter per field
/// (new fields may come, so a struct literal cannot be written outside
/// lamplog).
///
/// ```
/// let opts = lamplog::Options::default()
///     .segment_bytes_max(16 << 20)
///     .sync_interval_us(20_000);
/// assert_eq!(opts.segment_bytes_max, 16 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Roll to a new segment file when the current one would exceed this size.
    pub segment_bytes_max: u64,
    /// Largest accepted payload; a larger one is [`Error::RecordTooLarge`].
    pub record_bytes_max: usize,
    /// Add a sparse index entry about every this many bytes of log.
    pub index_interval_bytes: u64,
    /// Most bytes of records queued for a stream's next write; appenders
    /// wait for the write in progress beyond it (one atomic batch may
    /// exceed it).
    pub batch_bytes_max: u64,
    /// Longest time a `Buffered` record may stay written but not synced.
    /// The syncer sweeps every stream with unsynced records every half of
    /// this, in its next batch whatever other streams keep it busy with, so
    /// a record is durable within half the interval plus two batches' syncs:
    /// within the interval while a batch of syncs takes under a quarter of it.
    pub sync_interval_us: u64,
    /// How the syncer issues fdatasyncs.
    pub io_backend: IoBackend,
    /// What a sync of many files at once writes back.
    pub sync_scope: SyncScope,
    /// Write frames into a segment's preallocated space through a shared
    /// writable memory map (a copy per write instead of a `pwrite`), on
    /// ext4 and tmpfs; other filesystems always get `pwrite`. The bytes
    /// are in the page cache once the copy ends, so a `Buffered` append
    /// still survives a process kill. Writes of 16 KiB and more, and the
    /// writers of streams beyond the 8,192 maps a process holds at most,
    /// use `pwrite` anyway. Turn it off to keep every write a system call
    /// (docs/PERFORMANCE.md measures both).
    pub mapped_writes: bool,
    /// Most segments whose map the store keeps for readers; the least
    /// recently used beyond it are unmapped and mapped again when next
    /// read. Every map counts against the kernel's `vm.max_map_count`
    /// (65,530 by default), which a store of many segments would otherwise
    /// exhaust. No segment holds a file descriptor unless its stream is
    /// being written (two per stream written since open).
    pub open_segments_max: usize,
    /// What open does with damaged durable data.
    pub recovery: RecoveryMode,
    /// Open without the writer lock; appends fail with [`Error::ReadOnly`] and
    /// no file is modified.
    pub read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes_max: 64 << 20,
            record_bytes_max: 16 << 20,
            index_interval_bytes: 4 << 10,
            batch_bytes_max: 16 << 20,
            sync_interval_us: 100_000,
            io_backend: IoBackend::default(),
            sync_scope: SyncScope::Files,
            mapped_writes: true,
            open_segments_max: 4096,
            recovery: RecoveryMode::Strict,
            read_only: false,
        }
    }
}

/// A setter per field: `Options::default().read_only(true)`.
macro_rules! setters {
    ($($field:ident: $ty:ty),* $(,)?) => {
        impl Options {
            $(
                #[doc = concat!("Set [`", stringify!($field), "`](Options::", stringify!($field), ").")]
                #[must_use]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    segment_bytes_max: u64,
    record_bytes_max: usize,
    index_interval_bytes: u64,
    batch_bytes_max: u64,
    sync_interval_us: u64,
    io_backend: IoBackend,
    sync_scope: SyncScope,
    mapped_writes: bool,
    open_segments_max: usize,
    recovery: RecoveryMode,
    read_only: bool,
}

impl Options {
    /// Check that the options can work: every record must fit in a fresh
    /// segment, and every bound must be one the format can hold. The
    /// arithmetic is done where it cannot overflow, so no value passes here
    /// and then fails later.
    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |why: String| Err(Error::InvalidOptions(why));
        if self.record_bytes_max == 0 || self.record_bytes_max > PAYLOAD_LEN_LIMIT {
            return invalid(format!(
                "record_bytes_max {} must be between 1 and {PAYLOAD_LEN_LIMIT}",
                self.record_bytes_max
            ));
        }
        if self.segment_bytes_max > SEGMENT_BYTES_MAX_LIMIT {
            return invalid(format!(
                "segment_bytes_max {} exceeds the limit of {SEGMENT_BYTES_MAX_LIMIT}",
                self.segment_bytes_max
            ));
        }
        // Both terms are bounded above (2 GiB each): no overflow.
        let largest_segment =
            (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64 + self.record_bytes_max as u64;
        if self.segment_bytes_max < largest_segment {
            return invalid(format!(
                "segment_bytes_max {} cannot hold one record of record_bytes_max {} \
                 (needs at least {largest_segment})",
                self.segment_bytes_max, self.record_bytes_max
            ));
        }
        for (name, value) in [
            ("batch_bytes_max", self.batch_bytes_max),
            ("sync_interval_us", self.sync_interval_us),
            ("index_interval_bytes", self.index_interval_bytes),
            ("open_segments_max", self.open_segments_max as u64),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Options::default().validate().unwrap();
    }

    #[test]
    fn a_segment_must_hold_the_largest_record() {
        let opts = Options {
            segment_bytes_max: 4096,
            ..Options::default()
        };
        assert!(matches!(opts.validate(), Err(Error::InvalidOptions(_))));
        let opts = Options {
            segment_bytes_max: 4096,
            record_bytes_max: 1024,
            ..Options::default()
        };
        opts.validate().unwrap();
    }
}
