//! The write side of one stream, in two halves.
//!
//! - [`Encoder`] assigns seq and Lamport, frames records (the CRC chain needs
//!   them in order) and decides where segments roll. It runs under the
//!   stream's lock, in the appending thread, and only touches memory.
//! - [`SegmentIo`] does the file work for the encoded frames: writes them,
//!   keeps the sparse index, creates segments, syncs. One thread at a time
//!   holds it (the flushing appender, or the syncer for a moment).
//!
//! `commit` decides who runs which half when. This module holds what the
//! two halves hand each other: chunks of frames and positions.

use crate::format::segment::SegmentHeader;
use crate::log::segment::Published;

mod encoder;
mod grow;
mod segment_io;

pub(crate) use encoder::Encoder;
pub(crate) use segment_io::{create_first_segment, SegmentIo};

/// Limits the writer enforces, from [`Options`](crate::Options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    pub segment_bytes_max: u64,
    pub index_interval_bytes: u64,
    pub batch_bytes_max: u64,
}

/// What an append was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's Lamport timestamp.
    pub lamport: u64,
}

/// A position in a stream's log since this open: bytes of segment files
/// before it, counting from the start of the tail segment at open. A
/// segment starting at position `base` holds `[base, base + its end)`.
/// Positions only grow, so "written up to P" and "durable up to P" are
/// single numbers.
pub(crate) type Pos = u64;

/// Where a data frame went, for the sparse index.
#[derive(Debug, Clone, Copy)]
struct FrameInfo {
    seq: u64,
    lamport: u64,
    ts_us: u64,
    offset: u64,
    indexable: bool,
}

/// Encoded frames for one segment, not yet written.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Create this segment first (a roll).
    roll: Option<SegmentHeader>,
    /// Position of the chunk's segment.
    base: Pos,
    offset: u64,
    bytes: Vec<u8>,
    frames: Vec<FrameInfo>,
    /// The stream's state after the chunk.
    pub tip: Published,
}

impl Chunk {
    /// Bytes of frames in the chunk.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}
