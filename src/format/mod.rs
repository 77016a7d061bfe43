//! The bytes on disk: the frame codec, the segment header, the index and
//! `.ids` files, file and stream names, and the format's limits. No I/O.
//! Public for its size limits and layout constants.

pub(crate) mod frame;
pub(crate) mod ids;
pub(crate) mod index;
pub(crate) mod name;
pub(crate) mod segment;

pub use frame::{FRAME_HEADER_LEN, LAMPORT_MAX, PAYLOAD_LEN_LIMIT};
pub use index::{INDEX_ENTRY_LEN, INDEX_HEADER_LEN, INDEX_MAGIC};
pub use name::NAME_LEN_MAX;
pub use segment::{FORMAT_VERSION, SEGMENT_BYTES_MAX_LIMIT, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
