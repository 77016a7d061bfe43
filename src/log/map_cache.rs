//! The segment maps a store keeps: a bound on what is open, whatever the
//! number of streams and segments.
//!
//! A segment holds no file descriptor unless its stream's writer is writing
//! it, and its map (the view readers decode from) is kept only while it is
//! among the `open_segments_max` least recently used. A map needs no
//! descriptor once made, but every map counts against the kernel's
//! `vm.max_map_count` (65,530 by default), so a store of 100,000 segments
//! that kept them all could no longer map anything, not even to open. An
//! evicted view is mapped again, through a descriptor opened for the
//! moment, when a reader next needs it; readers that hold a view keep it
//! alive until they drop it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::io::backend::{Backend, OpenMode};
use crate::log::sync::Mutex;

/// One segment's view of its bytes, which the cache may drop. (Its lock is
/// the loom shim's: the model of rolls reads through it.)
#[derive(Debug, Default)]
pub(crate) struct View {
    pub bytes: Mutex<Bytes>,
    /// The view's place in the recency order; 0 when it is not in it.
    /// Changed only under the cache's lock.
    tick: AtomicU64,
}

/// The store-wide bound on kept maps.
#[derive(Debug)]
pub(crate) struct MapCache {
    backend: Arc<dyn Backend>,
    max: usize,
    /// Never held across a loom operation, so a plain lock even in models.
    lru: parking_lot::Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    next_tick: u64,
    /// Views by the tick of their last use, oldest first. An entry whose
    /// segment was dropped (archived, or its store closed) stays until it
    /// is the oldest: counting it keeps the bound conservative.
    order: BTreeMap<u64, Weak<View>>,
}

impl MapCache {
    pub fn new(backend: Arc<dyn Backend>, max: usize) -> Arc<MapCache> {
        assert!(
            max >= 1,
            "open_segments_max >= 1 (checked by Options::validate)"
        );
        Arc::new(MapCache {
            backend,
            max,
            lru: parking_lot::Mutex::new(Lru::default()),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Map `[0, len)` of the file at `path` through a descriptor opened for
    /// the moment (and closed when this returns).
    pub fn map_path(&self, path: &Path, len: u64) -> std::io::Result<Bytes> {
        self.backend.open(path, OpenMode::Read)?.map(len)
    }

    /// Note a use of `view` (which holds a map), and drop the maps of the
    /// least recently used views beyond the bound.
    pub fn touch(&self, view: &Arc<View>) {
        let victims = {
            let mut lru = self.lru.lock();
            let old = view.tick.load(Ordering::Relaxed);
            if old != 0 && old == lru.next_tick {
                // Already the most recent: nothing moves.
                return;
            }
            lru.order.remove(&old);
            lru.next_tick += 1;
            let tick = lru.next_tick;
            lru.order.insert(tick, Arc::downgrade(view));
            view.tick.store(tick, Ordering::Relaxed);
            let mut victims = Vec::new();
            while lru.order.len() > self.max {
                let (_, oldest) = lru.order.pop_first().expect("longer than max >= 1");
                if let Some(victim) = oldest.upgrade() {
                    victim.tick.store(0, Ordering::Relaxed);
                    victims.push(victim);
                }
            }
            victims
        };
        // Outside the cache's lock: a view's own lock is never taken while
        // another view's is held, and a victim dropped here may be the last
        // reference to it.
        for victim in victims {
            *victim.bytes.lock() = Bytes::new();
        }
    }

    /// How many views the cache counts (at most `max`).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lru.lock().order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(cache: &MapCache) -> Arc<View> {
        let view = Arc::new(View::default());
        *view.bytes.lock() = Bytes::from_static(b"mapped");
        cache.touch(&view);
        view
    }

    #[test]
    fn the_least_recently_used_views_are_dropped_beyond_the_bound() {
        let cache = MapCache::new(Arc::new(crate::io::backend::StdBackend::default()), 3);
        let views: Vec<_> = (0..3).map(|_| mapped(&cache)).collect();
        cache.touch(&views[0]);
        let fourth = mapped(&cache);
        assert_eq!(cache.len(), 3);
        assert!(views[1].bytes.lock().is_empty(), "the least recent went");
        for kept in [&views[0], &views[2], &fourth] {
            assert!(!kept.bytes.lock().is_empty());
        }
        // A dropped segment's entry counts until it is the oldest.
        drop(views);
        let fifth = mapped(&cache);
        assert_eq!(cache.len(), 3);
        assert!(!fourth.bytes.lock().is_empty() && !fifth.bytes.lock().is_empty());
    }
}
