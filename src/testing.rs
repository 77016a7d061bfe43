//! What lamplog's own tests, fuzz targets and benchmarks use, and what an
//! embedder's crash tests may use too: the file backend every byte goes
//! through, and a simulated disk to put under a store. Behind the `testing`
//! feature; not part of the stable API.
//!
//! ```
//! use std::sync::Arc;
//! use lamplog::testing::{Fate, SimDisk};
//! use lamplog::{Durability, Options, Store};
//!
//! let disk = SimDisk::default();
//! let store = Store::open_with(Arc::new(disk.clone()), "/db", Options::default())?;
//! let seq = store.stream("s")?.append(b"{}", Durability::Sync)?.seq;
//! store.abandon(); // the process dies here
//! // The power goes too, and no unsynced write reaches the disk.
//! let image = disk.crash_image(disk.ops(), Fate::Lost, false);
//! let store = Store::open_with(Arc::new(image), "/db", Options::default())?;
//! assert_eq!(store.stream("s")?.get(seq)?.unwrap().payload(), b"{}");
//! # Ok::<(), lamplog::Error>(())
//! ```

pub use crate::io::backend::{Backend, BackendFile, LockGuard, OpenMode, StdBackend};
pub use crate::io::sim::{Fate, Fault, SimDisk, SimOp};
